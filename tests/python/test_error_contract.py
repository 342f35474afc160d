"""The error contract of the `error_contract` example, as the `websocket-client` library sees it.

Handshake rejections (HTTP status, headers, JSON body), close codes and reasons of every
route, the `/ws/json` request/error flow, the rate, size and idle limits, heartbeats (with a
raw-socket client that never answers pings), graceful shutdown on SIGTERM, and isolation of
panicking handlers from their neighbours. Each test class starts its own server (port 0).
"""

import json
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import websocket
from websocket import ABNF

from contract_server import (
    OP_CLOSE,
    OP_PING,
    ContractServer,
    ErrorBodyAssertions,
    RawClient,
    http_exchange,
    parse_close,
    wait_for,
)

TIMEOUT = 5.0
SECRETS = ("hunter2", "db-primary", "password", "5432")


def dispose(ws):
    """Closes politely if still open, then frees the socket in every case.

    (After websocket-client answers a server's close frame it marks itself disconnected,
    and `close()` alone then leaves the socket open.)
    """
    ws.close(timeout=1)
    ws.shutdown()


class ServerTestCase(ErrorBodyAssertions, unittest.TestCase):
    """One server per class, started with `server_flags`; helpers to connect and read closes."""

    server_flags = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ContractServer(*cls.server_flags).start()
        cls.addClassCleanup(cls.server.close)

    def connect(self, path, **options):
        options.setdefault("timeout", TIMEOUT)
        ws = websocket.create_connection(self.server.url + path, **options)
        self.addCleanup(dispose, ws)
        return ws

    def reject(self, path, **options):
        """The WebSocketBadStatusException of a handshake that must be refused."""
        options.setdefault("timeout", TIMEOUT)
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            ws = websocket.create_connection(self.server.url + path, **options)
            dispose(ws)
        return caught.exception

    def recv_close(self, ws):
        """(code, reason) of the server's close frame; fails on a data frame before it."""
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == OP_CLOSE:
                return parse_close(data)
            if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                self.fail(f"expected a close frame, got a message: {data[:80]!r}")

    def recv_json(self, ws):
        opcode, data = ws.recv_data()
        self.assertEqual(opcode, ABNF.OPCODE_TEXT, f"expected a text message: {opcode} {data!r}")
        return json.loads(data)


class HandshakeRejectionTests(ServerTestCase):
    """`/ws/protected` and unknown paths: refused upgrades carry the JSON error body."""

    def test_missing_token_is_401_with_www_authenticate_and_json_body(self):
        error = self.reject("/ws/protected")
        self.assertEqual(error.status_code, 401)
        self.assertEqual(error.resp_headers["www-authenticate"], "Bearer")
        self.assertEqual(error.resp_headers["content-type"], "application/json")
        self.assertEqual(int(error.resp_headers["content-length"]), len(error.resp_body))
        self.assertErrorBody(error.resp_body, 4003, "Missing token")
        # The raw body lists the keys in the contract's order.
        raw = error.resp_body.decode("utf-8")
        self.assertTrue(raw.startswith('{"type":"error","data":{"code":4003,'), raw)
        self.assertLess(raw.index('"data"'), raw.index('"meta"'))

    def test_wrong_token_is_403(self):
        error = self.reject("/ws/protected?token=bad")
        self.assertEqual(error.status_code, 403)
        self.assertEqual(error.resp_headers["content-type"], "application/json")
        self.assertNotIn("www-authenticate", error.resp_headers)
        self.assertErrorBody(error.resp_body, 4004, "Invalid token")

    def test_wrong_bearer_header_is_403(self):
        error = self.reject("/ws/protected", header=["Authorization: Bearer nope"])
        self.assertEqual(error.status_code, 403)
        self.assertErrorBody(error.resp_body, 4004, "Invalid token")

    def test_each_rejection_gets_its_own_request_id(self):
        first = json.loads(self.reject("/ws/protected").resp_body)
        second = json.loads(self.reject("/ws/protected").resp_body)
        self.assertNotEqual(first["meta"]["request_id"], second["meta"]["request_id"])

    def test_bearer_header_connects_and_echoes(self):
        ws = self.connect("/ws/protected", header=["Authorization: Bearer secret"])
        ws.send("through the header")
        self.assertEqual(ws.recv(), "through the header")

    def test_token_query_parameter_connects_and_echoes(self):
        ws = self.connect("/ws/protected?token=secret")
        ws.send_binary(b"\x00through the query\xff")
        self.assertEqual(ws.recv(), b"\x00through the query\xff")

    def test_unknown_path_is_404_with_code_4001(self):
        error = self.reject("/nope")
        self.assertEqual(error.status_code, 404)
        self.assertEqual(error.resp_headers["content-type"], "application/json")
        self.assertErrorBody(error.resp_body, 4001, "No WebSocket endpoint at this path")


