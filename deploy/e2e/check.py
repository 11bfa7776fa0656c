#!/usr/bin/env python3
"""Evaluates every expression of the shipped rules and dashboards (panel
queries and variable queries, with the variables substituted) on a real
Prometheus that scraped a real EUCORA server through a scenario
(deploy/e2e/run).

Fails when Prometheus reports a rule unhealthy, when an expression is
invalid, when one returns no series and is not listed below as legitimately
empty (with its reason), when a rule reads a metric name that no scrape or
recording produced, or when an exact label matcher names a value that no
series has. Prints a table: expression, source file, series returned.
"""

import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "grafana/dashboards").glob("*.json"))
# Dashboard variables as a person first opening a dashboard has them.
VARIABLES = {"$__rate_interval": "1m", "$job": "eucora", "$instance": ".*", "$slo": ".*"}

# Alerts whose condition must not hold after a short, healthy scenario.
EXPECTED_EMPTY = {
    "EucoraErrorBudgetBurn": "no server faults or slow calls past the budget in the scenario",
    "EucoraTargetDown": "the server is up",
    "EucoraMetricsAbsent": "the server is scraped",
    "EucoraCircuitBreakerFlapping": "the failing breaker opened once; flapping needs six changes",
    "EucoraDeploymentsStalled": "the stall timeout is 24 h",
    "EucoraPromotionsBlockedRepeatedly": "one promotion is blocked; the alert needs five in an hour",
    "EucoraRingBelowGateThreshold": "the gates evaluated saw healthy rings",
    "EucoraCabBacklogHigh": "one deployment waits for CAB; the alert needs more than ten",
    "EucoraCabBacklogStuck": "needs a day of backlog",
    "EucoraControllerNotEvaluating": "the controller runs",
    "EucoraChangeFailureRatioHigh": "needs at least ten ended deployments in a ring",
    "EucoraDatabasePoolSaturated": "the pool is mostly idle",
    "EucoraCoordinationDegraded": "the server reaches its Redis",
}

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan",
}


def query_api(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as err:
        return json.load(err)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (functions, keywords, labels and literals left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(0), text[match.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def exact_matchers(expr: str) -> list[tuple[str, str, str]]:
    """(metric, label, value) of every `metric{label="value"}` matcher."""
    found = []
    for selector in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", expr):
        for matcher in re.finditer(r'(\w+)\s*=\s*"([^"]*)"', selector.group(2)):
            found.append((selector.group(1), matcher.group(1), matcher.group(2)))
    return found


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def expressions():
    """(name, source file, PromQL) of every rule and every dashboard query."""
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield rule.get("record") or rule["alert"], path.name, rule["expr"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield f"{board['uid']} / {panel['title']}", path.name, substitute(target["expr"])


def label_values(base: str, query: str) -> int:
    """How many values a `label_values(selector, label)` variable query offers."""
    selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query).groups()
    answer = query_api(base, f"/api/v1/label/{label}/values", **{"match[]": substitute(selector)})
    return len(answer.get("data") or [])


def main() -> int:
    base = sys.argv[1]
    problems = []
    for group in query_api(base, "/api/v1/rules")["data"]["groups"]:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                problems.append(f"rule {rule['name']} is {rule.get('health')}: {rule.get('lastError')}")
    known = set(query_api(base, "/api/v1/label/__name__/values")["data"])
    rows = []
    for name, file, expr in expressions():
        answer = query_api(base, "/api/v1/query", query=expr)
        if answer.get("status") != "success":
            problems.append(f"{name}: invalid expression: {answer.get('error')}")
            rows.append((expr, file, "error"))
            continue
        series = len(answer["data"]["result"])
        rows.append((expr, file, series))
        if series == 0 and name not in EXPECTED_EMPTY:
            problems.append(f"{name} ({file}) returned no data after the scenario")
        for metric in metric_names(expr) - known:
            problems.append(f"{name} reads {metric}, which no scrape or rule produced")
        for metric, label, value in exact_matchers(expr):
            if metric in known:
                count = query_api(base, "/api/v1/query", query=f'count({metric}{{{label}="{value}"}})')
                if not count.get("data", {}).get("result"):
                    problems.append(f"{name} matches {metric}{{{label}=\"{value}\"}}, which no series has")
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                offered = label_values(base, variable["query"])
                rows.append((variable["query"], path.name, offered))
                if offered == 0:
                    problems.append(f"{path.name} variable {variable['name']} offers no value")
    width = 90
    print(f"{'expression':<{width}} {'file':<18} series")
    for expr, file, series in rows:
        flat = " ".join(expr.split())
        print(f"{flat[: width - 1]:<{width}} {file:<18} {series}")
    with_data = sum(1 for _, _, series in rows if isinstance(series, int) and series > 0)
    print(f"e2e: {len(rows)} expressions evaluated (rules and dashboards), {with_data} returned data, "
          f"{len(rows) - with_data} empty ({len(EXPECTED_EMPTY)} alerts listed as legitimately empty)")
    for problem in problems:
        print(f"e2e: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
