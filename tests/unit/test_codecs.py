"""Codecs: bytes by default, JSON built in, any encode/decode pair accepted."""

from __future__ import annotations

from typing import Any

import pytest

from gearworks.codecs import BytesCodec, Codec, JSONCodec, codec_or_default


def test_bytes_codec_accepts_bytes_like_and_str_only() -> None:
    codec = BytesCodec()
    assert codec.encode(b"ab") == b"ab"
    assert codec.encode(bytearray(b"ab")) == b"ab"
    assert codec.encode(memoryview(b"ab")) == b"ab"
    assert codec.encode("hé") == "hé".encode()
    assert codec.decode(b"\0x") == b"\0x"
    for wrong, name in ((5, "int"), ([104, 105], "list"), ({"a": 1}, "dict"), (None, "NoneType")):
        with pytest.raises(TypeError, match=name):
            codec.encode(wrong)


def test_json_codec_round_trips_objects_as_compact_utf8() -> None:
    codec = JSONCodec()
    assert codec.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert codec.decode(codec.encode({"a": [1, None]})) == {"a": [1, None]}
    assert JSONCodec(sort_keys=True).encode({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    with pytest.raises(ValueError, match="Expecting value"):
        codec.decode(b"not json")
    with pytest.raises(TypeError):
        codec.encode(object())


def test_any_encode_decode_pair_is_a_codec_and_none_is_bytes() -> None:
    class Upper:
        def encode(self, obj: Any, /) -> bytes:
            return str(obj).upper().encode()

        def decode(self, data: bytes, /) -> Any:
            return data.decode().lower()

    upper = Upper()
    assert isinstance(upper, Codec)
    assert codec_or_default(upper) is upper
    assert isinstance(codec_or_default(None), BytesCodec)
    with pytest.raises(TypeError, match="encode"):
        codec_or_default(object())  # type: ignore[arg-type]


def test_a_codec_class_is_checked_once_but_a_bad_instance_is_still_refused() -> None:
    class Halfway:
        """Has ``encode`` on the class; ``decode`` only on some instances."""

        def encode(self, obj: Any, /) -> bytes:
            return bytes(obj)

    complete: Any = Halfway()
    complete.decode = bytes
    assert codec_or_default(complete) is complete
    bare: Any = Halfway()
    with pytest.raises(TypeError, match="Halfway"):
        codec_or_default(bare)  # this instance has no decode: its class was not taken as a codec
