//! The tracing subscriber, shared by the worker and the supervisor binaries.
//!
//! In JSON every line is one object: `timestamp`, `level`, `account` when the line concerns an
//! account, the event's own fields (`message` first), `target`, and the spans it ran in (`span`,
//! `spans`). The account id is always a top-level field, so a log pipeline can filter on it: it
//! comes from the event's `account` field, else from the innermost span that has one, else from
//! the process (a worker runs exactly one account, so even its lines outside any span, such as a
//! signal handler's, are that account's).

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The top-level field that names the account a line concerns.
pub const ACCOUNT_FIELD: &str = "account";

/// Installs the global subscriber to stderr, pretty or JSON as `format` says. The filter is
/// `filter`, else `RUST_LOG`, else `info`. A second call does nothing.
pub fn init_tracing(format: &str, filter: Option<&str>) {
    init(format, filter, None);
}

/// Installs the worker's subscriber: as [`init_tracing`], and every JSON line carries
/// `account` (the worker's one account) at the top level.
pub fn init_worker_tracing(format: &str, account: &str) {
    init(format, None, Some(account.to_owned()));
}

fn init(format: &str, filter: Option<&str>, account: Option<String>) {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { account })
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// The JSON line format (see the module's doc).
#[derive(Debug)]
struct JsonLines {
    /// The process's own account, for a worker.
    account: Option<String>,
}

/// Names the line itself uses: an event field of the same name is written as `field.<name>`.
const RESERVED: [&str; 5] = ["timestamp", "level", "target", "span", "spans"];

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);

        // The spans, outermost first, each as its fields plus its name.
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let mut object = span
                    .extensions()
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str::<Value>(f).ok())
                    .and_then(|v| match v {
                        Value::Object(map) => Some(map),
                        _ => None,
                    })
                    .unwrap_or_default();
                object.insert("name".into(), span.metadata().name().into());
                spans.push(object);
            }
        }
        let account = fields.account.take().or_else(|| {
            spans
                .iter()
                .rev()
                .find_map(|s| s.get(ACCOUNT_FIELD).cloned())
                .or_else(|| self.account.clone().map(Value::String))
        });

        let mut line = String::with_capacity(256);
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.push_str("{\"timestamp\":");
        push_json(&mut line, &Value::String(timestamp));
        line.push_str(",\"level\":");
        push_json(
            &mut line,
            &Value::String(event.metadata().level().to_string()),
        );
        if let Some(account) = &account {
            line.push_str(",\"account\":");
            push_json(&mut line, account);
        }
        for (i, (name, value)) in fields.values.iter().enumerate() {
            line.push(',');
            if RESERVED.contains(name) || fields.seen_before(i, name) {
                push_json(&mut line, &Value::String(format!("field.{name}")));
            } else {
                push_json(&mut line, &Value::String((*name).to_owned()));
            }
            line.push(':');
            push_json(&mut line, value);
        }
        line.push_str(",\"target\":");
        push_json(
            &mut line,
            &Value::String(event.metadata().target().to_owned()),
        );
        if let Some(leaf) = spans.last() {
            line.push_str(",\"span\":");
            push_json(&mut line, &Value::Object(leaf.clone()));
            line.push_str(",\"spans\":");
            let all = spans.into_iter().map(Value::Object).collect();
            push_json(&mut line, &Value::Array(all));
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends `value` as JSON.
fn push_json(out: &mut String, value: &Value) {
    // Serialising a `Value` into a `String` cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
}

/// An event's fields, in the order they were recorded; `account` apart.
#[derive(Debug, Default)]
struct Fields {
    values: Vec<(&'static str, Value)>,
    account: Option<Value>,
}

impl Fields {
    /// Whether a field named `name` comes before the `i`th (an event may record the same name
    /// twice: `message = 3, "the text"`).
    fn seen_before(&self, i: usize, name: &str) -> bool {
        self.values.iter().take(i).any(|(n, _)| *n == name)
    }

    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == ACCOUNT_FIELD && self.account.is_none() {
            self.account = Some(value);
        } else {
            self.values.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, serde_json::json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, serde_json::json!(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.push(field, serde_json::json!(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing::{info, info_span};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Debug, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines `f` logs through a subscriber for `account`.
    fn lines(account: Option<&str>, f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines {
                account: account.map(str::to_owned),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    #[test]
    fn the_account_is_top_level_from_the_event_a_span_or_the_process() {
        let got = lines(Some("proc"), || {
            info!(account = "ev", pid = 7, "from the event");
            let span = info_span!("worker", account = "sp");
            span.in_scope(|| info!(n = 1, "from the span"));
            info!("from the process");
        });
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["account"], "ev");
        assert_eq!(got[0]["pid"], 7);
        assert_eq!(got[0]["message"], "from the event");
        assert_eq!(got[1]["account"], "sp");
        assert_eq!(got[1]["n"], 1);
        assert_eq!(got[1]["span"]["name"], "worker");
        assert_eq!(got[1]["spans"][0]["account"], "sp");
        assert_eq!(got[2]["account"], "proc");
        assert!(got[2].get("span").is_none());
        for line in &got {
            assert!(line["timestamp"].is_string() && line["level"] == "INFO");
            assert!(line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("worker")));
        }
    }

    #[test]
    fn a_line_of_no_account_has_none_and_no_field_is_lost() {
        let got = lines(None, || {
            info!(message = 3, error = %"bad \"quote\"", "the text");
        });
        assert!(got[0].get("account").is_none(), "{}", got[0]);
        assert_eq!(got[0]["message"], "the text");
        assert_eq!(got[0]["field.message"], 3);
        assert_eq!(got[0]["error"], "bad \"quote\"");
    }
}
