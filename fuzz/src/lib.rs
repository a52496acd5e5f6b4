//! What Pulse's fuzz targets share: turning fuzz input into an HTTP request, the event
//! round-trip check, and running a readings file through the batch engine.
//!
//! Each target in `fuzz_targets/` feeds its bytes to the decoder the product uses (the
//! server's `codec::decode`, `Pattern::parse`, the batch file sources, `Config::parse`)
//! and asserts properties that must hold for every input the decoder accepts; a panic,
//! an overflow or a failed assertion is a crash libFuzzer reports and minimizes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pulse_batch::Counts;
use pulse_batch::Metric;
use pulse_batch::Progress;
use pulse_batch::RejectLog;
use pulse_batch::file::{self, FileJob};
use pulse_batch::FileFormat;
use pulse_batch::{AggTable, Merged};
use pulse_batch::WindowSet;
use pulse_core::Event;
use serde_json::Value;

/// Splits fuzz input into request headers and a body, the way an HTTP/1 request reads:
/// `name: value` lines, an empty line, then the body. Lines that are not a valid header
/// are skipped (hyper would refuse the request before Pulse saw it); values are trimmed
/// of surrounding whitespace, as hyper does.
pub fn request(data: &[u8], content_type: Option<&'static str>) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let mut rest = data;
    loop {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
        if rest.is_empty() {
            break;
        }
    }
    (headers, Bytes::copy_from_slice(rest))
}

/// Asserts that an event the server accepted survives the way it is read back: encoded
/// in the CloudEvents JSON format (what subscribers, webhooks and `GET /v1/events` send)
/// and decoded again, it is the same event.
pub fn assert_round_trips(event: &Event) {
    let text = event.to_json_string();
    let again = match Event::from_json_slice(text.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("an accepted event does not decode from its own JSON form: {e}\n{text}"),
    };
    assert_same_event(event, &again, &text);
}

/// Equality of events up to what the JSON format normalizes: JSON data is carried as a
/// JSON value (so its bytes may be re-serialized), and data without a content type is
/// JSON (so it gains `application/json` if it parses as JSON).
fn assert_same_event(a: &Event, b: &Event, text: &str) {
    assert_eq!(a.id, b.id, "id changed: {text}");
    assert_eq!(a.source, b.source, "source changed: {text}");
    assert_eq!(a.ty, b.ty, "type changed: {text}");
    assert_eq!(a.subject, b.subject, "subject changed: {text}");
    assert_eq!(a.time, b.time, "time changed: {text}");
    assert_eq!(a.dataschema, b.dataschema, "dataschema changed: {text}");
    assert_eq!(a.extensions, b.extensions, "extensions changed: {text}");
    let json_data = a
        .data
        .as_deref()
        .filter(|_| a.is_json())
        .and_then(|d| serde_json::from_slice::<Value>(d).ok());
    let content_type = match (&a.datacontenttype, &json_data) {
        (Some(ct), _) => Some(ct.to_string()),
        (None, Some(_)) => Some(pulse_core::event::JSON_CONTENT_TYPE.to_owned()),
        (None, None) => None,
    };
    assert_eq!(
        b.datacontenttype.as_deref(),
        content_type.as_deref(),
        "datacontenttype changed: {text}"
    );
    match json_data {
        Some(value) => {
            let again = b
                .data
                .as_deref()
                .and_then(|d| serde_json::from_slice::<Value>(d).ok());
            assert_eq!(again, Some(value), "JSON data changed value: {text}");
        }
        None => assert_eq!(a.data, b.data, "data changed: {text}"),
    }
}

/// Windows every readings target aggregates into: minute windows on the epoch, hour and
/// day windows on the local clock of a zone whose daylight saving shifts by 30 minutes.
fn windows() -> &'static Arc<WindowSet> {
    static WINDOWS: OnceLock<Arc<WindowSet>> = OnceLock::new();
    WINDOWS.get_or_init(
        || match WindowSet::parse("1m,5m,1h,1d", "Australia/Lord_Howe") {
            Ok(windows) => Arc::new(windows),
            Err(e) => panic!("the fuzz windows do not parse: {e}"),
        },
    )
}

/// The file the readings targets write each input to (one per process, in `TMPDIR`).
fn input_path(format: FileFormat) -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let ext = match format {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        };
        std::env::temp_dir().join(format!("pulse-fuzz-{}.{ext}", std::process::id()))
    })
}

/// One output row, owned, with the figures a resumed run must reproduce.
#[derive(Debug, PartialEq)]
struct Key {
    user: String,
    metric: Metric,
    window: String,
    start: i64,
    end: i64,
}

