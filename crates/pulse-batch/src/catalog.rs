//! The built-in metric catalog: for every metric Pulse aggregates, its canonical unit
//! (UCUM), LOINC code, kind and plausible range, and the unit spellings it accepts.
//!
//! The catalog is a closed `enum` rather than a runtime table so that the hot path works
//! with a one-byte metric id and a `match`, and so that adding a metric is one reviewed
//! change here. Unit conversion is linear (`canonical = value * factor + offset`); an
//! alias is a conversion with factor 1.

use std::fmt;

/// How a metric's readings combine within a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A measurement at an instant (heart rate, blood pressure): averages and percentiles matter.
    Discrete,
    /// An amount accumulated over time (steps, sleep): the sum is the meaningful figure.
    Cumulative,
}

/// A metric of the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Metric {
    /// Heart rate, `/min`.
    HeartRate = 0,
    /// Step count, `{steps}`.
    Steps = 1,
    /// Systolic blood pressure, `mm[Hg]`.
    BloodPressureSystolic = 2,
    /// Diastolic blood pressure, `mm[Hg]`.
    BloodPressureDiastolic = 3,
    /// Blood glucose, `mmol/L`.
    BloodGlucose = 4,
    /// Oxygen saturation, `%`.
    Spo2 = 5,
    /// Body temperature, `Cel`.
    BodyTemperature = 6,
    /// Respiratory rate, `/min`.
    RespiratoryRate = 7,
    /// Body weight, `kg`.
    BodyWeight = 8,
    /// Sleep duration, `min`.
    SleepDuration = 9,
}

/// A linear conversion from a unit spelling to the canonical unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conversion {
    /// Multiplier applied first.
    pub factor: f64,
    /// Added after the multiplication (non-zero only for temperature scales).
    pub offset: f64,
}

impl Conversion {
    const IDENTITY: Conversion = Conversion {
        factor: 1.0,
        offset: 0.0,
    };

    const fn scale(factor: f64) -> Self {
        Conversion {
            factor,
            offset: 0.0,
        }
    }

    /// Converts `value` to the canonical unit.
    #[inline]
    pub fn apply(self, value: f64) -> f64 {
        value * self.factor + self.offset
    }
}

/// Milligrams per decilitre in one millimole per litre of glucose.
pub const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.016;

const IDENTITY: Conversion = Conversion::IDENTITY;

/// Accepted unit spellings per metric. The canonical spelling is always accepted.
const PER_MINUTE: &[(&str, Conversion)] = &[
    ("/min", IDENTITY),
    ("bpm", IDENTITY),
    ("beats/min", IDENTITY),
    ("{beats}/min", IDENTITY),
    ("1/min", IDENTITY),
    ("breaths/min", IDENTITY),
    ("{breaths}/min", IDENTITY),
];
const STEPS: &[(&str, Conversion)] = &[
    ("{steps}", IDENTITY),
    ("steps", IDENTITY),
    ("step", IDENTITY),
    ("count", IDENTITY),
    ("{count}", IDENTITY),
    ("1", IDENTITY),
];
const MM_HG: &[(&str, Conversion)] = &[
    ("mm[Hg]", IDENTITY),
    ("mmHg", IDENTITY),
    ("mmhg", IDENTITY),
    ("mm Hg", IDENTITY),
];
const GLUCOSE: &[(&str, Conversion)] = &[
    ("mmol/L", IDENTITY),
    ("mmol/l", IDENTITY),
    ("mg/dL", Conversion::scale(1.0 / GLUCOSE_MG_DL_PER_MMOL_L)),
    ("mg/dl", Conversion::scale(1.0 / GLUCOSE_MG_DL_PER_MMOL_L)),
];
const PERCENT: &[(&str, Conversion)] = &[("%", IDENTITY), ("percent", IDENTITY), ("pct", IDENTITY)];
const CELSIUS: &[(&str, Conversion)] = &[
    ("Cel", IDENTITY),
    ("°C", IDENTITY),
    ("degC", IDENTITY),
    ("C", IDENTITY),
    ("celsius", IDENTITY),
    (
        "[degF]",
        Conversion {
            factor: 5.0 / 9.0,
            offset: -32.0 * 5.0 / 9.0,
        },
    ),
    (
        "°F",
        Conversion {
            factor: 5.0 / 9.0,
            offset: -32.0 * 5.0 / 9.0,
        },
    ),
    (
        "degF",
        Conversion {
            factor: 5.0 / 9.0,
            offset: -32.0 * 5.0 / 9.0,
        },
    ),
];
const KILOGRAM: &[(&str, Conversion)] = &[
    ("kg", IDENTITY),
    ("g", Conversion::scale(0.001)),
    ("[lb_av]", Conversion::scale(0.453_592_37)),
    ("lb", Conversion::scale(0.453_592_37)),
    ("lbs", Conversion::scale(0.453_592_37)),
];
const MINUTES: &[(&str, Conversion)] = &[
    ("min", IDENTITY),
    ("minutes", IDENTITY),
    ("h", Conversion::scale(60.0)),
    ("hours", Conversion::scale(60.0)),
    ("s", Conversion::scale(1.0 / 60.0)),
];

