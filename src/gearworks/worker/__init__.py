"""Workers: ``AsyncWorker`` (asyncio) and ``Worker`` (blocking, inline or with a thread or process pool), over one
sans-I/O session (``session.py``) that decides every packet."""

from gearworks.worker.aio import AsyncWorker
from gearworks.worker.blocking import Worker
from gearworks.worker.job import WorkerJob
from gearworks.worker.session import WorkerSession

__all__ = ["AsyncWorker", "Worker", "WorkerJob", "WorkerSession"]
