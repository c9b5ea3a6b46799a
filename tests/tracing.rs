//! Traces and logs of the built binary: an OTLP/HTTP receiver in this test process collects what
//! the service exports. A feed request is one trace under the caller's `traceparent` (server span,
//! use-case and stage spans, Redis client spans); an event is followed from the API through Kafka
//! (librdkafka's mock cluster) to the consumer that stores it in ClickHouse; the last spans are
//! exported at shutdown; and no log line ever holds a token.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Service, small_demo_env};

/// An exported span with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP trace receiver on a free loopback port.
struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Received>>>,
}

async fn export(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut received = spans.lock().unwrap_or_else(|e| e.into_inner());
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| string_attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
        .into_response()
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("receiver: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, spans }
    }

    /// The service's environment for exporting here, every 100 ms.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ]
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `done` holds for the spans received so far, and returns them.
    async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let started = Instant::now();
        loop {
            let spans: Vec<Span> = self.spans().into_iter().map(|r| r.span).collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < within,
                "{what} not exported within {within:?}; received {} spans: {:?}",
                spans.len(),
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn attr(span: &Span, key: &str) -> Option<String> {
    string_attr(&span.attributes, key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh W3C trace id and parent span id, as a caller would send them.
fn caller_context() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (trace_id, parent)
}

fn in_trace<'a>(spans: &'a [Span], trace_id: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .collect()
}

fn named<'a>(spans: &[&'a Span], name: &str) -> Option<&'a Span> {
    spans.iter().copied().find(|s| s.name == name)
}

