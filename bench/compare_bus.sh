#!/usr/bin/env bash
# Runs the Python asyncio baseline bus and `pulse bench bus` on the same workload, one
# after the other in one run, and prints both JSON results and the throughput ratio.
#
#   bench/compare_bus.sh [--events N] [--subscribers S] [--payload-bytes B] [--rate R]
#
# PULSE (default: target/release/pulse, built if missing) picks the binary; PYTHON
# (default: python3) the interpreter. Extra pulse flags go in PULSE_FLAGS.
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
python_json="$("$python" bench/python_bus/bench.py "${workload[@]}")"
# shellcheck disable=SC2086 # PULSE_FLAGS is a list of flags
pulse_json="$("$pulse" bench bus "${workload[@]}" ${PULSE_FLAGS:-} --json)"
echo "python: $python_json"
echo "pulse:  $pulse_json"
"$python" - "$python_json" "$pulse_json" <<'PY'
import json, sys
py, pu = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"events/s      python {py['events_per_s']:>14,.0f}   pulse {pu['events_per_s']:>14,.0f}   ratio {pu['events_per_s'] / py['events_per_s']:.1f}x")
print(f"deliveries/s  python {py['deliveries_per_s']:>14,.0f}   pulse {pu['deliveries_per_s']:>14,.0f}")
for key in ("p50_us", "p99_us", "p999_us", "peak_rss_mb"):
    print(f"{key:<13} python {py[key]:>14,.1f}   pulse {pu[key]:>14,.1f}")
PY
