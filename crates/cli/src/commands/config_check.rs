//! `pushctl config check [--daemons parser,sender,pushapi,gateway] [--json]`: loads each
//! daemon's settings with the daemon's own code, from the environment and `.env` exactly as
//! the daemon would at start, then checks Kafka topics and every site's credentials
//! ([`pushservice_control::config_check`]), and lists every problem with its fix.
//!
//! Exit codes: 0 clean, 1 problems found, 2 something could not be checked (a service did
//! not answer, or the settings to reach it are wrong: those are listed too).

use clap::Parser;
use pushservice_config::{ConfigError, KafkaArgs, MongoArgs, TopicArgs};
use pushservice_control::config_check::{Report, check_sites, check_topics};
use pushservice_store::Store;

use crate::cli::{ConfigAction, ConfigArgs, ConfigCheckArgs, Daemon};
use crate::error::CommandError;

/// Runs `pushctl config ...`.
pub async fn run(args: ConfigArgs) -> Result<(), CommandError> {
    match args.action {
        ConfigAction::Check(args) => check(args).await,
    }
}

/// What every daemon connects with, read from the environment as they read it.
#[derive(Debug, Parser)]
struct Connection {
    #[command(flatten)]
    mongo: MongoArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    topics: TopicArgs,
}

/// A daemon's flags parsed from the environment (no command-line flags: a deployment
/// passes none), or the problem that stops the daemon at start.
fn load<A: Parser>(daemon: &str, report: &mut Report) -> Option<A> {
    match A::try_parse_from([daemon]) {
        Ok(args) => Some(args),
        Err(e) => {
            let message = e.to_string();
            let first = message
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            report.problem(
                format!("{daemon} settings"),
                first.to_owned(),
                format!(
                    "correct that value in .env or the environment (`{daemon} --help` lists \
                     every setting); {daemon} does not start until it is fixed"
                ),
            );
            None
        }
    }
}

async fn check(args: ConfigCheckArgs) -> Result<(), CommandError> {
    let mut report = Report::default();
    let mut daemons: Vec<Daemon> = Vec::new();
    for daemon in &args.daemons {
        if !daemons.contains(daemon) {
            daemons.push(*daemon);
        }
    }

    // Each daemon's settings, validated by the daemon's own code.
    let mut outcomes: Vec<(&str, Result<(), ConfigError>)> = Vec::new();
    let mut fcm_token_url = None;
    for daemon in &daemons {
        match daemon {
            Daemon::Parser => {
                if let Some(a) = load::<pushservice_parser::ParserArgs>("parser", &mut report) {
                    outcomes.push(("parser", a.settings().map(drop)));
                }
            }
            Daemon::Sender => {
                if let Some(a) = load::<pushservice_sender::SenderArgs>("sender", &mut report) {
                    let settings = a.settings();
                    if let Ok(config) = &settings {
                        fcm_token_url = Some(config.fcm.token_url.clone());
                    }
                    outcomes.push(("sender", settings.map(drop)));
                }
            }
            Daemon::Pushapi => {
                if let Some(a) = load::<pushservice_pushapi::ApiArgs>("pushapi", &mut report) {
                    outcomes.push(("pushapi", a.settings().map(drop)));
                }
            }
            Daemon::Gateway => {
                if let Some(a) = load::<pushservice_gateway::GatewayArgs>("gateway", &mut report) {
                    outcomes.push(("gateway", a.settings().map(drop)));
                }
            }
        }
    }
    report.settings(&outcomes);
    if !daemons.contains(&Daemon::Sender) {
        report.unchecked(
            "sites' FCM token_uri against SENDER_FCM_TOKEN_URL",
            "the sender's settings were not loaded (--daemons)",
        );
    }

    // The services, reached with the settings every daemon shares.
    let connection = load::<Connection>("pushctl", &mut report);
    let kafka = connection.as_ref().map(|c| {
        c.kafka
            .settings()
            .and_then(|kafka| Ok((kafka, c.topics.settings()?)))
    });
    match kafka {
        Some(Ok((kafka, topics))) => {
            let checked = tokio::task::spawn_blocking(move || {
                let mut report = Report::default();
                check_topics(&kafka, &topics, &mut report).map(|()| report)
            })
            .await
            .map_err(|e| anyhow::anyhow!("topic check task failed: {e}"))?;
            match checked {
                Ok(found) => merge(&mut report, found),
                Err(e) => report.unchecked("Kafka topics and partition counts", e.to_string()),
            }
        }
        Some(Err(e)) => report.unchecked(
            "Kafka topics and partition counts",
            format!("{} is wrong (see the problems above)", e.key),
        ),
        None => report.unchecked(
            "Kafka topics and partition counts",
            "the connection settings do not load (see the problems above)",
        ),
    }
    match connection.as_ref().map(|c| c.mongo.settings()) {
        Some(Ok(mongo)) => match Store::connect(&mongo).await {
            Ok(store) => {
                report.passed(format!("MongoDB answers at {}", mongo.redacted_url()));
                if let Err(e) = check_sites(&store, fcm_token_url.as_deref(), &mut report).await {
                    report.unchecked("site credentials", e.to_string());
                }
                store.close().await;
            }
            Err(e) => report.unchecked("site credentials", e.to_string()),
        },
        Some(Err(e)) => report.unchecked(
            "site credentials",
            format!("{} is wrong (see the problems above)", e.key),
        ),
        None => report.unchecked(
            "site credentials",
            "the connection settings do not load (see the problems above)",
        ),
    }

    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", to_text(&report));
    }
    match report.exit_code() {
        0 => Ok(()),
        1 => Err(CommandError::Other(anyhow::anyhow!(
            "{} problem(s) found; fix them and run `pushctl config check` again",
            report.problems.len()
        ))),
        _ => Err(CommandError::InvalidInput(format!(
            "{} check(s) could not be made (see NOT CHECKED); {} problem(s) found",
            report.unchecked.len(),
            report.problems.len()
        ))),
    }
}

/// Adds what `found` found to `report`.
fn merge(report: &mut Report, found: Report) {
    for passed in found.passed {
        report.passed(passed);
    }
    for p in found.problems {
        report.problem(p.subject, p.problem, p.fix);
    }
    for u in found.unchecked {
        report.unchecked(u.what, u.reason);
    }
}

/// The report for people: problems first, each with its fix.
pub fn to_text(report: &Report) -> String {
    let mut text = String::new();
    if report.problems.is_empty() && report.unchecked.is_empty() {
        text += "configuration OK\n";
    }
    if !report.problems.is_empty() {
        text += &format!("PROBLEMS ({})\n", report.problems.len());
        for (i, p) in report.problems.iter().enumerate() {
            text += &format!(
                "{:>3}. {}: {}\n     fix: {}\n",
                i + 1,
                p.subject,
                p.problem,
                p.fix
            );
        }
    }
    if !report.unchecked.is_empty() {
        text += &format!("NOT CHECKED ({})\n", report.unchecked.len());
        for u in &report.unchecked {
            text += &format!("  - {}: {}\n", u.what, u.reason);
        }
    }
    if !report.passed.is_empty() {
        text += &format!("PASSED ({})\n", report.passed.len());
        for passed in &report.passed {
            text += &format!("  ok {passed}\n");
        }
    }
    text
}