class RawHandshakeTests(ServerTestCase):
    """Malformed upgrades, sent by hand: the status RFC 6455 asks for, with the JSON body."""

    KEY = "dGhlIHNhbXBsZSBub25jZQ=="

    def request(self, head):
        return http_exchange(self.server.host, self.server.port, head.encode("ascii"))

    def test_plain_get_is_426_with_upgrade_header(self):
        status, headers, body = self.request("GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 426)
        self.assertEqual(headers["upgrade"], "websocket")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertErrorBody(body, 4000, None)

    def test_unsupported_version_is_426_naming_version_13(self):
        status, headers, body = self.request(
            "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        self.assertEqual(status, 426)
        self.assertEqual(headers["sec-websocket-version"], "13")
        self.assertErrorBody(body, 4000, None)

    def test_missing_key_is_400(self):
        status, _headers, body = self.request(
            "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertEqual(status, 400)
        self.assertErrorBody(body, 4000, None)

    def test_post_is_405_allowing_get(self):
        status, headers, body = self.request(
            "POST /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "GET")
        self.assertErrorBody(body, 4000, None)

    def test_upgrade_by_hand_gets_the_accept_hash(self):
        raw = RawClient(self.server.host, self.server.port, "/ws/echo")
        self.addCleanup(raw.close)
        self.assertEqual(raw.status_line.split(" ")[1], "101")
        raw.send_frame(0x1, b"by hand")
        self.assertEqual(raw.read_frame(), (True, 0x1, b"by hand"))


class CloseCodeTests(ServerTestCase):
    """Every route's close code and reason; internal details never reach the client."""

    def test_unmapped_error_is_1011_internal_error_without_details(self):
        ws = self.connect("/ws/fail")
        ws.send("load my profile")
        opcode, payload = ws.recv_data(control_frame=True)
        self.assertEqual(opcode, OP_CLOSE)
        self.assertEqual(parse_close(payload), (1011, "internal error"))
        for secret in SECRETS:
            self.assertNotIn(secret.encode(), payload)
        # ...while the server's log keeps the whole chain for the operator.
        logged = wait_for(lambda: "db-primary:5432" in self.server.logs(), timeout=2)
        self.assertTrue(logged, self.server.logs())
        self.assertIn("loading the user profile", self.server.logs())

    def test_panic_is_1011_internal_error(self):
        ws = self.connect("/ws/panic")
        ws.send("boom")
        self.assertEqual(self.recv_close(ws), (1011, "internal error"))

    def test_application_code_4001_is_sent_with_its_reason(self):
        ws = self.connect("/ws/close/4001")
        self.assertEqual(self.recv_close(ws), (4001, "closing with 4001"))

    def test_registered_code_3000_is_sent(self):
        ws = self.connect("/ws/close/3000")
        self.assertEqual(self.recv_close(ws), (3000, "closing with 3000"))

    def test_normal_closure_1000_is_sent(self):
        ws = self.connect("/ws/close/1000")
        self.assertEqual(self.recv_close(ws), (1000, "closing with 1000"))

    def test_codes_that_may_not_be_sent_become_1011(self):
        for code in ("1006", "1005", "1015", "999", "5000", "abc"):
            with self.subTest(code=code):
                ws = self.connect(f"/ws/close/{code}")
                self.assertEqual(self.recv_close(ws), (1011, "internal error"))

    def test_custom_error_is_mapped_to_1008(self):
        ws = self.connect("/ws/custom")
        self.assertEqual(self.recv_close(ws), (1008, "Custom exception"))

    def test_client_close_is_answered_with_the_same_code(self):
        ws = self.connect("/ws/echo")
        ws.send("hello")
        self.assertEqual(ws.recv(), "hello")
        ws.close(status=1000, reason="done", timeout=TIMEOUT)
        self.assertIsNotNone(ws.close_frame, "the server never answered the close")
        self.assertEqual(parse_close(ws.close_frame.data)[0], 1000)


class JsonRouteTests(ServerTestCase):
    """`/ws/json`: per-request errors are messages, the connection lives on until `fatal`."""

    def setUp(self):
        self.ws = self.connect("/ws/json")

    def ask(self, request):
        self.ws.send(request if isinstance(request, str) else json.dumps(request))
        return self.recv_json(self.ws)

    def assertEchoWorks(self, request_id="after"):
        reply = self.ask({"type": "echo", "id": request_id, "data": {"still": "open"}})
        self.assertEqual(reply, {"type": "echo", "id": request_id, "data": {"still": "open"}})

    def test_echo(self):
        reply = self.ask('{"type":"echo","id":"1","data":[1,2]}')
        self.assertEqual(reply, {"type": "echo", "id": "1", "data": [1, 2]})

    def test_malformed_json_is_4000_with_a_generated_request_id(self):
        self.ws.send("{not json")
        opcode, raw = self.ws.recv_data()
        self.assertEqual(opcode, ABNF.OPCODE_TEXT)
        body = self.assertErrorBody(raw, 4000, None, request_id=None)
        self.assertTrue(body["data"]["message"].startswith("Malformed JSON: "), raw)
        self.assertEchoWorks()

    def test_missing_type_is_4000_with_the_request_id(self):
        self.ws.send('{"id":"7"}')
        self.assertErrorBody(self.ws.recv(), 4000, "Missing field: type", request_id="7")
        self.assertEchoWorks()

    def test_numeric_id_and_unknown_type_is_4000_with_the_id_as_text(self):
        self.ws.send('{"id":3,"type":"teleport"}')
        self.assertErrorBody(self.ws.recv(), 4000, 'Unknown type: "teleport"', request_id="3")
        self.assertEchoWorks()

    def test_find_alice_is_found(self):
        reply = self.ask({"type": "find", "id": "2", "name": "alice"})
        self.assertEqual(reply, {"type": "found", "id": "2", "name": "alice"})

    def test_find_carol_is_4001_with_the_request_id(self):
        self.ws.send('{"type":"find","id":"8","name":"carol"}')
        self.assertErrorBody(self.ws.recv(), 4001, 'No user named "carol"', request_id="8")
        self.assertEchoWorks()

    def test_fatal_sends_4003_then_closes_with_4003(self):
        self.ws.send('{"type":"fatal","id":"9"}')
        self.assertErrorBody(self.ws.recv(), 4003, "Session expired", request_id="9")
        self.assertEqual(self.recv_close(self.ws), (4003, "Session expired"))

    def test_many_errors_in_a_row_keep_the_connection_open(self):
        for index in range(5):
            self.ws.send(f'{{"id":"bad-{index}"}}')
            self.assertErrorBody(self.ws.recv(), 4000, "Missing field: type", f"bad-{index}")
        self.assertEchoWorks()


class RateLimitTests(ServerTestCase):
    """`--rate 5 --burst 5 --abuse-limit 30` on `/ws/json`."""

    server_flags = ("--rate", 5, "--burst", 5, "--abuse-limit", 30)

    def assertRateLimited(self, body, request_id):
        self.assertErrorBody(json.dumps(body), 4005, "Rate limit exceeded", request_id=request_id)
        retry = body["data"]["retry_after_ms"]
        self.assertIsInstance(retry, int)
        self.assertNotIsInstance(retry, bool)
        # One token takes 200 ms at 5 per second.
        self.assertGreater(retry, 0)
        self.assertLessEqual(retry, 200)

    def test_burst_then_4005_then_1008_on_abuse(self):
        ws = self.connect("/ws/json")
        # Ten requests in one write: the burst of 5 passes, the other 5 are rejected.
        requests = [json.dumps({"type": "echo", "id": f"r{i}", "data": i}) for i in range(10)]
        ws.sock.sendall(b"".join(ABNF.create_frame(r, ABNF.OPCODE_TEXT).format() for r in requests))
        replies = [self.recv_json(ws) for _ in range(10)]
        echoes = [reply for reply in replies if reply["type"] == "echo"]
        errors = [reply for reply in replies if reply["type"] == "error"]
        self.assertEqual([e["id"] for e in echoes], ["r0", "r1", "r2", "r3", "r4"], replies)
        self.assertEqual([e["data"] for e in echoes], [0, 1, 2, 3, 4])
        self.assertEqual(len(errors), 5, replies)
        for index, error in zip(range(5, 10), errors):
            self.assertRateLimited(error, f"r{index}")

        # Keep going, one request at a time (nothing in flight when the server closes), until
        # the 30th rejection within 10 s closes the connection instead of answering.
        rejected = len(errors)
        for index in range(10, 200):
            ws.send(json.dumps({"type": "echo", "id": f"r{index}", "data": index}))
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == OP_CLOSE:
                self.assertEqual(parse_close(data), (1008, "rate limit exceeded"))
                break
            reply = json.loads(data)
            if reply["type"] == "error":
                self.assertRateLimited(reply, f"r{index}")
                rejected += 1
            else:
                self.assertEqual(reply, {"type": "echo", "id": f"r{index}", "data": index})
        else:
            self.fail("the server never closed the abusive connection")
        self.assertEqual(rejected, 29, "the 30th rejection should close the connection")

    def test_other_routes_are_not_rate_limited(self):
        ws = self.connect("/ws/echo")
        for index in range(20):
            ws.send(f"message {index}")
        self.assertEqual([ws.recv() for _ in range(20)], [f"message {i}" for i in range(20)])


class SizeLimitTests(ServerTestCase):
    """`--max-message-size 1024`: a larger message closes with 1009."""

    server_flags = ("--max-message-size", 1024)

    def test_message_at_the_limit_is_echoed(self):
        ws = self.connect("/ws/echo")
        ws.send("x" * 1024)
        self.assertEqual(ws.recv(), "x" * 1024)

    def test_2000_byte_message_closes_with_1009(self):
        ws = self.connect("/ws/echo")
        ws.send("y" * 2000)
        code, _reason = self.recv_close(ws)
        self.assertEqual(code, 1009)

    def test_fragmented_message_over_the_limit_closes_with_1009(self):
        ws = self.connect("/ws/echo")
        ws.send_frame(ABNF.create_frame("z" * 600, ABNF.OPCODE_TEXT, fin=0))
        ws.send_frame(ABNF.create_frame("z" * 600, ABNF.OPCODE_CONT, fin=1))
        code, _reason = self.recv_close(ws)
        self.assertEqual(code, 1009)


class IdleTimeoutTests(ServerTestCase):
    """`--idle-timeout 0.5 --ping-interval 0`: a silent client is closed with 1001."""

    server_flags = ("--idle-timeout", 0.5, "--ping-interval", 0)

    def test_silent_client_gets_1001_idle_timeout(self):
        ws = self.connect("/ws/echo", timeout=2.5)
        started = time.monotonic()
        self.assertEqual(self.recv_close(ws), (1001, "idle timeout"))
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 2.0)

    def test_messages_reset_the_idle_timer(self):
        ws = self.connect("/ws/echo", timeout=2.5)
        started = time.monotonic()
        for index in range(4):
            time.sleep(0.3)
            ws.send(f"still here {index}")
            self.assertEqual(ws.recv(), f"still here {index}")
        self.assertGreater(time.monotonic() - started, 1.0)
        self.assertEqual(self.recv_close(ws), (1001, "idle timeout"))


class HeartbeatTests(ServerTestCase):
    """`--ping-interval 0.3 --ping-timeout 0.3`: peers that answer pings live on."""

    server_flags = ("--ping-interval", 0.3, "--ping-timeout", 0.3)

    def test_websocket_client_answers_pings_and_stays_open(self):
        ws = self.connect("/ws/echo")
        # websocket-client answers a ping while it reads: keep reading for 1.5 s.
        ws.settimeout(0.1)
        pings = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            self.assertNotEqual(opcode, OP_CLOSE, f"closed early: {parse_close(data)}")
            if opcode == OP_PING:
                pings += 1
        self.assertGreaterEqual(pings, 3)
        ws.settimeout(TIMEOUT)
        ws.send("alive")
        self.assertEqual(ws.recv(), "alive")

    def test_peer_that_never_answers_pings_gets_1011_ping_timeout(self):
        raw = RawClient(self.server.host, self.server.port, "/ws/echo", timeout=3.0)
        self.addCleanup(raw.close)
        self.assertEqual(raw.headers["upgrade"].lower(), "websocket")
        started = time.monotonic()
        fin, opcode, payload = raw.read_frame()
        self.assertTrue(fin)
        self.assertEqual(opcode, OP_PING)
        self.assertLessEqual(len(payload), 125)
        while True:
            fin, opcode, payload = raw.read_frame()
            if opcode != OP_PING:
                break
        self.assertEqual(opcode, OP_CLOSE)
        code, reason = parse_close(payload)
        self.assertEqual(code, 1011)
        self.assertTrue(reason.startswith("ping timeout"), reason)
        self.assertLess(time.monotonic() - started, 3.0)


class ShutdownTests(unittest.TestCase):
    """SIGTERM closes every connection with 1001 and the process exits 0."""

    def test_sigterm_closes_every_connection_with_1001_and_exits_0(self):
        server = ContractServer().start()
        self.addCleanup(server.close)
        clients = []
        for name in ("first", "second"):
            ws = websocket.create_connection(server.url + "/ws/echo", timeout=TIMEOUT)
            self.addCleanup(dispose, ws)
            ws.send(name)
            self.assertEqual(ws.recv(), name)
            clients.append(ws)
        started = time.monotonic()
        server.terminate()
        for ws in clients:
            opcode, payload = ws.recv_data(control_frame=True)
            self.assertEqual(opcode, OP_CLOSE)
            self.assertEqual(parse_close(payload), (1001, "server shutting down"))
        self.assertEqual(server.wait(timeout=5), 0, server.logs())
        self.assertLess(time.monotonic() - started, 5.0)


class IsolationTests(ServerTestCase):
    """Panicking handlers do not disturb the connections next to them."""

    def test_panics_do_not_affect_concurrent_echo_connections(self):
        barrier = threading.Barrier(20, timeout=TIMEOUT)

        def panic_client(index):
            ws = websocket.create_connection(self.server.url + "/ws/panic", timeout=TIMEOUT)
            try:
                barrier.wait()
                ws.send(f"panic {index}")
                opcode, payload = ws.recv_data(control_frame=True)
                return opcode, parse_close(payload)
            finally:
                dispose(ws)

        def echo_client(index):
            ws = websocket.create_connection(self.server.url + "/ws/echo", timeout=TIMEOUT)
            try:
                barrier.wait()
                answers = []
                for turn in range(5):
                    ws.send(f"echo {index}.{turn}")
                    answers.append(ws.recv())
                return answers
            finally:
                dispose(ws)

        with ThreadPoolExecutor(max_workers=20) as pool:
            panics = [pool.submit(panic_client, i) for i in range(10)]
            echoes = [pool.submit(echo_client, i) for i in range(10)]
            for future in panics:
                self.assertEqual(future.result(timeout=15), (OP_CLOSE, (1011, "internal error")))
            for index, future in enumerate(echoes):
                self.assertEqual(future.result(timeout=15), [f"echo {index}.{t}" for t in range(5)])
        # The server is still serving after all of it.
        ws = self.connect("/ws/echo")
        ws.send("after")
        self.assertEqual(ws.recv(), "after")


if __name__ == "__main__":
    unittest.main()
