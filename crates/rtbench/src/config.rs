//! Flags, and the validated description of a run built from them.
//!
//! Two steps, as everywhere in the workspace: [`RtbenchArgs`] is what clap parses (flags and
//! environment keys), [`Settings`] is the checked plan the run follows. Every refusal names
//! the flag that is wrong.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use pushservice_config::{KafkaArgs, KafkaSettings, MongoArgs, MongoSettings};

/// Opens N SSE and WebSocket connections to a realtime gateway, publishes M messages to
/// each of their channels and measures delivery latency, messages/s, gateway CPU per
/// delivered message and gateway memory per connection.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rtbench", version)]
pub struct RtbenchArgs {
    /// The gateway's base URL (`http://127.0.0.1:8090`); repeat the flag to spread the
    /// connections round-robin over several gateways.
    #[arg(
        long = "gateway",
        env = "RTBENCH_GATEWAY",
        value_delimiter = ',',
        required = true
    )]
    pub gateways: Vec<String>,

    /// The site whose channels the connections join (the token's `site` claim).
    #[arg(long, env = "RTBENCH_SITE", required_unless_present = "create_site")]
    pub site: Option<String>,

    /// The site's realtime secret (`sites.realtime.secrets`), which signs the HS256 tokens;
    /// its UTF-8 bytes are the HMAC key.
    #[arg(
        long,
        env = "RTBENCH_SECRET",
        hide_env_values = true,
        required_unless_present = "create_site"
    )]
    pub secret: Option<String>,

    /// Create a new site with a realtime secret in MongoDB (`--mongodb-url`) for this run,
    /// instead of `--site` and `--secret`; its id and secret are printed.
    #[arg(long = "create-site", conflicts_with_all = ["site", "secret"])]
    pub create_site: bool,

    /// MongoDB, for `--create-site`.
    #[command(flatten)]
    pub mongo: MongoArgs,

    /// How many connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,

    /// Percentage of the connections that use WebSocket; the others use SSE. They are
    /// interleaved evenly.
    #[arg(long = "ws-percent", default_value_t = 50)]
    pub ws_percent: u8,

    /// Subscribers per channel: connection i joins channel i / size, so a size equal to
    /// `--connections` puts everyone in one channel.
    #[arg(long = "channel-size", default_value_t = 100)]
    pub channel_size: usize,

    /// Channel name prefix; the run's channels are `<prefix>:<run id>-<n>`, new each run so
    /// that no history of an earlier run is replayed.
    #[arg(long = "channel-prefix", default_value = "bench")]
    pub channel_prefix: String,

    /// Messages published to every channel (so every connection should receive this many).
    #[arg(long, default_value_t = 20)]
    pub messages: u64,

    /// Publish rate over all channels, messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,

    /// Bytes of filler in each message's data, to measure with bigger messages.
    #[arg(long = "payload-bytes", default_value_t = 0)]
    pub payload_bytes: usize,

    /// Source addresses 127.0.0.1 to 127.0.0.N: each has its own ~28k ephemeral ports, so N
    /// of them allow more connections than one address can hold.
    #[arg(long = "source-addrs", default_value_t = 4)]
    pub source_addrs: u8,

    /// Connections being set up at once (TCP + HTTP upgrade or SSE response); more would
    /// overflow the gateway's listen backlog.
    #[arg(long = "connect-concurrency", default_value_t = 128)]
    pub connect_concurrency: usize,

    /// The gateway process to measure (CPU from /proc/<pid>/stat, RSS from
    /// /proc/<pid>/status); without it, only client-side figures are reported.
    #[arg(long = "gateway-pid", env = "RTBENCH_GATEWAY_PID")]
    pub gateway_pid: Option<u32>,

    /// Publish through pushapi (`POST /v1/sites/{site}/channels/{channel}/messages`) at this
    /// base URL instead of writing to Kafka directly.
    #[arg(long)]
    pub pushapi: Option<String>,

    /// The site's API key, for `--pushapi`.
    #[arg(long = "api-key", env = "RTBENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The realtime topic, when publishing to Kafka directly.
    #[arg(long, env = "TOPIC_REALTIME", default_value = "realtime")]
    pub topic: String,

    /// Kafka connection settings (for direct publishing).
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Token lifetime in seconds (the `exp` claim); longer than the run.
    #[arg(long = "token-ttl", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// Give up waiting for connections after this many seconds.
    #[arg(long = "connect-timeout", default_value_t = 120)]
    pub connect_timeout_secs: u64,

    /// After the last publish, stop waiting when no message arrived for this many seconds.
    #[arg(long = "settle", default_value_t = 5)]
    pub settle_secs: u64,

    /// Seconds to wait after all connections are up before reading the gateway's RSS (so
    /// buffers allocated right after the handshake are counted).
    #[arg(long = "rss-pause", default_value_t = 2)]
    pub rss_pause_secs: u64,

    /// Write the results as JSON to this file, too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// How the messages reach the gateway.
