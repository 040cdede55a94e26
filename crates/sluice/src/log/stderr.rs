//! The process log's `--log-format json` formatter (`FlatJson`): one flat JSON object per
//! event, `timestamp`, `level`, `target`, `message` and the event's fields at the top level;
//! access and connection records (field `json_record`) keep their own fields. Span fields
//! are not written. The text format is tracing-subscriber's own.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::escape::{json_escape_into, json_str};

static JSON_RECORDS: AtomicBool = AtomicBool::new(false);

/// Whether access and connection records go to the process log as JSON objects (set once by
/// the binary with `--log-format json`).
pub fn set_json_records(on: bool) {
    JSON_RECORDS.store(on, Ordering::Relaxed);
}

pub(crate) fn json_records() -> bool {
    JSON_RECORDS.load(Ordering::Relaxed)
}

/// The name of the field that carries a whole record, already a JSON object.
pub(crate) const RECORD_FIELD: &str = "json_record";

/// tracing-subscriber event formatter for `--log-format json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

#[derive(Default)]
struct Fields {
    message: Option<String>,
    record: Option<String>,
    /// `"name":value` pairs, already JSON.
    rest: String,
}

impl Fields {
    fn key(&mut self, field: &Field) {
        self.rest.push(',');
        let name = field.name();
        // Never overwrite the fixed keys.
        if matches!(name, "timestamp" | "level" | "target") {
            self.rest.push_str(&json_str(&format!("field_{name}")));
        } else {
            self.rest.push_str(&json_str(name));
        }
        self.rest.push(':');
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            RECORD_FIELD => self.record = Some(value.to_string()),
            _ => {
                self.key(field);
                self.rest.push('"');
                json_escape_into(&mut self.rest, value);
                self.rest.push('"');
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.rest.push_str(&value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.rest.push_str(&value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.rest.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            self.rest.push_str(&value.to_string());
        } else {
            self.rest.push_str("null");
        }
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        write!(
            w,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\",\"target\":{}",
            super::time::rfc3339_micros(SystemTime::now()),
            meta.level(),
            json_str(meta.target())
        )?;
        match f.record.as_deref().and_then(|r| r.strip_prefix('{')) {
            // The record's own fields, after the fixed ones.
            Some(members) => {
                if members != "}" {
                    w.write_char(',')?;
                }
                w.write_str(members)?;
            }
            None => {
                if let Some(m) = &f.message {
                    write!(w, ",\"message\":{}", json_str(m))?;
                }
                w.write_str(&f.rest)?;
                w.write_char('}')?;
            }
        }
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_and_records_are_flat_objects() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(FlatJson)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "sluice::server", frontend = "fe", n = 3u64, level = 1, "listening \"x\"");
            tracing::info!(target: "sluice::access", json_record = "{\"status\":200,\"x\":\"y\"}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines[0]["message"], "listening \"x\"");
        assert_eq!(lines[0]["frontend"], "fe");
        assert_eq!(lines[0]["n"], 3);
        assert_eq!(lines[0]["field_level"], 1);
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "sluice::server");
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["status"], 200);
        assert_eq!(lines[1]["target"], "sluice::access");
        assert!(lines[1].get("message").is_none() && lines[1].get("fields").is_none());
    }
}
