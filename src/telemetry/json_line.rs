//! The JSON log line: the object `tracing-subscriber`'s JSON formatter writes (timestamp, level,
//! the event's fields flattened, target, the current span), written without its two costs per
//! line: it parses the span's stored fields back into a map and reserialises them, and it checks
//! every fragment it writes for UTF-8 on the way through. Here the span's fields, stored as a
//! JSON object when the span opened, are copied in as they are, and the line is checked once.
//! (Spans' field order is the stored one, alphabetical, as theirs.)
//! A test compares the two formatters' lines as JSON values.

use std::fmt;

use serde::ser::{SerializeMap, Serializer as _};
use tracing::{Event, Subscriber};
use tracing_serde::AsSerde;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of the JSON log layer (its fields formatter stays [`JsonFields`]).
pub struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        // A line is 300-600 bytes: one allocation, no growth.
        let mut line = Vec::with_capacity(1024);
        let mut serializer = serde_json::Serializer::new(&mut line);
        let mut write = || -> Result<(), serde_json::Error> {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("timestamp", &timestamp)?;
            map.serialize_entry("level", &meta.level().as_serde())?;
            let mut fields = tracing_serde::SerdeMapVisitor::new(map);
            event.record(&mut fields);
            let mut map = fields.take_serializer()?;
            map.serialize_entry("target", meta.target())?;
            map.end()
        };
        write().map_err(|_| fmt::Error)?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            // The object is open again for the span, whose fields are stored as a JSON object
            // (`JsonFields`, when the span opened or a field was recorded): copied in as they are.
            line.pop();
            line.extend_from_slice(b",\"span\":{");
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<JsonFields>>()
                .map_or("", |f| f.fields.as_str());
            let inner = stored
                .trim()
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or("")
                .trim();
            if !inner.is_empty() {
                line.extend_from_slice(inner.as_bytes());
                line.push(b',');
            }
            line.extend_from_slice(b"\"name\":");
            serde_json::to_writer(&mut line, span.name()).map_err(|_| fmt::Error)?;
            line.extend_from_slice(b"}}");
        }
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn values(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    /// Every kind of field and span the service logs, through `emit`.
    fn events() {
        #[derive(Debug)]
        struct Oops;
        impl fmt::Display for Oops {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("it \"broke\"\n\tbadly \u{1}")
            }
        }
        impl std::error::Error for Oops {}
        tracing::info!(port = 8080u16, "outside any span");
        let span = tracing::info_span!(
            "request",
            surface = "public",
            method = %"POST",
            request_id = "r-1",
            status = tracing::field::Empty,
        );
        let _entered = span.enter();
        tracing::warn!(error = %Oops, attempts = -3i64, ok = true, ratio = 0.25, "inside \"it\"");
        span.record("status", 503u16);
        tracing::error!(
            error = &Oops as &(dyn std::error::Error + 'static),
            latency_ms = 7u64,
            "request"
        );
        let bare = tracing::info_span!("bare");
        let _inner = bare.enter();
        tracing::info!(note = ?Some("x"), "in a span without fields");
    }

    #[test]
    fn a_line_is_the_json_object_tracing_subscriber_writes() {
        let (theirs, ours) = (Lines::default(), Lines::default());
        let layer = |lines: &Lines| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(lines.clone())
        };
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(layer(&theirs)),
            events,
        );
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(layer(&ours).event_format(JsonLine)),
            events,
        );
        let (mut theirs, mut ours) = (theirs.values(), ours.values());
        assert_eq!(theirs.len(), 4);
        for line in theirs.iter_mut().chain(ours.iter_mut()) {
            // The clock moved between the runs; its format is the same.
            let stamp = line["timestamp"].take();
            assert!(
                stamp
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z') && s.len() >= 20),
                "{stamp}"
            );
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours[2]["span"]["status"], 503, "{:?}", ours[2]);
        assert_eq!(ours[3]["span"], serde_json::json!({ "name": "bare" }));
    }
}
