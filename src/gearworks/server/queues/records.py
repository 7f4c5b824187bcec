"""One stored job as a single byte string, for key-value backends (Redis): the fields joined by NUL with the
workload last, as in a Gearman packet body (only the last field may hold NULs). The sixth field holds a dead
letter's retries (empty for live jobs)."""

from __future__ import annotations

from gearworks.errors import QueueError
from gearworks.server.queues.base import StoredJob

__all__ = ["pack_job", "unpack_job"]

_FIELDS = 7


def pack_job(job: StoredJob) -> bytes:
    """Serialise a job; ``handle`` is kept as the record's key, not inside it."""
    reducer = b"" if job.reducer is None else b"1" + job.reducer
    retries = b"%d" % job.retries if job.retries else b""
    return b"\0".join(
        (job.function, job.unique, b"%d" % job.priority, repr(job.when).encode(), reducer, retries, job.workload)
    )


def unpack_job(handle: bytes, record: bytes) -> StoredJob:
    """The job ``pack_job`` wrote under ``handle``.

    Raises:
        QueueError: the record is not one ``pack_job`` wrote.
    """
    fields = record.split(b"\0", _FIELDS - 1)
    if len(fields) != _FIELDS:
        raise QueueError(f"stored job {handle!r} is corrupt: {len(fields)} fields")
    function, unique, priority, when, reducer, retries, workload = fields
    try:
        return StoredJob(
            handle,
            function,
            unique,
            workload,
            int(priority),
            float(when),
            reducer[1:] if reducer else None,
            int(retries) if retries else 0,
        )
    except ValueError as exc:
        raise QueueError(f"stored job {handle!r} is corrupt: {exc}") from exc
