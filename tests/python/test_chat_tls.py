"""The demo chat over `wss://` (`tether serve --tls-cert FILE --tls-key FILE`), as the Python
clients `websocket-client` and `websockets` see it when they trust a test CA.

The CA and the server certificate (for `localhost` and 127.0.0.1) are made with the `openssl`
command for each run. Two clients chat over TLS while a third holds a TCP connection open in
the middle of its TLS handshake; a client that does not trust the CA is refused by its own TLS
check.
"""

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

import websocket
from websockets.asyncio.client import connect

from test_chat import TIMEOUT, ChatServer, dispose


def make_certificates(directory):
    """A CA and a leaf for localhost / 127.0.0.1 signed by it; returns (ca, cert, key) paths."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is required (Debian: apt-get install openssl)")
    ca_key, ca_cert = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "key.pem"), os.path.join(directory, "leaf.csr")
    cert, ext = os.path.join(directory, "cert.pem"), os.path.join(directory, "leaf.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "2",
        "-subj", "/CN=Tether test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w", encoding="utf-8") as file:
        file.write("basicConstraints=CA:FALSE\n"
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return ca_cert, cert, key


class ChatOverTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="tether-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.directory, True)
        cls.ca, cert, key = make_certificates(cls.directory)
        cls.server = ChatServer("--tls-cert", cert, "--tls-key", key).start()
        cls.addClassCleanup(cls.server.close)
        assert cls.server.url.startswith("wss://"), cls.server.url
        cls.url = f"wss://localhost:{cls.server.port}/ws"

    def connect(self, name):
        ws = websocket.create_connection(
            f"{self.url}?name={name}", timeout=TIMEOUT, sslopt={"ca_certs": self.ca}
        )
        self.addCleanup(dispose, ws)
        self.assertEqual(json.loads(ws.recv())["type"], "welcome")
        ws.send(json.dumps({"type": "join", "room": "lobby"}))
        self.assertEqual(json.loads(ws.recv())["type"], "joined")
        return ws

    def next_message(self, ws):
        while True:
            message = json.loads(ws.recv())
            if message["type"] == "message":
                return message

    def test_websocket_client_chats_over_wss_beside_a_stalled_handshake(self):
        stalled = socket.create_connection(("127.0.0.1", self.server.port), timeout=TIMEOUT)
        self.addCleanup(stalled.close)
        ann, bob = self.connect("ann"), self.connect("bob")
        ann.send(json.dumps({"type": "say", "room": "lobby", "text": "over tls"}))
        for ws in (ann, bob):
            message = self.next_message(ws)
            self.assertEqual((message["from"], message["text"]), ("ann", "over tls"))

    def test_websockets_chats_over_wss(self):
        context = ssl.create_default_context(cafile=self.ca)

        async def chat():
            async with connect(f"{self.url}?name=cy", ssl=context, open_timeout=TIMEOUT) as ws:
                welcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                self.assertEqual(welcome["type"], "welcome")
                await ws.send(json.dumps({"type": "join", "room": "lobby"}))
                await ws.send(json.dumps({"type": "say", "room": "lobby", "text": "hi"}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if message["type"] == "message":
                        return message

        message = asyncio.run(chat())
        self.assertEqual((message["from"], message["text"]), ("cy", "hi"))

    def test_a_client_that_does_not_trust_the_ca_is_refused_by_its_own_tls_check(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            websocket.create_connection(f"{self.url}?name=dee", timeout=TIMEOUT)


if __name__ == "__main__":
    unittest.main()
