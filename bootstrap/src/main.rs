//! `video-ranking-service`: the Nova reels ranking service.

/// mimalloc rather than the system allocator: requests allocate many small, short-lived
/// buffers from every worker thread, which glibc's malloc served at about a tenth of a cached
/// page's CPU (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod evaluate;
mod experiments;
mod http_server;
mod keys;
mod models;
mod serve;
mod storage;
mod telemetry;
mod wiring;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use uuid::Uuid;
use vrs_domain::UserId;

#[derive(Debug, Parser)]
#[command(
    name = "video-ranking-service",
    version,
    about = "Personalized, ranked reels feeds over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (configuration from environment variables; see the README).
    Serve,
    /// Print a development access token signed with the local development key.
    DevToken {
        /// The user's UUID.
        #[arg(
            long,
            conflicts_with = "demo_user",
            required_unless_present = "demo_user"
        )]
        user: Option<Uuid>,
        /// Number of a demo user (1 = 00000000-0000-4000-8000-000000000001).
        #[arg(long)]
        demo_user: Option<u64>,
        /// Grant the admin role.
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Print tokens of this many consecutive demo users, from `--demo-user` on, one per
        /// line (load tests).
        #[arg(long, default_value_t = 1, requires = "demo_user")]
        count: u64,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Rank a holdout set's users from a training log (JSON lines) with every ranker and print
    /// NDCG@k, Recall@k, HitRate@k, coverage and creator diversity (docs/ranking.md).
    Evaluate {
        /// Training interactions: {"user", "item", "type", "completion"?, "ts", "creator"?} per line.
        #[arg(long)]
        train: std::path::PathBuf,
        /// Later engagements to find: {"user", "item"} per line.
        #[arg(long)]
        holdout: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: evaluate::Format,
        /// The pipeline's weights: freshness,completion,engagement,affinity,model (summing to 1);
        /// default: the service's defaults.
        #[arg(long, value_parser = evaluate::parse_weights)]
        weights: Option<vrs_domain::Weights>,
    },
    /// Write the demo generator's events (DEMO_*) as an `evaluate` training log and holdout set.
    ExportDemo {
        /// Directory for train.jsonl and holdout.jsonl.
        #[arg(long)]
        out: std::path::PathBuf,
        /// The latest share of events that forms the holdout period.
        #[arg(long, default_value_t = 0.2)]
        holdout_share: f64,
    },
    /// Train the model on the signal store's interactions (CLICKHOUSE_URL) or a file, register it
    /// with its offline metrics in the registry (DATABASE_URL) and activate it unless its offline
    /// NDCG@10 is below the active version's.
    Train {
        /// Interactions in the `evaluate` training format instead of the signal store.
        #[arg(long)]
        from_file: Option<std::path::PathBuf>,
        /// How far back the signal store is read.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        window: std::time::Duration,
        /// Most (user, video) pairs read from the signal store, the most recent first (memory:
        /// at most about 3 KB each at the peak of training).
        #[arg(long, default_value_t = 1_000_000)]
        max_pairs: usize,
        #[arg(long, value_enum, default_value = "auto")]
        activate: models::Activate,
        #[arg(long, value_enum, default_value = "table")]
        format: models::Format,
    },
    /// The model registry (DATABASE_URL): list, activate or roll back versions.
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
    /// Experiments (DATABASE_URL; results read CLICKHOUSE_URL): create, start, stop, results.
    Experiments {
        #[command(subcommand)]
        action: ExperimentsCommand,
    },
    /// Apply pending PostgreSQL migrations (DATABASE_URL).
    Migrate,
    /// Exit non-zero when PostgreSQL migrations are pending.
    CheckSchema,
    /// Load the generated demo catalog into the configured real stores, idempotently.
    SeedDemo,
    /// Create the ClickHouse schema (CLICKHOUSE_URL, CLICKHOUSE_DATABASE), idempotently.
    ClickhouseInit,
    /// Run the Kafka consumers alone, without the HTTP API (KAFKA_BROKERS).
    Worker,
    /// Deliver the events of an event spool (EVENT_SPOOL_DIR) to Kafka (KAFKA_BROKERS) and exit:
    /// 0 once it is empty, 1 if events remain after the timeout. For the spool of a pod that is
    /// gone for good (its claim kept after a scale-down).
    DrainSpool {
        /// How long to try.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Rank and cache the feed sessions of the most active users (REDIS_URL: the shared cache).
    Warmup {
        /// How many of the most active users (last 7 days) to warm.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// How many users are ranked at the same time.
        #[arg(long, default_value_t = 10)]
        batch_size: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Every registered version, newest first, with its offline NDCG@10 and inference count.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: models::Format,
    },
    /// Make a version the active one (replicas switch at their next snapshot refresh).
    Activate {
        version: String,
        /// Even when its offline NDCG@10 is below the active version's.
        #[arg(long)]
        force: bool,
    },
    /// Go back to the version active before the current one.
    Rollback,
}

