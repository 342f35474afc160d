"""The Python peer of Tether's client interop tests: a `websockets` (17.x, asyncio) server.

    python tests/interop/python_peer.py PORT [--exit-on-stdin-eof]

Listens on 127.0.0.1:PORT (0 picks a free port) and prints `listening on PORT` on stdout
once bound. With --exit-on-stdin-eof it exits when its standard input ends, so a test that
dies without cleaning up never leaves it behind (the Rust tests pass a pipe).

Routes (the same as tests/interop/node_peer.cjs):
- /echo: sends every text and binary message back as it came.
- /close/{code}: closes at once with that code and the reason `closing with {code}`.
- /big: echo, with the server's max message size set to 1024 bytes: a larger message makes
  websockets close the connection with 1009.
- /fragments: sends the text `fragmented text` in three fragments, then the binary message
  00 01 02 03 04 in two, then echoes.
- /ping: pings with the payload `tether?`; when the pong comes back, sends the text
  `pong: {its payload}`, then echoes.
- /deflate-info: sends, as its first message, the `Sec-WebSocket-Extensions` value of its
  handshake response (the empty text when it has none), then echoes. websockets negotiates
  permessage-deflate by default.
- /reject/{status}: answers the upgrade with that HTTP status, the JSON body
  `{"error": "rejected with {status}"}` and the header `X-Reason: interop rejection {status}`.
- /reject-chunked/{status}: the same answer with `Transfer-Encoding: chunked`, as Node's
  http module and the frameworks on it send by default (websockets closes the connection
  after it; the Node peer keeps it open).
- Any other path: /reject/404's answer.

The subprotocol `chat.v1` is selected when the client offers it.
"""

import asyncio
import http
import json
import os
import sys
import threading

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

MAX_BIG = 1024


def reject(status):
    """A refused upgrade: `status`, a JSON error body and an X-Reason header."""
    body = json.dumps({"error": f"rejected with {status}"}).encode()
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Rejected"
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            ("X-Reason", f"interop rejection {status}"),
        ]
    )
    return Response(status, phrase, headers, body)


def reject_chunked(status):
    """`reject(status)` with its body in two chunks of the chunked transfer coding."""
    response = reject(status)
    body = response.body
    half = len(body) // 2
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])
    ) + b"0\r\n\r\n"
    del response.headers["Content-Length"]
    response.headers["Transfer-Encoding"] = "chunked"
    return Response(response.status_code, response.reason_phrase, response.headers, chunked)


def route(path):
    """The route name and its parameter, if any."""
    path = path.split("?", 1)[0]
    for prefix in ("/close/", "/reject/", "/reject-chunked/"):
        if path.startswith(prefix):
            return prefix.strip("/"), path[len(prefix):]
    return path.lstrip("/"), None


def process_request(connection, request):
    name, param = route(request.path)
    if name in ("reject", "reject-chunked"):
        status = int(param) if param.isdigit() else 400
        status = status if 400 <= status <= 599 else 400
        return reject(status) if name == "reject" else reject_chunked(status)
    if name == "close":
        if not param.isdigit():
            return reject(400)
        return None
    if name == "big":
        # Read per frame by the parser: set before the 101 goes out, so no frame escapes it.
        connection.protocol.max_message_size = MAX_BIG
        return None
    if name in ("echo", "fragments", "ping", "deflate-info"):
        return None
    return reject(404)


def select_subprotocol(connection, subprotocols):
    """`chat.v1` when offered, else no subprotocol (websockets' default would refuse)."""
    return "chat.v1" if "chat.v1" in subprotocols else None


async def handler(connection):
    name, param = route(connection.request.path)
    if name == "close":
        code = int(param)
        await connection.close(code, f"closing with {code}")
        return
    if name == "fragments":
        await connection.send(["frag", "mented ", "text"])
        await connection.send([b"\x00\x01", b"\x02\x03\x04"])
    if name == "ping":
        pong = await connection.ping(b"tether?")
        await pong
        # websockets does not hand the pong's payload over: it matched it to the ping's.
        await connection.send("pong: tether?")
    if name == "deflate-info":
        extensions = connection.response.headers.get("Sec-WebSocket-Extensions", "")
        await connection.send(extensions)
    # Then echo; from /big, over the limit, websockets closes with 1009 and the loop ends.
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass  # Ended without a clean close (1009 from /big, or the client vanished): no log.


def exit_on_stdin_eof():
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def main():
    args = sys.argv[1:]
    if not args or not args[0].isdigit():
        print("usage: python_peer.py PORT [--exit-on-stdin-eof]", file=sys.stderr)
        sys.exit(2)
    port = int(args[0])
    if "--exit-on-stdin-eof" in args[1:]:
        exit_on_stdin_eof()
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
