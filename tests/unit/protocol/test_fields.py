"""Fields read as gearmand reads them."""

from __future__ import annotations

import pytest

from gearworks.protocol.fields import as_bytes, c_atoi, name_bytes, seconds


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"42", 42), (b"  -7x", -7), (b"+3", 3), (b"x1", 0), (b"", 0), (b"\t\n12 ", 12)],
)
def test_c_atoi_reads_like_c(text: bytes, value: int) -> None:
    assert c_atoi(text) == value


@pytest.mark.parametrize(
    ("text", "value"), [(b"2.5", 2.5), (b"3", 3.0), (b"-1", 0.0), (b"abc", 0.0), (b"999999999999", 0.0)]
)
def test_seconds_are_positive_and_bounded(text: bytes, value: float) -> None:
    assert seconds(text) == value


def test_as_bytes_accepts_bytes_like_and_str() -> None:
    assert as_bytes(b"a") == b"a"
    assert as_bytes(bytearray(b"b")) == b"b"
    assert as_bytes(memoryview(b"c")) == b"c"
    assert as_bytes("é") == "é".encode()


@pytest.mark.parametrize("value", [5, [104, 105], {"a": 1}, None, 1.5])
def test_as_bytes_refuses_other_types_naming_them(value: object) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        as_bytes(value, "workload")


def test_name_bytes() -> None:
    assert name_bytes("f") == b"f"
    assert name_bytes(b"g") == b"g"
    assert name_bytes(None) is None
