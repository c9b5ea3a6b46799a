//! `train` and `models list|activate|rollback`: the model registry from the command line. The
//! registry is PostgreSQL's (`DATABASE_URL`); training reads ClickHouse (`CLICKHOUSE_URL`) or a
//! file in the `evaluate` training format.

use crate::config::Config;
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;
use vrs_application::SystemClock;
use vrs_application::model::{self, ActivationPolicy, Engagement, ModelService};
use vrs_application::ports::{Clock, ModelRegistry, SignalStore};
use vrs_domain::{CreatorId, UserId, VideoId};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `train --activate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Activate {
    /// Unless its offline NDCG@10 is below the active version's.
    Auto,
    /// Register only.
    Never,
    /// Whatever its metrics.
    Force,
}

/// Where users' and videos' names in a file become ids: a UUID stays itself, any other name is
/// the version-5 UUID of the name in this namespace.
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7661_2d72_616e_6b69_6e67_2d69_6473);

fn id_of(name: &str) -> Uuid {
    Uuid::parse_str(name).unwrap_or_else(|_| Uuid::new_v5(&NAME_NAMESPACE, name.as_bytes()))
}

async fn registry(config: &Config) -> anyhow::Result<Arc<dyn ModelRegistry>> {
    let Some(url) = &config.database_url else {
        bail!(
            "DATABASE_URL is not set: the model registry lives in PostgreSQL (the embedded mode's is inside its server; use the admin routes there)"
        );
    };
    let store = crate::storage::connect(config, url).await?;
    crate::storage::check_schema(&store).await?;
    Ok(Arc::new(store))
}

fn service(registry: Arc<dyn ModelRegistry>) -> ModelService {
    ModelService::new(registry, Arc::new(SystemClock) as Arc<dyn Clock>)
}

fn interactions_from_file(path: &Path) -> anyhow::Result<Vec<Engagement>> {
    let lines = crate::evaluate::train(path)?;
    // An item's creator: from any line that names one, else the item is its own creator.
    let mut creators: std::collections::HashMap<String, String> = Default::default();
    for e in &lines {
        if let Some(c) = &e.creator {
            creators.entry(e.item.clone()).or_insert_with(|| c.clone());
        }
    }
    Ok(model::engagements(lines.iter().map(|e| {
        let creator = creators
            .get(&e.item)
            .map_or_else(|| id_of(&format!("creator of {}", e.item)), |c| id_of(c));
        (
            UserId(id_of(&e.user)),
            VideoId(id_of(&e.item)),
            CreatorId(creator),
            e.event_type.affinity_weight(),
            e.at,
        )
    })))
}

async fn interactions_from_clickhouse(
    config: &Config,
    window: std::time::Duration,
    max_pairs: usize,
) -> anyhow::Result<Vec<Engagement>> {
    let Some(url) = &config.clickhouse_url else {
        bail!(
            "CLICKHOUSE_URL is not set: train reads the interactions there (or give --from-file)"
        );
    };
    let store = vrs_adapter_clickhouse::ClickHouseSignalStore::new(
        &vrs_adapter_clickhouse::ClickHouseConfig::new(
            url.clone(),
            config.clickhouse_database.clone(),
        ),
    )
    .map_err(|e| anyhow::anyhow!("CLICKHOUSE_URL: {e}"))?;
    let since = chrono::Utc::now() - chrono::Duration::from_std(window)?;
    let pairs = store
        .engagement_pairs(since, max_pairs)
        .await
        .context("reading the interactions from ClickHouse")?;
    if pairs.len() == max_pairs {
        tracing::warn!(
            max_pairs,
            "the window holds more (user, video) pairs than --max-pairs: training on the most recent"
        );
        eprintln!(
            "warning: training on the {max_pairs} most recent pairs of the window (--max-pairs)"
        );
    }
    Ok(pairs)
}

/// `train`.
pub async fn train(
    config: &Config,
    from_file: Option<&Path>,
    window: std::time::Duration,
    max_pairs: usize,
    activate: Activate,
    format: Format,
) -> anyhow::Result<()> {
    let registry = registry(config).await?;
    let data = match from_file {
        Some(path) => interactions_from_file(path)?,
        None => interactions_from_clickhouse(config, window, max_pairs).await?,
    };
    eprintln!("training on {} interactions", data.len());
    let policy = match activate {
        Activate::Auto => ActivationPolicy::Auto,
        Activate::Never => ActivationPolicy::Never,
        Activate::Force => ActivationPolicy::Force,
    };
    let report = service(registry)
        .train(data, config.model_params, policy)
        .await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            let m = &report.metrics;
            println!("version            {}", report.version);
            println!(
                "trained on         {} interactions of {} users on {} videos in {:.1} s",
                m.interactions, m.users, m.videos, m.training_seconds
            );
            println!(
                "offline NDCG@10    {:.4} (popularity {:.4}) over {} holdout users",
                m.ndcg_at_10, m.popularity_ndcg_at_10, m.holdout_users
            );
            println!("offline Recall@10  {:.4}", m.recall_at_10);
            println!("artifact           {} bytes", report.artifact_bytes);
            match &report.not_activated_because {
                None => println!("activated          yes"),
                Some(why) => println!("activated          no: {why}"),
            }
        }
    }
    Ok(())
}

/// `models list`.
pub async fn list(config: &Config, format: Format) -> anyhow::Result<()> {
    let models = service(registry(config).await?).list().await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&models)?),
        Format::Table => {
            println!("| version | active | deployed at | NDCG@10 | inferences | artifact bytes |");
            println!("|---|---|---|---|---|---|");
            for m in models {
                let ndcg = m
                    .performance_metrics
                    .get("ndcg_at_10")
                    .and_then(serde_json::Value::as_f64)
                    .map_or("-".to_owned(), |x| format!("{x:.4}"));
                println!(
                    "| {} | {} | {} | {} | {} | {} |",
                    m.version,
                    if m.is_active { "yes" } else { "" },
                    m.deployed_at.to_rfc3339(),
                    ndcg,
                    m.inference_count,
                    m.artifact_bytes
                );
            }
        }
    }
    Ok(())
}

/// `models activate`.
pub async fn activate(config: &Config, version: &str, force: bool) -> anyhow::Result<()> {
    let done = service(registry(config).await?)
        .activate(version, force)
        .await?;
    println!(
        "{} is active{}; replicas switch at their next snapshot refresh",
        done.version,
        if done.forced { " (forced)" } else { "" }
    );
    Ok(())
}

/// `models rollback`.
pub async fn rollback(config: &Config) -> anyhow::Result<()> {
    let version = service(registry(config).await?).rollback().await?;
    println!("{version} is active again; replicas switch at their next snapshot refresh");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_stable_ids_and_uuids_stay_themselves() {
        let u = Uuid::new_v4();
        assert_eq!(id_of(&u.to_string()), u);
        assert_eq!(id_of("user 7"), id_of("user 7"));
        assert_ne!(id_of("user 7"), id_of("user 8"));
    }
}
