"""The error rows of the demo chat (`tether serve`, docs/demo-chat.md) as the
`websocket-client` library sees them.

4000 (malformed JSON, missing or wrong fields, unknown type; the request id echoed), 4001,
4002, 4004, 4005 with `retry_after_ms` then close 1008, close 1009 over 64 KiB, and with
`--tokens`: HTTP 401 / 403 with the JSON error body, a valid token's name, and a TTL that ends
with a 4003 error message and close 4003.

The binary comes from `TETHER_BIN`; without it, `debug/tether` under cargo's target
directory (`cargo metadata`). `ChatServer` starts it on 127.0.0.1 port 0, reads the
`serving http://ADDR/ (WebSocket: ws://ADDR/ws)` line and stops it again (SIGTERM, then
SIGKILL); each test class starts its own.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import websocket
from websocket import ABNF

from contract_server import OP_CLOSE, ErrorBodyAssertions, parse_close

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 5.0
SERVING = re.compile(r"serving (https?)://(127\.0\.0\.1:(\d+))/ \(WebSocket: (wss?)://\2/ws\)")

_started = []
atexit.register(lambda: [server.stop() for server in list(_started)])


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def tether_binary():
    """$TETHER_BIN, else `debug/tether` in cargo's target directory."""
    path = os.environ.get("TETHER_BIN")
    if path:
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"TETHER_BIN={path} is not an executable file")
        return path
    target = os.environ.get("CARGO_TARGET_DIR")
    if not target:
        try:
            metadata = subprocess.run(
                ["cargo", "metadata", "--format-version", "1", "--no-deps"],
                cwd=REPO_ROOT,
                check=True,
                capture_output=True,
                timeout=60,
            )
            target = json.loads(metadata.stdout)["target_directory"]
        except (OSError, subprocess.SubprocessError, ValueError, KeyError):
            target = os.path.join(REPO_ROOT, "target")
    path = os.path.join(target, "debug", "tether")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"{path} is not built: run `cargo build -p tether-cli` or set TETHER_BIN"
        )
    return path


class ChatServer:
    """One `tether serve` process; `url` is `ws://127.0.0.1:PORT/ws` once started."""

    def __init__(self, *flags):
        self.flags = [str(flag) for flag in flags]
        self.process = None
        self.url = None
        self._log = tempfile.TemporaryFile(mode="w+b")

    def start(self):
        command = [tether_binary(), "serve", "--listen", "127.0.0.1:0", *self.flags]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(os.environ, TETHER_LOG="info"),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        _started.append(self)
        lines = []
        reader = threading.Thread(
            target=lambda: lines.append(self.process.stdout.readline().decode("utf-8", "replace")),
            daemon=True,
        )
        reader.start()
        reader.join(TIMEOUT)
        match = SERVING.fullmatch(lines[0].strip()) if lines else None
        if not match:
            self.stop()
            raise RuntimeError(f"{command} printed {lines!r}\n{self.logs()}")
        self.url = f"{match.group(4)}://{match.group(2)}/ws"
        self.port = int(match.group(3))
        return self

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=TIMEOUT)
        self.process.stdout.close()
        if self in _started:
            _started.remove(self)

    def logs(self):
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def close(self):
        self.stop()
        self._log.close()


def dispose(ws):
    ws.close(timeout=1)
    ws.shutdown()


class ChatTestCase(ErrorBodyAssertions, unittest.TestCase):
    """One server per class, started with `server_flags`."""

    server_flags = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ChatServer(*cls.server_flags).start()
        cls.addClassCleanup(cls.server.close)

    def connect(self, query="", **options):
        """A connection that has read its welcome."""
        options.setdefault("timeout", TIMEOUT)
        ws = websocket.create_connection(self.server.url + query, **options)
        self.addCleanup(dispose, ws)
        welcome = self.recv_json(ws)
        self.assertEqual(welcome["type"], "welcome", welcome)
        ws.name = welcome["name"]
        return ws

    def reject(self, query="", **options):
        options.setdefault("timeout", TIMEOUT)
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            dispose(websocket.create_connection(self.server.url + query, **options))
        return caught.exception

    def recv_json(self, ws):
        opcode, data = ws.recv_data()
        self.assertEqual(opcode, ABNF.OPCODE_TEXT, data)
        return json.loads(data)

    def request(self, ws, **fields):
        ws.send(json.dumps(fields))
        return self.recv_json(ws)

    def expect_error(self, ws, payload, code, message=None, request_id=None):
        """Sends `payload` (str, or a dict sent as JSON) and checks the error that answers."""
        ws.send(payload if isinstance(payload, str) else json.dumps(payload))
        opcode, data = ws.recv_data()
        self.assertEqual(opcode, ABNF.OPCODE_TEXT, data)
        return self.assertErrorBody(data, code, message, request_id)

    def assert_open(self, ws):
        self.assertEqual(self.request(ws, type="ping", id="alive"), {"type": "pong", "id": "alive"})

    def recv_close(self, ws):
        """(code, reason, texts received before the close)."""
        texts = []
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == OP_CLOSE:
                code, reason = parse_close(data)
                return code, reason, texts
            if opcode == ABNF.OPCODE_TEXT:
                texts.append(data.decode("utf-8"))


