"""Translate socket and TLS exceptions into gearworks' own, in one place (STYLE.md: errors at one edge)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from gearworks.errors import ConnectionLost

__all__ = ["map_socket_errors"]


@contextlib.contextmanager
def map_socket_errors(doing: str, server: object) -> Iterator[None]:
    """Turn OSError, ssl.SSLError and timeouts raised inside into ConnectionLost naming ``server``."""
    try:
        yield
    except ConnectionLost:
        raise
    except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ConnectionLost(f"{doing} {server}: {detail}") from exc
