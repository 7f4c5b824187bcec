"""JSON payloads: a client and a worker that both use ``JSONCodec``, so objects go in and objects come out.

python examples/client_json.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import asyncio

from gearworks import AsyncClient, AsyncWorker, JSONCodec, WorkerJob


async def total(job: WorkerJob) -> dict[str, object]:
    order = job.value  # the decoded workload; job.workload keeps the bytes
    items = order["items"]
    return {"order": order["id"], "items": len(items), "total": sum(item["price"] * item["qty"] for item in items)}


async def run(servers: str | None) -> None:
    worker = AsyncWorker(servers, codec=JSONCodec())
    worker.register("order_total", total)
    serving = asyncio.create_task(worker.work(handle_signals=False))
    try:
        async with AsyncClient(servers, codec=JSONCodec()) as client:
            order = {"id": 17, "items": [{"sku": "tea", "price": 4, "qty": 3}, {"sku": "cup", "price": 9, "qty": 2}]}
            result = await client.do("order_total", order, timeout=30)
            print(f"result is a {type(result).__name__}: {result}")
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