class ErrorRows(ChatTestCase):
    # The requests of one test outnumber the default burst: the rate limit is elsewhere.
    server_flags = ("--rate", "1000", "--burst", "1000")

    def test_4000_malformed_json_gets_a_generated_request_id(self):
        ws = self.connect("?name=mal")
        body = self.expect_error(ws, "{not json", 4000)
        self.assertTrue(body["data"]["message"].startswith("Malformed JSON: "), body)
        self.expect_error(ws, "[1, 2]", 4000, "Expected a JSON object")
        self.assert_open(ws)

    def test_4000_unknown_type_echoes_string_and_numeric_ids(self):
        ws = self.connect("?name=unk")
        self.expect_error(ws, {"type": "dance", "id": "u-1"}, 4000, 'Unknown type: "dance"', "u-1")
        self.expect_error(ws, {"type": "dance", "id": 17}, 4000, 'Unknown type: "dance"', "17")
        self.assert_open(ws)

    def test_4000_missing_and_wrong_fields(self):
        ws = self.connect("?name=fields")
        self.expect_error(ws, {"id": "t"}, 4000, "Missing field: type", "t")
        self.expect_error(ws, {"type": 3, "id": "t3"}, 4000, "Field type must be a string", "t3")
        self.expect_error(ws, {"type": "join", "id": 1}, 4000, "Missing field: room", "1")
        self.expect_error(
            ws, {"type": "say", "room": 5, "text": "x", "id": 2}, 4000, "Field room must be a string", "2"
        )
        self.expect_error(ws, {"type": "say", "room": "lobby", "id": 3}, 4000, "Missing field: text", "3")
        self.expect_error(
            ws, {"type": "ping", "id": [1]}, 4000, "Field id must be a string or a number"
        )
        self.assert_open(ws)

    def test_4001_unknown_room_for_join_say_and_close(self):
        ws = self.connect("?name=lost")
        for kind in ("join", "say", "close"):
            self.expect_error(
                ws,
                {"type": kind, "room": "no-such-room", "text": "x", "id": kind},
                4001,
                'Room not found: "no-such-room"',
                kind,
            )
        self.assert_open(ws)

    def test_4002_saying_in_a_room_not_joined_and_creating_one_that_exists(self):
        ws = self.connect("?name=bold")
        self.expect_error(
            ws,
            {"type": "say", "room": "random", "text": "anyone?", "id": "s"},
            4002,
            'Not in room "random": join it first',
            "s",
        )
        self.expect_error(
            ws, {"type": "create", "room": "lobby", "id": 8}, 4002, 'Room "lobby" exists already', "8"
        )
        self.assert_open(ws)

    def test_4004_closing_a_room_of_someone_else_or_a_fixed_one(self):
        owner = self.connect("?name=owner")
        other = self.connect("?name=other")
        self.assertEqual(
            self.request(owner, type="create", room="py-den", id="c"),
            {"type": "created", "id": "c", "room": "py-den"},
        )
        self.assertEqual(self.request(other, type="join", room="py-den")["type"], "joined")
        self.expect_error(
            other,
            {"type": "close", "room": "py-den", "id": "x"},
            4004,
            'Only the creator of "py-den" may close it',
            "x",
        )
        for room in ("lobby", "random"):
            self.expect_error(
                other, {"type": "close", "room": room, "id": room}, 4004, f'Room "{room}" cannot be closed', room
            )
        # The owner may, and the members hear it.
        owner.send(json.dumps({"type": "close", "room": "py-den", "id": 1}))
        self.assertEqual(self.recv_json(owner), {"type": "closed", "id": 1, "room": "py-den"})
        self.assertEqual(
            self.recv_json(other), {"type": "room_closed", "room": "py-den", "by": "owner"}
        )
        self.assert_open(other)

    def test_1009_over_64_kib_closes_the_connection(self):
        ws = self.connect("?name=big")
        ws.send("x" * (64 * 1024 + 1))
        code, _, texts = self.recv_close(ws)
        self.assertEqual(code, 1009)
        self.assertEqual(texts, [])


