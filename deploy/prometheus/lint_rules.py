#!/usr/bin/env python3
"""Conventions of the shipped Prometheus rules, checked in `make e2e`.

Every alert has a severity (critical, warning or info), a static summary, a
templated description (but the constant Watchdog), and a runbook_url naming a section of
docs/runbooks.md that exists; every alert is exercised by an alert test and
every recorded series is read by a test or by a tested alert.
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs/runbooks.md"


def anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the `## ` headings."""
    return {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("## ")
    }


def main() -> int:
    problems = []
    sections = anchors(RUNBOOKS.read_text())
    tests_text = "\n".join(path.read_text() for path in TESTS)
    tested_alerts = set(re.findall(r"alertname:\s*(\S+)", tests_text))
    rules = [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    alert_exprs = "\n".join(rule["expr"] for rule in rules if "alert" in rule)
    for rule in rules:
        if "record" in rule:
            name = rule["record"]
            if not re.fullmatch(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+", name):
                problems.append(f"recording rule {name}: not named level:metric:operations")
            if name not in tests_text and name not in alert_exprs:
                problems.append(f"recording rule {name}: read by no test and no alert")
            continue
        name = rule["alert"]
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        if labels.get("severity") not in {"critical", "warning", "info"}:
            problems.append(f"alert {name}: severity must be critical, warning or info")
        summary = annotations.get("summary", "")
        if not summary or "{{" in summary:
            problems.append(f"alert {name}: needs a static summary")
        # A constant alert (the Watchdog) has nothing to name.
        if "{{" not in annotations.get("description", "") and rule["expr"].strip() != "vector(1)":
            problems.append(f"alert {name}: the description must name its labels or value")
        runbook = annotations.get("runbook_url", "")
        anchor = runbook.partition("#")[2]
        if not runbook.startswith("docs/runbooks.md#") or anchor not in sections:
            problems.append(f"alert {name}: runbook_url {runbook!r} names no section of docs/runbooks.md")
        if name not in tested_alerts:
            problems.append(f"alert {name}: no alert test")
    for problem in problems:
        print(problem, file=sys.stderr)
    alerts = sum("alert" in rule for rule in rules)
    print(f"rules lint: {alerts} alerts, {len(rules) - alerts} recording rules, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
