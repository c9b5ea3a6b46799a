//! `video-ranking-service evaluate`: reads a training log and a holdout set (JSON lines) and
//! prints how each ranker did (see `vrs_application::evaluate` and docs/ranking.md).

use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::Path;
use vrs_application::evaluate::{self, Interaction, Report};
use vrs_domain::EventType;

/// Output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A user or item name: a string, or an integer written as one.
fn name(line: &Value, field: &str, at: &str) -> anyhow::Result<String> {
    match &line[field] {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => bail!("{at}: `{field}` must be a non-empty string or an integer"),
    }
}

fn lines(path: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let at = format!("{}:{}", path.display(), n + 1);
        let line = line.with_context(|| format!("{at}: reading"))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("{at}: not a JSON object"))?;
        if !value.is_object() {
            bail!("{at}: not a JSON object");
        }
        out.push((at, value));
    }
    Ok(out)
}

pub fn train(path: &Path) -> anyhow::Result<Vec<Interaction>> {
    lines(path)?
        .into_iter()
        .map(|(at, v)| {
            let event_type = v["type"]
                .as_str()
                .and_then(EventType::parse)
                .with_context(|| format!("{at}: `type` must be one of the engagement types"))?;
            let completion = match &v["completion"] {
                Value::Null => None,
                c => Some(
                    c.as_f64()
                        .filter(|c| (0.0..=1.0).contains(c))
                        .with_context(|| format!("{at}: `completion` must be from 0 to 1"))?,
                ),
            };
            let ts = v["ts"]
                .as_i64()
                .or_else(|| v["ts"].as_f64().map(|t| t as i64))
                .with_context(|| format!("{at}: `ts` must be unix seconds"))?;
            Ok(Interaction {
                user: name(&v, "user", &at)?,
                item: name(&v, "item", &at)?,
                event_type,
                completion,
                at: evaluate::unix_seconds(ts),
                creator: match &v["creator"] {
                    Value::Null => None,
                    _ => Some(name(&v, "creator", &at)?),
                },
            })
        })
        .collect()
}

fn holdout(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    lines(path)?
        .into_iter()
        .map(|(at, v)| Ok((name(&v, "user", &at)?, name(&v, "item", &at)?)))
        .collect()
}

/// `--weights`: five comma-separated weights (freshness, completion, engagement, affinity,
/// model), valid as the admin route wants them.
pub fn parse_weights(raw: &str) -> Result<vrs_domain::Weights, String> {
    let parts: Vec<f64> = raw
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let [f, c, e, a, m] = parts[..] else {
        return Err(format!(
            "expected 5 weights (freshness,completion,engagement,affinity,model), got {}",
            parts.len()
        ));
    };
    vrs_domain::Weights::new(f, c, e, a, m).map_err(|e| e.to_string())
}

/// The report as a Markdown table.
pub fn table(report: &Report) -> String {
    let k = report.k;
    let mut out = format!(
        "{} holdout users, {} items, {} training events\n\n| ranker | NDCG@{k} | Recall@{k} | HitRate@{k} | coverage | creator diversity |\n|---|---|---|---|---|---|\n",
        report.users, report.items, report.train_events
    );
    for r in &report.rankers {
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            r.ranker, r.ndcg, r.recall, r.hit_rate, r.coverage, r.creator_diversity
        ));
    }
    out
}

pub fn run(
    train_path: &Path,
    holdout_path: &Path,
    k: usize,
    format: Format,
    prior_views: f64,
    params: vrs_domain::factors::FactorParams,
    weights: vrs_domain::Weights,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let train = train(train_path)?;
    let holdout = holdout(holdout_path)?;
    let report = evaluate::evaluate(&train, &holdout, k, prior_views, params, weights, 42)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            print!("{}", table(&report));
            eprintln!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// `export-demo`: the demo generator's events as an `evaluate` training log and holdout set, split
/// in time: events before the latest `holdout_share` are the training log (with each video's
/// creator); the holdout is what training users liked, shared, commented on or completed later.
pub fn export_demo(
    config: &crate::config::Config,
    out: &Path,
    holdout_share: f64,
) -> anyhow::Result<()> {
    if !(0.0 < holdout_share && holdout_share < 1.0) {
        bail!("--holdout-share must lie strictly between 0 and 1");
    }
    let data = vrs_application::demo::generate(
        crate::wiring::demo_size(config),
        chrono::Utc::now(),
        config.demo.seed,
    );
    let mut events = data.events;
    events.sort_by_key(|e| (e.occurred_at, e.event_id));
    let Some(cut) = events
        .get(((events.len() as f64) * (1.0 - holdout_share)) as usize)
        .map(|e| e.occurred_at)
    else {
        bail!("the demo has no events (DEMO_USERS or DEMO_VIDEOS is 0)");
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut train = std::io::BufWriter::new(std::fs::File::create(out.join("train.jsonl"))?);
    let mut holdout = std::io::BufWriter::new(std::fs::File::create(out.join("holdout.jsonl"))?);
    let mut users = std::collections::HashSet::new();
    let mut held = std::collections::HashSet::new();
    let (mut train_lines, mut holdout_lines) = (0usize, 0usize);
    for e in &events {
        if e.occurred_at < cut {
            users.insert(e.user_id);
            let mut line = serde_json::json!({
                "user": e.user_id.0.to_string(),
                "item": e.video_id.0.to_string(),
                "type": e.event_type.as_str(),
                "ts": e.occurred_at.timestamp(),
                "creator": e.creator_id.0.to_string(),
            });
            if let Some(c) = e.completion {
                line["completion"] = serde_json::json!(c);
            }
            writeln!(train, "{line}")?;
            train_lines += 1;
        } else if users.contains(&e.user_id)
            && matches!(
                e.event_type,
                EventType::Like | EventType::Share | EventType::Comment | EventType::Complete
            )
            && held.insert((e.user_id, e.video_id))
        {
            let line = serde_json::json!({
                "user": e.user_id.0.to_string(),
                "item": e.video_id.0.to_string(),
            });
            writeln!(holdout, "{line}")?;
            holdout_lines += 1;
        }
    }
    train.flush()?;
    holdout.flush()?;
    eprintln!(
        "wrote {train_lines} training events and {holdout_lines} holdout pairs to {}",
        out.display()
    );
    Ok(())
}
