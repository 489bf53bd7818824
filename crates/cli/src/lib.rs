//! `pushctl`: trigger pushes and administer a pushservice installation.
//!
//! The binary is thin: it loads `.env`, parses [`Cli`], sets up logging and calls [`run`].
//! Each subcommand lives in its own module under [`commands`] and returns a [`CommandError`],
//! whose variant decides the process exit code so scripts can tell "unknown push" from "Kafka
//! is down".
//!
//! # Layout
//!
//! - [`cli`] — flags and subcommands.
//! - [`error`] — [`CommandError`] and exit codes.
//! - [`commands`] — `send`, `cancel`, `status`, `watch`, `site`, `topics`, `setup`, `tail`, `dlq`,
//!   `stats`, `config check`.

pub mod cli;
pub mod commands;
pub mod error;

pub use cli::{Cli, Command};
pub use error::CommandError;

/// Runs one `pushctl` command.
pub async fn run(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Send(args) => commands::send::run(args).await,
        Command::Cancel(args) => commands::cancel::run(args).await,
        Command::Status(args) => commands::status::run(args).await,
        Command::Site(args) => commands::site::run(args).await,
        Command::Topics(args) => commands::topics::run(args).await,
        Command::Setup(args) => commands::setup::run(args).await,
        Command::Tail(args) => commands::tail::run(args).await,
        Command::Watch(args) => commands::watch::run(args).await,
        Command::Dlq(args) => commands::dlq::run(args).await,
        Command::Publish(args) => commands::realtime::publish(args).await,
        Command::RealtimeToken(args) => commands::realtime::token(args).await,
        Command::Stats(args) => commands::stats::run(args).await,
        Command::Config(args) => commands::config_check::run(args).await,
    }
}