impl Metric {
    /// Every metric, in id order.
    pub const ALL: [Metric; 10] = [
        Metric::HeartRate,
        Metric::Steps,
        Metric::BloodPressureSystolic,
        Metric::BloodPressureDiastolic,
        Metric::BloodGlucose,
        Metric::Spo2,
        Metric::BodyTemperature,
        Metric::RespiratoryRate,
        Metric::BodyWeight,
        Metric::SleepDuration,
    ];

    /// The metric's name as readings spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::Steps => "steps",
            Metric::BloodPressureSystolic => "blood_pressure_systolic",
            Metric::BloodPressureDiastolic => "blood_pressure_diastolic",
            Metric::BloodGlucose => "blood_glucose",
            Metric::Spo2 => "spo2",
            Metric::BodyTemperature => "body_temperature",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::BodyWeight => "body_weight",
            Metric::SleepDuration => "sleep_duration",
        }
    }

    /// The canonical unit (UCUM); aggregates are always in this unit.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::HeartRate | Metric::RespiratoryRate => "/min",
            Metric::Steps => "{steps}",
            Metric::BloodPressureSystolic | Metric::BloodPressureDiastolic => "mm[Hg]",
            Metric::BloodGlucose => "mmol/L",
            Metric::Spo2 => "%",
            Metric::BodyTemperature => "Cel",
            Metric::BodyWeight => "kg",
            Metric::SleepDuration => "min",
        }
    }

    /// The LOINC code.
    pub const fn loinc(self) -> &'static str {
        match self {
            Metric::HeartRate => "8867-4",
            Metric::Steps => "55423-8",
            Metric::BloodPressureSystolic => "8480-6",
            Metric::BloodPressureDiastolic => "8462-4",
            Metric::BloodGlucose => "2339-0",
            Metric::Spo2 => "59408-5",
            Metric::BodyTemperature => "8310-5",
            Metric::RespiratoryRate => "9279-1",
            Metric::BodyWeight => "29463-7",
            Metric::SleepDuration => "93832-4",
        }
    }

    /// Discrete or cumulative.
    pub const fn kind(self) -> Kind {
        match self {
            Metric::Steps | Metric::SleepDuration => Kind::Cumulative,
            _ => Kind::Discrete,
        }
    }

    /// The inclusive range of plausible values of one reading, in the canonical unit.
    pub const fn plausible(self) -> (f64, f64) {
        match self {
            Metric::HeartRate => (20.0, 300.0),
            Metric::Steps => (0.0, 100_000.0),
            Metric::BloodPressureSystolic => (40.0, 300.0),
            Metric::BloodPressureDiastolic => (20.0, 200.0),
            Metric::BloodGlucose => (0.5, 60.0),
            Metric::Spo2 => (40.0, 100.0),
            Metric::BodyTemperature => (25.0, 45.0),
            Metric::RespiratoryRate => (2.0, 80.0),
            Metric::BodyWeight => (0.5, 650.0),
            Metric::SleepDuration => (0.0, 1440.0),
        }
    }

    /// The metric with this id (`metric as u8`).
    pub fn from_id(id: u8) -> Option<Metric> {
        Metric::ALL.get(usize::from(id)).copied()
    }

    /// Looks a metric up by name (exact, lowercase).
    pub fn from_name(name: &[u8]) -> Option<Metric> {
        // Matching on bytes avoids UTF-8 validation and hashing in the hot path.
        Some(match name {
            b"heart_rate" => Metric::HeartRate,
            b"steps" => Metric::Steps,
            b"blood_pressure_systolic" => Metric::BloodPressureSystolic,
            b"blood_pressure_diastolic" => Metric::BloodPressureDiastolic,
            b"blood_glucose" => Metric::BloodGlucose,
            b"spo2" => Metric::Spo2,
            b"body_temperature" => Metric::BodyTemperature,
            b"respiratory_rate" => Metric::RespiratoryRate,
            b"body_weight" => Metric::BodyWeight,
            b"sleep_duration" => Metric::SleepDuration,
            _ => return None,
        })
    }

    fn units(self) -> &'static [(&'static str, Conversion)] {
        match self {
            Metric::HeartRate | Metric::RespiratoryRate => PER_MINUTE,
            Metric::Steps => STEPS,
            Metric::BloodPressureSystolic | Metric::BloodPressureDiastolic => MM_HG,
            Metric::BloodGlucose => GLUCOSE,
            Metric::Spo2 => PERCENT,
            Metric::BodyTemperature => CELSIUS,
            Metric::BodyWeight => KILOGRAM,
            Metric::SleepDuration => MINUTES,
        }
    }

    /// The conversion from `unit` to the canonical unit; an empty unit means the canonical
    /// one. `None` when this metric cannot be expressed in `unit`.
    #[inline]
    pub fn conversion(self, unit: &[u8]) -> Option<Conversion> {
        let unit = unit.trim_ascii();
        if unit.is_empty() {
            return Some(IDENTITY);
        }
        self.units()
            .iter()
            .find(|(spelling, _)| spelling.as_bytes() == unit)
            .map(|(_, conversion)| *conversion)
    }

    /// The accepted unit spellings, canonical first.
    pub fn unit_spellings(self) -> impl Iterator<Item = &'static str> {
        self.units().iter().map(|(spelling, _)| *spelling)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_are_dense() {
        for (i, metric) in Metric::ALL.iter().enumerate() {
            assert_eq!(*metric as usize, i);
            assert_eq!(Metric::from_id(i as u8), Some(*metric));
            assert_eq!(Metric::from_name(metric.name().as_bytes()), Some(*metric));
            assert_eq!(metric.unit_spellings().next(), Some(metric.unit()));
            let (lo, hi) = metric.plausible();
            assert!(lo < hi);
        }
        assert_eq!(Metric::from_name(b"HEART_RATE"), None);
        assert_eq!(Metric::from_id(10), None);
    }

    #[test]
    fn aliases_convert_to_the_canonical_unit() {
        for unit in ["bpm", "beats/min", "/min", "", "  "] {
            assert_eq!(
                Metric::HeartRate
                    .conversion(unit.as_bytes())
                    .map(|c| c.apply(72.0)),
                Some(72.0)
            );
        }
        for unit in ["mmHg", "mm[Hg]"] {
            assert!(Metric::BloodPressureSystolic
                .conversion(unit.as_bytes())
                .is_some());
        }
        for unit in ["count", "steps", "{steps}"] {
            assert!(Metric::Steps.conversion(unit.as_bytes()).is_some());
        }
        for unit in ["°C", "degC", "Cel"] {
            assert!(Metric::BodyTemperature
                .conversion(unit.as_bytes())
                .is_some());
        }
        for unit in ["%", "percent"] {
            assert!(Metric::Spo2.conversion(unit.as_bytes()).is_some());
        }
        let mg = Metric::BloodGlucose
            .conversion(b"mg/dL")
            .map(|c| c.apply(90.08));
        assert!((mg.unwrap_or(f64::NAN) - 5.0).abs() < 1e-12);
        let f = Metric::BodyTemperature
            .conversion(b"[degF]")
            .map(|c| c.apply(98.6));
        assert!((f.unwrap_or(f64::NAN) - 37.0).abs() < 1e-9);
        let h = Metric::SleepDuration.conversion(b"h").map(|c| c.apply(7.5));
        assert_eq!(h, Some(450.0));
    }

    #[test]
    fn incompatible_units_are_refused() {
        assert!(Metric::HeartRate.conversion(b"mmHg").is_none());
        assert!(Metric::BloodGlucose.conversion(b"kg").is_none());
        assert!(Metric::Steps.conversion(b"min").is_none());
    }
}
