"""The job a handler receives: what the server assigned, and the packets it may send about it at any time.

No I/O here: a job hands its encoded packets to its ``JobOutput`` (the worker session), which knows whether the
connection the job came from is still the one it arrived on. A job whose server vanished is *lost*: everything it
sends is dropped, because the server has already requeued it (PROTOCOL.md §3.10).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from gearworks.codecs import BytesCodec, Codec, codec_or_default
from gearworks.protocol import PacketType, encode, encode_parts
from gearworks.protocol.fields import as_bytes

__all__ = ["JobOutput", "WorkerJob", "to_payload"]

log = logging.getLogger("gearworks.worker")

_UNSET: Any = object()


def to_payload(value: object, codec: Codec, function: bytes) -> bytes:
    """A handler's result as bytes: ``codec.encode(value)``; with the default ``BytesCodec``, bytes-like as is,
    str as UTF-8 and None as empty.

    Raises:
        TypeError: the codec cannot encode the value (names the function, the type and the codec).
    """
    if value is None and type(codec) is BytesCodec:
        return b""
    try:
        return codec.encode(value)
    except TypeError as exc:
        hint = (
            ": return bytes or str, or give the worker a codec (codec=JSONCodec())" if type(codec) is BytesCodec else ""
        )
        raise TypeError(
            f"handler for {function.decode(errors='replace')!r} returned {type(value).__name__}, which {codec!r} "
            f"cannot encode ({exc}){hint}"
        ) from exc


class JobOutput(Protocol):
    """Where a job's packets go: the worker session, which knows the connection and the worker's settings."""

    def job_output(self, job: WorkerJob, chunks: list[bytes], packets: int = 1) -> None:
        """Send ``chunks`` (``packets`` packets) for ``job`` if its connection is still the one it came on."""

    def payload(self, job: WorkerJob, value: object) -> bytes:
        """``value`` as a result payload (``to_payload`` with the worker's codec)."""

    def exception_packets(self, job: WorkerJob, data: bytes) -> list[bytes]:
        """What ends ``job`` with an exception on its server."""


class WorkerJob:
    """A job assigned to this worker.

    Attributes:
        handle: the server's job handle.
        function: the function name as the server sent it (with the worker's prefix, if any).
        unique: the submitter's unique key (empty when grabbed with plain GRAB_JOB).
        workload: the job's payload, bytes as the server sent it.
        value: the workload decoded by the worker's ``codec`` (decoded once, on first use): the same bytes with the
            default codec, an object with ``codec=JSONCodec()``.
        reducer: the reducer name of a map/reduce job (GRAB_JOB_ALL only), else None.

    ``data``, ``warning`` and ``status`` may be sent any number of times; ``complete``, ``fail`` and ``exception``
    end the job (later calls are ignored). A handler that ends the job itself has its return value ignored.
    A job unpickled in another process (process pools) is detached: it cannot send anything, its handler returns
    the result instead.
    """

    __slots__ = (
        "_done",
        "_output",
        "_value",
        "codec",
        "function",
        "generation",
        "handle",
        "link",
        "reducer",
        "unique",
        "workload",
    )

    def __init__(
        self,
        handle: bytes,
        function: bytes,
        workload: bytes,
        unique: bytes = b"",
        reducer: bytes | None = None,
        *,
        output: JobOutput | None = None,
        link: object = None,
        generation: int = 0,
        codec: Codec | None = None,
    ) -> None:
        self.handle = handle
        self.function = function
        self.workload = workload
        self.unique = unique
        self.reducer = reducer
        self._output = output
        self.link = link
        """The session's record of the connection this job arrived on (opaque to handlers)."""
        self.generation = generation
        """Which connection to that server: the job is lost once that connection is gone."""
        self.codec = codec_or_default(codec)
        """Decodes ``value`` (the worker's codec; results are encoded by the worker with the same one)."""
        self._value = _UNSET
        self._done = False

    @property
    def value(self) -> Any:
        """The workload decoded by the worker's codec (``codec.decode(workload)``, once).

        Raises:
            ValueError: the workload is not a payload of the codec (a handler that raises it fails the job).
        """
        if self._value is _UNSET:
            self._value = self.codec.decode(self.workload)
        return self._value

    def __repr__(self) -> str:
        return f"WorkerJob(handle={self.handle!r}, function={self.function!r}, {len(self.workload)} bytes)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            WorkerJob,
            (self.handle, self.function, self.workload, self.unique, self.reducer),
            {"codec": self.codec},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.codec = state["codec"]

    @property
    def done(self) -> bool:
        """True once the job was ended (by the handler, or by the worker from the handler's outcome)."""
        return self._done

    def reroute(self, output: JobOutput) -> None:
        """Send this job's packets through ``output`` (a driver running handlers in threads relays them to the
        thread that owns the session)."""
        self._output = output

    def end(self) -> None:
        """Mark the job ended without sending anything (the worker sends the handler's outcome itself)."""
        self._done = True

    def _target(self, what: str) -> JobOutput | None:
        if self._output is None:
            raise RuntimeError(f"job {self.handle!r} is detached (process pool): it cannot send {what}")
        if self._done:
            log.debug("job %r already ended: %s not sent", self.handle, what)
            return None
        return self._output

    def _update(self, ptype: PacketType, args: tuple[bytes, ...]) -> None:
        output = self._target(ptype.name)
        if output is not None:
            output.job_output(self, encode_parts(ptype, args))

    def data(self, data: bytes | str) -> None:
        """Send partial result data (WORK_DATA) to the waiting clients."""
        self._update(PacketType.WORK_DATA, (self.handle, as_bytes(data, "job data")))

    def warning(self, data: bytes | str) -> None:
        """Send a warning (WORK_WARNING) to the waiting clients."""
        self._update(PacketType.WORK_WARNING, (self.handle, as_bytes(data, "job data")))

    def status(self, numerator: int, denominator: int) -> None:
        """Report progress (WORK_STATUS), e.g. ``status(3, 10)``."""
        self._update(PacketType.WORK_STATUS, (self.handle, b"%d" % numerator, b"%d" % denominator))

    def complete(self, result: object = b"") -> None:
        """End the job with a result (WORK_COMPLETE), encoded by the worker's codec (the default sends bytes as they
        are and str as UTF-8).

        Raises:
            TypeError: a result the codec cannot encode.
        """
        output = self._target("WORK_COMPLETE")
        if output is not None:
            payload = output.payload(self, result)
            self._done = True
            output.job_output(self, encode_parts(PacketType.WORK_COMPLETE, (self.handle, payload)))

    def fail(self) -> None:
        """End the job as failed (WORK_FAIL)."""
        output = self._target("WORK_FAIL")
        if output is not None:
            self._done = True
            output.job_output(self, [encode(PacketType.WORK_FAIL, (self.handle,))])

    def exception(self, data: bytes | str) -> None:
        """End the job with an exception: WORK_EXCEPTION (when the server accepted the ``exceptions`` option), then
        WORK_FAIL."""
        output = self._target("WORK_EXCEPTION")
        if output is not None:
            self._done = True
            packets = output.exception_packets(self, as_bytes(data, "job data"))
            output.job_output(self, packets, len(packets))
