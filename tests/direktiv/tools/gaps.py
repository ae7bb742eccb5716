"""Write tests/direktiv/corpus/GAPS.tsv: every corpus document Direktiv accepted that isolde
refuses today, with the cause (test-data tooling; rerun after a fix and commit the result).
Rows whose reason starts with "deliberate" are refusals docs/differences.md explains; the
corpus test checks them as refusals, not as expected failures.

    python tests/direktiv/tools/gaps.py
"""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

import isolde

ROOT = Path(__file__).resolve().parents[1] / "corpus"

# diagnostic text -> gap reason (every cause that matches is named).  Each names the DIREKTIV-ERAS.md row.
CAUSES = [
    (r"unknown field 'workflow' in action", "gap: action.workflow subflow call (ERAS §4.3, ≤0.3.4) -> plugins/action.py schema"),
    (r"unknown field 'default' in state type 'switch'", "gap: switch `default` (ERAS §4.6, 0.1-0.2.2) -> plugins/switch.py schema"),
    (r"unknown field 'default' in state type 'event", "gap: eventXor `default` (v0.1 ignored unknown keys, ERAS §1) -> plugins/events.py schema"),
    (r"unknown field 'input' in state type 'foreach'", "gap: early foreach `input` instead of `array` (spec v0.1, ERAS §4.4) -> plugins/foreach.py schema"),
    (r"unknown field 'event' in event_filter", "gap: eventAnd `events[].event` form (ERAS §4.9, ≤0.3.0) -> plugins/events.py schema"),
    (r"js\(\.\.\.\)", "deliberate (SPEC §2.1, docs/differences.md): js(...) expressions (ERAS §7, 0.6.1+) are refused with a located message"),
    (r"unknown function type 'knative-system'", "gap: function type knative-system (ERAS §3, 0.8.6+) -> plugins/runners.py"),
    (r"^message: .*invalid jq", "gap: raw-jq error `message` is a printf format, not jq (ERAS §4.8, ≤0.5.10 lit) -> plugins/error.py"),
    (r"invalid jq", "gap: jq syntax checked at load in a field Direktiv never checked (ERAS §7/§8: only transform, condition, log, setter value, ≤0.3.2) -> core/validate.py"),
]


def main() -> None:
    rows = list(csv.DictReader((ROOT / "MANIFEST.tsv").open(), delimiter="\t"))
    lines = ["file\treason\tdiagnostic"]
    with tempfile.TemporaryDirectory() as tmp, isolde.Engine(data_dir=tmp, config={}) as eng:
        for r in rows:
            if r["status"] != "valid":
                continue
            diags = eng.validate(ROOT / r["file"])
            if not diags:
                continue
            first = diags[0].message
            src = (ROOT / r["file"]).read_text().split("\n")
            text = " | ".join(d.message for d in diags)
            if any(d.line and src[d.line - 1].strip().startswith("message:") for d in diags):
                text = "message: " + text
            reason = "; ".join(why for pat, why in CAUSES if re.search(pat, text)) or "gap: UNCLASSIFIED"
            lines.append(f"{r['file']}\t{reason}\t{first}")
    (ROOT / "GAPS.tsv").write_text("\n".join(lines) + "\n")
    print(f"{len(lines) - 1} gaps")


if __name__ == "__main__":
    main()
