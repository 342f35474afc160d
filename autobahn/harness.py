#!/usr/bin/env python3
"""Small helpers for run.sh (Python 3, standard library only).

  harness.py free-port
      Print a TCP port on 127.0.0.1 that is free right now.
  harness.py free-ports N
      Print N distinct such ports, one a line.
  harness.py update-reports --port N --agent NAME [--timeout S]
      Ask a running `wstest -m fuzzingserver` to (re)write its reports for
      NAME, as a client driver does with /updateReports?agent=NAME.
  harness.py plan-shards TEMPLATE --python PY2 --jobs N --ports P[,P...] --outdir DIR
      Split the cases TEMPLATE selects (resolved by the suite itself, run by
      PY2, the wstest venv's Python) into at most N shards of about equal
      estimated cost, and write each shard's spec to DIR/shard-K/ (K = 1..):
      the template with "{port}" replaced by the K-th port (or the only one)
      and "cases" set to the shard's case ids. Prints one line per shard:
      "K PORT CASES ESTIMATED_SECONDS".
  harness.py merge-reports --outdir DIR [--python PY2] SHARD_DIR...
      Merge the shards' index.json into DIR/index.json, move their per-case
      reports into DIR and, with PY2, rebuild DIR/index.html with the suite's
      report code (a warning only when that fails).
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct ports: all bound at once, so no two are the same."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def substitute(value, port):
    if isinstance(value, str):
        return value.replace("{port}", str(port))
    if isinstance(value, list):
        return [substitute(v, port) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, port) for k, v in value.items()}
    return value


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


# --- sharding ---------------------------------------------------------------
# Payload length and auto-fragment size of the 18 cases of every subgroup of
# groups 12 and 13 (MSG_SIZES in the suite's case12_x_x.py; each sends 1000
# compressed messages of that length).
DEFLATE_SIZES = [
    (16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0),
    (65536, 0), (131072, 0),
    (8192, 256), (16384, 256), (32768, 256), (65536, 256), (131072, 256),
    (131072, 1024), (131072, 4096), (131072, 32768),
]
# Milliseconds per KiB of payload for the 1000 messages, by test data: 12.1 JSON,
# 12.2 a bitmap, 12.3 German text, 12.4 HTML, 12.5 a PDF; group 13 is all JSON.
DEFLATE_MS_PER_KIB = {1: 35, 2: 90, 3: 110, 4: 35, 5: 70}


def case_cost(case_id):
    """Estimated duration of a case in ms (measured on the 2-core reference machine).

    Only used to balance the shards, so only relative sizes matter: groups 12
    and 13 are about 98% of a run and grow with the payload; 5.19, 5.20 and
    6.4.x wait about 1 s by design; group 9 sends a few MiB; the rest is instant.
    A case the model does not know costs as little as the small ones.
    """
    parts = [int(p) if p.isdigit() else 0 for p in case_id.split(".")]
    if parts[0] in (12, 13) and len(parts) == 3 and 1 <= parts[2] <= len(DEFLATE_SIZES):
        per_kib = DEFLATE_MS_PER_KIB.get(parts[1], 35) if parts[0] == 12 else 35
        length, frag = DEFLATE_SIZES[parts[2] - 1]
        return 500 + per_kib * length / 1024.0 * (1.2 if frag == 256 else 1.0)
    if case_id in ("5.19", "5.20") or case_id.startswith("6.4."):
        return 1000
    if parts[0] == 9:
        return 250
    return 10


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


def split_cases(case_ids, jobs):
    """Deterministic greedy split (longest estimated case first, onto the
    least loaded shard, ties to the lowest shard). Returns [(cases, cost)]
    with no empty shard; each shard's cases in suite order."""
    n = max(1, min(jobs, len(case_ids)))
    shards = [[] for _ in range(n)]
    load = [0.0] * n
    for cid in sorted(case_ids, key=lambda c: (-case_cost(c), case_key(c))):
        i = min(range(n), key=lambda j: (load[j], j))
        shards[i].append(cid)
        load[i] += case_cost(cid)
    return [(sorted(s, key=case_key), c) for s, c in zip(shards, load)]


def resolve_cases(python2, template):
    """The case ids TEMPLATE selects, as wstest itself resolves them."""
    out = subprocess.run([python2, os.path.join(HERE, "suite_helper.py"), "list-cases", template],
                         stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout.decode("utf-8"))