class RateLimit(ChatTestCase):
    # A token every 200 ms: a slow machine does not refill one between back-to-back sends.
    server_flags = ("--rate", "5", "--burst", "2")

    def test_4005_with_retry_after_then_1008_after_50_rejections(self):
        ws = self.connect("?name=flood")
        for i in range(2):
            ws.send(json.dumps({"type": "ping", "id": i}))
        ws.send(json.dumps({"type": "ping", "id": "over"}))
        self.assertEqual(self.recv_json(ws), {"type": "pong", "id": 0})
        self.assertEqual(self.recv_json(ws), {"type": "pong", "id": 1})
        opcode, data = ws.recv_data()
        body = self.assertErrorBody(data, 4005, "Rate limit exceeded", "over")
        self.assertEqual(list(body["data"]), ["code", "message", "retry_after_ms"])
        self.assertTrue(1 <= body["data"]["retry_after_ms"] <= 200, body)
        rejected = 1
        for i in range(100):
            try:
                ws.send(json.dumps({"type": "ping", "id": 100 + i}))
            except (websocket.WebSocketException, OSError):
                break
        code, reason, texts = self.recv_close(ws)
        self.assertEqual((code, reason), (1008, "rate limit exceeded"))
        for text in texts:
            message = json.loads(text)
            if message["type"] == "error":
                self.assertErrorBody(text, 4005, "Rate limit exceeded", str(message["meta"]["request_id"]))
                rejected += 1
            else:
                self.assertEqual(message["type"], "pong", text)
        self.assertEqual(rejected, 49)


class Tokens(ChatTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens_dir = tempfile.mkdtemp(prefix="tether-chat-tokens-")
        path = os.path.join(cls.tokens_dir, "tokens.txt")
        with open(path, "w", encoding="utf-8") as tokens:
            tokens.write("# name:token[:ttl_secs]\nann:tok-ann\nbob:tok-bob:1\n")
        cls.server_flags = ("--tokens", path)
        cls.addClassCleanup(shutil.rmtree, cls.tokens_dir, True)
        super().setUpClass()

    def test_401_without_a_token(self):
        error = self.reject("?name=ann")
        self.assertEqual(error.status_code, 401)
        self.assertEqual(error.resp_headers["www-authenticate"], "Bearer")
        self.assertEqual(error.resp_headers["content-type"], "application/json")
        self.assertErrorBody(error.resp_body, 4003, "Missing token")

    def test_403_with_an_unknown_token(self):
        error = self.reject("?token=guess")
        self.assertEqual(error.status_code, 403)
        self.assertNotIn("www-authenticate", error.resp_headers)
        self.assertErrorBody(error.resp_body, 4004, "Invalid token")
        error = self.reject(header=["Authorization: Bearer guess"])
        self.assertEqual(error.status_code, 403)

    def test_a_valid_token_decides_the_name(self):
        self.assertEqual(self.connect("?token=tok-ann&name=mallory").name, "ann")
        self.assertEqual(self.connect(header=["Authorization: Bearer tok-ann"]).name, "ann")

    def test_an_expired_token_gets_4003_then_close_4003(self):
        opened = time.monotonic()
        ws = self.connect("?token=tok-bob")
        self.assertEqual(ws.name, "bob")
        code, reason, texts = self.recv_close(ws)
        elapsed = time.monotonic() - opened
        self.assertEqual((code, reason), (4003, "Token expired"))
        self.assertEqual(len(texts), 1, texts)
        self.assertErrorBody(texts[0], 4003, "Token expired")
        self.assertTrue(0.9 <= elapsed < 3, elapsed)


if __name__ == "__main__":
    sys.exit(unittest.main())
