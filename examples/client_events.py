"""Streamed events: a worker sends partial data, warnings and progress before its result; the client reads them
as they come, once with ``async for event in job`` and once with callbacks.

    python examples/client_events.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import asyncio

from gearworks import AsyncClient, AsyncWorker, WorkerJob
from gearworks.client import CompleteEvent, DataEvent, StatusEvent, WarningEvent


async def transcode(job: WorkerJob) -> bytes:
    for step in range(1, 4):
        await asyncio.sleep(0.01)
        job.data(f"chunk {step}")
        job.status(step, 3)
    job.warning("low disk space")
    return b"transcoded " + job.workload


async def run(servers: str | None) -> None:
    worker = AsyncWorker(servers)
    worker.register("transcode", transcode)
    serving = asyncio.create_task(worker.work(handle_signals=False))
    try:
        async with AsyncClient(servers) as client:
            async for event in client.submit("transcode", "movie.mkv", timeout=30):
                match event:
                    case DataEvent(data):
                        print(f"data: {data.decode()}")
                    case StatusEvent(numerator, denominator):
                        print(f"status: {numerator}/{denominator}")
                    case WarningEvent(data):
                        print(f"warning: {data.decode()}")
                    case CompleteEvent(result):
                        print(f"complete: {result.decode()}")
                    case _:
                        print(f"event: {type(event).__name__}")

            result = await client.do(
                "transcode",
                "song.flac",
                timeout=30,
                on_status=lambda numerator, denominator: print(f"callback status: {numerator}/{denominator}"),
                on_data=lambda data: print(f"callback data: {data.decode()}"),
            )
            print(f"callback result: {result.decode()}")
    finally:
        worker.stop()
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port[,host:port] (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    asyncio.run(run(args.servers))


if __name__ == "__main__":
    main()