#[derive(Debug, Subcommand)]
enum ExperimentsCommand {
    /// Every experiment, the most recently created first.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: experiments::Format,
    },
    /// One experiment, by id or name.
    Show {
        experiment: String,
        #[arg(long, value_enum, default_value = "table")]
        format: experiments::Format,
    },
    /// Create a draft from a JSON file (the body of POST /api/v1/admin/experiments).
    Create {
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: experiments::Format,
    },
    /// Start a draft (replicas split new sessions at their next snapshot refresh).
    Start { experiment: String },
    /// Stop a running experiment (new sessions get the defaults again).
    Stop { experiment: String },
    /// Per-variant results with 95 % intervals, differences to control and the sample-ratio
    /// check.
    Results {
        experiment: String,
        #[arg(long, value_enum, default_value = "table")]
        format: experiments::Format,
    },
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(work);
    // Work still running on blocking threads when the command is done (the embedded demo's
    // model training, say) does not hold the exit up.
    runtime.shutdown_background();
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let needs = match &cli.command {
        Command::Serve | Command::Warmup { .. } => config::Needs::Serving,
        Command::Worker => config::Needs::Consuming,
        _ => config::Needs::Nothing,
    };
    if let Err(e) = config.check_production_needs(needs) {
        eprintln!("configuration error: {e}");
        return ExitCode::from(2);
    }
    let telemetry = telemetry::init(config.log_format, &config.tracing, config.app_env.as_str());
    let result = match cli.command {
        Command::Serve => block_on(serve::run(config)),
        Command::Migrate => block_on(storage::migrate(&config)),
        Command::ExportDemo { out, holdout_share } => {
            evaluate::export_demo(&config, &out, holdout_share)
        }
        Command::Train {
            from_file,
            window,
            max_pairs,
            activate,
            format,
        } => block_on(models::train(
            &config,
            from_file.as_deref(),
            window,
            max_pairs,
            activate,
            format,
        )),
        Command::Experiments { action } => match action {
            ExperimentsCommand::List { format } => block_on(experiments::list(&config, format)),
            ExperimentsCommand::Show { experiment, format } => {
                block_on(experiments::show(&config, &experiment, format))
            }
            ExperimentsCommand::Create { file, format } => {
                block_on(experiments::create(&config, &file, format))
            }
            ExperimentsCommand::Start { experiment } => {
                block_on(experiments::start(&config, &experiment))
            }
            ExperimentsCommand::Stop { experiment } => {
                block_on(experiments::stop(&config, &experiment))
            }
            ExperimentsCommand::Results { experiment, format } => {
                block_on(experiments::results(&config, &experiment, format))
            }
        },
        Command::Models { action } => match action {
            ModelsCommand::List { format } => block_on(models::list(&config, format)),
            ModelsCommand::Activate { version, force } => {
                block_on(models::activate(&config, &version, force))
            }
            ModelsCommand::Rollback => block_on(models::rollback(&config)),
        },
        Command::CheckSchema => block_on(storage::check_schema_command(&config)),
        Command::SeedDemo => block_on(wiring::seed_demo(&config)),
        Command::ClickhouseInit => block_on(storage::clickhouse_init(&config)),
        Command::Worker => block_on(wiring::worker(&config)),
        Command::DrainSpool { timeout } => block_on(wiring::drain_spool(&config, timeout)),
        Command::Warmup { users, batch_size } => {
            block_on(wiring::warmup(&config, users, batch_size))
        }
        Command::DevToken {
            user,
            demo_user,
            admin,
            ttl,
            count,
        } => match user {
            Some(user) => {
                keys::dev_token(&config, UserId(user), admin, ttl).map(|t| println!("{t}"))
            }
            None => {
                let first = demo_user.unwrap_or(1);
                (first..first.saturating_add(count)).try_for_each(|n| {
                    let user = vrs_application::demo::demo_user_id(n);
                    keys::dev_token(&config, user, admin, ttl).map(|t| println!("{t}"))
                })
            }
        },
        Command::Evaluate {
            train,
            holdout,
            k,
            format,
            weights,
        } => evaluate::run(
            &train,
            &holdout,
            k,
            format,
            config.signal_prior_views,
            config.model_params,
            weights.unwrap_or(vrs_domain::Weights::DEFAULT),
        ),
        Command::Openapi => {
            let (_, doc) = vrs_adapter_http::router::routes();
            doc.to_pretty_json()
                .map(|json| println!("{json}"))
                .map_err(anyhow::Error::from)
        }
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // After the runtime is gone: the spans of the last requests and batches are exported here.
    telemetry.shutdown();
    code
}
