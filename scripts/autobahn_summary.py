"""Summarises an Autobahn report directory into a per-section table; exits 1 on any FAILED."""
import collections
import json
import pathlib
import sys

reports, summary = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
index = next(reports.rglob("index.json"), None)
if index is None:
    sys.exit(f"no index.json under {reports}: the conformance run did not happen")
data = json.loads(index.read_text())
counts = collections.defaultdict(collections.Counter)
failed = []
for agent in data.values():
    for case, result in agent.items():
        section = case.split(".")[0]
        behavior = result.get("behavior", "?")
        counts[section][behavior] += 1
        if behavior == "FAILED" or result.get("behaviorClose") == "FAILED":
            failed.append(case)
kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
lines = ["| section | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
for section in sorted(counts, key=int):
    lines.append(f"| {section} | " + " | ".join(str(counts[section][k]) for k in kinds) + " |")
total = collections.Counter()
for c in counts.values():
    total.update(c)
lines.append("| all | " + " | ".join(str(total[k]) for k in kinds) + " |")
table = "\n".join(lines)
summary.write_text(table + "\n")
print(table)
print(f"{sum(total.values())} cases, {len(failed)} FAILED")
if failed or sum(total.values()) == 0:
    print("FAILED cases: " + ", ".join(sorted(failed)))
    sys.exit(1)
