"""Parsing job server addresses."""

from __future__ import annotations

import pytest

from gearworks.connection import ServerAddress, parse_servers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.1:4731", ServerAddress("10.0.0.1", 4731)),
        ("gear.example", ServerAddress("gear.example", 4730)),
        ("[::1]:4999", ServerAddress("::1", 4999)),
        ("[::1]", ServerAddress("::1", 4730)),
        ("/run/gearman.sock", ServerAddress("", 0, "/run/gearman.sock")),
        ("unix:gearman.sock", ServerAddress("", 0, "gearman.sock")),
        (" localhost:1 ", ServerAddress("localhost", 1)),
    ],
)
def test_parse_address(spec: str, expected: ServerAddress) -> None:
    assert ServerAddress.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "host:0", "host:99999", "host:abc", "[::1", "[::1]x"])
def test_bad_address_is_a_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="address"):
        ServerAddress.parse(spec)


def test_str_round_trips() -> None:
    for spec in ("127.0.0.1:4730", "[::1]:4730", "/tmp/g.sock"):
        assert str(ServerAddress.parse(spec)) == spec


def test_parse_servers_from_list_string_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_servers("a:1,b") == [ServerAddress("a", 1), ServerAddress("b", 4730)]
    assert parse_servers(["a:1", ServerAddress("b", 2)]) == [ServerAddress("a", 1), ServerAddress("b", 2)]
    monkeypatch.setenv("GEARMAN_SERVERS", "x:5")
    assert parse_servers(None) == [ServerAddress("x", 5)]
    monkeypatch.delenv("GEARMAN_SERVERS")
    assert parse_servers(None) == [ServerAddress("127.0.0.1", 4730)]
    with pytest.raises(ValueError, match="no job servers"):
        parse_servers([])
