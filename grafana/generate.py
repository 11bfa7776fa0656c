#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json from the panel lists below: one place for
the conventions every EUCORA dashboard follows (a `datasource` variable,
`job` and `instance` variables in every query, a title, description and unit
on every panel, `$__rate_interval` for range vectors, UTC, not editable, a
`uid` from the file name). `--check` fails when a file differs from what this
script writes, so the JSON never drifts from its source.

    python3 grafana/generate.py          # write
    python3 grafana/generate.py --check  # CI
"""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
SEL = 'job=~"$job", instance=~"$instance"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def target(expr, legend="", ref="A"):
    return {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}


def panel(kind, title, description, unit, targets, options=None, custom=None, **extra):
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(*t, ref=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom or {}}, "overrides": []},
        "options": options or {},
        **extra,
    }


def timeseries(title, description, unit, *targets):
    return panel("timeseries", title, description, unit, targets,
                 options={"legend": LEGEND, "tooltip": {"mode": "multi", "sort": "desc"}},
                 custom={"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"})


def stat(title, description, unit, *targets):
    return panel("stat", title, description, unit, targets,
                 options={"reduceOptions": LAST, "colorMode": "value", "graphMode": "none", "textMode": "auto",
                          "justifyMode": "auto", "wideLayout": True, "showPercentChange": False,
                          "percentChangeColorMode": "standard", "orientation": "auto"})


def bargauge(title, description, unit, *targets):
    return panel("bargauge", title, description, unit, targets,
                 options={"reduceOptions": LAST, "orientation": "horizontal", "displayMode": "basic",
                          "showUnfilled": True, "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
                          "minVizWidth": 8, "minVizHeight": 16, "maxVizHeight": 300,
                          "legend": {**LEGEND, "showLegend": False}})


def state_timeline(title, description, unit, *targets):
    return panel("state-timeline", title, description, unit, targets,
                 options={"mergeValues": True, "showValue": "auto", "rowHeight": 0.9, "legend": LEGEND,
                          "tooltip": {"mode": "single", "sort": "none"}})


def heatmap(title, description, unit, *targets):
    p = panel("heatmap", title, description, unit, targets,
              options={"calculate": False, "yAxis": {"unit": unit}, "cellGap": 1,
                       "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64}})
    for t in p["targets"]:
        t["format"] = "heatmap"
    return p


def query_var(name, label, query, include_all):
    """A variable whose values a Prometheus query offers (all of them when `include_all`)."""
    return {
        "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2, "sort": 1,
        "multi": include_all, "includeAll": include_all, **({"allValue": ".*"} if include_all else {}),
    }


def variables(extra=()):
    return [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "current": {"text": "Prometheus", "value": "prometheus"}},
        query_var("job", "Job", 'label_values(up{job=~".*eucora.*"}, job)', False),
        query_var("instance", "Instance", 'label_values(up{job=~"$job"}, instance)', True),
        *extra,
    ]


def dashboard(uid, title, description, panels, extra_variables=()):
    laid, x, y = [], 0, 0
    for i, p in enumerate(panels):
        width = 24 if p.get("type") == "heatmap" else (6 if p["type"] == "stat" else 12)
        if x + width > 24:
            x, y = 0, y + 8
        laid.append({"id": i + 1, "gridPos": {"h": 8, "w": width, "x": x, "y": y}, **p})
        x += width
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["eucora"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": variables(extra_variables)},
        "annotations": {"list": []},
        "panels": laid,
    }


def quantiles(metric, by=""):
    return [(f'histogram_quantile({q}, sum by (le{by}) ({metric}{{{SEL}}}))', f"p{int(q * 100)}{{{{{by[2:]}}}}}" if by else f"p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


OPERATIONS = dashboard("eucora-operations", "EUCORA Control Plane - Operations Dashboard",
    "Rollouts ring by ring: what is where, how fast it moves, what the gates decide, what waits for people.", [
    bargauge("Deployments by status and ring", "Deployments now in each status and current ring, as stored.", "short",
             (f"sum by (status, ring) (deployments_current{{{SEL}}}) > 0", "{{status}} in {{ring}}")),
    stat("CAB backlog", "Deployments waiting for a CAB approval or rejection.", "short",
         (f'sum(deployments_current{{{SEL}, status="awaiting_cab"}})', "awaiting CAB")),
    stat("Stalled deployments", "Deploying deployments that get no new device outcomes.", "short",
         (f"sum(deployments_stalled{{{SEL}}})", "stalled")),
    stat("Change freeze", "1 while the global change freeze holds: nothing is promoted or started anywhere until it is lifted or expires (ChangeCalendarService).", "short",
         (f"max(change_freeze_active{{{SEL}}})", "freeze")),
    stat("Held by the change calendar", "Deploying deployments whose gate only the change calendar holds: the freeze, a deny window, or no open allow window.", "short",
         (f"sum by (hold) (deployments_waiting_for_window{{{SEL}}})", "{{hold}}")),
    timeseries("Throughput by status", "Deployments entering each status, per second.", "ops",
               (f"sum by (status) (rate(deployment_total{{{SEL}}}[$__rate_interval]))", "{{status}}")),
    timeseries("Deployment duration", "Time from DEPLOYING to a terminal status: p50, p95, p99 (5-minute rates).", "s",
               *quantiles("job_instance:deployment_duration_seconds_bucket:rate5m")),
    timeseries("Time per ring (p95)", "How long deployments stay in a ring before leaving it (1-hour rates).", "s",
               (f"histogram_quantile(0.95, sum by (le, ring) (job_instance:ring_duration_seconds_bucket:rate1h{{{SEL}}}))", "{{ring}}")),
    timeseries("Promotions and blocks by ring", "Promotion attempts out of each ring by result, per second.", "ops",
               (f"sum by (from_ring, status) (rate(ring_promotion_total{{{SEL}}}[$__rate_interval]))", "{{status}} from {{from_ring}}")),
    timeseries("Gate success rate against its threshold", "Success rate the latest gate evaluation saw in each ring, and the rate the ring's policy requires.", "percentunit",
               (f"max by (ring) (promotion_gate_success_rate{{{SEL}}})", "{{ring}}"),
               (f"max by (ring) (promotion_gate_threshold{{{SEL}}})", "{{ring}} threshold")),
    timeseries("Failing gate checks by kind", "Gate checks that failed, by kind, per second: which check blocks promotions.", "ops",
               (f'sum by (check) (rate(promotion_gate_checks_total{{{SEL}, result="fail"}}[$__rate_interval]))', "{{check}}")),
    timeseries("Stop-the-line pauses by alert", "Deploying deployments paused by a firing alert (Alertmanager's webhook), by alert name.", "short",
               (f"sum by (alertname) (increase(stop_the_line_pauses_total{{{SEL}}}[$__rate_interval]))", "{{alertname}}")),
    timeseries("Controller actions", "Automatic promotions, rollbacks and stall flags by outcome, per second.", "ops",
               (f"sum by (action, status) (rate(controller_actions_total{{{SEL}}}[$__rate_interval]))", "{{action}} {{status}}")),
    heatmap("Risk score distribution", "Risk scores of created deployments (1-hour rates per bucket).", "short",
            (f"sum by (le) (job_instance:risk_score_distribution_bucket:rate1h{{{SEL}}})", "{{le}}")),
])

CONNECTORS = dashboard("eucora-connectors", "EUCORA Connectors",
    "Execution-plane connectors: health, circuit breakers, latency and errors of the calls made to them.", [
    stat("Connector health", "1 while connectors of the type pass their health probe, 0 when they fail it.", "short",
         (f"min by (connector_type) (connector_health{{{SEL}}})", "{{connector_type}}")),
    state_timeline("Circuit breaker state", "0 closed, 1 open (calls fail fast), 2 half open (one trial call).", "short",
                   (f"max by (service, connector_type) (circuit_breaker_state{{{SEL}}})", "{{service}}")),
    timeseries("Operation latency p99 by operation", "99th percentile duration of connector calls by operation (5-minute rates).", "s",
               (f"histogram_quantile(0.99, sum by (le, operation) (job_instance:connector_operation_duration_seconds_bucket:rate5m{{{SEL}}}))", "{{operation}}")),
    timeseries("Operation error ratio by operation", "Share of connector calls that failed, by operation.", "percentunit",
               (f'sum by (operation) (rate(connector_operation_duration_seconds_count{{{SEL}, status="failure"}}[$__rate_interval])) / sum by (operation) (rate(connector_operation_duration_seconds_count{{{SEL}}}[$__rate_interval]))', "{{operation}}")),
    timeseries("Failures by error type", "Connector call failures counted by the breakers, by connector and error type, per second.", "ops",
               (f"sum by (service, error_type) (rate(circuit_breaker_failures_total{{{SEL}}}[$__rate_interval]))", "{{service}} {{error_type}}")),
])

SLO_SEL = 'job=~"$job", sloth_slo=~"$slo"'
SLO_VARIABLE = query_var("slo", "SLO", "label_values(slo:objective:ratio, sloth_slo)", True)
SLO = dashboard("eucora-slo", "EUCORA SLOs",
    "gRPC availability (99.9 % without server faults) and latency (99 % within 0.25 s) over 30 days: objective, SLI, budget, burn rates.", [
    stat("Objective", "The share of good calls each SLO promises over 30 days.", "percentunit",
         ('max by (sloth_slo) (slo:objective:ratio{sloth_slo=~"$slo"})', "{{sloth_slo}}")),
    stat("SLI now (error ratio, 5m)", "Share of bad calls over the last 5 minutes.", "percentunit",
         (f"max by (sloth_slo) (slo:sli_error:ratio_rate5m{{{SLO_SEL}}})", "{{sloth_slo}}")),
    stat("Error ratio over 30 days", "Share of bad calls over the SLO period.", "percentunit",
         (f"max by (sloth_slo) (slo:sli_error:ratio_rate30d{{{SLO_SEL}}})", "{{sloth_slo}}")),
    stat("Error budget remaining", "Share of the 30-day error budget not yet spent (negative: overspent).", "percentunit",
         (f"min by (sloth_slo) (slo:period_error_budget_remaining:ratio{{{SLO_SEL}}})", "{{sloth_slo}}")),
    timeseries("Burn rate by window", "How many times faster than sustainable each window spends the budget (1 = exactly the budget).", "short",
               *[(f"max by (sloth_slo) (slo:sli_error:ratio_rate{w}{{{SLO_SEL}}}) / on(sloth_slo) group_left max by (sloth_slo) (slo:error_budget:ratio{{sloth_slo=~\"$slo\"}})", f"{{{{sloth_slo}}}} {w}")
                 for w in ("5m", "1h", "6h", "1d", "3d")]),
], extra_variables=(SLO_VARIABLE,))

GRPC = dashboard("eucora-grpc", "EUCORA gRPC",
    "The gRPC API: call rate by method, errors by status code, latency by method.", [
    timeseries("Call rate by method", "Calls per second by service and method (streams count when they end).", "reqps",
               (f"sum by (rpc_service, rpc_method) (rate(rpc_server_calls_total{{{SEL}}}[$__rate_interval]))", "{{rpc_service}}/{{rpc_method}}")),
    timeseries("Errors by code", "Calls that did not end OK, per second, by gRPC status code.", "reqps",
               (f'sum by (rpc_grpc_status_code) (rate(rpc_server_calls_total{{{SEL}, rpc_grpc_status_code!="0"}}[$__rate_interval]))', "code {{rpc_grpc_status_code}}")),
    timeseries("Latency p99 by method", "99th percentile call duration by method (5-minute rates; streams last as long as they are open).", "s",
               (f"histogram_quantile(0.99, sum by (le, rpc_method) (job_instance:rpc_server_call_duration_seconds_bucket:rate5m{{{SEL}}}))", "{{rpc_method}}")),
    timeseries("Database connections", "Connections of the database pool by state.", "short",
               (f"max by (state) (db_connection_pool_size{{{SEL}}})", "{{state}}")),
    state_timeline("Lease holders by replica", "Which replica runs each background duty (1 holds the lease); exactly one per lease, changing hands when its holder dies.", "short",
                   (f"max by (instance, lease) (coordination_lease_held{{{SEL}}})", "{{lease}} on {{instance}}")),
    state_timeline("Coordination Redis by replica", "1 while a replica reaches its Redis; 0: its breakers are its own and other replicas' events arrive by polling.", "short",
                   (f"min by (instance) (coordination_redis_up{{{SEL}}})", "{{instance}}")),
])

DASHBOARDS = {"operations": OPERATIONS, "connectors": CONNECTORS, "slo": SLO, "grpc": GRPC}


def render(board) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, board in DASHBOARDS.items():
        path = OUT / f"{name}.json"
        text = render(board)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"grafana: {', '.join(stale)} differ from grafana/generate.py; run it and commit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
