#!/usr/bin/env bash
# Our queue beside its peers, in one run against the same PostgreSQL:
# graphile-worker (npm) with its library defaults and with its own perfTest
# settings, pgqueuer (PyPI) draining with batches of 50, and our store
# through its port (8 clients, batches of 50, and of 500 as graphile-worker's
# perfTest fetches). Each drains JOBS no-op jobs queued
# beforehand (queueing is not timed), RUNS times; the table shows medians
# and what each wrote per job, queueing and draining (rows inserted, updated and
# deleted, from pg_stat_user_tables, read after the drain's connections
# closed). A peer that cannot be installed is reported and skipped; ours
# always runs.
#
# usage: benches/peers/run.sh [JOBS] [RUNS]     (defaults 20000 and 3)
# needs: node + npm, python3 with venv, psql, cargo; PostgreSQL at
# $DLFT_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
set -uo pipefail
cd "$(dirname "$0")"
JOBS=${1:-20000}
RUNS=${2:-3}
URL=${DLFT_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
WORK=${PEERS_WORK:-/tmp/dlft-peers}
mkdir -p "$WORK"
OUT="$WORK/results.jsonl"
: > "$OUT"

psql_q() { psql "$URL" -qtAX -c "$1"; }
# Rows written in a schema so far: inserted updated deleted.
writes() {
  psql_q "SELECT coalesce(sum(n_tup_ins),0) || ' ' || coalesce(sum(n_tup_upd),0) || ' ' || coalesce(sum(n_tup_del),0)
          FROM pg_stat_user_tables WHERE schemaname = '$1'"
}
# run_one SCHEMA COMMAND...: runs a drain, appends its JSON line with writes per job.
run_one() {
  local schema=$1; shift
  sleep 1
  read -r i0 u0 d0 <<< "$(writes "$schema")"
  local line
  line=$("$@" | tail -n 1) || { echo "  failed: $*" >&2; return 1; }
  sleep 1.5   # backends that exited have flushed their statistics
  read -r i1 u1 d1 <<< "$(writes "$schema")"
  python3 - "$line" "$((i1-i0))" "$((u1-u0))" "$((d1-d0))" >> "$OUT" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); n = d["jobs"]
d["per_job"] = {"inserted": int(sys.argv[2]) / n, "updated": int(sys.argv[3]) / n, "deleted": int(sys.argv[4]) / n}
print(json.dumps(d))
PY
  tail -n 1 "$OUT" >&2
}

echo "== installing peers in $WORK" >&2
GRAPHILE=0
if (cd "$WORK" && [ -f package.json ] || npm init -y >/dev/null) \
   && (cd "$WORK" && npm pkg set type=module >/dev/null && npm install --silent graphile-worker@0.17.3 >/dev/null 2>&1); then
  cp graphile.mjs "$WORK/graphile.mjs"; GRAPHILE=1
else
  echo "graphile-worker could not be installed: skipped" >&2
fi
PGQ=0
if { [ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"; } \
   && "$WORK/venv/bin/pip" install -q "pgqueuer[asyncpg]==1.6.0" >/dev/null 2>&1; then
  PGQ=1
else
  echo "pgqueuer could not be installed: skipped" >&2
fi
echo "== building ours" >&2
(cd ../.. && cargo bench --bench peers_ours --no-run -q 2>/dev/null) || { echo "ours does not build" >&2; exit 1; }

for run in $(seq 1 "$RUNS"); do
  echo "== run $run of $RUNS" >&2
  if [ "$GRAPHILE" = 1 ]; then
    run_one graphile_worker node "$WORK/graphile.mjs" "$URL" "$JOBS" defaults
    run_one graphile_worker node "$WORK/graphile.mjs" "$URL" "$JOBS" perftest
  fi
  if [ "$PGQ" = 1 ]; then
    run_one pgq_bench "$WORK/venv/bin/python" pgqueuer_drain.py "$URL" pgq_bench "$JOBS" 50
  fi
  run_one dlft_peers bash -c "cd ../.. && cargo bench -q --bench peers_ours -- $JOBS 50 2>/dev/null"
  # The batch graphile-worker's perfTest fetches (its local queue of 500).
  run_one dlft_peers bash -c "cd ../.. && cargo bench -q --bench peers_ours -- $JOBS 500 2>/dev/null"
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["peer"], r["mode"]), []).append(r)
print(f"{'queue':<16} {'settings':<22} {'jobs/s (median)':>16} {'runs':>5}   rows written per job (queueing + draining)")
for (peer, mode), rs in groups.items():
    med = statistics.median(r["jobs_per_s"] for r in rs)
    w = rs[-1]["per_job"]
    print(f"{peer:<16} {mode:<22} {med:>16,.0f} {len(rs):>5}   "
          f"{w['inserted']:.2f} inserted, {w['updated']:.2f} updated, {w['deleted']:.2f} deleted")
PY
