//! Synthetic readings for demos, tests and benchmarks (`pulse gen readings`).
//!
//! Each user gets a profile (resting heart rate, activity, preferred unit spellings, a
//! clock offset some devices report in); each day a heart-rate reading about every minute
//! on a circadian curve that rises during step bursts, steps in bursts during waking
//! hours, and a few blood-pressure, glucose, SpO2, temperature, respiratory-rate, weight
//! and sleep readings. About 2 % of readings arrive late (minutes to hours), so the file,
//! ordered by arrival, is slightly out of order. The same seed gives the same file.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::catalog::Metric;
use crate::source::file::FileFormat;
use crate::time::{push_rfc3339, Micros, MICROS_PER_SEC};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Number of users.
    pub users: u32,
    /// Number of days.
    pub days: u32,
    /// Random seed.
    pub seed: u64,
    /// First day, as days since 1970-01-01 (UTC midnight).
    pub start_day: i64,
    /// CSV or JSONL.
    pub format: FileFormat,
}

struct Profile {
    id: String,
    resting_hr: f64,
    activity: f64,
    offset_secs: i64,
    local_offset_text: bool,
    glucose_mg: bool,
    hr_unit: &'static str,
    step_unit: &'static str,
    temp_unit: &'static str,
    spo2_unit: &'static str,
    sleep_hours: bool,
    weight: f64,
}

