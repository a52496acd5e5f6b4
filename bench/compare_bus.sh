#!/usr/bin/env bash
# Runs the Python asyncio baseline bus and `pulse bench bus` on the same workload, one
# after the other in one run, and prints both JSON results and the throughput ratio.
#
#   bench/compare_bus.sh [--events N] [--subscribers S] [--payload-bytes B] [--rate R]
#
# PULSE (default: target/release/pulse, built if missing) picks the binary; PYTHON
# (default: python3) the interpreter. Extra pulse flags go in PULSE_FLAGS. Pulse runs once
# per entry of THREADS (default "2 1"): on a two-worker runtime, and on one thread like the
# asyncio baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

events=1000000
subscribers=1
payload=256
rate=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --subscribers) subscribers="$2"; shift 2 ;;
    --payload-bytes) payload="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

pulse="${PULSE:-target/release/pulse}"
python="${PYTHON:-python3}"
if [[ ! -x "$pulse" ]]; then
  cargo build --release -p pulse-cli >&2
fi

workload=(--events "$events" --subscribers "$subscribers" --payload-bytes "$payload")
if [[ -n "$rate" ]]; then
  workload+=(--rate "$rate")
fi

echo "workload: ${workload[*]} (no-op handlers); machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086 # PULSE_FLAGS is a list of flags
"$python" - "$python" "$pulse" "${PULSE_FLAGS:-}" "${THREADS:-2 1}" "${workload[@]}" <<'PY'
"""Runs both benchmarks as child processes and also reports events per CPU-second
(user + system time of each child), which a busy shared machine distorts less than
wall-clock rates."""
import json, resource, subprocess, sys

python, pulse, pulse_flags = sys.argv[1], sys.argv[2], sys.argv[3].split()
threads, workload = sys.argv[4].split(), sys.argv[5:]

def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(out.strip().splitlines()[-1])
    result["cpu_s"] = cpu
    return result

py = run([python, "bench/python_bus/bench.py", *workload])
print("python:", json.dumps(py))
events = py["events"]
for n in threads:
    pu = run([pulse, "bench", "bus", *workload, "--threads", n, *pulse_flags, "--json"])
    print(f"\npulse, {n} thread(s):", json.dumps(pu))
    print(f"events/s        python {py['events_per_s']:>14,.0f}   pulse {pu['events_per_s']:>14,.0f}   ratio {pu['events_per_s'] / py['events_per_s']:.1f}x")
    if not py.get("rate"):  # at an offered rate both sides spin while pacing
        py_cpu_rate, pu_cpu_rate = events / py["cpu_s"], events / pu["cpu_s"]
        print(f"events/CPU-s    python {py_cpu_rate:>14,.0f}   pulse {pu_cpu_rate:>14,.0f}   ratio {pu_cpu_rate / py_cpu_rate:.1f}x")
    print(f"deliveries/s    python {py['deliveries_per_s']:>14,.0f}   pulse {pu['deliveries_per_s']:>14,.0f}")
    for key in ("p50_us", "p99_us", "p999_us", "peak_rss_mb"):
        print(f"{key:<15} python {py[key]:>14,.1f}   pulse {pu[key]:>14,.1f}")
if not py.get("rate"):
    print("(flat out, Pulse's latency includes the wait in its bounded queues while the baseline "
          "runs each handler inside publish; compare latencies with --rate)")
PY