/// Whether `span` is below `ancestor` (through any number of parents within `spans`).
fn descends_from(spans: &[&Span], span: &Span, ancestor: &Span) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..32 {
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

const SERVER_SPAN: &str = "GET /api/v1/reels";
const FEED_STAGES: [&str; 6] = [
    "feed.cache_lookup",
    "feed.history_read",
    "feed.generate",
    "feed.candidates",
    "feed.scoring",
    "feed.cache_write",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_request_is_one_trace_under_the_callers_span() {
    let Some(redis) = support::servers::RedisServer::start() else {
        return;
    };
    let Some(postgres) = support::servers::PostgresServer::start() else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut env = small_demo_env();
    env.push(("DATABASE_URL", postgres.url()));
    for command in ["migrate", "seed-demo"] {
        let (ok, text) = support::run(&[command], &env);
        assert!(ok, "{command}: {text}");
    }
    env.push(("REDIS_URL", redis.url()));
    env.extend(receiver.env());
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "1"]);

    let (trace_id, parent) = caller_context();
    let res = reqwest::Client::new()
        .get(svc.url("/api/v1/reels?limit=5"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .header("tracestate", "vendor=value")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    assert_eq!(res.status(), StatusCode::OK);

    let spans = receiver
        .wait_for(
            "the feed request's spans",
            Duration::from_secs(10),
            |spans| {
                let trace = in_trace(spans, &trace_id);
                named(&trace, SERVER_SPAN).is_some()
                    && FEED_STAGES
                        .iter()
                        .all(|stage| named(&trace, stage).is_some())
                    && ["redis", "postgresql"].iter().all(|system| {
                        trace
                            .iter()
                            .any(|s| attr(s, "db.system").as_deref() == Some(*system))
                    })
            },
        )
        .await;
    let trace = in_trace(&spans, &trace_id);
    let server = named(&trace, SERVER_SPAN).unwrap_or_else(|| panic!("no server span"));
    assert_eq!(
        hex(&server.parent_span_id),
        parent,
        "parented on the caller's span"
    );
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(server, "http.route").as_deref(), Some("/api/v1/reels"));
    assert_eq!(attr(server, "url.path").as_deref(), Some("/api/v1/reels"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.trace_state, "vendor=value");

    let page = named(&trace, "feed.page").unwrap_or_else(|| panic!("no feed.page span"));
    assert_eq!(
        page.parent_span_id, server.span_id,
        "the use case runs in the request"
    );
    assert_eq!(attr(page, "cache").as_deref(), Some("miss"));
    for stage in FEED_STAGES {
        let span = named(&trace, stage).unwrap_or_else(|| panic!("no {stage} span"));
        assert!(
            descends_from(&trace, span, page),
            "{stage} is not under feed.page"
        );
    }

    let lookup = named(&trace, "feed.cache_lookup").unwrap_or_else(|| panic!("no lookup"));
    let get = trace
        .iter()
        .find(|s| s.name == "EVAL current_session" && s.parent_span_id == lookup.span_id)
        .unwrap_or_else(|| panic!("no Redis read of the current session under feed.cache_lookup"));
    assert_eq!(get.kind, SpanKind::Client as i32);
    assert_eq!(attr(get, "db.system").as_deref(), Some("redis"));
    assert_eq!(attr(get, "db.operation.name").as_deref(), Some("EVAL"));
    assert_eq!(attr(get, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(get, "server.port"), Some(redis.port.to_string()));
    let write = named(&trace, "feed.cache_write").unwrap_or_else(|| panic!("no write"));
    assert!(
        trace.iter().any(|s| s.parent_span_id == write.span_id
            && attr(s, "db.operation.name").as_deref() == Some("EVAL")),
        "no Redis EVAL under feed.cache_write"
    );

    // The user's follows come from PostgreSQL, inside the feed use case.
    let follows = trace
        .iter()
        .find(|s| attr(s, "db.system").as_deref() == Some("postgresql"))
        .unwrap_or_else(|| panic!("no PostgreSQL span"));
    assert_eq!(follows.kind, SpanKind::Client as i32);
    assert!(
        descends_from(&trace, follows, page),
        "the PostgreSQL call is not under feed.page"
    );
    assert_eq!(
        attr(follows, "db.operation.name").as_deref(),
        Some("SELECT")
    );
    assert_eq!(
        attr(follows, "server.port"),
        Some(postgres.port.to_string())
    );

    let services: Vec<String> = receiver.spans().into_iter().map(|r| r.service).collect();
    assert!(
        services.iter().all(|s| s == "video-ranking-service"),
        "{services:?}"
    );
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_spans_are_exported_at_shutdown() {
    let receiver = Receiver::start().await;
    let mut env = small_demo_env();
    env.extend(receiver.env());
    // Far beyond the test: only the shutdown flush can export the request's spans.
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".into()));
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "2"]);
    let (trace_id, parent) = caller_context();
    let res = reqwest::Client::new()
        .get(svc.url("/api/v1/reels?limit=5"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        in_trace(
            &receiver
                .spans()
                .into_iter()
                .map(|r| r.span)
                .collect::<Vec<_>>(),
            &trace_id
        )
        .is_empty()
    );

    let status = tokio::task::spawn_blocking(move || svc.terminate(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("terminate: {e}"));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
    receiver
        .wait_for("the request's spans", Duration::from_secs(5), |spans| {
            named(&in_trace(spans, &trace_id), SERVER_SPAN).is_some()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_request_and_trace_ids_and_never_a_token() {
    let receiver = Receiver::start().await;
    let mut env = small_demo_env();
    env.extend(receiver.env());
    env.push(("LOG_FORMAT", "json".into()));
    // As verbose as an operator could make it.
    env.push(("RUST_LOG", "debug".into()));
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "3"]);
    let forged = format!("{token}x");

    let (trace_id, parent) = caller_context();
    let client = reqwest::Client::new();
    let ok = client
        .get(svc.url("/api/v1/reels?limit=5"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .header("x-request-id", "req-tracing-test")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    assert_eq!(ok.status(), StatusCode::OK);
    let refused = client
        .get(svc.url("/api/v1/reels?limit=5"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let events = client
        .post(svc.url("/api/v1/events"))
        .bearer_auth(&token)
        .json(&json!({"events": [{"event_id": uuid::Uuid::new_v4(),
            "video_id": uuid::Uuid::new_v4(), "type": "like"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST events: {e}"));
    assert!(events.status().is_client_error() || events.status().is_success());

    let logs = &svc.logs;
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let signature = token.rsplit('.').next().unwrap_or(&token);
    for line in &lines {
        assert!(
            !line.contains(&token) && !line.contains(signature),
            "a log line holds the token: {line}"
        );
    }
    // Every line logged within the request names its request id and the caller's trace id.
    let in_request: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.to_string().contains("req-tracing-test"))
        .collect();
    assert!(
        !in_request.is_empty(),
        "no log line within the request: {lines:#?}"
    );
    for line in &in_request {
        let request = line["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "http_request"))
            .unwrap_or_else(|| panic!("no http_request span on {line}"));
        assert_eq!(request["request_id"], "req-tracing-test", "{line}");
        assert_eq!(request["trace_id"], json!(trace_id), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_traced_from_the_api_through_kafka_to_the_consumer() {
    let Some(clickhouse) = support::servers::require(
        "a ClickHouse server (TEST_CLICKHOUSE_URL)",
        std::env::var("TEST_CLICKHOUSE_URL").ok(),
    ) else {
        return;
    };
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(3).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    for topic in [
        "engagement-events",
        "engagement-events.dlq",
        "cdc.posts",
        "cdc.posts.dlq",
    ] {
        cluster
            .create_topic(topic, 3, 1)
            .unwrap_or_else(|e| panic!("topic {topic}: {e}"));
    }
    let receiver = Receiver::start().await;
    let mut env = small_demo_env();
    env.push(("CLICKHOUSE_URL", clickhouse));
    env.push((
        "CLICKHOUSE_DATABASE",
        format!("vrs_tracing_{}", support::servers::free_port()),
    ));
    env.push(("KAFKA_BROKERS", cluster.bootstrap_servers()));
    env.extend(receiver.env());
    let svc = Service::start(&env);

    let token = svc.token(&["--demo-user", "4"]);
    let (trace_id, parent) = caller_context();
    let event = json!({"event_id": uuid::Uuid::new_v4(),
                       "video_id": "00000002-0000-4000-8000-000000000001", "type": "like"});
    let res = reqwest::Client::new()
        .post(svc.url("/api/v1/events"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"events": [event]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST events: {e}"));
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let linked_consumer = |spans: &[Span], producer: &Span| {
        spans
            .iter()
            .find(|s| {
                s.kind == SpanKind::Consumer as i32
                    && s.links
                        .iter()
                        .any(|l| l.trace_id == producer.trace_id && l.span_id == producer.span_id)
            })
            .cloned()
    };
    let producer_of = |spans: &[Span]| {
        in_trace(spans, &trace_id)
            .into_iter()
            .find(|s| s.kind == SpanKind::Producer as i32)
            .cloned()
    };
    let spans = receiver
        .wait_for(
            "the event's producer and consumer spans",
            Duration::from_secs(15),
            |spans| producer_of(spans).is_some_and(|p| linked_consumer(spans, &p).is_some()),
        )
        .await;
    let trace = in_trace(&spans, &trace_id);
    let server = named(&trace, "POST /api/v1/events").unwrap_or_else(|| panic!("no server span"));
    assert_eq!(hex(&server.parent_span_id), parent);
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("202")
    );

    let producer = producer_of(&spans).unwrap_or_else(|| panic!("no producer span"));
    assert!(
        descends_from(&trace, &producer, server),
        "the producer span is under the request"
    );
    assert_eq!(producer.name, "send engagement-events");
    assert_eq!(
        attr(&producer, "messaging.system").as_deref(),
        Some("kafka")
    );
    assert_eq!(
        attr(&producer, "messaging.destination.name").as_deref(),
        Some("engagement-events")
    );
    assert_eq!(
        attr(&producer, "messaging.operation.type").as_deref(),
        Some("send")
    );

    let consumer = linked_consumer(&spans, &producer).unwrap_or_else(|| panic!("no consumer span"));
    assert_eq!(consumer.name, "process engagement-events");
    assert_eq!(
        attr(&consumer, "messaging.system").as_deref(),
        Some("kafka")
    );
    assert_eq!(
        attr(&consumer, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(&consumer, "messaging.consumer.group.name").as_deref(),
        Some("video-ranking-service")
    );
    // The batch is stored in ClickHouse within the consumer span.
    let spans = receiver
        .wait_for(
            "the consumer's ClickHouse insert",
            Duration::from_secs(5),
            |spans| {
                spans.iter().any(|s| {
                    s.parent_span_id == consumer.span_id
                        && attr(s, "db.system").as_deref() == Some("clickhouse")
                })
            },
        )
        .await;
    let insert = spans
        .iter()
        .find(|s| {
            s.parent_span_id == consumer.span_id
                && attr(s, "db.system").as_deref() == Some("clickhouse")
        })
        .unwrap_or_else(|| panic!("no insert"));
    assert_eq!(insert.kind, SpanKind::Client as i32);
    assert!(attr(insert, "db.namespace").is_some_and(|db| db.starts_with("vrs_tracing_")));

    let status = tokio::task::spawn_blocking(move || svc.terminate(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("terminate: {e}"));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
}
