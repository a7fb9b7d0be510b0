//! `--log-format json`: one JSON object per line, for log shippers.
//!
//! `{"time": "...", "level": "INFO", "target": "...", "message": "...",
//! "request": "#7 GET /x", "fields": {...}}`: `request` (the request the
//! line is about, as the text log shows it) only when the line has one;
//! `fields` holds the line's other fields and those of the spans it is in
//! (the worker's `pid`). Every string is escaped here, whatever it carries
//! (a client's quotes, newlines, control bytes; invalid UTF-8 became
//! U+FFFD before it reached the log), so no value can end its field or
//! the line.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub use rustgi_observe::json::push_string;

/// A line's fields, as `"name":value` pairs after one another.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    request: Option<String>,
    /// `"name":value,` pairs.
    pairs: String,
    /// Put `message` and `request` with the others (a span's fields).
    flat: bool,
}

impl Fields {
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut String)) {
        if !self.pairs.is_empty() {
            self.pairs.push(',');
        }
        push_string(&mut self.pairs, field.name().trim_start_matches("r#"));
        self.pairs.push(':');
        value(&mut self.pairs);
    }

    fn text(&mut self, field: &Field, text: String) {
        match field.name() {
            "message" if !self.flat => self.message = Some(text),
            "request" if !self.flat => self.request = Some(text),
            _ => self.pair(field, |out| push_string(out, &text)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "request" && !self.flat {
            // A bare request number (a request not run): still its tag.
            return self.text(field, format!("#{value}"));
        }
        self.pair(field, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.pair(field, |out| {
                let _ = write!(out, "{value}");
            });
        } else {
            self.text(field, value.to_string());
        }
    }
}

/// Formats spans' fields as `"name":value` pairs, so that a line can put
/// them in its `fields` object as they are.
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Fields {
            flat: true,
            ..Fields::default()
        };
        fields.record(&mut visitor);
        writer.write_str(&visitor.pairs)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut visitor = Fields {
            flat: true,
            ..Fields::default()
        };
        fields.record(&mut visitor);
        if !current.fields.is_empty() && !visitor.pairs.is_empty() {
            current.fields.push(',');
        }
        current.fields.push_str(&visitor.pairs);
        Ok(())
    }
}

/// The JSON line of an event.
pub struct Json;

impl<S> FormatEvent<S, JsonFields> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(256);
        line.push_str("{\"time\":");
        push_string(&mut line, &time);
        line.push_str(",\"level\":");
        push_string(&mut line, meta.level().as_str());
        line.push_str(",\"target\":");
        push_string(&mut line, meta.target());
        line.push_str(",\"message\":");
        push_string(&mut line, fields.message.as_deref().unwrap_or(""));
        if let Some(request) = &fields.request {
            line.push_str(",\"request\":");
            push_string(&mut line, request);
        }
        line.push_str(",\"fields\":{");
        let mut first = true;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(span_fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && !span_fields.is_empty()
                {
                    if !first {
                        line.push(',');
                    }
                    line.push_str(span_fields);
                    first = false;
                }
            }
        }
        if !fields.pairs.is_empty() {
            if !first {
                line.push(',');
            }
            line.push_str(&fields.pairs);
        }
        line.push_str("}}\n");
        writer.write_str(&line)
    }
}
