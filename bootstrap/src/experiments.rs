//! `experiments list|show|create|start|stop|results`: experiments from the command line. They
//! live in PostgreSQL (`DATABASE_URL`); results read ClickHouse (`CLICKHOUSE_URL`).

use crate::config::Config;
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use vrs_adapter_http::experiments::{ExperimentDto, ResultsResponse, parse_create};
use vrs_adapter_memory::{BaseUrlMediaUrls, MemoryAdapters};
use vrs_application::ports::Clock;
use vrs_application::{ExperimentService, SystemClock};
use vrs_domain::Experiment;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How long after an exposure its user's events count for it: as long as a feed session serves
/// pages (its reuse, the jitter, and the cursor time after it).
pub fn attribution(config: &Config) -> std::time::Duration {
    config.feed_session_ttl
        + config.feed_session_ttl_jitter
        + vrs_application::FeedConfig::default()
            .cursor_ttl
            .to_std()
            .unwrap_or_default()
}

/// The service on PostgreSQL's experiments and model registry, and ClickHouse's signals when
/// `with_results`.
async fn service(config: &Config, with_results: bool) -> anyhow::Result<ExperimentService> {
    let Some(url) = &config.database_url else {
        bail!(
            "DATABASE_URL is not set: experiments live in PostgreSQL (the embedded mode's are inside its server; use the admin routes there)"
        );
    };
    let store = crate::storage::connect(config, url).await?;
    crate::storage::check_schema(&store).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut ports =
        MemoryAdapters::default().ports(clock, Arc::new(BaseUrlMediaUrls::new("")), false);
    ports.experiments = Arc::new(store.clone());
    ports.model_registry = Arc::new(store);
    if with_results {
        let Some(url) = &config.clickhouse_url else {
            bail!("CLICKHOUSE_URL is not set: results are computed from the signal store");
        };
        let signals = vrs_adapter_clickhouse::ClickHouseSignalStore::new(
            &vrs_adapter_clickhouse::ClickHouseConfig::new(
                url.clone(),
                config.clickhouse_database.clone(),
            ),
        )
        .map_err(|e| anyhow::anyhow!("CLICKHOUSE_URL: {e}"))?;
        ports.signals = Arc::new(signals);
    }
    Ok(ExperimentService::new(ports, attribution(config)))
}

fn print(experiment: Experiment, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&ExperimentDto::from(experiment))?
        ),
        Format::Table => {
            println!(
                "{} ({}) {} layer={} created={}",
                experiment.name,
                experiment.id,
                experiment.state.as_str(),
                experiment.layer,
                experiment.created_at.to_rfc3339()
            );
            for (i, v) in experiment.variants.iter().enumerate() {
                println!(
                    "  {:<16} share={:.4}{}{}{}",
                    v.name,
                    v.share(),
                    if i == 0 { " (control)" } else { "" },
                    v.weights
                        .map(|w| format!(" weights={w:?}"))
                        .unwrap_or_default(),
                    v.model_version
                        .as_deref()
                        .map(|m| format!(" model={m}"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}

/// `experiments list`.
pub async fn list(config: &Config, format: Format) -> anyhow::Result<()> {
    let all = service(config, false).await?.list().await?;
    if format == Format::Json {
        let dtos: Vec<ExperimentDto> = all.into_iter().map(Into::into).collect();
        println!("{}", serde_json::to_string_pretty(&dtos)?);
        return Ok(());
    }
    for e in all {
        print(e, format)?;
    }
    Ok(())
}

/// `experiments show`.
pub async fn show(config: &Config, key: &str, format: Format) -> anyhow::Result<()> {
    print(service(config, false).await?.get(key).await?, format)
}

/// `experiments create --file`.
pub async fn create(config: &Config, file: &Path, format: Format) -> anyhow::Result<()> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let draft = parse_create(&body).map_err(|e| {
        anyhow::anyhow!(
            "{}{}",
            e.message,
            e.details
                .as_ref()
                .and_then(|d| d.get("field"))
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default()
        )
    })?;
    print(service(config, false).await?.create(draft).await?, format)
}

/// `experiments start`.
pub async fn start(config: &Config, key: &str) -> anyhow::Result<()> {
    let e = service(config, false).await?.start(key).await?;
    println!(
        "{} is running; replicas split new sessions at their next snapshot refresh",
        e.name
    );
    Ok(())
}

/// `experiments stop`.
pub async fn stop(config: &Config, key: &str) -> anyhow::Result<()> {
    let e = service(config, false).await?.stop(key).await?;
    println!(
        "{} is stopped; new sessions are ranked by the defaults from the next refresh",
        e.name
    );
    Ok(())
}

/// `experiments results`.
pub async fn results(config: &Config, key: &str, format: Format) -> anyhow::Result<()> {
    let service = service(config, true).await?;
    let (experiment, results) = service.results(key).await?;
    let response = ResultsResponse::new(experiment, results, service.attribution().as_secs());
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    println!(
        "{} ({}): attribution {} s; sample ratio p = {}{}",
        response.experiment.name,
        response.experiment.state,
        response.attribution_seconds,
        response
            .sample_ratio
            .p_value
            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.4}")),
        if response.sample_ratio.mismatch {
            "  MISMATCH: assignment or logging is broken; trust no difference"
        } else {
            ""
        }
    );
    for v in &response.variants {
        println!(
            "{}{}: users {} sessions {} exposures {}",
            v.variant,
            if v.is_control { " (control)" } else { "" },
            v.users,
            v.sessions,
            v.exposures
        );
        for m in &v.metrics {
            let value = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.4}"));
            let diff = m.difference.as_ref().map_or_else(String::new, |d| {
                format!(
                    "  diff {:+.4} [{:+.4}, {:+.4}]{}",
                    d.value,
                    d.ci_low,
                    d.ci_high,
                    if d.significant { " *" } else { "" }
                )
            });
            println!(
                "  {:<22} {} [{}, {}]{}",
                m.metric,
                value(m.estimate.value),
                value(m.estimate.ci_low),
                value(m.estimate.ci_high),
                diff
            );
        }
    }
    Ok(())
}
