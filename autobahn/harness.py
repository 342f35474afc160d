#!/usr/bin/env python3
"""Small helpers for run.sh (Python 3, standard library only).

  harness.py free-port
      Print a TCP port on 127.0.0.1 that is free right now.
  harness.py render-config TEMPLATE OUT --port N --outdir DIR
      Copy a wstest spec template, replacing "{port}" in every string and
      setting "outdir" to DIR.
  harness.py update-reports --port N --agent NAME [--timeout S]
      Ask a running `wstest -m fuzzingserver` to (re)write its reports for
      NAME, as a client driver does with /updateReports?agent=NAME.
"""

import argparse
import base64
import json
import os
import socket
import sys
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(value, port):
    if isinstance(value, str):
        return value.replace("{port}", str(port))
    if isinstance(value, list):
        return [substitute(v, port) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, port) for k, v in value.items()}
    return value


def render_config(template, out, port, outdir):
    with open(template, encoding="utf-8") as f:
        spec = json.load(f)
    spec = substitute(spec, port)
    spec["outdir"] = os.path.abspath(outdir)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")


def update_reports(port, agent, timeout):
    """Open /updateReports?agent=AGENT over a minimal WebSocket handshake.

    The fuzzingserver writes its reports when that connection opens, then
    sends a close frame; we wait for that frame (or EOF), answer it and go.
    """
    deadline = time.monotonic() + timeout
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request = (
        "GET /updateReports?agent=%s HTTP/1.1\r\n"
        "Host: 127.0.0.1:%d\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n" % (agent, port, key)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode("ascii"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RuntimeError("handshake refused: %s" % status.decode("latin-1"))
        # Wait for the server's close frame (sent after the reports are written).
        while len(rest) < 2:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                return
            rest += chunk
        mask = os.urandom(4)
        payload = (1000).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        try:
            s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
        except OSError:
            pass


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    rc = sub.add_parser("render-config")
    rc.add_argument("template")
    rc.add_argument("out")
    rc.add_argument("--port", type=int, required=True)
    rc.add_argument("--outdir", required=True)
    ur = sub.add_parser("update-reports")
    ur.add_argument("--port", type=int, required=True)
    ur.add_argument("--agent", required=True)
    ur.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)

    if args.cmd == "free-port":
        print(free_port())
    elif args.cmd == "render-config":
        render_config(args.template, args.out, args.port, args.outdir)
    elif args.cmd == "update-reports":
        try:
            update_reports(args.port, args.agent, args.timeout)
        except (OSError, RuntimeError) as e:
            print("update-reports: %s" % e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
