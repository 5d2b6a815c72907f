//! Telemetry: structured logs through `tracing` (JSON or text), and, when the standard `OTEL_*`
//! variables name an endpoint, OpenTelemetry traces and metrics exported over OTLP/HTTP. With no
//! endpoint nothing is exported and the metric instruments are no-ops.
//!
//! Nothing here ever records a login code, an e-mail address or a bearer token: spans carry route
//! templates (never raw paths with query strings), ids and outcomes only.

mod json_line;
pub mod metrics;
mod stdout;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Whether spans are exported (OTLP on): fields that only traces need are recorded then only.
static TRACES_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when spans go to an OTLP endpoint. A field recorded on an open span costs the JSON log
/// layer a parse and a rewrite of the span's fields, so a field the logs carry anyway (a
/// request's `status`, on its access line) is recorded on the span for traces only.
pub fn traces_exported() -> bool {
    TRACES_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// An `OTEL_EXPORTER_OTLP_PROTOCOL` this build cannot speak (only HTTP is built in).
static UNSUPPORTED_PROTOCOL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The exporters to flush at shutdown (none when OTLP is off); dropped, it writes the log lines
/// still pending.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

/// True when an `OTEL_EXPORTER_OTLP_*ENDPOINT` variable asks for export.
fn otlp_requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

fn resource() -> Resource {
    let builder = Resource::builder();
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; the default name is ours, not the SDK's.
    if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        builder.build()
    } else {
        builder.with_service_name("authsession").build()
    }
}

/// Installs the global subscriber (and the OTLP pipelines when requested). Call it outside any
/// async runtime: the exporters run on threads of their own. A second call is a no-op for logs.
pub fn init(format: LogFormat, level: &str) -> Telemetry {
    let mut telemetry = Telemetry::default();
    let mut otel_error = None;
    if otlp_requested() {
        match build_providers() {
            Ok((tracer, meter)) => {
                opentelemetry::global::set_meter_provider(meter.clone());
                telemetry = Telemetry {
                    tracer: Some(tracer),
                    meter: Some(meter),
                };
            }
            Err(e) => otel_error = Some(e),
        }
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = match format {
        // One object per line: the event's fields flattened, and the current span (see
        // `json_line`).
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(json_line::JsonLine)
            .with_writer(stdout::Lines)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            // Colour only on a terminal: escape codes in a file or a pipe are noise.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(stdout::Lines)
            .boxed(),
    };
    // The log layer sees the `request` span only (every line carries its `request_id`): a span
    // the log layer sees is formatted as JSON when it opens and parsed and rewritten at each
    // field recorded, which made the per-script spans (two per login request) the largest cost
    // of a request. They go to traces, when exported; a script's failure line names the script.
    let fmt = fmt.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        !meta.is_span() || meta.name() == "request"
    }));
    let otel = telemetry
        .tracer
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("authsession")));
    TRACES_EXPORTED.store(otel.is_some(), std::sync::atomic::Ordering::Relaxed);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(protocol) = UNSUPPORTED_PROTOCOL.get() {
        tracing::warn!(
            protocol,
            "OTEL_EXPORTER_OTLP_PROTOCOL not supported; exporting with http/protobuf"
        );
    }
    match otel_error {
        Some(error) => {
            tracing::error!(%error, "OpenTelemetry export disabled: exporter setup failed")
        }
        None if telemetry.tracer.is_some() => {
            tracing::info!("OpenTelemetry export enabled (OTLP over HTTP)")
        }
        None => {}
    }
    telemetry
}

fn build_providers(
) -> Result<(SdkTracerProvider, SdkMeterProvider), opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => opentelemetry_otlp::Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => opentelemetry_otlp::Protocol::HttpBinary,
        Ok(other) => {
            // Logged once the subscriber is up (see `init`); gRPC is not built in.
            UNSUPPORTED_PROTOCOL.set(other.to_owned()).ok();
            opentelemetry_otlp::Protocol::HttpBinary
        }
    };
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource())
        .build();
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource())
        .build();
    Ok((tracer, meter))
}

impl Telemetry {
    /// Flushes and shuts the exporters down, last thing before exit, within `budget` each.
    /// Returns false when an exporter failed or overran.
    pub fn shutdown(&mut self, budget: Duration) -> bool {
        let mut clean = true;
        if let Some(tracer) = self.tracer.take() {
            if let Err(error) = tracer.shutdown_with_timeout(budget) {
                tracing::error!(%error, "trace exporter shutdown failed");
                clean = false;
            }
        }
        if let Some(meter) = self.meter.take() {
            if let Err(error) = meter.shutdown_with_timeout(budget) {
                tracing::error!(%error, "metric exporter shutdown failed");
                clean = false;
            }
        }
        clean
    }
}

/// Log lines still pending (see `stdout`) are written when the telemetry goes, last thing before
/// exit: keep it until then.
impl Drop for Telemetry {
    fn drop(&mut self) {
        stdout::flush();
    }
}
