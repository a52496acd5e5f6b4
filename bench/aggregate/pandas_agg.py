#!/usr/bin/env python3
"""The original design, in pandas: load the CSV into a DataFrame, validate and convert
units row-wise by metric, bucket times into 5-minute windows, group by (user, metric,
window) and compute count/sum/mean/min/max/std and exact quantiles, write JSON lines.

usage: pandas_agg.py INPUT.csv OUTPUT.jsonl
"""
import sys

import numpy as np
import pandas as pd

CATALOG = {
    "heart_rate": ("/min", 20, 300, {"/min": 1, "bpm": 1, "beats/min": 1, "": 1}),
    "respiratory_rate": ("/min", 2, 80, {"/min": 1, "": 1}),
    "steps": ("{steps}", 0, 100000, {"{steps}": 1, "steps": 1, "count": 1, "": 1}),
    "blood_pressure_systolic": ("mm[Hg]", 40, 300, {"mmHg": 1, "mm[Hg]": 1, "": 1}),
    "blood_pressure_diastolic": ("mm[Hg]", 20, 200, {"mmHg": 1, "mm[Hg]": 1, "": 1}),
    "blood_glucose": ("mmol/L", 0.5, 60, {"mmol/L": 1, "mg/dL": 1 / 18.016, "": 1}),
    "spo2": ("%", 40, 100, {"%": 1, "percent": 1, "": 1}),
    "body_temperature": ("Cel", 25, 45, {"Cel": 1, "°C": 1, "degC": 1, "": 1}),
    "body_weight": ("kg", 0.5, 650, {"kg": 1, "": 1}),
    "sleep_duration": ("min", 0, 1440, {"min": 1, "h": 60, "": 1}),
}


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    df = pd.read_csv(src, dtype={"user_id": str, "metric": str, "unit": str, "recorded_at": str})
    df["unit"] = df["unit"].fillna("")
    factor = pd.Series(
        {(m, u): f for m, (_, _, _, units) in CATALOG.items() for u, f in units.items()}
    )
    keys = pd.MultiIndex.from_arrays([df["metric"], df["unit"]])
    df["v"] = pd.to_numeric(df["value"], errors="coerce") * factor.reindex(keys).to_numpy()
    lo = df["metric"].map({m: c[1] for m, c in CATALOG.items()})
    hi = df["metric"].map({m: c[2] for m, c in CATALOG.items()})
    df["t"] = pd.to_datetime(df["recorded_at"], utc=True, format="ISO8601", errors="coerce")
    ok = df["v"].between(lo, hi) & np.isfinite(df["v"]) & df["t"].notna()
    df = df.loc[ok, ["user_id", "metric", "v", "t"]]
    df["window_start"] = df["t"].dt.floor("5min")
    g = df.groupby(["user_id", "metric", "window_start"], sort=True)["v"]
    out = g.agg(["count", "sum", "mean", "min", "max", "std"])
    for q, name in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")]:
        out[name] = g.quantile(q, interpolation="lower")
    out = out.rename(columns={"mean": "avg", "std": "stddev"}).reset_index()
    out.insert(2, "unit", out["metric"].map({m: c[0] for m, c in CATALOG.items()}))
    out.insert(3, "window", "5m")
    out["window_end"] = (out["window_start"] + pd.Timedelta(minutes=5)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out["window_start"] = out["window_start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    cols = ["user_id", "metric", "unit", "window", "window_start", "window_end", "count", "sum",
            "avg", "min", "max", "stddev", "p50", "p95", "p99"]
    out[cols].to_json(dst, orient="records", lines=True, double_precision=15)


if __name__ == "__main__":
    main()
