//! The HTTP server loop: hyper's HTTP/1 and HTTP/2 with the limits `axum::serve` does not set.
//!
//! - A connection whose request headers do not arrive whole within `header_read_timeout` is
//!   closed; that also bounds how long an idle keep-alive connection waits for its next request
//!   (slowloris and idle connections cannot pile up).
//! - At most `max_connections` connections are served at once; past that the listener is not
//!   accepted from until one closes (the kernel's backlog queues the rest).
//! - On shutdown, connections finish their requests in flight and close.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Gauge of the connections being served.
pub const OPEN_CONNECTIONS_METRIC: &str = "http_open_connections";

/// Limits of the server loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers (and the longest a keep-alive
    /// connection waits idle for the next request).
    pub header_read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in
/// flight (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_read_timeout);
    metrics::gauge!(OPEN_CONNECTIONS_METRIC).set(0.0);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: Request<Incoming>| {
                // The peer address, for per-client limits (`ConnectInfo`, as axum names it).
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(Body::new)
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        metrics::gauge!(OPEN_CONNECTIONS_METRIC).increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics::gauge!(OPEN_CONNECTIONS_METRIC).decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
