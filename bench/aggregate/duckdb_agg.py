#!/usr/bin/env python3
"""DuckDB running the SQL equivalent of `pulse aggregate --window 5m` with exact quantiles.

Same input file, same rules as Pulse's catalog: unit aliases and conversions (glucose
mg/dL -> mmol/L, sleep h -> min, ...), plausible ranges, RFC 3339 times with offsets,
5-minute windows aligned to the epoch in UTC, rows sorted by key, JSON lines out.
Quantiles are exact order statistics (quantile_disc), not sketches.

usage: duckdb_agg.py INPUT.csv OUTPUT.jsonl [THREADS]
"""
import sys

import duckdb

SQL = r"""
CREATE TEMP TABLE catalog (metric VARCHAR, unit VARCHAR, lo DOUBLE, hi DOUBLE);
INSERT INTO catalog VALUES
  ('heart_rate', '/min', 20, 300), ('steps', '{steps}', 0, 100000),
  ('blood_pressure_systolic', 'mm[Hg]', 40, 300), ('blood_pressure_diastolic', 'mm[Hg]', 20, 200),
  ('blood_glucose', 'mmol/L', 0.5, 60), ('spo2', '%', 40, 100), ('body_temperature', 'Cel', 25, 45),
  ('respiratory_rate', '/min', 2, 80), ('body_weight', 'kg', 0.5, 650), ('sleep_duration', 'min', 0, 1440);
CREATE TEMP TABLE units (metric VARCHAR, spelling VARCHAR, factor DOUBLE, "offset" DOUBLE);
INSERT INTO units VALUES
  ('heart_rate','/min',1,0),('heart_rate','bpm',1,0),('heart_rate','beats/min',1,0),('heart_rate','',1,0),
  ('respiratory_rate','/min',1,0),('respiratory_rate','',1,0),
  ('steps','{steps}',1,0),('steps','steps',1,0),('steps','count',1,0),('steps','',1,0),
  ('blood_pressure_systolic','mmHg',1,0),('blood_pressure_systolic','mm[Hg]',1,0),('blood_pressure_systolic','',1,0),
  ('blood_pressure_diastolic','mmHg',1,0),('blood_pressure_diastolic','mm[Hg]',1,0),('blood_pressure_diastolic','',1,0),
  ('blood_glucose','mmol/L',1,0),('blood_glucose','mg/dL',1/18.016,0),('blood_glucose','',1,0),
  ('spo2','%',1,0),('spo2','percent',1,0),('spo2','',1,0),
  ('body_temperature','Cel',1,0),('body_temperature','°C',1,0),('body_temperature','degC',1,0),('body_temperature','',1,0),
  ('body_weight','kg',1,0),('body_weight','',1,0),
  ('sleep_duration','min',1,0),('sleep_duration','h',60,0),('sleep_duration','',1,0);
COPY (
  WITH raw AS (
    SELECT * FROM read_csv('{input}', header = true, all_varchar = true)
  ), valid AS (
    SELECT r.user_id, r.metric, c.unit,
           TRY_CAST(r.value AS DOUBLE) * u.factor + u."offset" AS v,
           TRY_CAST(r.recorded_at AS TIMESTAMPTZ) AS t
    FROM raw r
    JOIN catalog c ON c.metric = r.metric
    JOIN units u ON u.metric = r.metric AND u.spelling = coalesce(r.unit, '')
  ), kept AS (
    SELECT v.* FROM valid v JOIN catalog c USING (metric)
    WHERE v.t IS NOT NULL AND isfinite(v.v) AND v.v BETWEEN c.lo AND c.hi
  ), agg AS (
    SELECT user_id, metric, any_value(unit) AS unit, '5m' AS "window",
           time_bucket(INTERVAL 5 MINUTE, t, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ws,
           count(*) AS count, sum(v) AS sum, avg(v) AS avg, min(v) AS min, max(v) AS max,
           stddev_samp(v) AS stddev, quantile_disc(v, [0.5, 0.95, 0.99]) AS q
    FROM kept GROUP BY user_id, metric, ws
  )
  SELECT user_id, metric, unit, "window",
         strftime(ws, '%Y-%m-%dT%H:%M:%SZ') AS window_start,
         strftime(ws + INTERVAL 5 MINUTE, '%Y-%m-%dT%H:%M:%SZ') AS window_end,
         count, sum, avg, min, max, stddev, q[1] AS p50, q[2] AS p95, q[3] AS p99
  FROM agg ORDER BY user_id, metric, window_start
) TO '{output}' (FORMAT JSON);
"""


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if len(sys.argv) > 3:
        con.execute(f"SET threads = {int(sys.argv[3])}")
    con.execute(SQL.replace("{input}", src).replace("{output}", dst))


if __name__ == "__main__":
    main()
