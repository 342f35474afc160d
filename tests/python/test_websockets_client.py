"""The error contract of the `error_contract` example, as the asyncio `websockets` library sees it.

Echo, handshake rejections (`InvalidStatus`), close codes and reasons surfaced as
`ConnectionClosedError` / `ConnectionClosedOK`, the `/ws/json` flow, the size and idle
limits, background ping answers and graceful shutdown. Each test class starts its own server.
"""

import asyncio
import json
import unittest

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from contract_server import ContractServer, ErrorBodyAssertions

TIMEOUT = 5.0


class ServerTestCase(ErrorBodyAssertions, unittest.IsolatedAsyncioTestCase):
    """One server per class, started with `server_flags`."""

    server_flags = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ContractServer(*cls.server_flags).start()
        cls.addClassCleanup(cls.server.close)

    def connect(self, path, **options):
        # No client pings: the tests look at the server's behaviour only.
        options.setdefault("ping_interval", None)
        options.setdefault("open_timeout", TIMEOUT)
        options.setdefault("close_timeout", 2)
        return connect(self.server.url + path, **options)

    async def reject(self, path, **options):
        """The InvalidStatus of a handshake that must be refused."""
        with self.assertRaises(InvalidStatus) as caught:
            async with asyncio.timeout(TIMEOUT):
                async with self.connect(path, **options):
                    pass
        return caught.exception

    async def closed_by_server(self, ws, expected_exception=ConnectionClosedError):
        """The exception `recv` raises once the server has closed the connection."""
        with self.assertRaises(expected_exception) as caught:
            async with asyncio.timeout(TIMEOUT):
                message = await ws.recv()
                self.fail(f"expected a close, got a message: {message!r}")
        closed = caught.exception
        self.assertIsNotNone(closed.rcvd, "no close frame was received")
        self.assertTrue(closed.rcvd_then_sent, "the server should have closed first")
        return closed.rcvd.code, closed.rcvd.reason


class EchoAndRejectionTests(ServerTestCase):
    """Echo, and refused upgrades surfaced as `InvalidStatus` with the JSON error body."""

    async def test_echo_text_and_binary(self):
        async with self.connect("/ws/echo") as ws:
            await ws.send("héllo")
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), "héllo")
            await ws.send(b"\x00\x01\xfe\xff")
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), b"\x00\x01\xfe\xff")
            large = "x" * 100_000
            await ws.send(large)
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), large)

    async def test_missing_token_is_401(self):
        error = await self.reject("/ws/protected")
        self.assertEqual(error.response.status_code, 401)
        self.assertEqual(error.response.headers["WWW-Authenticate"], "Bearer")
        self.assertEqual(error.response.headers["Content-Type"], "application/json")
        self.assertErrorBody(error.response.body, 4003, "Missing token")

    async def test_wrong_token_is_403(self):
        error = await self.reject("/ws/protected", additional_headers={"Authorization": "Bearer x"})
        self.assertEqual(error.response.status_code, 403)
        self.assertErrorBody(error.response.body, 4004, "Invalid token")

    async def test_unknown_path_is_404(self):
        error = await self.reject("/ws/missing")
        self.assertEqual(error.response.status_code, 404)
        self.assertErrorBody(error.response.body, 4001, "No WebSocket endpoint at this path")

    async def test_bearer_token_connects(self):
        headers = {"Authorization": "Bearer secret"}
        async with self.connect("/ws/protected", additional_headers=headers) as ws:
            await ws.send("let me in")
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), "let me in")


class CloseCodeTests(ServerTestCase):
    """Server-initiated closes surfaced as `ConnectionClosedError` with the exact code/reason."""

    async def test_close_4001_with_reason(self):
        async with self.connect("/ws/close/4001") as ws:
            self.assertEqual(await self.closed_by_server(ws), (4001, "closing with 4001"))

    async def test_invalid_code_becomes_1011(self):
        async with self.connect("/ws/close/1006") as ws:
            self.assertEqual(await self.closed_by_server(ws), (1011, "internal error"))

    async def test_custom_error_is_1008(self):
        async with self.connect("/ws/custom") as ws:
            self.assertEqual(await self.closed_by_server(ws), (1008, "Custom exception"))

    async def test_panic_is_1011(self):
        async with self.connect("/ws/panic") as ws:
            await ws.send("boom")
            self.assertEqual(await self.closed_by_server(ws), (1011, "internal error"))

    async def test_unmapped_error_is_1011_without_details(self):
        async with self.connect("/ws/fail") as ws:
            await ws.send("go")
            self.assertEqual(await self.closed_by_server(ws), (1011, "internal error"))

    async def test_json_fatal_sends_the_error_then_closes_4003(self):
        async with self.connect("/ws/json") as ws:
            await ws.send(json.dumps({"type": "echo", "id": "e", "data": None}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            self.assertEqual(reply, {"type": "echo", "id": "e", "data": None})
            await ws.send('{"type":"nope","id":"n"}')
            error = await asyncio.wait_for(ws.recv(), TIMEOUT)
            self.assertErrorBody(error, 4000, 'Unknown type: "nope"', request_id="n")
            await ws.send('{"type":"fatal","id":"f"}')
            error = await asyncio.wait_for(ws.recv(), TIMEOUT)
            self.assertErrorBody(error, 4003, "Session expired", request_id="f")
            self.assertEqual(await self.closed_by_server(ws), (4003, "Session expired"))


class SizeLimitTests(ServerTestCase):
    """`--max-message-size 1024`."""

    server_flags = ("--max-message-size", 1024)

    async def test_oversized_message_is_1009(self):
        async with self.connect("/ws/echo") as ws:
            await ws.send("a" * 1024)
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), "a" * 1024)
            await ws.send("a" * 2000)
            code, _reason = await self.closed_by_server(ws)
            self.assertEqual(code, 1009)


class TimerTests(ServerTestCase):
    """Pings every 0.3 s (answered by `websockets` in the background) and a 1 s idle timeout."""

    server_flags = ("--ping-interval", 0.3, "--ping-timeout", 0.3, "--idle-timeout", 1)

    async def test_background_pong_keeps_the_connection_open(self):
        async with self.connect("/ws/echo") as ws:
            for turn in range(3):
                # Pongs do not count as activity, messages do: 0.6 s of silence is fine.
                await asyncio.sleep(0.6)
                await ws.send(f"turn {turn}")
                self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), f"turn {turn}")

    async def test_idle_client_is_closed_with_1001(self):
        async with self.connect("/ws/echo") as ws:
            closed = await self.closed_by_server(ws, ConnectionClosedOK)
            self.assertEqual(closed, (1001, "idle timeout"))


class ShutdownTests(unittest.IsolatedAsyncioTestCase):
    """SIGTERM: close 1001 `server shutting down` (a normal close for `websockets`), exit 0."""

    async def test_sigterm_closes_with_1001(self):
        server = ContractServer().start()
        self.addCleanup(server.close)
        async with connect(server.url + "/ws/echo", ping_interval=None, open_timeout=TIMEOUT) as ws:
            await ws.send("before")
            self.assertEqual(await asyncio.wait_for(ws.recv(), TIMEOUT), "before")
            server.terminate()
            with self.assertRaises(ConnectionClosedOK) as caught:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            self.assertEqual(caught.exception.rcvd.code, 1001)
            self.assertEqual(caught.exception.rcvd.reason, "server shutting down")
        exit_code = await asyncio.to_thread(server.wait, 5)
        self.assertEqual(exit_code, 0)


if __name__ == "__main__":
    unittest.main()