#[derive(Debug, Clone)]
pub enum PublishVia {
    /// Records written straight to the realtime topic.
    Kafka {
        /// Broker settings.
        settings: KafkaSettings,
        /// Topic name.
        topic: String,
    },
    /// `POST /v1/sites/{site}/channels/{channel}/messages` on pushapi.
    Pushapi {
        /// Base URL without a trailing slash.
        base: String,
        /// The site's API key.
        api_key: String,
    },
}

/// One gateway to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host:port` as given, for the `Host` header.
    pub authority: String,
}

/// Which site the run uses.
#[derive(Debug, Clone)]
pub enum SiteChoice {
    /// An existing site.
    Given {
        /// Site id.
        site: String,
        /// Its realtime secret.
        secret: String,
    },
    /// A new one, created in this MongoDB.
    Create(MongoSettings),
}

/// The validated plan of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Gateways, round-robin.
    pub gateways: Vec<Gateway>,
    /// The site.
    pub site: SiteChoice,
    /// Number of connections.
    pub connections: usize,
    /// Percentage using WebSocket.
    pub ws_percent: u8,
    /// Subscribers per channel.
    pub channel_size: usize,
    /// Channel name prefix.
    pub channel_prefix: String,
    /// Messages per channel.
    pub messages: u64,
    /// Publish interval (zero: no pause).
    pub publish_interval: Duration,
    /// Filler bytes per message.
    pub payload_bytes: usize,
    /// Source addresses to bind.
    pub sources: Vec<Ipv4Addr>,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Gateway process to measure.
    pub gateway_pid: Option<u32>,
    /// Publishing path.
    pub publish: PublishVia,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Bound on the connection phase.
    pub connect_timeout: Duration,
    /// Quiet time that ends the delivery phase.
    pub settle: Duration,
    /// Pause before reading RSS.
    pub rss_pause: Duration,
    /// JSON output file.
    pub json: Option<PathBuf>,
}

impl Settings {
    /// The number of channels: connections divided by channel size, rounded up.
    pub fn channel_count(&self) -> usize {
        self.connections.div_ceil(self.channel_size)
    }
}

/// Parses `http://host:port` (no path) into an address and the `Host` header value.
pub fn parse_gateway(url: &str) -> anyhow::Result<Gateway> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--gateway {url:?}: expected http://host:port (the gateway speaks plain HTTP here)")
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--gateway {url:?}: expected http://host:port without a path");
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("--gateway {url:?}: cannot resolve {with_port}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| {
            format!("--gateway {url:?}: no IPv4 address (source addresses are 127.0.0.x)")
        })?;
    Ok(Gateway {
        addr,
        authority: authority.to_owned(),
    })
}

