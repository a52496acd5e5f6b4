#!/usr/bin/env python3
"""Pulse vs DuckDB vs pandas on the same generated file, in one run.

Generates readings with `pulse gen readings` (CSV), then aggregates them into 5-minute
windows three ways — `pulse aggregate`, DuckDB SQL with exact quantiles
(duckdb_agg.py) and a pandas implementation of the original design (pandas_agg.py) —
each in its own process, measuring wall time, CPU time and peak RSS. Checks that the
three agree (same keys and counts; sum, avg, min and max within 1e-9; Pulse's
p50/p95/p99 within 1 % of the exact order statistic of rank floor(q(n-1)), from pandas)
and prints the ratios.

usage: bench/.venv/bin/python bench/aggregate/compare.py [--users 105 --days 6] [--keep DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def measure(cmd):
    """Runs cmd; returns (wall seconds, cpu seconds, peak RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed: {err or out}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.strip()


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            rows[(r["user_id"], r["metric"], r["window_start"])] = r
    return rows


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check(pulse, duck, pandas):
    """Problems found comparing Pulse's rows with DuckDB's and pandas' (first ten)."""
    if set(pulse) != set(duck) or set(pulse) != set(pandas):
        return [f"key sets differ: pulse {len(pulse)}, duckdb {len(duck)}, pandas {len(pandas)}"]
    problems = []
    bad_q = 0
    for k, p in pulse.items():
        for other, name in ((duck[k], "duckdb"), (pandas[k], "pandas")):
            if p["count"] != other["count"]:
                problems.append(f"{k}: count {p['count']} vs {name} {other['count']}")
            for f in ("sum", "min", "max", "avg"):
                if not close(p[f], other[f]):
                    problems.append(f"{k}: {f} {p[f]} vs {name} {other[f]}")
        # pandas' interpolation="lower" is the order statistic of rank floor(q(n-1)), the
        # one Pulse estimates. (DuckDB's quantile_disc picks a neighbouring rank for some n.)
        for q in ("p50", "p95", "p99"):
            exact = pandas[k][q]
            if abs(p[q] - exact) > 0.01 * abs(exact):
                bad_q += 1
    if bad_q:
        problems.append(f"{bad_q} quantiles outside 1% of the exact order statistic")
    return problems[:10]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=105)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--pulse", default=str(ROOT / "target" / "release" / "pulse"))
    ap.add_argument("--keep", help="directory for the input and outputs (default: temporary)")
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pulse-agg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "readings.csv"
    _, _, _, gen = measure([args.pulse, "gen", "readings", "--users", str(args.users), "--days",
                            str(args.days), "--output", str(src), "--seed", "1"])
    print(f"input: {gen} ({src.stat().st_size / 1e6:.0f} MB), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    runs = {
        "pulse": [args.pulse, "aggregate", "--input", str(src), "--window", "5m",
                  "--output", str(work / "pulse.jsonl")],
        "duckdb": [sys.executable, str(HERE / "duckdb_agg.py"), str(src), str(work / "duckdb.jsonl")],
        "pandas": [sys.executable, str(HERE / "pandas_agg.py"), str(src), str(work / "pandas.jsonl")],
    }
    if args.skip_pandas:
        del runs["pandas"]
    results = {}
    for name, cmd in runs.items():
        results[name] = measure(cmd)
        wall, cpu, rss, _ = results[name]
        print(f"  {name:7} {wall:7.2f} s wall {cpu:7.2f} s cpu {rss:8.0f} MiB peak", flush=True)

    outputs = {name: load(work / f"{name}.jsonl") for name in runs}
    problems = check(outputs["pulse"], outputs["duckdb"], outputs.get("pandas", outputs["duckdb"]))
    print("agreement:", "all rows agree" if not problems else "; ".join(problems))

    base_wall, base_cpu, base_rss, _ = results["pulse"]
    print(f"\n| tool | wall s | cpu s | peak RSS MiB | wall vs Pulse | RSS vs Pulse |")
    print("|---|---|---|---|---|---|")
    for name, (wall, cpu, rss, _) in results.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {wall / base_wall:.1f}x | {rss / base_rss:.1f}x |")
    print(f"\nrows out: {len(outputs['pulse'])}; files in {work}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
