"""The read switch on real transports of both event loops, the open-files limit, and size options."""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
from collections.abc import Callable

import pytest

from gearworks.cli.serve import parse_size
from gearworks.server.limits import Limits, Pause, ReadSwitch, raise_open_files_limit


def loops() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    factories: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    try:
        import uvloop
    except ImportError:
        return factories
    factories.append(uvloop.new_event_loop)
    return factories


@pytest.mark.parametrize("new_loop", loops(), ids=lambda factory: factory.__module__)
def test_one_reason_lifted_never_resumes_a_connection_another_holds(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def run() -> list[bool]:
        ours, theirs = socket.socketpair()
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
        switch = ReadSwitch()
        seen = []
        try:
            switch.pause(Pause.BACKLOG, transport)
            switch.pause(Pause.THROTTLED, transport)
            switch.pause(Pause.THROTTLED, transport)
            seen.append(transport.is_reading())
            seen.append(switch.resume(Pause.BACKLOG, transport))
            seen.append(switch.resume(Pause.OUTPUT, transport))  # never paused for it: ignored
            seen.append(switch.resume(Pause.THROTTLED, transport))
            seen.append(transport.is_reading())
            seen.append(switch.resume(Pause.THROTTLED, transport))
            seen.append(transport.is_reading())
        finally:
            transport.close()
            theirs.close()
        return seen

    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert runner.run(run()) == [False, False, False, False, False, True, True]


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
        before, after = raise_open_files_limit()
        assert after == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert before <= after
        assert Limits().connections_cap() == hard - 64
        assert Limits(max_connections=10).connections_cap() == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sizes_take_binary_suffixes() -> None:
    assert [parse_size(text) for text in ("4194304", "512KiB", "4MiB", "1g", "3k")] == [
        4 << 20,
        512 << 10,
        4 << 20,
        1 << 30,
        3 << 10,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("4 parsecs")
