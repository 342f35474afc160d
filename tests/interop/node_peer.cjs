// The Node peer of Tether's client interop tests: a `ws` (8.x) server.
//
//     NODE_PATH=DIR/node_modules node tests/interop/node_peer.cjs PORT [--exit-on-stdin-eof]
//         [--deflate]
//
// `ws` is installed from tests/interop/package.json (see tests/interop/README.md); NODE_PATH
// points at its node_modules. Listens on 127.0.0.1:PORT (0 picks a free port) and prints
// `listening on PORT` on stdout once bound. With --exit-on-stdin-eof it exits when its
// standard input ends, so a test that dies without cleaning up never leaves it behind. With
// --deflate the servers negotiate permessage-deflate (`perMessageDeflate: true`, ws's
// defaults: context takeover allowed, messages under 1024 bytes sent uncompressed); without
// it they decline every offer, ws's default.
//
// Routes (the same as tests/interop/python_peer.py):
// - /echo: sends every text and binary message back as it came.
// - /close/{code}: closes at once with that code and the reason `closing with {code}`.
// - /big: echo, with the server's maxPayload set to 1024 bytes: a larger message makes ws
//   close the connection with 1009.
// - /fragments: sends the text `fragmented text` in three fragments, then the binary message
//   00 01 02 03 04 in two, then echoes.
// - /ping: pings with the payload `tether?`; when the pong comes back, sends the text
//   `pong: {its payload}`, then echoes.
// - /deflate-info: sends, as its first message, the `Sec-WebSocket-Extensions` value of its
//   handshake response (the empty text when it has none), then echoes.
// - /reject/{status}: answers the upgrade with that HTTP status, the JSON body
//   `{"error": "rejected with {status}"}` and the header `X-Reason: interop rejection {status}`.
// - /reject-chunked/{status}: the same answer with `Transfer-Encoding: chunked` on a
//   connection kept alive, as Node's http module and the frameworks on it send by default.
// - Any other path: /reject/404's answer.
//
// The subprotocol `chat.v1` is selected when the client offers it.
'use strict';

const http = require('node:http');
const { WebSocketServer } = require('ws');

const MAX_BIG = 1024;

const args = process.argv.slice(2);
if (args.length === 0 || !/^\d+$/.test(args[0])) {
  process.stderr.write('usage: node_peer.cjs PORT [--exit-on-stdin-eof] [--deflate]\n');
  process.exit(2);
}
const port = Number(args[0]);
const perMessageDeflate = args.slice(1).includes('--deflate');

if (args.slice(1).includes('--exit-on-stdin-eof')) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

function handleProtocols(protocols) {
  return protocols.has('chat.v1') ? 'chat.v1' : false;
}

// One WebSocketServer per message size limit; the HTTP server routes upgrades to them.
const normal = new WebSocketServer({ noServer: true, handleProtocols, perMessageDeflate });
const big = new WebSocketServer({
  noServer: true,
  handleProtocols,
  perMessageDeflate,
  maxPayload: MAX_BIG,
});

// The `Sec-WebSocket-Extensions` value of each request's handshake response, for
// /deflate-info: ws emits `headers` with the response's header lines just before writing them.
const answeredExtensions = new WeakMap();
normal.on('headers', (headers, req) => {
  const line = headers.find((header) => /^sec-websocket-extensions:/i.test(header));
  answeredExtensions.set(req, line ? line.slice(line.indexOf(':') + 1).trim() : '');
});

function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
}

function reject(socket, status) {
  const body = JSON.stringify({ error: `rejected with ${status}` });
  const phrase = http.STATUS_CODES[status] || 'Rejected';
  socket.end(
    `HTTP/1.1 ${status} ${phrase}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Reason: interop rejection ${status}\r\n` +
      'Connection: close\r\n' +
      '\r\n' +
      body,
  );
}

// The same answer, chunked, and the connection kept open (until the client closes it or the
// keep-alive timeout below), as `res.end(json)` in a plain request handler does.
function rejectChunked(socket, status) {
  const body = JSON.stringify({ error: `rejected with ${status}` });
  const half = Math.floor(body.length / 2);
  const chunk = (part) => `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`;
  const phrase = http.STATUS_CODES[status] || 'Rejected';
  socket.write(
    `HTTP/1.1 ${status} ${phrase}\r\n` +
      'Content-Type: application/json\r\n' +
      'Transfer-Encoding: chunked\r\n' +
      `X-Reason: interop rejection ${status}\r\n` +
      'Connection: keep-alive\r\n' +
      'Keep-Alive: timeout=60\r\n' +
      '\r\n' +
      chunk(body.slice(0, half)) +
      chunk(body.slice(half)) +
      '0\r\n\r\n',
  );
  socket.setTimeout(60000, () => socket.destroy());
}

function fragments(ws) {
  ws.send('frag', { fin: false });
  ws.send('mented ', { fin: false });
  ws.send('text', { fin: true });
  ws.send(Buffer.from([0, 1]), { binary: true, fin: false });
  ws.send(Buffer.from([2, 3, 4]), { binary: true, fin: true });
  echo(ws);
}

function ping(ws) {
  ws.on('pong', (data) => ws.send(`pong: ${data.toString()}`));
  ws.ping('tether?');
  echo(ws);
}

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket endpoint: send an upgrade request\n');
});

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  const path = new URL(req.url, 'http://peer').pathname;
  let match;
  if ((match = /^\/reject(-chunked)?\/(\d+)$/.exec(path))) {
    let status = Number(match[2]);
    status = status >= 400 && status <= 599 ? status : 400;
    if (match[1]) {
      rejectChunked(socket, status);
    } else {
      reject(socket, status);
    }
  } else if ((match = /^\/close\/(\d+)$/.exec(path))) {
    const code = Number(match[1]);
    normal.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      ws.close(code, `closing with ${code}`);
    });
  } else if (path === '/echo') {
    normal.handleUpgrade(req, socket, head, echo);
  } else if (path === '/fragments') {
    normal.handleUpgrade(req, socket, head, fragments);
  } else if (path === '/ping') {
    normal.handleUpgrade(req, socket, head, ping);
  } else if (path === '/deflate-info') {
    normal.handleUpgrade(req, socket, head, (ws) => {
      ws.send(answeredExtensions.get(req) ?? '');
      echo(ws);
    });
  } else if (path === '/big') {
    big.handleUpgrade(req, socket, head, echo);
  } else {
    reject(socket, 404);
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${server.address().port}\n`);
});