impl RtbenchArgs {
    /// Checks the flags and builds the plan.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        if self.gateways.is_empty() {
            bail!("--gateway: give at least one gateway URL");
        }
        let gateways = self
            .gateways
            .iter()
            .map(|g| parse_gateway(g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let site = match (&self.site, &self.secret) {
            _ if self.create_site => {
                SiteChoice::Create(self.mongo.settings().map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            (Some(site), Some(secret)) => {
                if site.trim().is_empty() {
                    bail!("--site is empty");
                }
                if secret.is_empty() {
                    bail!("--secret is empty");
                }
                SiteChoice::Given {
                    site: site.trim().to_owned(),
                    secret: secret.clone(),
                }
            }
            _ => bail!("give --site and --secret, or --create-site"),
        };
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.ws_percent > 100 {
            bail!("--ws-percent {} is over 100", self.ws_percent);
        }
        if self.channel_size == 0 {
            bail!("--channel-size must be at least 1");
        }
        if self.channel_prefix.is_empty()
            || !self.channel_prefix.bytes().all(is_channel_byte)
            || self.channel_prefix.len() > 100
        {
            bail!(
                "--channel-prefix {:?}: 1-100 characters of A-Z a-z 0-9 _ - : . @",
                self.channel_prefix
            );
        }
        if self.messages == 0 {
            bail!("--messages must be at least 1");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!(
                "--rate {} must be 0 (no limit) or a positive number",
                self.rate
            );
        }
        let publish_interval = if self.rate == 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / self.rate)
        };
        if self.source_addrs == 0 {
            bail!("--source-addrs must be at least 1");
        }
        if self.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        let publish = match (&self.pushapi, &self.api_key) {
            (Some(base), Some(key)) => {
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    bail!("--pushapi {base:?}: expected an http:// or https:// URL");
                }
                PublishVia::Pushapi {
                    base: base.trim_end_matches('/').to_owned(),
                    api_key: key.clone(),
                }
            }
            (Some(_), None) => bail!("--pushapi needs --api-key (the site's API key)"),
            (None, _) => PublishVia::Kafka {
                settings: self.kafka.settings().map_err(|e| anyhow::anyhow!("{e}"))?,
                topic: self.topic.clone(),
            },
        };
        Ok(Settings {
            gateways,
            site,
            connections: self.connections,
            ws_percent: self.ws_percent,
            channel_size: self.channel_size,
            channel_prefix: self.channel_prefix.clone(),
            messages: self.messages,
            publish_interval,
            payload_bytes: self.payload_bytes,
            sources: (1..=self.source_addrs)
                .map(|last| Ipv4Addr::new(127, 0, 0, last))
                .collect(),
            connect_concurrency: self.connect_concurrency,
            gateway_pid: self.gateway_pid,
            publish,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            settle: Duration::from_secs(self.settle_secs),
            rss_pause: Duration::from_secs(self.rss_pause_secs),
            json: self.json.clone(),
        })
    }
}

/// The channel alphabet of the protocol: `A-Z a-z 0-9 _ - : . @`.
fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'@')
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn args(extra: &[&str]) -> RtbenchArgs {
        let mut argv = vec![
            "rtbench",
            "--gateway",
            "http://127.0.0.1:8090",
            "--site",
            "s1",
            "--secret",
            "k",
        ];
        argv.extend_from_slice(extra);
        RtbenchArgs::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_make_a_plan() {
        let settings = args(&["--connections", "250", "--channel-size", "100"])
            .settings()
            .expect("valid");
        assert_eq!(settings.channel_count(), 3);
        assert_eq!(settings.sources.len(), 4);
        assert_eq!(settings.sources[3], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(
            settings.gateways[0].addr,
            "127.0.0.1:8090".parse().expect("addr")
        );
        assert_eq!(settings.publish_interval, Duration::from_millis(20));
        assert!(matches!(settings.publish, PublishVia::Kafka { .. }));
    }

    #[test]
    fn bad_flags_are_named() {
        let err = |extra: &[&str]| format!("{:#}", args(extra).settings().expect_err("refused"));
        assert!(err(&["--ws-percent", "101"]).contains("--ws-percent"));
        assert!(err(&["--channel-size", "0"]).contains("--channel-size"));
        assert!(err(&["--channel-prefix", "a b"]).contains("--channel-prefix"));
        assert!(err(&["--pushapi", "http://x"]).contains("--api-key"));
        assert!(err(&["--rate=-1"]).contains("--rate"));
        assert!(err(&["--gateway", "ws://127.0.0.1:1"]).contains("http://host:port"));
    }

    #[test]
    fn a_site_is_given_or_created() {
        let given = args(&[]).settings().expect("valid");
        assert!(matches!(given.site, SiteChoice::Given { ref site, .. } if site == "s1"));
        let created = RtbenchArgs::try_parse_from([
            "rtbench",
            "--gateway",
            "http://127.0.0.1:8090",
            "--create-site",
        ])
        .expect("flags parse")
        .settings()
        .expect("valid");
        assert!(matches!(created.site, SiteChoice::Create(_)));
        assert!(
            RtbenchArgs::try_parse_from(["rtbench", "--gateway", "http://127.0.0.1:8090"]).is_err(),
            "neither a site nor --create-site"
        );
    }
}
