//! One module per `pushctl` subcommand.

pub mod cancel;
pub mod config_check;
pub mod dlq;
pub mod realtime;
pub mod send;
pub mod setup;
pub mod site;
pub mod stats;
pub mod status;
pub mod tail;
pub mod topics;
pub mod watch;
