//! `seed`: create a site, a push, or many subscribers. See `seed --help`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pushservice_config::{LogArgs, MongoArgs};
use pushservice_model::{Priority, parse_object_id};
use pushservice_seed::{PushTemplate, SubscriberSeed, new_push, new_site, seed_subscribers};
use pushservice_store::Store;

/// Seed pushservice's MongoDB with sites, pushes and subscribers (for tests, demos and
/// benchmarks). Prints the created id on stdout.
#[derive(Debug, Parser)]
#[command(name = "seed", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    mongo: MongoArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a site with a fresh VAPID key pair; prints its id.
    Site {
        /// VAPID subject: how push services reach the operator.
        #[arg(long, env = "SEED_SUBJECT", default_value = "mailto:push@example.com")]
        subject: String,
    },
    /// Create a pending push for a site; prints its id.
    Push(PushArgs),
    /// Create subscribers for a site in bulk, with a progress bar.
    Subscribers(SubscriberArgs),
}

#[derive(Debug, Args)]
struct PushArgs {
    /// Site id.
    #[arg(long)]
    site: String,
    /// Notification title.
    #[arg(long, default_value = "Hello from pushservice")]
    title: String,
    /// Notification body.
    #[arg(long, default_value = "This notification was seeded.")]
    body: String,
    /// Icon URL.
    #[arg(long)]
    icon: Option<String>,
    /// Where a click leads.
    #[arg(long)]
    launch_url: Option<String>,
    /// Delivery priority.
    #[arg(long, value_parser = ["normal", "high"], default_value = "normal")]
    priority: String,
    /// Time to live, seconds.
    #[arg(long, default_value_t = pushservice_model::push::DEFAULT_TIME_TO_LIVE)]
    ttl: i64,
}

#[derive(Debug, Args)]
struct SubscriberArgs {
    /// Site id.
    #[arg(long)]
    site: String,
    /// How many subscribers to create.
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// Base URL of the generated endpoints: point it at a push-service simulator.
    #[arg(
        long,
        env = "SEED_ENDPOINT_BASE",
        default_value = "http://127.0.0.1:9090/wp"
    )]
    endpoint_base: String,
    /// Secret the subscribers' private keys are derived from (tests and simulators use it to
    /// decrypt); never a production secret.
    #[arg(
        long,
        env = "SEED_KEY_SEED",
        default_value = "pushservice-seed",
        hide_env_values = true
    )]
    key_seed: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Err(e) = pushservice_config::init_logging(&cli.log, "warn") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mongo = cli.mongo.settings()?;
    let store = Store::connect(&mongo).await?;
    let result: anyhow::Result<()> = async {
        store.ensure_indexes().await?;
        match cli.command {
            Command::Site { subject } => {
                let site = new_site(&subject)?;
                store.insert_site(&site).await?;
                println!("{}", site.id.to_hex());
            }
            Command::Push(args) => {
                let site_id = parse_object_id("site", &args.site)?;
                store.site(site_id).await?.with_context(|| {
                    format!("site {site_id} does not exist; create one with `seed site`")
                })?;
                let template = PushTemplate {
                    title: args.title,
                    body: args.body,
                    icon: args.icon,
                    launch_url: args.launch_url,
                    priority: if args.priority == "high" {
                        Priority::High
                    } else {
                        Priority::Normal
                    },
                    time_to_live: args.ttl,
                };
                let push = new_push(site_id, &template);
                store.insert_push(&push).await?;
                println!("{}", push.id.to_hex());
            }
            Command::Subscribers(args) => {
                let site_id = parse_object_id("site", &args.site)?;
                store.site(site_id).await?.with_context(|| {
                    format!("site {site_id} does not exist; create one with `seed site`")
                })?;
                let seed = SubscriberSeed {
                    site_id,
                    count: args.count,
                    endpoint_base: args.endpoint_base,
                    key_seed: args.key_seed.into_bytes(),
                    batch_size: mongo.batch_size as usize,
                };
                let bar = ProgressBar::new(args.count).with_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:40} {human_pos}/{human_len} subscribers {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
                let report = seed_subscribers(&store, &seed, |n| bar.set_position(n)).await?;
                bar.finish_and_clear();
                eprintln!(
                    "inserted {} subscribers for site {site_id} in {:.1}s ({:.0}/s)",
                    report.inserted,
                    report.elapsed.as_secs_f64(),
                    report.rate()
                );
                println!("{}", report.inserted);
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}