struct Item {
    arrival: Micros,
    user: u32,
    metric: Metric,
    value: f64,
    unit: &'static str,
    at: Micros,
    source: &'static str,
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn normal(rng: &mut fastrand::Rng) -> f64 {
    // Irwin–Hall with 12 uniforms: mean 0, variance 1, good enough for synthetic noise.
    (0..12).map(|_| rng.f64()).sum::<f64>() - 6.0
}

fn profile(seed: u64, user: u32) -> Profile {
    let mut rng = fastrand::Rng::with_seed(seed ^ (u64::from(user) << 20) ^ 0x5eed);
    Profile {
        id: format!("user-{user:05}"),
        resting_hr: 55.0 + rng.f64() * 20.0,
        activity: 0.5 + rng.f64(),
        offset_secs: i64::from(rng.i32(-3..=3)) * 3600,
        local_offset_text: rng.u8(..10) == 0,
        glucose_mg: rng.u8(..10) < 4,
        hr_unit: pick(&mut rng, &["bpm", "bpm", "/min", "beats/min", ""]),
        step_unit: pick(&mut rng, &["count", "steps", "{steps}", ""]),
        temp_unit: pick(&mut rng, &["°C", "degC", "Cel"]),
        spo2_unit: pick(&mut rng, &["%", "percent"]),
        sleep_hours: rng.u8(..5) == 0,
        weight: 50.0 + rng.f64() * 50.0,
    }
}

fn day_items(cfg: &GenConfig, p: &Profile, user: u32, day: i64, out: &mut Vec<Item>) {
    let mut rng = fastrand::Rng::with_seed(cfg.seed ^ (u64::from(user) << 24) ^ (day as u64) << 1);
    let day_start = day * 86_400 * MICROS_PER_SEC;
    // Local hour h of this user's day starts at UTC day_start + h*3600 - offset.
    let local =
        |secs: f64| day_start + ((secs - p.offset_secs as f64) * MICROS_PER_SEC as f64) as i64;
    let mut push = |rng: &mut fastrand::Rng,
                    metric: Metric,
                    value: f64,
                    unit: &'static str,
                    at: Micros,
                    source: &'static str| {
        let late = match rng.u8(..100) {
            0 => i64::from(rng.u32(60..3600)) * MICROS_PER_SEC,
            1 => i64::from(rng.u32(3600..6 * 3600)) * MICROS_PER_SEC,
            _ => i64::from(rng.u32(0..5)) * MICROS_PER_SEC,
        };
        out.push(Item {
            arrival: at + late,
            user,
            metric,
            value,
            unit,
            at,
            source,
        });
    };
    // Step bursts during waking hours (07:00-22:00 local).
    let bursts = rng.usize(3..=(3.0 + 6.0 * p.activity) as usize);
    let mut active: Vec<(f64, f64)> = Vec::with_capacity(bursts);
    for _ in 0..bursts {
        let start = 7.0 * 3600.0 + rng.f64() * 14.5 * 3600.0;
        let minutes = rng.u32(5..=40);
        active.push((start, start + f64::from(minutes) * 60.0));
        for m in 0..minutes {
            let at = local(start + f64::from(m) * 60.0);
            let steps = (60.0 + rng.f64() * 70.0 * p.activity).round();
            push(&mut rng, Metric::Steps, steps, p.step_unit, at, "phone");
        }
    }
    // Heart rate about every minute, circadian, higher while walking.
    let mut t = rng.f64() * 30.0;
    while t < 86_400.0 {
        let hour = t / 3600.0;
        let circadian = -6.0 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos();
        let asleep = !(6.5..23.0).contains(&hour);
        let walking = active.iter().any(|(s, e)| (*s..*e).contains(&t));
        let mut hr =
            p.resting_hr + circadian + if asleep { -6.0 } else { 4.0 } + normal(&mut rng) * 3.0;
        if walking {
            hr += 25.0 + rng.f64() * 20.0;
        }
        push(
            &mut rng,
            Metric::HeartRate,
            hr.round(),
            p.hr_unit,
            local(t),
            "watch",
        );
        t += 50.0 + rng.f64() * 20.0;
    }
    // A few spot measurements.
    for hour in [7.5, 19.0] {
        let at = local(hour * 3600.0 + rng.f64() * 1800.0);
        let sys = (118.0 + normal(&mut rng) * 9.0).round();
        let dia = (77.0 + normal(&mut rng) * 6.0).round();
        push(
            &mut rng,
            Metric::BloodPressureSystolic,
            sys,
            "mmHg",
            at,
            "cuff",
        );
        push(
            &mut rng,
            Metric::BloodPressureDiastolic,
            dia,
            "mm[Hg]",
            at,
            "cuff",
        );
    }
    for hour in [7.0, 12.5, 18.5, 22.0] {
        let at = local(hour * 3600.0 + rng.f64() * 1200.0);
        let mmol = 5.4 + normal(&mut rng) * 1.1;
        if p.glucose_mg {
            push(
                &mut rng,
                Metric::BloodGlucose,
                (mmol * 18.016).round(),
                "mg/dL",
                at,
                "meter",
            );
        } else {
            push(
                &mut rng,
                Metric::BloodGlucose,
                (mmol * 10.0).round() / 10.0,
                "mmol/L",
                at,
                "meter",
            );
        }
    }
    for hour in [8.0, 14.0, 21.0] {
        let at = local(hour * 3600.0 + rng.f64() * 3600.0);
        let spo2 = (97.5 + normal(&mut rng) * 1.0).clamp(88.0, 100.0).round();
        push(&mut rng, Metric::Spo2, spo2, p.spo2_unit, at, "watch");
        let rr = (15.0 + normal(&mut rng) * 2.0).round();
        push(&mut rng, Metric::RespiratoryRate, rr, "/min", at, "watch");
    }
    for hour in [7.2, 20.0] {
        let at = local(hour * 3600.0 + rng.f64() * 1800.0);
        let temp = ((36.7 + normal(&mut rng) * 0.3) * 10.0).round() / 10.0;
        push(
            &mut rng,
            Metric::BodyTemperature,
            temp,
            p.temp_unit,
            at,
            "thermometer",
        );
    }
    let at = local(7.1 * 3600.0 + rng.f64() * 600.0);
    let weight = ((p.weight + normal(&mut rng) * 0.4) * 10.0).round() / 10.0;
    push(&mut rng, Metric::BodyWeight, weight, "kg", at, "scale");
    let sleep_min = (420.0 + normal(&mut rng) * 50.0).round();
    if p.sleep_hours {
        push(
            &mut rng,
            Metric::SleepDuration,
            (sleep_min / 6.0).round() / 10.0,
            "h",
            at,
            "watch",
        );
    } else {
        push(
            &mut rng,
            Metric::SleepDuration,
            sleep_min,
            "min",
            at,
            "watch",
        );
    }
}

