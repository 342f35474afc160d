#!/usr/bin/env python3
"""Aggregates a `scripts/bench` results directory into summary.md and summary.json.

    python3 benches/summarize.py RESULTS_DIR        write both summaries, print the Markdown
    python3 benches/summarize.py --line JSON EXIT   one line about one run (used while running)

RESULTS_DIR holds runs.tsv (one line per run: section, point, subject, rep, exit status, JSON
path), meta.tsv (how the runs were made) and the JSON report of every run. A run counts when
its generator exited 0 and its report exists; the summary gives, per point and server, the
MEDIAN of each figure over those runs, and Tether's ratios against the peers.

Python 3 standard library only.
"""

import csv
import json
import math
import statistics
import sys
from pathlib import Path

TETHER = "tether"
PEERS = ["tokio-tungstenite", "fastwebsockets", "tokio-websockets"]
# The headline compares Tether with the better of these two on each figure.
BEST_OF = ["fastwebsockets", "tokio-websockets"]
CLIENTS = ["tether-bench", "tungstenite-load"]

# Load figures: (key in the summary, path in a run's JSON, label, lower is better, decimals).
LOAD_FIGURES = [
    ("messages_per_sec", ("messages_per_sec",), "msg/s", False, 0),
    ("p50_us", ("latency_us", "p50"), "p50 µs", True, 0),
    ("p99_us", ("latency_us", "p99"), "p99 µs", True, 0),
    ("p999_us", ("latency_us", "p999"), "p99.9 µs", True, 0),
    ("cpu_user_us_per_msg", ("server", "cpu_user_us_per_msg"), "CPU user µs/msg", True, 2),
    ("cpu_system_us_per_msg", ("server", "cpu_system_us_per_msg"), "CPU sys µs/msg", True, 2),
    ("cpu_us_per_msg", ("server", "cpu_us_per_msg"), "CPU µs/msg", True, 2),
    ("peak_rss_kib", ("server", "peak_rss_kib"), "peak RSS KiB", True, 0),
]
DECIMALS = {key: decimals for key, _, _, _, decimals in LOAD_FIGURES}
IDLE_FIGURES = [
    ("kib_per_connection_after_handshake", ("server", "bytes_per_connection_after_handshake")),
    ("kib_per_connection_after_echo", ("server", "bytes_per_connection_after_echo")),
]
CLIENT_FIGURES = [
    ("client_cpu_us_per_msg", ("client", "cpu_us_per_msg")),
    ("client_cpu_user_us_per_msg", ("client", "cpu_user_us_per_msg")),
    ("client_cpu_system_us_per_msg", ("client", "cpu_system_us_per_msg")),
    ("messages_per_sec", ("messages_per_sec",)),
    ("p50_us", ("latency_us", "p50")),
    ("p99_us", ("latency_us", "p99")),
]


