#!/usr/bin/env python3
"""Checks grafana/dashboards/*.json, in `make e2e`: each file validates
against the Grafana dashboard JSON Schema (../shared/grafana-schema: the
dashboard, each panel type's options and custom field config, each
Prometheus target), and follows the project's conventions: a `datasource`
variable and `job` / `instance` variables used by every query (SLO queries:
`job` and `slo`; constant objectives and budgets carry neither), a title,
description and unit on every panel, `$__rate_interval` in every range
vector, counters only inside rate/increase, a `uid` from the file name,
current panel types only, UTC, not editable.
"""

import json
import pathlib
import re
import sys

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared/grafana-schema"
PANEL_SCHEMAS = {"timeseries": "timeseries", "stat": "stat", "bargauge": "bargauge",
                 "state-timeline": "statetimeline", "heatmap": "heatmap", "table": "table"}
CONSTANTS = re.compile(r"^[^{]*slo:(objective|error_budget|time_period)[^{]*\{[^}]*\}\)*$")


def schema(name: str, definition: str | None = None) -> dict:
    loaded = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    if definition:
        loaded = {**loaded, "$ref": f"#/definitions/{definition}"}
    return loaded


def validate(instance, against: dict, where: str, problems: list) -> None:
    validator = jsonschema.Draft7Validator(against)
    for error in validator.iter_errors(instance):
        problems.append(f"{where}: {error.message} at {'/'.join(map(str, error.absolute_path))}")


def queries(board: dict):
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]


def main() -> int:
    problems = []
    dashboard_schema = schema("dashboard")
    prometheus_schema = schema("prometheus")
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        name = path.name
        validate(board, dashboard_schema, name, problems)
        if board.get("uid") != f"eucora-{path.stem}":
            problems.append(f"{name}: uid must be eucora-{path.stem}")
        if board.get("timezone") != "utc" or board.get("editable") is not False:
            problems.append(f"{name}: must be UTC and not editable")
        names = {v["name"] for v in board["templating"]["list"]}
        if not {"datasource", "job", "instance"} <= names:
            problems.append(f"{name}: needs datasource, job and instance variables")
        for panel in board["panels"]:
            where = f"{name} panel {panel.get('title')!r}"
            kind = panel["type"]
            if kind not in PANEL_SCHEMAS:
                problems.append(f"{where}: panel type {kind} is not a current one")
                continue
            for field in ("title", "description"):
                if not panel.get(field):
                    problems.append(f"{where}: needs a {field}")
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append(f"{where}: needs a unit")
            if panel.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: must use the datasource variable")
            panel_schema = PANEL_SCHEMAS[kind]
            if kind != "heatmap":
                validate(panel.get("options", {}), schema(panel_schema, "Options"), f"{where} options", problems)
            if kind in ("timeseries", "state-timeline"):
                custom = panel["fieldConfig"]["defaults"].get("custom", {})
                validate(custom, schema(panel_schema, "FieldConfig"), f"{where} custom", problems)
            for target in panel.get("targets", []):
                validate(target, prometheus_schema, f"{where} target {target.get('refId')}", problems)
        slo = "slo" in names
        for where, expr in queries(board):
            where = f"{name} {where}"
            if where.endswith(("variable job", "variable slo")):
                continue
            if not CONSTANTS.match(expr.strip()):
                if "$job" not in expr or ("$instance" not in expr and not slo and "variable instance" not in where):
                    problems.append(f"{where}: must filter by $job{'' if slo else ' and $instance'}: {expr}")
            for rng in re.findall(r"\[([^\]]+)\]", expr):
                if rng != "$__rate_interval":
                    problems.append(f"{where}: range vectors use $__rate_interval, not [{rng}]")
            for counter in re.findall(r"\b(\w+_total)\b", expr):
                if not re.search(rf"\b(rate|increase)\(\s*{counter}\b", expr):
                    problems.append(f"{where}: counter {counter} outside rate/increase")
    for problem in problems:
        print(problem, file=sys.stderr)
    boards = len(list((ROOT / "grafana/dashboards").glob("*.json")))
    print(f"dashboards lint: {boards} dashboards, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
