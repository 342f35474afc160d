"""The `axum_app` example as one app: its JSON API and its WebSockets answer on the same port.

The contract itself is checked by running test_error_contract.py and
test_websockets_client.py against `axum_app` (scripts/python-tests does); this file checks
what only the axum app has. The binary comes from `TETHER_AXUM_APP_BIN`; without it the
tests are skipped, since only `scripts/python-tests` builds the example with its feature.
"""

import http.client
import json
import os
import unittest

import websocket

from contract_server import ContractServer
from test_error_contract import dispose

TIMEOUT = 5.0
BINARY = os.environ.get("TETHER_AXUM_APP_BIN")


@unittest.skipUnless(BINARY, "TETHER_AXUM_APP_BIN is not set (scripts/python-tests sets it)")
class AxumAppTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ContractServer(binary=BINARY).start()
        cls.addClassCleanup(cls.server.close)

    def test_api_and_websocket_share_the_port(self):
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("GET", "/api/hello")
        response = conn.getresponse()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("content-type"), "application/json")
        self.assertEqual(json.loads(response.read()), {"hello": "world"})

        ws = websocket.create_connection(self.server.url + "/ws/echo", timeout=TIMEOUT)
        self.addCleanup(dispose, ws)
        ws.send("same port")
        self.assertEqual(ws.recv(), "same port")

    def test_unknown_path_outside_ws_is_a_json_404(self):
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("GET", "/api/nothing")
        response = conn.getresponse()
        self.assertEqual(response.status, 404)
        body = json.loads(response.read())
        self.assertEqual(body["data"]["code"], 4001)


if __name__ == "__main__":
    unittest.main()