def dig(document, path):
    """The number at `path` in a JSON document, or None."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document if isinstance(document, (int, float)) and not isinstance(document, bool) else None


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def load_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def point_sort_key(point):
    """c100-s1024-text sorts by connections, then size, then kind."""
    parts = point.split("-")
    try:
        return (int(parts[0][1:]), int(parts[1][1:]) if parts[1][1:].isdigit() else 0, parts[-1])
    except (IndexError, ValueError):
        return (math.inf, 0, point)


# ---------------------------------------------------------------------------------------------
# Reading the runs


def read_runs(results):
    """{section: {point: {subject: {"reports": [...], "runs": n, "failed": [why, ...]}}}}"""
    sections = {}
    with open(results / "runs.tsv", encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file, delimiter="\t"):
            entry = (
                sections.setdefault(row["section"], {})
                .setdefault(row["point"], {})
                .setdefault(row["subject"], {"reports": [], "runs": 0, "failed": []})
            )
            entry["runs"] += 1
            report = load_json(results / row["json"])
            if row["exit"] != "0" or report is None:
                errors = (report or {}).get("errors") or {}
                why = f"r{row['rep']}: exit {row['exit']}" + (f", errors {errors}" if errors else "")
                entry["failed"].append(why)
            else:
                entry["reports"].append(report)
    return sections


def read_meta(results):
    meta = {}
    try:
        with open(results / "meta.tsv", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.rstrip("\n").partition("\t")
                meta[key] = value
    except OSError:
        pass
    return meta


def medians(entry, figures):
    summary = {"runs": entry["runs"], "ok": len(entry["reports"]), "failed": entry["failed"]}
    for key, path, *_ in figures:
        summary[key] = median(dig(report, path) for report in entry["reports"])
    return summary


# ---------------------------------------------------------------------------------------------
# Aggregation


def summarize_load(points):
    out = {}
    for point in sorted(points, key=point_sort_key):
        servers = {name: medians(entry, LOAD_FIGURES) for name, entry in points[point].items()}
        tether = servers.get(TETHER)
        ratios = {}
        if tether:
            for key, _, _, lower_is_better, _ in LOAD_FIGURES:
                per_peer = {peer: ratio(tether[key], servers[peer][key]) for peer in PEERS if peer in servers}
                candidates = [servers[peer][key] for peer in BEST_OF if peer in servers and servers[peer][key] is not None]
                best = (min if lower_is_better else max)(candidates) if candidates else None
                per_peer["best_of_fastwebsockets_tokio_websockets"] = ratio(tether[key], best)
                ratios[key] = per_peer
        out[point] = {"servers": servers, "tether_ratios": ratios}
    return out


def summarize_idle(points):
    out = {}
    for point in sorted(points, key=point_sort_key):
        servers = {}
        for name, entry in points[point].items():
            summary = medians(entry, IDLE_FIGURES)
            for key, _ in IDLE_FIGURES:  # the reports say bytes; the tables say KiB
                summary[key] = None if summary[key] is None else summary[key] / 1024
            servers[name] = summary
        ratios = {}
        if TETHER in servers:
            for key, _ in IDLE_FIGURES:
                ratios[key] = {peer: ratio(servers[TETHER][key], servers[peer][key]) for peer in PEERS if peer in servers}
        out[point] = {"servers": servers, "tether_ratios": ratios}
    return out


def summarize_client(points):
    out = {}
    for point in sorted(points, key=point_sort_key):
        clients = {name: medians(entry, CLIENT_FIGURES) for name, entry in points[point].items()}
        tether, other = clients.get(CLIENTS[0]), clients.get(CLIENTS[1])
        cpu_ratio = ratio(tether["client_cpu_us_per_msg"], other["client_cpu_us_per_msg"]) if tether and other else None
        out[point] = {"clients": clients, "cpu_ratio_tether_bench_over_tungstenite_load": cpu_ratio}
    return out


def geometric_mean(values):
    values = [value for value in values if value]
    return math.exp(sum(math.log(value) for value in values) / len(values)) if values else None


# ---------------------------------------------------------------------------------------------
# Markdown


def fmt(value, digits=None):
    if value is None:
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2
    return f"{value:,.{digits}f}"


def fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def servers_in(summary):
    present = {name for point in summary.values() for name in point["servers"]}
    main = [name for name in [TETHER] + PEERS if name in present]
    # The extras asked for with --servers (tether-uring, yawc, ...) after the usual four.
    return main + sorted(present - set(main))


def figure_table(load, key, ratio_note):
    """One figure across servers per point, with Tether / best(fastwebsockets, tokio-websockets)."""
    names = servers_in(load)
    rows, best_ratios = [], []
    for point, data in load.items():
        best = data["tether_ratios"].get(key, {}).get("best_of_fastwebsockets_tokio_websockets")
        best_ratios.append(best)
        rows.append([point] + [fmt(data["servers"].get(name, {}).get(key), DECIMALS[key]) for name in names]
                    + [fmt_ratio(best)])
    mean = geometric_mean(best_ratios)
    rows.append(["**geometric mean**"] + ["" for _ in names] + [f"**{fmt_ratio(mean)}**"])
    return table(["point"] + names + [f"tether / best of fws, tws ({ratio_note})"], rows)


def markdown(meta, load, idle, client):
    lines = ["# Tether side-by-side benchmarks", ""]
    for key in ["started", "commit", "machine", "cpu", "pinning", "generator", "reps", "duration_s", "warmup_s"]:
        if key in meta:
            lines.append(f"- {key}: {meta[key]}")
    lines += ["", "Medians over the runs of each server at each point. Points are named "
              "c<connections>-s<bytes>-<text|binary>. Noisy: compare ratios, not single numbers.", ""]

    if load:
        lines += ["## Server CPU per message (µs, user + system) — the headline", ""]
        lines += figure_table(load, "cpu_us_per_msg", "< 1.0: Tether spends less")
        lines += ["", "## Throughput (messages/s)", ""]
        lines += figure_table(load, "messages_per_sec", "> 1.0: Tether serves more")
        lines += ["", "## Latency p99 (µs)", ""]
        lines += figure_table(load, "p99_us", "< 1.0: Tether is faster")
        lines += ["", "## Every figure", ""]
        header = ["point", "server", "runs ok"] + [figure[2] for figure in LOAD_FIGURES] + ["CPU µs/msg: tether / this"]
        rows = []
        for point, data in load.items():
            cpu = data["tether_ratios"].get("cpu_us_per_msg", {})
            for name in servers_in(load):
                server = data["servers"].get(name)
                if server is None:
                    continue
                rows.append([point, name, f"{server['ok']}/{server['runs']}"]
                            + [fmt(server[key], DECIMALS[key]) for key, *_ in LOAD_FIGURES]
                            + ["" if name == TETHER else fmt_ratio(cpu.get(name))])
        lines += table(header, rows)

    if idle:
        lines += ["", "## Idle memory (KiB of server RSS per connection)", ""]
        header = ["connections", "server", "runs ok", "after handshake", "after one echo",
                  "tether / this (handshake)", "tether / this (echo)"]
        rows = []
        for point, data in idle.items():
            for name in servers_in(idle):
                server = data["servers"].get(name)
                if server is None:
                    continue
                ratios = data["tether_ratios"]
                rows.append([point.split("-")[0][1:], name, f"{server['ok']}/{server['runs']}",
                             fmt(server["kib_per_connection_after_handshake"]),
                             fmt(server["kib_per_connection_after_echo"])]
                            + ["" if name == TETHER else fmt_ratio(ratios.get(key, {}).get(name))
                               for key, _ in IDLE_FIGURES])
        lines += table(header, rows)

    if client:
        lines += ["", "## Client CPU per message (µs, user + system), against tether echo", ""]
        header = ["point"] + [f"{name} {what}" for name in CLIENTS for what in ("µs/msg", "msg/s")] + ["tether-bench / tungstenite-load (< 1.0: cheaper)"]
        rows = []
        for point, data in client.items():
            row = [point]
            for name in CLIENTS:
                figures = data["clients"].get(name, {})
                row += [fmt(figures.get("client_cpu_us_per_msg"), 2), fmt(figures.get("messages_per_sec"), 0)]
            rows.append(row + [fmt_ratio(data["cpu_ratio_tether_bench_over_tungstenite_load"])])
        lines += table(header, rows)

    failures = []
    for section, summary in (("load", load), ("idle", idle), ("client", client)):
        for point, data in (summary or {}).items():
            for name, figures in (data.get("servers") or data.get("clients") or {}).items():
                failures += [f"- {section} {point} {name} {why}" for why in figures["failed"]]
    if failures:
        lines += ["", "## Failed runs (left out of the medians)", ""] + failures
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


# ---------------------------------------------------------------------------------------------


def one_line(path, status):
    """A progress line for one run."""
    report = load_json(path) if Path(path).exists() else None
    if report is None:
        return f"FAILED (exit {status}, no report)"
    errors = report.get("errors") or {}
    tail = "" if status == "0" and not errors else f"  FAILED (exit {status}, errors {errors})"
    if report.get("mode") == "idle":
        handshake = dig(report, ("server", "bytes_per_connection_after_handshake"))
        echo = dig(report, ("server", "bytes_per_connection_after_echo"))
        return (f"{fmt(None if handshake is None else handshake / 1024)} KiB/conn after handshake, "
                f"{fmt(None if echo is None else echo / 1024)} after echo{tail}")
    rate = dig(report, ("messages_per_sec",))
    p99 = dig(report, ("latency_us", "p99"))
    server = dig(report, ("server", "cpu_us_per_msg"))
    client = dig(report, ("client", "cpu_us_per_msg"))
    return (f"{fmt(rate, 0)} msg/s, p99 {fmt(p99, 0)} µs, "
            f"server {fmt(server, 2)} µs/msg, client {fmt(client, 2)} µs/msg{tail}")


def main(argv):
    if len(argv) == 4 and argv[1] == "--line":
        print(one_line(argv[2], argv[3]))
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(argv[1])
    runs = read_runs(results)
    summary = {
        "meta": read_meta(results),
        "load": summarize_load(runs.get("load", {})),
        "idle": summarize_idle(runs.get("idle", {})),
        "client": summarize_client(runs.get("client", {})),
    }
    text = markdown(summary["meta"], summary["load"], summary["idle"], summary["client"])
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (results / "summary.md").write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
