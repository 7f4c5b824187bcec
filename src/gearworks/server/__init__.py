"""The gearworks job server: a drop-in replacement for gearmand (``gearworks serve``).

``board`` holds the job logic with no I/O; ``connections`` and ``app`` are the asyncio driver around it.
"""

from gearworks.server.app import JobServer, ServerConfig, run
from gearworks.server.board import Board
from gearworks.server.peers import Peer

__all__ = ["Board", "JobServer", "Peer", "ServerConfig", "run"]
