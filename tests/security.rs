//! The HTTP edge against hostile clients, black box: the built binary in embedded mode, attacked
//! over raw TCP and HTTP. Slow and idle connections are closed; made-up methods and paths leave
//! `/metrics` bounded; the service keeps answering others meanwhile.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Service, small_demo_env};

fn start() -> Service {
    let mut env = small_demo_env();
    env.push(("HTTP_HEADER_READ_TIMEOUT_SECS", "2".into()));
    Service::start(&env)
}

fn address(svc: &Service) -> String {
    svc.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closed `stream` (end of stream or reset) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_and_idle_connections_are_closed_while_others_are_served() {
    let svc = start();
    let addr = address(&svc);
    // 200 clients that start a request and never finish its headers (slowloris).
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
                .expect("partial headers");
            s
        })
        .collect();
    // One that completes a request, then stays idle on the keep-alive connection.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("response");
    assert_eq!(&first, b"HTTP/1.1 200");

    // Meanwhile, everyone else is served.
    let live = reqwest::get(svc.url("/api/v1/health/live"))
        .await
        .expect("live during the attack");
    assert_eq!(live.status(), reqwest::StatusCode::OK);

    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut slow_closed = 0;
        for s in &mut slow {
            if closed_by_server(s, Duration::from_secs(6)) {
                slow_closed += 1;
            }
        }
        (
            slow_closed,
            closed_by_server(&mut idle, Duration::from_secs(6)),
        )
    })
    .await
    .expect("readers");
    assert_eq!(
        closed.0,
        200,
        "every connection that never finished its headers is closed (after {:?})",
        started.elapsed()
    );
    assert!(closed.1, "an idle keep-alive connection is closed");
    let live = reqwest::get(svc.url("/api/v1/health/live"))
        .await
        .expect("live after the attack");
    assert_eq!(live.status(), reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_leave_metrics_bounded() {
    let svc = start();
    let client = reqwest::Client::new();
    let metrics = || async {
        client
            .get(svc.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let before = metrics().await;
    let mut methods = Vec::new();
    for i in 0..1000 {
        let method = format!("M{}{i}", uuid::Uuid::new_v4().simple());
        let response = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                svc.url(&format!("/{}/{i}", uuid::Uuid::new_v4())),
            )
            .send()
            .await
            .expect("request");
        assert!(response.status().is_client_error(), "{}", response.status());
        methods.push(method);
    }
    let after = metrics().await;
    let grown = after.len().saturating_sub(before.len());
    assert!(grown < 16 * 1024, "/metrics grew by {grown} bytes");
    assert!(!methods.iter().any(|m| after.contains(m.as_str())));
}
