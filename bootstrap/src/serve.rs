//! `serve`: the HTTP server, the background snapshot refresh, and graceful shutdown.

use crate::config::Config;
use crate::wiring;
use anyhow::Context;
use std::time::Duration;
use tokio::sync::watch;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let app = wiring::build(&config).await?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("APP_PORT: cannot listen on {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(
        app.refresher
            .clone()
            .run(config.snapshot_refresh, stopped(stop_rx.clone())),
    );
    let (users, events, addresses) = (
        app.state.rate_limiter.clone(),
        app.state.event_limiter.clone(),
        app.state.auth_failures.clone(),
    );
    if users.is_some() || events.is_some() || addresses.is_some() {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => {
                        for limiter in [&users, &events].into_iter().flatten() {
                            limiter.retain_recent();
                        }
                        if let Some(limiter) = &addresses {
                            limiter.retain_recent();
                        }
                    }
                }
            }
        });
    }

    // The running experiments' results, as Prometheus gauges (and the sample-ratio alert's
    // input): computed every few minutes on every replica, a small query per experiment.
    {
        let experiments = app.state.experiments.clone();
        let mut stop = stop_rx.clone();
        let every = config.experiment_metrics_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = experiments.refresh_gauges().await {
                    tracing::warn!(error = %e, "could not refresh the experiment gauges");
                }
            }
        });
    }
    let feed = app.state.feed.clone();

    if let Some(training) = app.demo_training {
        tokio::spawn(training.run());
    }
    let consumer = app
        .consumer
        .map(|consumer| tokio::spawn(consumer.run(stopped(stop_rx.clone()))));
    let cdc_consumer = app
        .cdc_consumer
        .map(|consumer| tokio::spawn(consumer.run(stopped(stop_rx.clone()))));
    if let Some(pg) = app.postgres.clone() {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => pg.record_pool_metrics(),
                }
            }
        });
    }

    let router = vrs_adapter_http::router(app.state, app.http);
    tracing::info!("listening on http://{addr}");
    let limits = crate::http_server::ConnectionLimits {
        header_read_timeout: config.http_header_read_timeout,
        max_connections: config.http_max_connections,
    };
    let server = crate::http_server::serve(listener, router, limits, {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stop_tx.send(true);
        }
    });
    let grace = config.shutdown_grace;
    let mut stop = stop_rx;
    tokio::select! {
        () = server => {},
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("requests still in flight after {grace:?}; exiting anyway"),
    }
    // The consumers finish their batch and commit what they stored.
    let _ = stop_tx.send(true);
    let consumers = async {
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        if let Some(consumer) = cdc_consumer {
            let _ = consumer.await;
        }
    };
    // Spooled events go to Kafka before the process leaves (while the consumers finish); what
    // cannot be delivered in time stays in the spool directory for the next process on it.
    let drain = async {
        if let Some(sink) = &app.kafka_sink {
            let spooled = sink.spooled();
            if spooled > 0 {
                tracing::info!(spooled, "draining the event spool into Kafka");
                let left = sink.drain(grace).await;
                if left > 0 {
                    tracing::warn!(
                        left,
                        "events stay in the spool; the next process on its directory replays them"
                    );
                } else {
                    tracing::info!(spooled, "event spool drained");
                }
            }
        }
    };
    // The exposures of the last pages served are published (into the sink, or its spool)
    // before the sink drains.
    // A quarter of the grace at most: the spool drain below needs the rest of the pod's
    // termination period.
    if !feed.exposure_log().flush(grace / 4).await {
        tracing::warn!("exposures of the last pages were still being published at exit");
    }
    let _ = tokio::join!(tokio::time::timeout(grace, consumers), drain);
    if let Some(pg) = &app.postgres {
        pg.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}
