"""A minimal WebSocket client (RFC 6455) for tests: enough to speak the Foxglove
WebSocket protocol to the planner's live view, without adding a client library."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct


class WebSocketClient:
    def __init__(self, port: int, subprotocol: str, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"handshake closed: {response!r}")
            response += chunk
        self.handshake = response.decode(errors="replace")
        if " 101 " not in self.handshake.split("\r\n", 1)[0]:
            raise ConnectionError(f"handshake refused: {self.handshake!r}")

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def receive(self) -> tuple[int, bytes]:
        """One whole message: (opcode, payload); server frames are unmasked."""
        opcode, payload = None, b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if second & 0x80 else None
            data = self._read(length)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if first & 0x0F:
                opcode = first & 0x0F
            payload += data
            if first & 0x80:
                return opcode, payload

    def send_json(self, message: dict) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()
