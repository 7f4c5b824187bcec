"""The sans-I/O Gearman protocol core: packet types, codec and the admin text protocol.

Shared by the clients, workers, admin client and server; it never touches sockets, threads or clocks.
"""

from gearworks.protocol.admin import (
    AdminReply,
    AdminReplyReader,
    ReplyShape,
    format_block,
    reply_shape,
    split_words,
)
from gearworks.protocol.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    MAX_TEXT_LINE,
    Decoder,
    encode,
    encode_many,
    encode_parts,
    encode_submissions,
)
from gearworks.protocol.packets import ARGUMENTS, HEADER_SIZE, REQ, RES, Packet, PacketType

__all__ = [
    "ARGUMENTS",
    "DEFAULT_MAX_PACKET_SIZE",
    "HEADER_SIZE",
    "MAX_TEXT_LINE",
    "REQ",
    "RES",
    "AdminReply",
    "AdminReplyReader",
    "Decoder",
    "Packet",
    "PacketType",
    "ReplyShape",
    "encode",
    "encode_many",
    "encode_parts",
    "encode_submissions",
    "format_block",
    "reply_shape",
    "split_words",
]
