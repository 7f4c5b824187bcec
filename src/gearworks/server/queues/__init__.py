"""Stores of background jobs the job board writes through: ``memory`` (default), durable backends later."""

from gearworks.server.queues.base import QueueStore, StoredJob
from gearworks.server.queues.memory import MemoryStore

__all__ = ["MemoryStore", "QueueStore", "StoredJob"]
