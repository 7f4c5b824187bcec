"""The client channel state machine and its outbox: which calls move a channel, and what the driver is handed."""

from __future__ import annotations

from gearworks.client.routing import Router
from gearworks.client.session import Channel, ChannelState, ClientSession
from gearworks.errors import ConnectionLost
from gearworks.protocol import RES, PacketType, encode

S = ChannelState


def session_with_one_job() -> ClientSession:
    session = ClientSession(Router(["127.0.0.1:4730"]), exceptions=True, retry_delay=0)
    session.submit(session.new_job("f", b"w", options={"retry_count": 1}), 0.0)
    return session


def state(channel: Channel) -> S:
    """The channel's state, read afresh (the session changes it behind the type checker's back)."""
    return channel.state


def test_a_channel_moves_idle_connecting_connected_and_back_to_idle() -> None:
    session = session_with_one_job()
    (channel,) = session.take_ready()
    assert state(channel) is S.IDLE
    assert session.start_connecting(channel)
    assert state(channel) is S.CONNECTING
    assert not session.start_connecting(channel)  # already on its way
    assert session.take_ready() == []
    session.connected(channel, 0.0)
    assert state(channel) is S.CONNECTED
    assert session.take_ready() == [channel]  # the option and the job, queued while connecting
    assert len(channel.take_out()) == 2
    session.lost(channel, ConnectionLost("reset"), 1.0)
    assert state(channel) is S.IDLE
    assert session.take_ready() == [channel]  # the job is retried there: connect anew


def test_a_failed_connect_goes_back_to_idle_and_a_closed_client_connects_nothing() -> None:
    session = session_with_one_job()
    (channel,) = session.take_ready()
    assert session.start_connecting(channel)
    session.connect_failed(channel, ConnectionLost("refused"), 0.0)
    assert (channel.state, channel.out, list(channel.pending)) == (S.IDLE, [], [])
    session.close(ConnectionLost("closed"))
    assert session.take_ready() == []
    assert not session.start_connecting(channel)


def test_requests_still_in_out_count_as_unsent_until_taken() -> None:
    session = session_with_one_job()
    (channel,) = session.take_ready()
    session.start_connecting(channel)
    session.connected(channel, 0.0)
    assert channel.unsent == 2  # OPTION_REQ and SUBMIT_JOB, neither written yet
    session.take_ready()
    channel.take_out()
    assert channel.unsent == 0
    session.receive(channel, encode(PacketType.OPTION_RES, (b"exceptions",), RES), 0.0)
    session.submit(session.new_job("f", b"x", options={}), 0.0)
    assert (session.take_ready(), channel.unsent) == ([channel], 1)
