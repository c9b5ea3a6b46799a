//! The server span of every request, after the OpenTelemetry HTTP semantic conventions. The
//! caller's W3C trace context (`traceparent`, `tracestate`) becomes its parent, and the span
//! carries the request id and trace id, so every log line of the request names both.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TraceId};
use std::time::Duration;
use tracing::Span;
use tracing::field::{Empty, display};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads propagation headers for the global propagator.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The `http_request` span: named `<method> <route template>`, never the raw path. A method
/// outside the known set is `_OTHER` (OpenTelemetry's convention), so neither span names nor
/// attributes carry what a client made up.
pub(crate) fn make_span(request: &Request) -> Span {
    let method = match crate::metrics::method_label(request.method()) {
        "other" => "_OTHER",
        known => known,
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "http_request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = Empty,
        request_id,
        trace_id = Empty,
        user_id = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only without the OpenTelemetry layer (no exporter configured): nothing to parent then.
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", display(trace_id));
    }
    span
}

/// Records the status; only server errors mark the span as failed (a 4xx is the caller's).
pub(crate) fn on_response(response: &Response, _latency: Duration, span: &Span) {
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