fn push_time(line: &mut String, p: &Profile, at: Micros) {
    // Millisecond precision, as devices send; some users' devices send local time with offset.
    let at = at - at.rem_euclid(1000);
    if !p.local_offset_text {
        push_rfc3339(line, at);
        if at % MICROS_PER_SEC != 0 {
            // Trim microseconds to milliseconds: "...SS.mmm000Z" -> "...SS.mmmZ".
            line.truncate(line.len() - 4);
            line.push('Z');
        }
        return;
    }
    let mut text = String::new();
    push_rfc3339(&mut text, at + p.offset_secs * MICROS_PER_SEC);
    text.pop();
    line.push_str(&text);
    let sign = if p.offset_secs < 0 { '-' } else { '+' };
    let _ = write!(line, "{sign}{:02}:00", p.offset_secs.abs() / 3600);
}

fn write_item(line: &mut String, format: FileFormat, p: &Profile, item: &Item) {
    match format {
        FileFormat::Csv => {
            let _ = write!(
                line,
                "{},{},{},{},",
                p.id,
                item.metric.name(),
                item.value,
                item.unit
            );
            push_time(line, p, item.at);
            let _ = writeln!(line, ",{}", item.source);
        }
        FileFormat::Jsonl => {
            let _ = write!(
                line,
                "{{\"user_id\":\"{}\",\"metric\":\"{}\",\"value\":{},\"unit\":\"{}\",\"recorded_at\":\"",
                p.id,
                item.metric.name(),
                item.value,
                item.unit
            );
            push_time(line, p, item.at);
            let _ = writeln!(line, "\",\"source\":\"{}\"}}", item.source);
        }
    }
}

/// Writes the readings; returns how many.
pub fn generate(cfg: &GenConfig, out: &mut impl Write) -> io::Result<u64> {
    let profiles: Vec<Profile> = (0..cfg.users).map(|u| profile(cfg.seed, u)).collect();
    if cfg.format == FileFormat::Csv {
        out.write_all(b"user_id,metric,value,unit,recorded_at,source\n")?;
    }
    let mut pending: Vec<Item> = Vec::new();
    let mut line = String::with_capacity(1 << 16);
    let mut rows = 0u64;
    for d in 0..i64::from(cfg.days) {
        let day = cfg.start_day + d;
        for (user, p) in profiles.iter().enumerate() {
            day_items(cfg, p, user as u32, day, &mut pending);
        }
        // Emit in arrival order what has arrived by the end of this day; late readings
        // that arrive tomorrow wait in `pending`.
        pending.sort_unstable_by_key(|i| (i.arrival, i.user, i.metric));
        let cutoff = if d + 1 == i64::from(cfg.days) {
            Micros::MAX
        } else {
            (day + 1) * 86_400 * MICROS_PER_SEC
        };
        let split = pending.partition_point(|i| i.arrival < cutoff);
        for item in pending.drain(..split) {
            write_item(&mut line, cfg.format, &profiles[item.user as usize], &item);
            rows += 1;
            if line.len() >= 1 << 16 {
                out.write_all(line.as_bytes())?;
                line.clear();
            }
        }
    }
    out.write_all(line.as_bytes())?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(seed: u64, format: FileFormat) -> Vec<u8> {
        let cfg = GenConfig {
            users: 3,
            days: 2,
            seed,
            start_day: 20_000,
            format,
        };
        let mut out = Vec::new();
        let _ = generate(&cfg, &mut out);
        out
    }

    #[test]
    fn deterministic_for_a_seed() {
        assert_eq!(gen(7, FileFormat::Csv), gen(7, FileFormat::Csv));
        assert_ne!(gen(7, FileFormat::Csv), gen(8, FileFormat::Csv));
        let text = String::from_utf8(gen(7, FileFormat::Jsonl)).unwrap_or_default();
        let lines = text.lines().count();
        // About 1,600 readings per user and day.
        assert!((3 * 2 * 1200..3 * 2 * 2200).contains(&lines), "{lines}");
        for line in text.lines().take(50) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{line}"
            );
        }
    }
}
