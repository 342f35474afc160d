"""The demo chat (`tether serve`, docs/demo-chat.md) over permessage-deflate (RFC 7692), as the
asyncio `websockets` client and a raw socket client see it.

- `websockets` offers `permessage-deflate; client_max_window_bits` by default: the 101 answers
  `permessage-deflate` with `server_no_context_takeover` and `client_no_context_takeover`, and
  20 different 2 KiB messages said in `lobby` come back intact as the room's broadcast, each
  one compressed (RSV1 set on the frame the client inflated).
- A `websockets` client with `compression=None` gets no `Sec-WebSocket-Extensions`, and chats
  with a compressing client in the same room both ways (it would fail on an RSV1 frame).
- `tether serve --no-deflate` answers no extension to the default `websockets` offer.
- A raw client that negotiated permessage-deflate sends one compressed frame (text, then
  binary) of about 1 KiB that inflates to 1 MiB, past `--max-message-size` (64 KiB): the server
  closes it with 1009, and two clients connected meanwhile still chat.

The binary and `ChatServer` come from test_chat.py (`TETHER_BIN`, 127.0.0.1 port 0).
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import socket
import struct
import unittest
import zlib

from websockets.asyncio.client import connect

from contract_server import OP_BINARY, OP_CLOSE, OP_TEXT, RawClient, parse_close
from test_chat import TIMEOUT, ChatServer

EXTENSIONS = "Sec-WebSocket-Extensions"
MAX_MESSAGE_SIZE = 64 * 1024  # tether serve's default --max-message-size


def parse_extensions(value):
    """`[(name, {param: value or True})]` of a Sec-WebSocket-Extensions value, in order."""
    extensions = []
    for extension in value.split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        parsed = {}
        for param in filter(None, params):
            key, sep, val = param.partition("=")
            parsed[key.strip()] = val.strip().strip('"') if sep else True
        extensions.append((name, parsed))
    return extensions


def chat_text(seed, size=2048):
    """A distinct text of exactly `size` UTF-8 bytes: words drawn by `seed`, then a tail that
    is not ASCII."""
    words = ["deflate", "inflate", "window", "frame", "lobby", "tether", "sync", "flush", "zlib"]
    rng = random.Random(seed)
    tail = f" #{seed} ünïcødé ✓"
    head = ""
    while len(head) < size:
        head += rng.choice(words) + " "
    text = head[: size - len(tail.encode("utf-8"))] + tail
    assert len(text.encode("utf-8")) == size
    return text


def record_compressed_frames(ws):
    """A list that gets, for each data frame `ws` receives from now on, whether it came
    compressed (RSV1 set): the negotiated PerMessageDeflate's `decode` is wrapped to see it."""
    (extension,) = ws.protocol.extensions
    decode = extension.decode
    seen = []

    def recording_decode(frame, **kwargs):
        if frame.opcode in (OP_TEXT, OP_BINARY):
            seen.append(frame.rsv1)
        return decode(frame, **kwargs)

    extension.decode = recording_decode
    return seen


