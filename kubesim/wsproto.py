"""The server side of RFC 6455 WebSockets, as much as `pods/exec` needs: the upgrade handshake with
subprotocol negotiation, frame parsing (masked client frames, fragmentation, control frames) and
frame encoding (unmasked server frames)."""

from __future__ import annotations

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_PAYLOAD = 16 * 1024 * 1024

# The channel protocols the API server offers for exec, best first.
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
SUPPORTED_PROTOCOLS = (V5, V4)


class ProtocolError(Exception):
    pass


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.strip().encode() + GUID).digest()).decode()


def negotiate(offered: str) -> str | None:
    """The protocol to speak from a Sec-WebSocket-Protocol header ("v5.channel.k8s.io,v4..."):
    the server's preference among those offered, or None."""
    names = {p.strip() for p in (offered or "").split(",") if p.strip()}
    for proto in SUPPORTED_PROTOCOLS:
        if proto in names:
            return proto
    return None


def is_upgrade(headers: dict[str, str]) -> bool:
    """Whether lower-cased request headers ask for a WebSocket upgrade."""
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return (
        headers.get("upgrade", "").strip().lower() == "websocket"
        and "upgrade" in connection
        and bool(headers.get("sec-websocket-key"))
    )


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode(opcode: int, payload: bytes = b"") -> bytes:
    """One final, unmasked frame (server to client)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return encode(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])


class FrameParser:
    """Incremental parser of client frames: feed bytes, get complete (opcode, payload) messages.
    Control frames come out as they arrive; fragmented messages come out whole."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.buf = bytearray()
        self.max_payload = max_payload
        self._frag_op: int | None = None
        self._frag = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        buf = self.buf
        while len(buf) >= 2:
            fin, opcode = buf[0] & 0x80, buf[0] & 0x0F
            masked, n, i = buf[1] & 0x80, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                (n,) = struct.unpack_from("!H", buf, 2)
                i = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                (n,) = struct.unpack_from("!Q", buf, 2)
                i = 10
            if not masked:
                raise ProtocolError("client frames must be masked")
            if n > self.max_payload:
                raise ProtocolError("frame too large")
            if len(buf) < i + 4 + n:
                break
            key = bytes(buf[i : i + 4])
            payload = _mask(bytes(buf[i + 4 : i + 4 + n]), key)
            del buf[: i + 4 + n]
            if opcode >= 0x8:
                if not fin or n > 125:
                    raise ProtocolError("bad control frame")
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolError("continuation without a message")
                self._frag += payload
                if len(self._frag) > self.max_payload:
                    raise ProtocolError("message too large")
                if fin:
                    out.append((self._frag_op, bytes(self._frag)))
                    self._frag_op, self._frag = None, bytearray()
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise ProtocolError("new message inside a fragmented one")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._frag_op, self._frag = opcode, bytearray(payload)
            else:
                raise ProtocolError(f"unknown opcode {opcode}")
        return out
