#!/usr/bin/env python3
"""Check an Autobahn TestSuite report against the expected results.

  check.py server|client [--agent tether] [--reports DIR] [--expected FILE]
  check.py server|client --update     # rewrite the expected file from the report

The report is autobahn/reports/servers/index.json (role server: wstest ran as
fuzzingclient against Tether's server) or autobahn/reports/clients/index.json
(role client: Tether's client against wstest's fuzzingserver). The expected
file, autobahn/expected-<role>.json, names for every case id the accepted
"behavior" and "behaviorClose" (a string, or a list of accepted strings).

A case fails when either grade differs from the expected one, when it is
missing from the report, or when the report has a case the expected file does
not list. The last line is "autobahn-<role>: N passed, N failed".
Python 3, standard library only.
"""

import argparse
import collections
import json
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT_SUBDIR = {"server": "servers", "client": "clients"}
ROLE_TEXT = {
    "server": "wstest -m fuzzingclient against Tether's echo server",
    "client": "Tether's client driver against wstest -m fuzzingserver",
}


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def display_path(path):
    rel = os.path.relpath(path)
    return os.path.abspath(path) if rel == ".." or rel.startswith(".." + os.sep) else rel


def accepted(value):
    return [value] if isinstance(value, str) else list(value)


def shorten(text, width=160):
    text = re.sub(r"<br\s*/?>", " ", str(text))
    text = " ".join(re.sub(r"<[^>]+>", "", text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_report(reports_dir, agent):
    """Return ({case_id: {behavior, behaviorClose, ...}}, error or None)."""
    index = os.path.join(reports_dir, "index.json")
    if not os.path.exists(index):
        return {}, "no report: %s does not exist (the run did not finish, or wrote no reports)" % display_path(index)
    try:
        data = load_json(index)
    except (OSError, ValueError) as e:
        return {}, "cannot read %s: %s" % (display_path(index), e)
    if agent not in data:
        return {}, "%s has no results for agent %r (agents: %s)" % (
            display_path(index), agent, ", ".join(sorted(data)) or "none")
    return data[agent], None


def case_details(reports_dir, entry):
    """Description and reasons from the case's own report file, if readable."""
    path = os.path.join(reports_dir, entry.get("reportfile", ""))
    try:
        detail = load_json(path)
    except (OSError, ValueError):
        return {}
    return detail


def write_expected(path, role, agent, results):
    """One case per line, so that a change shows as a one-line diff."""
    lines = [
        "{",
        '  "about": %s,' % json.dumps(
            "Accepted Autobahn TestSuite grades for Tether (role %s: %s). "
            "Checked by autobahn/check.py; rewrite from a run with "
            "'python3 autobahn/check.py %s --update'." % (role, ROLE_TEXT[role], role)),
        '  "agent": %s,' % json.dumps(agent),
        '  "cases": {',
    ]
    ids = sorted(results, key=case_key)
    for i, cid in enumerate(ids):
        r = results[cid]
        lines.append('    %s: {"behavior": %s, "behaviorClose": %s}%s' % (
            json.dumps(cid), json.dumps(r["behavior"]), json.dumps(r["behaviorClose"]),
            "," if i < len(ids) - 1 else ""))
    lines += ["  }", "}", ""]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)


def counts_line(results, field):
    c = collections.Counter(r.get(field, "?") for r in results.values())
    return ", ".join("%s %d" % (k, n) for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=sorted(REPORT_SUBDIR))
    ap.add_argument("--agent", default="tether", help="agent name in the report (default: tether)")
    ap.add_argument("--reports", help="report directory (default: autobahn/reports/servers|clients)")
    ap.add_argument("--expected", help="expected file (default: autobahn/expected-<role>.json)")
    ap.add_argument("--update", action="store_true", help="rewrite the expected file from the report")
    ap.add_argument("--harness-error", action="append", default=[], metavar="TEXT",
                    help="a problem found by run.sh outside the per-case grades; counted as a failure")
    args = ap.parse_args(argv)

    reports_dir = args.reports or os.path.join(HERE, "reports", REPORT_SUBDIR[args.role])
    expected_path = args.expected or os.path.join(HERE, "expected-%s.json" % args.role)
    tag = "autobahn-%s" % args.role

    results, report_error = load_report(reports_dir, args.agent)

    if args.update:
        if report_error or not results:
            print("%s: cannot update: %s" % (tag, report_error or "the report has no cases"), file=sys.stderr)
            return 2
        write_expected(expected_path, args.role, args.agent, results)
        print("%s: wrote %d cases to %s" % (tag, len(results), display_path(expected_path)))
        print("  behavior:      %s" % counts_line(results, "behavior"))
        print("  behaviorClose: %s" % counts_line(results, "behaviorClose"))
        return 0

    try:
        expected = load_json(expected_path)["cases"]
    except (OSError, ValueError, KeyError) as e:
        print("%s: cannot read the expected file %s: %s" % (tag, display_path(expected_path), e))
        print("%s: 0 passed, 1 failed" % tag)
        return 2

    print("%s: %s" % (tag, ROLE_TEXT[args.role]))
    print("  report:   %s (agent %s, %d cases)" % (
        display_path(os.path.join(reports_dir, "index.json")), args.agent, len(results)))
    print("  expected: %s (%d cases)" % (display_path(expected_path), len(expected)))
    if results:
        print("  behavior:      %s" % counts_line(results, "behavior"))
        print("  behaviorClose: %s" % counts_line(results, "behaviorClose"))

    passed = 0
    failures = []  # (case id, kind, lines)
    missing = []
    for cid in sorted(expected, key=case_key):
        want = expected[cid]
        got = results.get(cid)
        if got is None:
            missing.append(cid)
            continue
        ok_b = got.get("behavior") in accepted(want["behavior"])
        ok_c = got.get("behaviorClose") in accepted(want["behaviorClose"])
        if ok_b and ok_c:
            passed += 1
            continue
        # A grade that moves away from OK is a regression; anything else (for
        # instance UNIMPLEMENTED -> OK once compression lands) is a change that
        # wants the expected file updated.
        regressed = ("OK" in accepted(want["behavior"]) and not ok_b) or \
                    ("OK" in accepted(want["behaviorClose"]) and not ok_c)
        kind = "REGRESSED" if regressed else "CHANGED"
        d = case_details(reports_dir, got)
        lines = []
        if d.get("description"):
            lines.append(shorten(d["description"]))
        lines.append("behavior %s (expected %s), behaviorClose %s (expected %s), remote close code %s" % (
            got.get("behavior"), "|".join(accepted(want["behavior"])),
            got.get("behaviorClose"), "|".join(accepted(want["behaviorClose"])),
            got.get("remoteCloseCode")))
        if not ok_b and d.get("result"):
            lines.append("result: " + shorten(d["result"]))
        if not ok_c and d.get("resultClose") and d.get("resultClose") != d.get("result"):
            lines.append("close: " + shorten(d["resultClose"]))
        if kind == "CHANGED":
            lines.append("not a regression: if this is intended, run 'python3 autobahn/check.py %s --update'" % args.role)
        lines.append("report: " + display_path(os.path.join(reports_dir, got.get("reportfile", "?"))))
        failures.append((cid, kind, lines))

    unexpected = sorted((c for c in results if c not in expected), key=case_key)

    failed = len(failures) + len(missing) + len(unexpected) + len(args.harness_error)
    if failed:
        print()
        print("%s: FAILURES" % tag)
    for err in args.harness_error:
        print("  HARNESS  %s" % err)
    if report_error:
        print("  REPORT   %s" % report_error)
    for cid, kind, lines in failures:
        print("  %-9s %s" % (kind, cid))
        for line in lines:
            print("            " + line)
    if missing and report_error:
        print("  MISSING  all %d expected cases" % len(missing))
    elif missing:
        print("  MISSING  %d case(s) not in the report (the peer may have crashed or hung):" % len(missing))
        for line in textwrap.wrap(" ".join(missing), 100):
            print("            " + line)
    if unexpected:
        print("  UNEXPECTED %d case(s) in the report but not in %s (update it with --update):" % (
            len(unexpected), display_path(expected_path)))
        for line in textwrap.wrap(" ".join(unexpected), 100):
            print("            " + line)
    if failed and not report_error:
        print("  HTML report: %s" % display_path(os.path.join(reports_dir, "index.html")))
    print("%s: %d passed, %d failed" % (tag, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
