//! The HTTP edge against hostile clients, black box: the built binary in embedded mode, attacked
//! over raw TCP and HTTP. Slow and idle connections are closed; made-up methods and paths leave
//! `/metrics` bounded; forged tokens (alg confusion, `none`, tampered), forged and borrowed
//! cursors and admin routes without the role are refused; oversized, malformed and slow bodies
//! get JSON errors, never a 5xx; a forged-token flood is cut off before verification; like spam
//! counts once.

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

/// A request with a bearer token (or none); status and JSON body.
async fn call(
    svc: &Service,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, svc.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let res = request.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Signs `claims` with HS256, using `secret` as the HMAC key.
fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn forged_tokens_are_refused_whatever_the_algorithm() {
    let svc = start();
    let valid = svc.token(&["--demo-user", "1"]);
    let public_pem = std::fs::read(svc.data_dir.join("dev-jwt-public.pem")).expect("public key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = serde_json::json!({
        "sub": "00000000-0000-4000-8000-000000000001",
        "exp": now + 600,
        "token_type": "access",
        "role": "admin",
    });
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims.to_string().as_bytes());
    // The payload of a valid token swapped for another user's, signature kept.
    let mut parts: Vec<&str> = valid.split('.').collect();
    parts[1] = &payload;
    let tampered = parts.join(".");
    let forged = [
        (
            "HS256 keyed with the public key (alg confusion)",
            hs256(&claims, &public_pem),
        ),
        ("alg none", format!("{header_none}.{payload}.")),
        (
            "alg none without a signature part",
            format!("{header_none}.{payload}"),
        ),
        ("a valid token's payload replaced", tampered),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in &forged {
        let (status, body) = call(
            &svc,
            reqwest::Method::GET,
            "/api/v1/reels",
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{what}: {body}");
        let (status, _) = call(
            &svc,
            reqwest::Method::GET,
            "/api/v1/admin/ranking/weights",
            Some(token),
            None,
        )
        .await;
        assert_eq!(
            status,
            reqwest::StatusCode::UNAUTHORIZED,
            "{what} on an admin route"
        );
    }
    // A valid user token is not an admin's.
    let (status, body) = call(
        &svc,
        reqwest::Method::PUT,
        "/api/v1/admin/ranking/weights",
        Some(&valid),
        Some((
            "application/json",
            br#"{"freshness":1,"completion":0,"engagement":0,"affinity":0,"model":0}"#.to_vec(),
        )),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{body}");
    for path in [
        "/api/v1/admin/cache-warmup",
        "/api/v1/admin/cache/invalidate",
    ] {
        let (status, _) = call(&svc, reqwest::Method::POST, path, Some(&valid), None).await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{path}");
        let (status, _) = call(&svc, reqwest::Method::POST, path, None, None).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{path}");
    }
    // Health shows no dependency detail to anyone but an admin.
    for token in [None, Some(valid.as_str())] {
        let (_, body) = call(&svc, reqwest::Method::GET, "/api/v1/health", token, None).await;
        assert!(
            body.get("checks").is_none() && body.get("version").is_none(),
            "{body}"
        );
    }
    let admin = svc.token(&["--demo-user", "1", "--admin"]);
    let (_, body) = call(
        &svc,
        reqwest::Method::GET,
        "/api/v1/health",
        Some(&admin),
        None,
    )
    .await;
    assert!(body["checks"].is_object(), "{body}");
}

#[tokio::test]
async fn cursors_cannot_be_forged_altered_or_borrowed() {
    let svc = start();
    let alice = svc.token(&["--demo-user", "1"]);
    let bob = svc.token(&["--demo-user", "2"]);
    let (_, page) = call(
        &svc,
        reqwest::Method::GET,
        "/api/v1/reels?limit=5",
        Some(&alice),
        None,
    )
    .await;
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    for i in [0, cursor.len() / 2, cursor.len() - 2] {
        let mut bytes = cursor.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap_or_default();
        let (status, body) = call(
            &svc,
            reqwest::Method::GET,
            &format!("/api/v1/reels?cursor={altered}"),
            Some(&alice),
            None,
        )
        .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "byte {i}: {body}");
        assert_eq!(error_code(&body), "invalid_cursor");
    }
    let long = "A".repeat(4_000);
    for forged in [
        format!("?cursor={cursor}", cursor = b64(&[1u8; 61])),
        "?cursor=%00%01".to_owned(),
        format!("?cursor={long}"),
    ] {
        let (status, body) = call(
            &svc,
            reqwest::Method::GET,
            &format!("/api/v1/reels{forged}"),
            Some(&alice),
            None,
        )
        .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{forged}: {body}");
    }
    let (status, body) = call(
        &svc,
        reqwest::Method::GET,
        &format!("/api/v1/reels?cursor={cursor}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_cursor");
}

#[tokio::test]
async fn oversized_malformed_and_slow_bodies_get_json_errors() {
    let mut env = small_demo_env();
    env.push(("HTTP_BODY_READ_TIMEOUT_SECS", "1".into()));
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "1"]);
    let admin = svc.token(&["--demo-user", "1", "--admin"]);
    // What, route, content type, body, expected status and error code.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "events over 64 KiB",
            "/api/v1/events",
            "application/json",
            vec![b' '; 65 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "admin over 1 MiB",
            "/api/v1/admin/cache/invalidate",
            "application/json",
            vec![b' '; 1024 * 1024 + 10],
            413,
            "payload_too_large",
        ),
        (
            "not JSON",
            "/api/v1/events",
            "application/json",
            b"{\"events\": [".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not JSON either",
            "/api/v1/events",
            "application/json",
            vec![0xff, 0xfe, 0x00],
            400,
            "invalid_json",
        ),
        (
            "wrong media type",
            "/api/v1/events",
            "text/plain",
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "no events",
            "/api/v1/events",
            "application/json",
            b"{\"events\": []}".to_vec(),
            422,
            "invalid_batch",
        ),
        (
            "nested deep",
            "/api/v1/events",
            "application/json",
            format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
            400,
            "invalid_json",
        ),
    ];
    for (what, path, content_type, body, status, code) in cases {
        let bearer = if path.contains("admin") {
            &admin
        } else {
            &token
        };
        let (got, answer) = call(
            &svc,
            reqwest::Method::POST,
            path,
            Some(bearer),
            Some((content_type, body)),
        )
        .await;
        assert_eq!(got.as_u16(), status, "{what}: {answer}");
        assert_eq!(error_code(&answer), code, "{what}: {answer}");
        if status == 413 {
            let limit = if path.contains("admin") {
                "1048576"
            } else {
                "65536"
            };
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(limit)),
                "{what}: {answer}"
            );
        }
    }

    // A body that stops arriving: 408 and the connection closed, never a 5xx.
    let addr = address(&svc);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"events\""
    );
    stream.write_all(head.as_bytes()).expect("partial body");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let metrics = reqwest::get(svc.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total") && l.contains("status=\"5")),
        "no request was a server error"
    );
}