#[derive(Debug)]
struct Figures {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn run(path: &Path, format: FileFormat, start: u64, end: u64) -> Option<(Vec<AggTable>, Counts)> {
    let rejects = RejectLog::none();
    let progress = Progress::new();
    let job = FileJob {
        path,
        format,
        start,
        end,
        threads: 1,
        windows: windows(),
        rejects: &rejects,
        progress: &progress,
    };
    // A file refused as a whole (a CSV without the needed header) is a clear error, fine.
    file::aggregate(&job).ok()
}

/// Reads the rows of `tables` the way `pulse aggregate` writes them, checking each.
fn rows(tables: Vec<AggTable>) -> Vec<(Key, Figures)> {
    let merged = Merged::new(Arc::clone(windows()), tables);
    let mut out = Vec::new();
    let mut json = String::new();
    let mut csv = String::new();
    let result = merged.for_each(|row, _state| {
        json.clear();
        row.push_json(&mut json);
        if let Err(e) = serde_json::from_str::<Value>(&json) {
            panic!("an output row is not JSON ({e}): {json}");
        }
        csv.clear();
        row.push_csv(&mut csv);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv.as_bytes());
        let records: Vec<_> = reader.records().collect();
        assert!(
            records.len() == 1
                && records[0]
                    .as_ref()
                    .is_ok_and(|r| r.len() == pulse_batch::COLUMNS.len()),
            "an output row is not one CSV record of {} fields: {csv}",
            pulse_batch::COLUMNS.len()
        );
        let s = &row.stats;
        assert!(s.count > 0, "a row without readings: {json}");
        assert!(s.min <= s.max, "min above max: {json}");
        for (name, v) in [
            ("avg", s.avg),
            ("p50", s.p50),
            ("p95", s.p95),
            ("p99", s.p99),
        ] {
            // Rounding of a mean may land a hair outside; a quantile sketch within 1%.
            let slack = (s.max - s.min).abs() * 1e-9 + s.min.abs().max(s.max.abs()) * 1e-2;
            assert!(
                s.min - slack <= v && v <= s.max + slack,
                "{name} outside min..max: {json}"
            );
        }
        assert!(
            row.window_start < row.window_end,
            "an empty or inverted window: {json}"
        );
        out.push((
            Key {
                user: row.user_id.to_owned(),
                metric: row.metric,
                window: row.window.to_owned(),
                start: row.window_start,
                end: row.window_end,
            },
            Figures {
                count: s.count,
                sum: s.sum,
                min: s.min,
                max: s.max,
            },
        ));
        Ok::<_, ()>(())
    });
    assert!(result.is_ok());
    out
}

/// Aggregates `data` as a readings file of `format`, in one run and in two (the second
/// resuming at a line end, as an incremental run does), and checks that
/// - every output row is valid JSON and CSV and its figures are consistent;
/// - each window's rows count every accepted reading exactly once;
/// - the two runs together produce the counts and aggregates of the single run.
pub fn aggregate_readings(format: FileFormat, data: &[u8]) {
    let path = input_path(format);
    if let Err(e) = std::fs::write(path, data) {
        panic!("cannot write the fuzz input to {}: {e}", path.display());
    }
    let len = data.len() as u64;
    let Some((tables, counts)) = run(path, format, 0, len) else {
        return;
    };
    assert!(counts.rejected_total() <= counts.rows, "{counts:?}");
    let accepted = counts.rows - counts.rejected_total();
    let full = rows(tables);
    for window in windows().windows() {
        let counted: u64 = full
            .iter()
            .filter(|(k, _)| k.window == window.label())
            .map(|(_, f)| f.count)
            .sum();
        assert_eq!(
            counted,
            accepted,
            "window {} counts {counted} readings of {accepted} accepted",
            window.label()
        );
    }

    // CSV quoting may put a newline inside a field, where no run may stop.
    if format == FileFormat::Csv && data.contains(&b'"') {
        return;
    }
    let cut = match file::last_line_end(path, len / 2) {
        Ok(cut) => cut,
        Err(e) => panic!("last_line_end failed on a readable file: {e}"),
    };
    let (Some((mut first, first_counts)), Some((second, second_counts))) =
        (run(path, format, 0, cut), run(path, format, cut, len))
    else {
        panic!("a file read whole is refused when read in two runs");
    };
    let mut resumed = first_counts;
    resumed.merge(&second_counts);
    assert_eq!(
        resumed, counts,
        "two runs count differently from one (cut at {cut})"
    );
    first.extend(second);
    let parts = rows(first);
    assert_eq!(
        parts.len(),
        full.len(),
        "two runs give other keys (cut at {cut})"
    );
    for ((ka, fa), (kb, fb)) in full.iter().zip(&parts) {
        assert_eq!(ka, kb, "two runs give other keys (cut at {cut})");
        assert_eq!(
            (fa.count, fa.min, fa.max),
            (fb.count, fb.min, fb.max),
            "two runs aggregate {ka:?} differently (cut at {cut})"
        );
        let tolerance = fa.sum.abs().max(fb.sum.abs()) * 1e-9;
        assert!(
            (fa.sum - fb.sum).abs() <= tolerance,
            "two runs sum {ka:?} differently: {} and {} (cut at {cut})",
            fa.sum,
            fb.sum
        );
    }
}

/// Asserts that a refused request is answered as the client's fault: a 4xx status and a
/// non-empty `{"error":{"code","message"}}` body.
pub fn assert_client_error(err: &pulse_server::ApiError) {
    assert!(
        err.status().is_client_error(),
        "a decoding error is not a 4xx: {}",
        err.status()
    );
    let body = err.body();
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "a malformed error body: {body}"
    );
}
