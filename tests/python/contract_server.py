"""Shared helpers for the Python client tests of the `error_contract` example.

- `ContractServer` starts the example binary on 127.0.0.1 port 0 with the given flags, reads
  the `listening on ws://...` line from its stdout and stops it again (SIGTERM, then SIGKILL).
  Every server started is also killed at interpreter exit, and on Linux when the test
  process dies without cleaning up, so a failed test never leaves a process behind.
- `RawClient` speaks WebSocket over a bare TCP socket (a hand-made HTTP upgrade, masked
  client frames, unmasked server frames), for the tests that must misbehave on purpose.
- `parse_close` and the small assertion helpers shared by the test files.

The binary comes from `TETHER_ERROR_CONTRACT_BIN` (set by `scripts/python-tests`, once to
`error_contract` and once to `axum_app`); without it, the debug build of `error_contract`
under cargo's target directory is used if present. `ContractServer(binary=...)` runs another
binary with the same command line (`test_axum_app.py` runs `axum_app` that way).
"""

import atexit
import base64
import ctypes
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REQUEST_ID = re.compile(r"\A[0-9a-f]{16}\Z")
TIMESTAMP = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_running = set()
_running_lock = threading.Lock()


def _kill_leftovers():
    with _running_lock:
        leftovers = list(_running)
    for process in leftovers:
        if process.poll() is None:
            process.kill()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftovers)


def _die_with_parent():
    """In the child before exec: SIGKILL when the process that started it dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def binary_path():
    """The error_contract binary: $TETHER_ERROR_CONTRACT_BIN, else cargo's debug build."""
    path = os.environ.get("TETHER_ERROR_CONTRACT_BIN")
    if path:
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"TETHER_ERROR_CONTRACT_BIN={path} is not an executable file")
        return path
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO_ROOT, "target")
    path = os.path.join(target, "debug", "examples", "error_contract")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            "the error_contract example is not built: run scripts/python-tests, or "
            "`cargo build -p tether --example error_contract` and set TETHER_ERROR_CONTRACT_BIN"
        )
    return path


class ContractServer:
    """One running error_contract server; `url` is `ws://127.0.0.1:PORT` once started."""

    def __init__(self, *flags, binary=None):
        self.flags = [str(flag) for flag in flags]
        self.binary = binary
        self.process = None
        self.url = None
        self.host = "127.0.0.1"
        self.port = None
        # Logs go to a file, never to a pipe nobody reads (a full pipe would block the server).
        self._log = tempfile.TemporaryFile(mode="w+b")

    def start(self):
        command = [self.binary or binary_path(), "--listen", "127.0.0.1:0", *self.flags]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), RUST_BACKTRACE="0")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        with _running_lock:
            _running.add(self.process)
        line = self._first_line(STARTUP_TIMEOUT)
        match = re.fullmatch(r"listening on (ws://127\.0\.0\.1:(\d+))", line.strip())
        if not match:
            self.kill()
            raise RuntimeError(f"unexpected first line from {command}: {line!r}\n{self.logs()}")
        self.url = match.group(1)
        self.port = int(match.group(2))
        return self

    def _first_line(self, timeout):
        result = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline().decode("utf-8", "replace")),
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        if not result:
            self.kill()
            raise RuntimeError(f"the server printed no address within {timeout} s\n{self.logs()}")
        return result[0]

    def terminate(self):
        """Sends SIGTERM (the graceful shutdown) without waiting."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        """The exit status, waiting at most `timeout` seconds (TimeoutExpired past it)."""
        return self.process.wait(timeout=timeout)

    def kill(self):
        """Stops the server: SIGTERM, then SIGKILL if it has not exited within 5 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        if self.process.stdout:
            self.process.stdout.close()
        with _running_lock:
            _running.discard(self.process)

    def logs(self):
        """Everything the server logged so far (for failure messages)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def close(self):
        self.kill()
        self._log.close()


def parse_close(payload):
    """(code, reason) of a close frame's payload; (None, "") when it is empty."""
    if not payload:
        return None, ""
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8")


class ErrorBodyAssertions:
    """Mixin for unittest.TestCase: checks the JSON error body of the error contract."""

    def assertErrorBody(self, raw, code, message, request_id=None):
        """`raw` (bytes or str) is `{"type":"error","data":{"code","message"},"meta":{...}}`.

        With `request_id=None` the id must be a generated one (16 hex digits); otherwise it
        must equal `request_id`. `message=None` accepts any non-empty message. The keys must
        come in the contract's order.
        """
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        body = json.loads(raw)
        self.assertEqual(list(body), ["type", "data", "meta"], raw)
        self.assertEqual(body["type"], "error", raw)
        self.assertEqual(body["data"]["code"], code, raw)
        if message is None:
            self.assertIsInstance(body["data"]["message"], str, raw)
            self.assertTrue(body["data"]["message"], raw)
        else:
            self.assertEqual(body["data"]["message"], message, raw)
        self.assertEqual(list(body["meta"]), ["request_id", "timestamp"], raw)
        if request_id is None:
            self.assertRegex(body["meta"]["request_id"], REQUEST_ID, raw)
        else:
            self.assertEqual(body["meta"]["request_id"], request_id, raw)
        self.assertRegex(body["meta"]["timestamp"], TIMESTAMP, raw)
        return body


class RawClient:
    """A WebSocket client over a bare socket, for tests that break the protocol on purpose."""

    def __init__(self, host, port, path, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode("ascii")).digest()
        ).decode("ascii")
        if not self.status_line.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"the upgrade failed: {head!r}")
        if self.headers.get("sec-websocket-accept") != expected:
            raise RuntimeError(f"wrong Sec-WebSocket-Accept: {head!r}")

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"EOF before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"EOF after {len(self.buffer)} of {count} bytes")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self):
        """(fin, opcode, payload) of the next frame; server frames must be unmasked."""
        first, second = self._read_exact(2)
        if second & 0x80:
            raise AssertionError("a server frame was masked")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        return bool(first & 0x80), first & 0x0F, self._read_exact(length)

    def send_frame(self, opcode, payload=b"", fin=True):
        """Sends one masked frame."""
        mask = os.urandom(4)
        header = bytes([(0x80 if fin else 0) | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def http_exchange(host, port, request, timeout=5.0):
    """Sends raw bytes, reads until the server closes: (status, headers, body)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request)
        response = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def wait_for(predicate, timeout, interval=0.02):
    """Polls `predicate` until it is true or `timeout` seconds have passed; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