#[tokio::test]
async fn a_forged_token_flood_is_cut_off_before_verification() {
    let mut env = small_demo_env();
    env.push(("AUTH_FAILURES_PER_IP_PER_SECOND", "1".into()));
    env.push(("AUTH_FAILURES_PER_IP_BURST", "20".into()));
    let svc = Service::start(&env);
    let valid = svc.token(&["--demo-user", "1"]);
    let forged = format!("{valid}x");
    let mut refused = 0;
    for _ in 0..200 {
        let (status, _) = call(
            &svc,
            reqwest::Method::GET,
            "/api/v1/reels",
            Some(&forged),
            None,
        )
        .await;
        match status.as_u16() {
            401 => {}
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused >= 170,
        "only {refused} of 200 forged tokens were cut off"
    );
    let metrics = reqwest::get(svc.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let blocked: f64 = metrics
        .lines()
        .find(|l| l.starts_with("http_auth_failures_blocked_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(blocked >= 170.0, "{blocked}");
    // The unauthenticated routes stay open to the same address.
    let live = reqwest::get(svc.url("/api/v1/health/live"))
        .await
        .expect("live");
    assert_eq!(live.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn like_spam_moves_no_signal() {
    let svc = start();
    let token = svc.token(&["--demo-user", "5"]);
    let (_, page) = call(
        &svc,
        reqwest::Method::GET,
        "/api/v1/reels?limit=1",
        Some(&token),
        None,
    )
    .await;
    let video = page["videos"][0]["id"]
        .as_str()
        .expect("a video")
        .to_owned();
    let mut counted = 0;
    for _ in 0..5 {
        let events: Vec<serde_json::Value> = (0..100)
            .map(|_| {
                serde_json::json!({"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "like"})
            })
            .collect();
        let (status, body) = call(
            &svc,
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&token),
            Some((
                "application/json",
                serde_json::json!({ "events": events })
                    .to_string()
                    .into_bytes(),
            )),
        )
        .await;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            continue;
        }
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        counted += body["accepted"].as_u64().unwrap_or(0);
    }
    assert_eq!(counted, 1, "500 likes of one account count once");
}
