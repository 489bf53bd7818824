//! Kafka plumbing for pushservice.
//!
//! We use `rdkafka` (librdkafka): the most complete and fastest Kafka client available to Rust,
//! with idempotent batching producers, consumer groups with cooperative rebalancing, and SASL
//! SCRAM over TLS. It is built from librdkafka's vendored source with cmake so a fresh machine
//! needs no system package of it.
//!
//! # Layout
//!
//! - [`client`] — the connection settings every client shares (brokers, SASL/TLS, timeouts) and
//!   the reachability probe that turns "nothing answers" into an error naming the brokers.
//! - [`producer`] — producers tuned for a high-volume pipeline (acks=all, idempotence, lz4
//!   batches) or for a one-shot command (short timeouts), and transactional producers that
//!   commit a consumer's offsets together with what it wrote.
//! - [`consumer`] — consumer-group members with automatic offset *storing* off, so offsets only
//!   advance once the application says a message's outcome is final.
//! - [`admin`] — idempotent topic creation and partition counts.
//! - [`groups`] — a consumer group's state, members and their partitions, read without joining.
//! - [`lag`] — watermarks, offsets by time, and consumer-group lag, read without joining.
//! - [`reader`] — reads a topic without joining a group (`pushctl tail`, `pushctl dlq`,
//!   tests), until quiet or up to the end it had when the scan started.

pub mod admin;
pub mod client;
pub mod consumer;
pub mod groups;
pub mod lag;
pub mod producer;
pub mod reader;

pub use admin::{TopicOutcome, ensure_topics, partition_count};
pub use client::{KafkaError, check_reachable, client_config};
pub use consumer::{ConsumerTuning, LoggingContext, describe, group_consumer};
pub use groups::{GroupMember, GroupView, decode_assignment, describe_group};
pub use lag::{PartitionLag, PositionReader, TopicLag, Watermarks};
pub use producer::{ProducerTuning, producer, transactional_producer};
pub use rdkafka;
pub use reader::{ReadFrom, ReadMessage, ScanFrom, read_topic, scan_topic};
