// graphile-worker draining N no-op jobs; prints one JSON line.
// usage: node graphile.mjs <postgres-url> <jobs> <defaults|perftest>
import { Logger, run, makeWorkerUtils } from "graphile-worker";

// No per-job log lines: logging is not what is compared.
const logger = new Logger(() => () => {});

const [url, jobsArg, mode] = process.argv.slice(2);
const jobs = Number(jobsArg);
const perftest = mode === "perftest";
// graphile-worker's own perfTest settings (its docs' "Performance" page) or
// the library's defaults (one job at a time, no local queue, no batching).
const preset = perftest
  ? { worker: { concurrentJobs: 24, maxPoolSize: 25, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
  : { worker: {} };

const utils = await makeWorkerUtils({ connectionString: url, logger });
await utils.migrate();
await utils.withPgClient((c) => c.query("TRUNCATE graphile_worker._private_jobs CASCADE"));
// Queue in batches of 1,000 through add_jobs (not timed).
for (let i = 0; i < jobs; i += 1000) {
  const batch = Array.from({ length: Math.min(1000, jobs - i) }, () => ({ identifier: "noop", payload: {} }));
  await utils.withPgClient((c) =>
    c.query(
      "SELECT graphile_worker.add_jobs(array(SELECT json_populate_recordset(null::graphile_worker.job_spec, $1::json)))",
      [JSON.stringify(batch)],
    ),
  );
}
let done = 0;
let resolveDone;
const finished = new Promise((r) => (resolveDone = r));
const start = process.hrtime.bigint();
const runner = await run({
  connectionString: url,
  noHandleSignals: true,
  logger,
  pollInterval: 1000,
  preset,
  taskList: {
    noop: async () => {
      done += 1;
      if (done === jobs) resolveDone();
    },
  },
});
await finished;
const secs = Number(process.hrtime.bigint() - start) / 1e9;
await runner.stop();
// Completion may still be in flight (batched): wait until the table is empty.
for (;;) {
  const { rows } = await utils.withPgClient((c) => c.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs"));
  if (rows[0].n === 0) break;
  await new Promise((r) => setTimeout(r, 20));
}
const total = Number(process.hrtime.bigint() - start) / 1e9;
await utils.release();
console.log(JSON.stringify({ peer: "graphile-worker", mode, jobs, seconds: total, ran_in: secs, jobs_per_s: jobs / total }));
