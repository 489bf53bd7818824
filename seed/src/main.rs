//! `seed`: create a site, a push, or many subscribers. See `seed --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pushservice_apns::CredentialFileError;
use pushservice_config::{LogArgs, MongoArgs};
use pushservice_model::{ApnsCredentials, Platform, Priority, parse_object_id};
use pushservice_seed::{
    PushTemplate, SubscriberSeed, apns_test_key, fcm_test_service_account, new_push, new_site,
    seed_subscribers,
};
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
    /// Create a site with a fresh VAPID key pair (and, optionally, APNs and FCM
    /// credentials); prints its id.
    Site(SiteArgs),
    /// Write test APNs and FCM credentials (a `.p8` key and a service-account file) into a
    /// folder, for `seed site` and a verifying push-sink; prints the files' paths.
    Credentials(CredentialArgs),
    /// Create a pending push for a site; prints its id.
    Push(PushArgs),
    /// Create subscribers for a site in bulk, with a progress bar.
    Subscribers(SubscriberArgs),
}

#[derive(Debug, Args)]
struct SiteArgs {
    /// VAPID subject: how push services reach the operator.
    #[arg(long, env = "SEED_SUBJECT", default_value = "mailto:push@example.com")]
    subject: String,
    /// APNs signing key (`AuthKey_<KEYID>.p8`); needs --apns-team-id and --apns-topic.
    #[arg(long, requires_all = ["apns_team_id", "apns_topic"])]
    apns_key_file: Option<PathBuf>,
    /// APNs key id; default: the `<KEYID>` of the key's file name.
    #[arg(long)]
    apns_key_id: Option<String>,
    /// Apple developer team id.
    #[arg(long)]
    apns_team_id: Option<String>,
    /// The iOS app's bundle id.
    #[arg(long)]
    apns_topic: Option<String>,
    /// Send to Apple's development environment.
    #[arg(long)]
    apns_sandbox: bool,
    /// FCM service-account JSON key file.
    #[arg(long)]
    fcm_service_account: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CredentialArgs {
    /// Folder to write `AuthKey_<KEYID>.p8` and `service-account.json` into (created).
    #[arg(long)]
    out: PathBuf,
    /// Firebase project id written into the service account.
    #[arg(long, default_value = "pushservice-test")]
    project_id: String,
    /// OAuth token endpoint written into the service account (a push-sink's `/token`).
    #[arg(long, default_value = "http://127.0.0.1:9090/token")]
    token_uri: String,
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
    /// `web` (Web Push endpoints at --endpoint-base), `ios` or `android` (device tokens).
    #[arg(long, value_parser = ["web", "ios", "android"], default_value = "web")]
    platform: String,
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
            Command::Site(args) => {
                let mut site = new_site(&args.subject)?;
                site.apns = apns_credentials(&args)?;
                site.fcm = args
                    .fcm_service_account
                    .as_deref()
                    .map(pushservice_fcm::credentials_from_file)
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                store.insert_site(&site).await?;
                println!("{}", site.id.to_hex());
            }
            Command::Credentials(args) => {
                std::fs::create_dir_all(&args.out)
                    .with_context(|| format!("cannot create {}", args.out.display()))?;
                let key = apns_test_key()?;
                let key_path = args.out.join(key.file_name());
                write(&key_path, &key.p8)?;
                let account_path = args.out.join("service-account.json");
                write(
                    &account_path,
                    &fcm_test_service_account(&args.project_id, &args.token_uri)?,
                )?;
                println!("{}", key_path.display());
                println!("{}", account_path.display());
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
                let platform = match args.platform.as_str() {
                    "ios" => Platform::Ios,
                    "android" => Platform::Android,
                    _ => Platform::Web,
                };
                let seed = SubscriberSeed {
                    site_id,
                    count: args.count,
                    platform,
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

/// The APNs credentials `args` name, checked by parsing the key as the sender will.
fn apns_credentials(args: &SiteArgs) -> anyhow::Result<Option<ApnsCredentials>> {
    let Some(path) = &args.apns_key_file else {
        return Ok(None);
    };
    // clap's `requires_all` guarantees team and topic are present with a key file.
    let credentials = pushservice_apns::credentials_from_file(
        path,
        args.apns_key_id.as_deref(),
        args.apns_team_id.as_deref().unwrap_or_default(),
        args.apns_topic.as_deref().unwrap_or_default(),
        args.apns_sandbox,
    )
    .map_err(|e| match e {
        CredentialFileError::NoKeyId(_) => anyhow::anyhow!("{e}: give it with --apns-key-id"),
        other => other.into(),
    })?;
    Ok(Some(credentials))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