class ChatTestCase(unittest.IsolatedAsyncioTestCase):
    """One `tether serve` per class, started with `server_flags`; async chat helpers."""

    server_flags = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ChatServer(*cls.server_flags).start()
        cls.addClassCleanup(cls.server.close)

    async def asyncSetUp(self):
        self.stack = contextlib.AsyncExitStack()
        self.addAsyncCleanup(self.stack.aclose)

    async def open_chat(self, name, room="lobby", **options):
        """A `websockets` connection as `name` that has read its welcome and joined `room`."""
        options.setdefault("open_timeout", TIMEOUT)
        options.setdefault("close_timeout", 2)
        options.setdefault("ping_interval", None)  # only the server's behaviour is looked at
        ws = await self.stack.enter_async_context(
            connect(f"{self.server.url}?name={name}", **options)
        )
        welcome = await self.recv_json(ws)
        self.assertEqual((welcome["type"], welcome["name"]), ("welcome", name), welcome)
        ws.chat_name = name
        if room:
            await ws.send(json.dumps({"type": "join", "room": room, "id": f"join-{name}"}))
            joined = await self.recv_json(ws)
            self.assertEqual((joined["type"], joined["room"]), ("joined", room), joined)
        return ws

    async def recv_json(self, ws):
        message = await asyncio.wait_for(ws.recv(), TIMEOUT)
        self.assertIsInstance(message, str, "a text message")
        return json.loads(message)

    async def next_message(self, ws, what):
        """The next `{"type":"message"}` on `ws` (skipping `said` and other replies)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.recv_json(ws)
                self.assertNotEqual(message["type"], "error", f"{what}: {message}")
                if message["type"] == "message":
                    return message

    async def say_and_receive(self, sender, text, receivers, room="lobby"):
        """`sender` says `text` in `room`; every one of `receivers` gets the broadcast intact."""
        await sender.send(json.dumps({"type": "say", "room": room, "text": text}))
        for ws in receivers:
            message = await self.next_message(ws, f"{len(text)} characters said")
            self.assertEqual(message["room"], room)
            self.assertEqual(message["from"], sender.chat_name)
            self.assertEqual(len(message["text"]), len(text), "the broadcast's text length")
            self.assertEqual(message["text"], text, "the broadcast's text")

    def assertNoContextTakeoverDeflate(self, ws):
        answer = ws.response.headers.get(EXTENSIONS)
        self.assertIsNotNone(answer, f"no {EXTENSIONS} in the 101: {ws.response.headers}")
        extensions = parse_extensions(answer)
        self.assertEqual([name for name, _ in extensions], ["permessage-deflate"], answer)
        params = extensions[0][1]
        self.assertIs(params.get("server_no_context_takeover"), True, answer)
        self.assertIs(params.get("client_no_context_takeover"), True, answer)
        (extension,) = ws.protocol.extensions
        self.assertTrue(extension.remote_no_context_takeover, extension)
        self.assertTrue(extension.local_no_context_takeover, extension)
        return answer


class ChatOverDeflate(ChatTestCase):
    # 21 messages from one connection back to back: the rate limit is tested elsewhere.
    server_flags = ("--rate", "1000", "--burst", "1000")

    async def test_20_messages_of_2_kib_come_back_intact_and_compressed(self):
        ws = await self.open_chat("zip")
        self.assertNoContextTakeoverDeflate(ws)
        compressed = record_compressed_frames(ws)
        texts = [chat_text(seed) for seed in range(20)]
        self.assertEqual(len(set(texts)), 20, "20 different messages")
        for text in texts:
            await self.say_and_receive(ws, text, [ws])
        # Every broadcast (over 2 KiB of JSON) came compressed; `said` (small) may not have.
        self.assertGreaterEqual(sum(compressed), 20, f"compressed data frames: {compressed}")

    async def test_a_client_without_compression_chats_with_a_compressing_one(self):
        plain = await self.open_chat("plain", compression=None)
        self.assertIsNone(plain.response.headers.get(EXTENSIONS), plain.response.headers)
        self.assertEqual(plain.protocol.extensions, [])
        zipped = await self.open_chat("zipped")
        self.assertNoContextTakeoverDeflate(zipped)
        compressed = record_compressed_frames(zipped)
        for seed, sender in enumerate([plain, zipped, plain, zipped], start=100):
            await self.say_and_receive(sender, chat_text(seed), [plain, zipped])
        # The compressing member got all four broadcasts compressed; the plain one, which
        # would have failed on an RSV1 frame, got them all intact.
        self.assertGreaterEqual(sum(compressed), 4, f"compressed data frames: {compressed}")


class NoDeflate(ChatTestCase):
    server_flags = ("--no-deflate",)

    async def test_no_extension_is_answered_to_the_default_offer(self):
        ws = await self.open_chat("nozip")  # websockets offers permessage-deflate by default
        self.assertIsNone(ws.response.headers.get(EXTENSIONS), ws.response.headers)
        self.assertEqual(ws.protocol.extensions, [])
        await self.say_and_receive(ws, chat_text(7), [ws])


class DeflateOfferingRawClient(RawClient):
    """RawClient's bare-socket client, whose handshake offers `permessage-deflate`, and which
    sends frames with RSV1 (compressed) set."""

    def __init__(self, host, port, path, timeout=TIMEOUT):
        # RawClient's handshake, with the offer added (RawClient sends no extension header).
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                "\r\n"
            ).encode("ascii")
        )
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status_line = head[0]
        self.headers = {}
        for line in filter(None, head[1:]):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode("ascii")).digest()
        ).decode("ascii")
        if not self.status_line.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"the upgrade failed: {head!r}")
        if self.headers.get("sec-websocket-accept") != accept:
            raise RuntimeError(f"wrong Sec-WebSocket-Accept: {head!r}")

    def send_compressed(self, opcode, payload):
        """One masked frame with FIN and RSV1 set: `payload` is already deflated."""
        mask = os.urandom(4)
        header = bytes([0x80 | 0x40 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_close(self):
        """(code, reason) of the server's close frame, skipping the data frames before it."""
        while True:
            _, opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                return parse_close(payload)


def deflate_bomb(size=1 << 20):
    """`size` zero bytes deflated as a permessage-deflate message (raw deflate, sync flush,
    the trailing 00 00 ff ff removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(b"\0" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff"), data[-8:]
    return data[:-4]


class DeflateBomb(ChatTestCase):
    """The default flags: --max-message-size 64 KiB."""

    def raw_bomb(self, opcode):
        """In a thread: a raw client negotiates deflate, reads its welcome, sends the bomb,
        and returns (its 101's extension answer, the close's (code, reason))."""
        client = DeflateOfferingRawClient("127.0.0.1", self.server.port, "/ws?name=bomber")
        try:
            answer = client.headers.get("sec-websocket-extensions")
            client.read_frame()  # the welcome: the session is serving
            bomb = deflate_bomb()
            self.assertLess(len(bomb), 4096, "a small frame")
            self.assertGreater(1 << 20, MAX_MESSAGE_SIZE)
            client.send_compressed(opcode, bomb)
            return answer, client.read_close()
        finally:
            client.close()

    async def test_a_compressed_frame_inflating_past_the_limit_closes_1009(self):
        ann = await self.open_chat("ann")
        bob = await self.open_chat("bob", compression=None)
        for opcode in (OP_TEXT, OP_BINARY):
            with self.subTest(opcode=opcode):
                answer, (code, reason) = await asyncio.wait_for(
                    asyncio.to_thread(self.raw_bomb, opcode), 3 * TIMEOUT
                )
                self.assertIsNotNone(answer, "the raw client's 101 answers its offer")
                self.assertEqual(parse_extensions(answer)[0][0], "permessage-deflate", answer)
                self.assertEqual(code, 1009, f"close {code} {reason!r}")
                self.assertIsNone(self.server.process.poll(), "the server is still running")
                # The clients connected meanwhile still chat, both ways.
                await self.say_and_receive(ann, chat_text(200 + opcode), [ann, bob])
                await self.say_and_receive(bob, chat_text(300 + opcode), [ann, bob])


if __name__ == "__main__":
    unittest.main()
