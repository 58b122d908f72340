"""pgqueuer draining N no-op jobs; prints one JSON line.

usage: python pgqueuer_drain.py <postgres-url> <schema> <jobs> <batch_size>
(installs pgqueuer's tables in <schema> when they are missing)
"""
import asyncio
import json
import sys
import time
from datetime import timedelta

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode


async def main(url: str, schema: str, jobs: int, batch: int) -> None:
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await admin.close()
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    driver = AsyncpgDriver(conn)
    q = Queries(driver)
    if not await conn.fetchval("SELECT to_regclass('pgqueuer') IS NOT NULL"):
        await q.install()
    await conn.execute("TRUNCATE pgqueuer")
    for i in range(0, jobs, 1000):
        n = min(1000, jobs - i)
        await q.enqueue(["noop"] * n, [None] * n, [0] * n)
    qm = QueueManager(q)

    @qm.entrypoint("noop")
    async def noop(job) -> None:  # noqa: ARG001
        return None

    start = time.perf_counter()
    await qm.run(batch_size=batch, dequeue_timeout=timedelta(seconds=0.05), mode=QueueExecutionMode.drain)
    secs = time.perf_counter() - start
    left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    await conn.close()
    print(json.dumps({"peer": "pgqueuer", "mode": f"batch {batch}", "jobs": jobs, "seconds": secs,
                      "left": left, "jobs_per_s": jobs / secs}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
