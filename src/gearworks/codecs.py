"""Codecs: how clients and workers turn objects into payload bytes and back.

A codec is anything with ``encode(obj) -> bytes`` and ``decode(data) -> obj`` (the ``Codec`` protocol). Clients
encode workloads and decode results; workers decode workloads and encode results, so both sides of a function
must use the same codec. ``BytesCodec`` (the default, also spelled ``codec=None``) keeps payloads as bytes:
``bytes``/``bytearray``/``memoryview`` as they are, ``str`` as UTF-8, anything else a TypeError naming the type.

Nothing here knows about packets, sessions or connections.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from gearworks.protocol.fields import as_bytes

__all__ = ["BytesCodec", "Codec", "JSONCodec", "codec_or_default"]


@runtime_checkable
class Codec(Protocol):
    """Objects to payload bytes and back."""

    def encode(self, obj: Any, /) -> bytes:
        """The payload for ``obj``.

        Raises:
            TypeError, ValueError: ``obj`` cannot be encoded.
        """
        ...

    def decode(self, data: bytes, /) -> Any:
        """The object a payload stands for.

        Raises:
            ValueError: ``data`` is not a payload of this codec.
        """
        ...


class BytesCodec:
    """Bytes in, bytes out: the default. ``str`` is sent as UTF-8; ``decode`` returns the bytes unchanged."""

    __slots__ = ()

    def encode(self, obj: Any, /) -> bytes:
        """``obj`` as bytes (see ``as_bytes``).

        Raises:
            TypeError: ``obj`` is not bytes, bytearray, memoryview or str (an int or list is not guessed at).
        """
        return as_bytes(obj, "workload")

    def decode(self, data: bytes, /) -> bytes:
        return data

    def __repr__(self) -> str:
        return "BytesCodec()"


class JSONCodec:
    """JSON as compact UTF-8 (``json.dumps``/``json.loads``); extra keywords go to ``json.dumps``.

    ``decode`` raises ValueError (``json.JSONDecodeError``) for bytes that are not JSON.
    """

    __slots__ = ("_dumps_options",)

    def __init__(self, **dumps_options: Any) -> None:
        self._dumps_options: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False, **dumps_options}

    def encode(self, obj: Any, /) -> bytes:
        """``obj`` as JSON text in UTF-8.

        Raises:
            TypeError: ``obj`` holds something JSON cannot represent.
        """
        return json.dumps(obj, **self._dumps_options).encode()

    def decode(self, data: bytes, /) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JSONCodec()"


_DEFAULT = BytesCodec()
_CHECKED: set[type] = {BytesCodec, JSONCodec}
"""Classes whose instances passed the ``Codec`` check: a runtime Protocol check costs about 10 µs, and the worker
session hands its codec to every job it makes."""


def codec_or_default(codec: Codec | None) -> Codec:
    """``codec``, or the shared BytesCodec for None.

    Raises:
        TypeError: ``codec`` has no ``encode``/``decode`` methods.
    """
    if codec is None:
        return _DEFAULT
    kind = type(codec)
    if kind not in _CHECKED:
        if not isinstance(codec, Codec):
            raise TypeError(f"codec must have encode(obj) and decode(data) methods, not {kind.__name__}")
        if callable(getattr(kind, "encode", None)) and callable(getattr(kind, "decode", None)):
            _CHECKED.add(kind)  # the class itself has both methods: every instance passes
    return codec
