#!/usr/bin/env python3
"""Writes bench/RESULTS.md from bench/run's measurements (JSON lines on stdin's file)."""

import json
import os
import platform
import subprocess
import sys

TARGETS = {  # ratio to the same server's health rate (DESIGN's targets)
    ("sqlite", "create"): 0.25, ("postgresql", "create"): 0.15,
    ("sqlite", "get"): 0.6, ("postgresql", "get"): 0.6,
    ("sqlite", "list"): 0.2, ("postgresql", "list"): 0.2,
}


def main() -> int:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    duration = sys.argv[2]
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("# Benchmark results\n")
    print(f"Written by `make bench` (bench/run) at `{commit}` (`-dirty`: plus the changes committed with this file) "
          f"on {platform.node()}: "
          f"{os.cpu_count()} × {cpu}, Linux {platform.release()}. Release build, the load tool "
          f"(`eucora-load`, 64 calls in flight over 4 HTTP/2 connections, {duration} per RPC) on the same machine, "
          "a fresh server and database per backend. Ratios are to the same server's grpc.health Check rate "
          "in the same run (one run: on this shared 2-core VM the health rate itself varies by up to 2× between "
          "runs, so compare calls/s and CPU per call too); targets from the README.\n")
    print("`promote` and `rollout` drive whole rollouts (create, start, read until the simulator's outcome is in, "
          "report, promote, complete): their server CPU per call is over all the run's calls, and the simulator's "
          "50 ms per connector call bounds how fast a worker's deployment can move.\n")
    print("Reproduce one line: `eucora-load --rpc create --concurrency 64 --connections 4 --duration 10s "
          "--server-pid <pid> --json` against `eucora serve --dev-auth --simulator-connectors --rate-limit 0`.\n")
    for backend in ("sqlite", "postgresql"):
        mine = [r for r in rows if r["backend"] == backend]
        health = next((r["rate"] for r in mine if r["rpc"] == "health"), None)
        startup = next((r["startup_ms"] for r in mine if r["rpc"] == "startup"), None)
        print(f"## {'SQLite' if backend == 'sqlite' else 'PostgreSQL'}\n")
        print(f"Cold start to SERVING: {startup} ms (target ≤ 200 ms).\n")
        print("| RPC | calls/s | × health | target | p50 ms | p99 ms | server CPU µs/call | peak RSS MiB | errors |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---|")
        for r in mine:
            if r["rpc"] == "startup":
                continue
            ratio = r["rate"] / health if health else float("nan")
            target = TARGETS.get((backend, r["rpc"]))
            verdict = "" if target is None else f"≥ {target} {'met' if ratio >= target else 'missed'}"
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
            print(f"| {r['rpc']} | {r['rate']:.0f} | {ratio:.3f} | {verdict} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                  f"| {r['server_cpu_us_per_call'] or 0:.0f} | {r['server_peak_rss_mib'] or 0:.1f} | {errors} |")
        print()
        phased = next((r for r in mine if r.get("scrape")), None)
        if phased:
            s = phased["scrape"]
            print(f"Scrape under load: one create run of {phased['seconds']:.0f} s alternating {s['phase_seconds']} s "
                  f"phases without scrapes and with /metrics scraped every second ({s['scrapes']} scrapes, "
                  f"{s['scrape_ms_mean']:.1f} ms each on average): p99 {s['quiet']['p99_ms']:.2f} ms over "
                  f"{s['quiet']['calls']} calls started in quiet phases, {s['scraped']['p99_ms']:.2f} ms over "
                  f"{s['scraped']['calls']} in scraped ones: {s['p99_change_percent']:+.1f} % (target ≤ +5 %; "
                  f"the quiet phases' two halves differ by {s['quiet_p99_spread_percent']:.1f} %, "
                  "the noise to read it against).\n")
        for r in mine:
            if r.get("by_rpc") and r["rpc"] in ("promote", "rollout"):
                calls = ", ".join(f"{name} {f['rate']:.0f}/s (p99 {f['p99_ms']:.1f} ms)" for name, f in r["by_rpc"].items())
                print(f"Calls of the `{r['rpc']}` run: {calls}.\n")
    analysis = os.path.join(os.path.dirname(__file__), "analysis.md")
    if os.path.exists(analysis):
        print(open(analysis).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
