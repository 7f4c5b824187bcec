"""A mixed-language farm: the C ``gearman`` tool (libgearman, Debian package gearman-tools) runs the worker,
piping each workload through ``rev``; a gearworks client sends it jobs. Any Gearman client or worker (PHP, Perl,
C, Java) mixes with gearworks ones the same way, through either job server.

    python examples/mixed_farm.py 127.0.0.1:4730
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys

from gearworks import AsyncAdmin, AsyncClient
from gearworks.connection import parse_servers

WORDS = ["gearman", "python", "farm"]


async def run(servers: str | None) -> int:
    gearman = shutil.which("gearman")
    if gearman is None:
        print("the gearman tool is not installed (Debian package gearman-tools)", file=sys.stderr)
        return 1
    server = parse_servers(servers)[0]
    worker = await asyncio.create_subprocess_exec(
        gearman, "-h", str(server.host), "-p", str(server.port), "-w", "-f", "rev", "--", "rev"
    )
    try:
        async with AsyncAdmin(server) as admin:  # wait until the C worker has registered
            for _ in range(500):
                if any(row.function == b"rev" and row.workers for row in await admin.status()):
                    break
                await asyncio.sleep(0.01)
        async with AsyncClient(servers) as client:
            results = await asyncio.gather(*(client.do("rev", word + "\n", timeout=10) for word in WORDS))
        for word, result in zip(WORDS, results, strict=True):
            print(f"C worker reversed {word!r}: {result.decode().strip()!r}")
    finally:
        worker.terminate()
        await worker.wait()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="?", help="host:port (default $GEARMAN_SERVERS, else :4730)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.servers)))


if __name__ == "__main__":
    main()