def plan_shards(template, python2, jobs, ports, outdir):
    with open(template, encoding="utf-8") as f:
        spec = json.load(f)
    shards = split_cases(resolve_cases(python2, template), jobs)
    if len(ports) != 1 and len(ports) < len(shards):
        raise ValueError("%d shards but only %d ports" % (len(shards), len(ports)))
    lines = []
    for k, (cases, cost) in enumerate(shards, 1):
        port = ports[0] if len(ports) == 1 else ports[k - 1]
        shard_dir = os.path.join(outdir, "shard-%d" % k)
        os.makedirs(shard_dir, exist_ok=True)
        shard_spec = substitute(spec, port)
        shard_spec["outdir"] = os.path.abspath(shard_dir)
        # Already resolved, exclusions applied: the shard runs exactly these.
        shard_spec["cases"] = cases
        shard_spec["exclude-cases"] = []
        with open(os.path.join(shard_dir, os.path.basename(template)), "w", encoding="utf-8") as f:
            json.dump(shard_spec, f, indent=2)
            f.write("\n")
        lines.append("%d %d %d %d" % (k, port, len(cases), round(cost / 1000.0)))
    return lines


def merge_reports(outdir, shard_dirs, python2):
    """Merge the shards' index.json into outdir; returns a list of errors."""
    merged = {}
    errors = []
    for shard_dir in shard_dirs:
        index = os.path.join(shard_dir, "index.json")
        if not os.path.exists(index):
            continue  # run.sh reports it, naming the shard's log
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
        for agent, cases in data.items():
            into = merged.setdefault(agent, {})
            for case_id, entry in cases.items():
                if case_id in into:
                    errors.append("case %s of agent %s is in more than one shard's report" % (case_id, agent))
                    continue
                into[case_id] = entry
                # The per-case reports keep their names: move them beside the
                # merged index, where its "reportfile" entries point.
                base = os.path.splitext(entry.get("reportfile", ""))[0]
                for ext in (".json", ".html"):
                    src = os.path.join(shard_dir, base + ext)
                    if base and os.path.exists(src):
                        os.replace(src, os.path.join(outdir, base + ext))
        # Its links now point to the merged directory: only the merged page is kept.
        try:
            os.remove(os.path.join(shard_dir, "index.html"))
        except OSError:
            pass
    if not merged:
        return errors
    with open(os.path.join(outdir, "index.json"), "w", encoding="utf-8") as f:
        # As wstest writes it.
        f.write(json.dumps(merged, sort_keys=True, indent=3, separators=(",", ": ")))
    if python2:
        rc = subprocess.run([python2, os.path.join(HERE, "suite_helper.py"), "html-index", outdir]).returncode
        if rc != 0:
            print("merge-reports: warning: could not rebuild %s/index.html (the JSON reports are complete)" % outdir,
                  file=sys.stderr)
    return errors


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    fp = sub.add_parser("free-ports")
    fp.add_argument("n", type=int)
    ur = sub.add_parser("update-reports")
    ur.add_argument("--port", type=int, required=True)
    ur.add_argument("--agent", required=True)
    ur.add_argument("--timeout", type=float, default=60.0)
    ps = sub.add_parser("plan-shards")
    ps.add_argument("template")
    ps.add_argument("--python", required=True)
    ps.add_argument("--jobs", type=int, required=True)
    ps.add_argument("--ports", required=True, help="one port for every shard, or one per shard (comma-separated)")
    ps.add_argument("--outdir", required=True)
    mr = sub.add_parser("merge-reports")
    mr.add_argument("--outdir", required=True)
    mr.add_argument("--python")
    mr.add_argument("shards", nargs="+")
    args = ap.parse_args(argv)

    if args.cmd == "free-port":
        print(free_port())
    elif args.cmd == "free-ports":
        print("\n".join(str(p) for p in free_ports(args.n)))
    elif args.cmd == "plan-shards":
        try:
            ports = [int(p) for p in args.ports.split(",")]
            lines = plan_shards(args.template, args.python, args.jobs, ports, args.outdir)
        except (OSError, ValueError, subprocess.CalledProcessError) as e:
            print("plan-shards: %s" % e, file=sys.stderr)
            return 1
        print("\n".join(lines))
    elif args.cmd == "merge-reports":
        try:
            errors = merge_reports(args.outdir, args.shards, args.python)
        except (OSError, ValueError) as e:
            errors = ["cannot merge the shards' reports: %s" % e]
        for e in errors:
            print(e)
        return 1 if errors else 0
    elif args.cmd == "update-reports":
        try:
            update_reports(args.port, args.agent, args.timeout)
        except (OSError, RuntimeError) as e:
            print("update-reports: %s" % e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
