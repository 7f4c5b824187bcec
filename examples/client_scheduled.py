"""Scheduled (epoch) jobs: a background job that no worker gets before its time (SUBMIT_JOB_EPOCH).

python examples/client_scheduled.py 127.0.0.1:4730 --delay 2
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gearworks import AsyncClient, AsyncWorker, WorkerJob


async def run(servers: str | None, delay: int) -> None:
    ran: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def reminder(job: WorkerJob) -> bytes:
        ran.set_result(time.time())
        return b""

    # C gearmand wakes no sleeping worker when an epoch job comes due: the worker GRABs again after poll_interval
    # seconds asleep (default 5; 1 here, so the job runs within a second of its time on either server).
    worker = AsyncWorker(servers, poll_interval=1.0)
    worker.register("reminder", reminder)
    serving = asyncio.create_task(worker.work(handle_signals=False))
    try:
        async with AsyncClient(servers) as client:
            when = int(time.time()) + delay  # epoch seconds: the protocol has no finer resolution
            handle = await client.submit_background("reminder", "water the plants", when=when)
            print(f"queued {handle.decode()} for {time.strftime('%H:%M:%S', time.localtime(when))}")
            status = await client.get_status(handle)
            print(f"status now: known={status.known} running={status.running}")
        ran_at = await asyncio.wait_for(ran, delay + 30)
        print(f"ran {ran_at - when:+.1f}s from its time: on time={ran_at >= when}")
    finally:
        worker.stop()
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    parser.add_argument("--delay", type=int, default=2, help="seconds from now")
    args = parser.parse_args()
    asyncio.run(run(args.servers, args.delay))


if __name__ == "__main__":
    main()
