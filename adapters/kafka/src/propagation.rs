//! W3C trace context (`traceparent`, `tracestate`) in Kafka message headers.
//!
//! The sink injects the context of its producer span into every message it sends. The consumer
//! stores messages in batches that mix many requests, so its batch span is not parented on any
//! one of them: it links to each distinct producer span instead (the messaging semantic
//! conventions' choice for batch processing).
//!
//! Without an OpenTelemetry layer (no exporter configured) the spans have no context and nothing
//! is injected: the messages carry no headers, as before.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context of `span` as message headers; `None` when there is none to send.
pub(crate) fn headers(span: &Span) -> Option<OwnedHeaders> {
    let mut carrier = Carrier(Vec::new());
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    if carrier.0.is_empty() {
        return None;
    }
    Some(
        carrier
            .0
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key: key.as_str(),
                    value: Some(value.as_str()),
                })
            }),
    )
}

/// Links `span` to the producer span of each message of `batch` that carries a trace context.
pub(crate) fn link_producers(span: &Span, batch: &[OwnedMessage]) {
    let mut linked: Vec<SpanContext> = Vec::new();
    for message in batch {
        let Some(headers) = message.headers() else {
            continue;
        };
        let context = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        });
        let producer = context.span().span_context().clone();
        // One request's events share a producer span: link it once.
        if producer.is_valid() && !linked.contains(&producer) {
            linked.push(producer);
        }
    }
    for producer in linked {
        span.add_link(producer);
    }
}

/// Collects injected headers.
struct Carrier(Vec<(String, String)>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Reads headers of a received message (values that are not UTF-8 are ignored).
struct HeaderExtractor<'a>(&'a OwnedHeaders);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}
