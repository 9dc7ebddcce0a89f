//! Logs and traces. Logs: `tracing` to stderr, filtered by `RUST_LOG`, as text or JSON lines.
//! Traces: when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` for traces alone), the same spans — a request's, a
//! forwarded request's in the dialog service, a broker consumer's — go out as OpenTelemetry
//! traces over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or
//! `http/json`), filtered by `OTEL_TRACES_FILTER` (default `socialnet=info`) independently of
//! the logs. Without an endpoint nothing is installed: the spans cost what they cost before, and
//! [`join_request_trace`] is one relaxed atomic load.
//!
//! One trace per request id: the trace id is derived from the `x-request-id` (the first 16
//! bytes of its SHA-1), which every hop already carries — the forward to the dialog service, the
//! outbox row, the RabbitMQ message — so the main service's span, the dialog service's and the
//! consumers' land in one trace without a column or a header more. A client's own `traceparent`
//! is therefore not continued (its `x-request-id` is).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use sha1::{Digest, Sha1};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Whether spans are exported (set once, by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the exporter for the process's life; dropping it sends what is still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("traces: the exporter did not shut down cleanly: {e}");
            }
        }
    }
}

/// Installs the global subscriber (later calls are no-ops) and, with an endpoint, the trace
/// exporter, naming this process `service`. Call it outside the async runtime: the exporter's
/// HTTP client runs on a thread of its own. Text is coloured only on a terminal: escape codes in
/// a log file or a collector are noise.
pub fn init(format: LogFormat, service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (provider, problem) = match exporter(service) {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let Some(provider) = provider else {
        // No exporter: the logs' filter is global, so a span or event it leaves out is never
        // built at all — exactly the set-up from before traces.
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        let _ = match format {
            LogFormat::Text => logs.try_init(),
            LogFormat::Json => logs.json().flatten_event(true).try_init(),
        };
        if let Some(e) = problem {
            tracing::error!(error = %e, "traces are not exported");
        }
        return Telemetry { provider: None };
    };
    // With one: each layer has its filter, so logs can stay at `warn` while traces are complete.
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let traces_filter =
        std::env::var("OTEL_TRACES_FILTER").unwrap_or_else(|_| "socialnet=info".into());
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("socialnet"))
        .with_filter(EnvFilter::new(traces_filter));
    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok()
    {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Telemetry {
        provider: Some(provider),
    }
}

/// The tracer provider when an OTLP endpoint is configured.
fn exporter(service: &'static str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other}: this build speaks http/protobuf and http/json"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build(),
    ))
}

/// Puts `span` in the trace of the request `request_id` (see the module's comment). Nothing
/// when traces are not exported.
pub fn join_request_trace(span: &tracing::Span, request_id: &str) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let (trace, root) = request_trace_ids(request_id);
    let parent = SpanContext::new(
        trace,
        root,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The trace id of a request id, and the id of the (never exported) root span every span of
/// the request hangs from.
pub fn request_trace_ids(request_id: &str) -> (TraceId, SpanId) {
    let digest = Sha1::digest(request_id.as_bytes());
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&digest[..16]);
    let mut root = [0u8; 8];
    root.copy_from_slice(&digest[12..20]);
    // Neither may be all zeros (invalid in W3C trace context); SHA-1 makes that one in 2^64.
    trace[0] |= u8::from(trace == [0; 16]);
    root[0] |= u8::from(root == [0; 8]);
    (TraceId::from_bytes(trace), SpanId::from_bytes(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_id_gives_one_trace_and_another_another() {
        let (a, root_a) = request_trace_ids("0f8c2a3e-request");
        assert_eq!(request_trace_ids("0f8c2a3e-request"), (a, root_a));
        assert_ne!(request_trace_ids("another").0, a);
        assert_ne!(a, TraceId::INVALID);
        assert_ne!(root_a, SpanId::INVALID);
        // The hex form is the SHA-1's first 32 digits.
        let hex: String = Sha1::digest(b"0f8c2a3e-request")[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a.to_string(), hex);
    }
}
