# -*- coding: utf-8 -*-
"""Helpers that need the Autobahn TestSuite itself: run by the wstest venv's Python 2.7.

  python suite_helper.py list-cases SPEC
      Print, as a JSON list, the case ids a wstest spec selects ("cases" minus
      "exclude-cases"), in the order wstest runs them. The suite's own
      CaseSet.parseSpecCases does the resolving, so this is exactly the set a
      single wstest run of SPEC would run.
  python suite_helper.py html-index DIR
      Rewrite DIR/index.html (the suite's summary page) from DIR/index.json and
      the per-case JSON reports beside it, with the suite's own report code. Used
      after run.sh merged the reports of several shards into DIR.

run.sh calls it through harness.py; it is not meant to be run by hand.
"""

import json
import os
import sys

from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet


def case_set():
    return CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)


def list_cases(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    json.dump(case_set().parseSpecCases(spec), sys.stdout)
    sys.stdout.write("\n")


def html_index(outdir):
    # Imported here: it pulls in twisted, which list-cases does not need.
    from autobahntestsuite.fuzzing import FuzzingFactory

    with open(os.path.join(outdir, "index.json")) as f:
        index = json.load(f)
    factory = FuzzingFactory(outdir)
    factory.CaseSet = case_set()
    for agent, cases in index.items():
        factory.agents[agent] = {}
        for case_id, entry in cases.items():
            # The summary page needs the full case record (timing, traffic
            # stats): the per-case JSON file is exactly that record.
            try:
                with open(os.path.join(outdir, entry["reportfile"])) as f:
                    record = json.load(f)
            except (IOError, OSError, ValueError, KeyError):
                record = dict(entry, reportTime=False, reportCompressionRatio=False, trafficStats=None)
            factory.agents[agent][case_id] = record
    factory.createMasterReportHTML(outdir)


def main(argv):
    if len(argv) == 2 and argv[0] == "list-cases":
        list_cases(argv[1])
    elif len(argv) == 2 and argv[0] == "html-index":
        html_index(argv[1])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
