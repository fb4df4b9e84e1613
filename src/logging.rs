//! The process's log on stderr, as etcd's own proxy writes it: by default
//! one JSON object per line (zap's production encoder: `level`, `ts`,
//! `caller`, `msg`, then the event's fields), so log shippers that read
//! etcd's logs read ours; `--log-format=text` is for people, coloured only
//! when stderr is a terminal.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// zap-style JSON lines (the default, like etcd).
    Json,
    /// tracing's human format.
    Text,
}

impl LogFormat {
    /// Reads the flag's value; anything but `text` is JSON.
    pub fn from_flag(value: &str) -> LogFormat {
        match value {
            "text" => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the process-wide subscriber: `debug` lowers the level as
/// etcd's `--debug` does; `RUST_LOG` overrides both.
pub fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.event_format(ZapJson).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// One event as a zap JSON line.
pub struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"level\":\"");
        line.push_str(zap_level(meta.level()));
        line.push_str("\",\"ts\":\"");
        let _ = write!(line, "{}", Timestamp::now());
        line.push_str("\",\"caller\":");
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.strip_prefix("src/").unwrap_or(f)),
            _ => meta.target().to_string(),
        };
        push_json_string(&mut line, &caller);
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        line.push_str(",\"msg\":");
        push_json_string(&mut line, &fields.message);
        // The spans the event happened in, outermost first, as zap's named
        // loggers would say it.
        if let Some(scope) = ctx.event_scope() {
            let names: Vec<&str> = scope.from_root().map(|s| s.name()).collect();
            if !names.is_empty() {
                line.push_str(",\"span\":");
                push_json_string(&mut line, &names.join("."));
            }
        }
        line.push_str(&fields.rest);
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// zap's level names.
fn zap_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// An event's fields: `message` apart, the others as `,"name":value`.
#[derive(Default)]
struct JsonFields {
    message: String,
    rest: String,
}

impl JsonFields {
    fn key(&mut self, field: &Field) {
        self.rest.push(',');
        push_json_string(&mut self.rest, field.name());
        self.rest.push(':');
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.key(field);
            push_json_string(&mut self.rest, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.rest, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.rest, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.rest, "{value}");
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

/// Appends `s` as a JSON string: quotes, backslashes and every control
/// character escaped, so no terminal escape byte reaches a log file.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Wall-clock time as zap's ISO 8601 encoder writes it, in UTC with
/// microseconds: `2026-12-05T23:21:32.123456Z`.
struct Timestamp(time::OffsetDateTime);

impl Timestamp {
    fn now() -> Timestamp {
        Timestamp(time::OffsetDateTime::now_utc())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::push_json_string;

    #[test]
    fn strings_are_escaped_so_no_control_byte_survives() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1b}[31me\u{7f}");
        assert_eq!(out, r#""a\"b\\c\nd\u001b[31me\u007f""#);
    }
}
