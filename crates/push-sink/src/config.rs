//! What a sink is asked to do: where it listens, which protocol it speaks, how it misbehaves,
//! whether it verifies, and how slowly it answers.
//!
//! This is the plain, validated description (step one of two); [`crate::Sink::start`] builds
//! the listener, TLS and state from it. The binary fills it from flags and environment; tests
//! build it with struct literals and [`Default`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::SinkError;

pub use crate::credentials::{ApnsKey, FcmAccount};

/// Everything a [`crate::Sink`] needs to start.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Address to bind; port 0 picks a free port (read it back with
    /// [`crate::Sink::local_addr`]).
    pub listen: SocketAddr,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Where to write the self-signed certificate (PEM) in [`Protocol::Tls`], so clients in
    /// other processes can trust it.
    pub cert_out: Option<PathBuf>,
    /// Which subscribers get which misbehaviour.
    pub behaviour: Behaviour,
    /// Verify headers, VAPID and decrypt payloads (`None`: count only, the cheap mode).
    pub verify: Option<Verify>,
    /// Delay before answering each push request, for kinds without their own in
    /// `kind_latency`.
    pub latency: Latency,
    /// Per-kind delays, overriding `latency` for that kind.
    pub kind_latency: KindLatency,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` each kind advertises (see [`Streams`]).
    pub streams: Streams,
    /// Close an HTTP/2 connection gracefully (GOAWAY) once it has carried this many push
    /// requests, as Google's front ends do; `None`: never.
    pub goaway_after: Option<u64>,
}

impl Default for SinkConfig {
    /// Cleartext HTTP/1.1 + HTTP/2 on a free loopback port, every push accepted, counting only.
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            protocol: Protocol::H2c,
            cert_out: None,
            behaviour: Behaviour::default(),
            verify: None,
            latency: Latency::None,
            kind_latency: KindLatency::default(),
            streams: Streams::default(),
            goaway_after: None,
        }
    }
}

impl SinkConfig {
    /// Checks what types cannot: the per-mille bands fit in 1000.
    pub fn validate(&self) -> Result<(), SinkError> {
        self.behaviour.validate()?;
        let latencies = [
            Some(&self.latency),
            self.kind_latency.web_push.as_ref(),
            self.kind_latency.apns.as_ref(),
            self.kind_latency.fcm.as_ref(),
        ];
        for latency in latencies.into_iter().flatten() {
            latency.validate().map_err(SinkError::Config)?;
        }
        for (name, rule) in [
            ("Web Push", self.streams.web_push),
            ("APNs", self.streams.apns),
            ("FCM", self.streams.fcm),
        ] {
            if rule.initial == 0 || rule.after_success == Some(0) {
                return Err(SinkError::Config(format!(
                    "{name} stream limit {rule}: every limit must be at least 1"
                )));
            }
        }
        if self.goaway_after == Some(0) {
            return Err(SinkError::Config(
                "goaway_after must be at least 1 request (None: never)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Wire protocol of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Cleartext HTTP/1.1 only.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge; HTTP/1.1 on the same port is detected from the
    /// first bytes (the HTTP/2 connection preface) and served too.
    #[default]
    H2c,
    /// TLS with a self-signed certificate for `localhost` and the listen IP; HTTP/2 or
    /// HTTP/1.1 as ALPN (or the first bytes) say.
    Tls,
}

impl Protocol {
    /// URL scheme clients use: `https` for [`Protocol::Tls`], `http` otherwise.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Tls => "https",
            Protocol::Http1 | Protocol::H2c => "http",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    /// Parses `h1`, `h2c` or `tls` (also `http1`, `http2`, `https`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "h1" | "http1" | "http1.1" => Ok(Protocol::Http1),
            "h2c" | "h2" | "http2" | "auto" => Ok(Protocol::H2c),
            "tls" | "https" => Ok(Protocol::Tls),
            other => Err(format!("unknown protocol {other:?}: use h1, h2c or tls")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http1 => "h1",
            Protocol::H2c => "h2c",
            Protocol::Tls => "tls",
        })
    }
}

/// How the sink misbehaves, per mille of subscribers. Which subscriber gets what is decided
/// by a stable hash of its id ([`crate::planned_fate`]), so a test knows in advance.
///
/// The bands are laid out in field order (gone, not found, throttle, error, reset) and the
/// rest is accepted; their sum must not exceed 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Behaviour {
    /// Always answer 410 Gone.
    pub gone_per_mille: u32,
    /// Always answer 404 Not Found.
    pub not_found_per_mille: u32,
    /// First attempt answers 429 with `Retry-After: retry_after_secs`, later attempts 201.
    pub throttle_per_mille: u32,
    /// `Retry-After` seconds on 429 answers.
    pub retry_after_secs: u32,
    /// First attempt answers 500, later attempts 201.
    pub error_once_per_mille: u32,
    /// First attempt drops the stream (HTTP/2 `RST_STREAM`) or connection (HTTP/1.1) without
    /// a response, later attempts 201.
    pub reset_per_mille: u32,
}

impl Behaviour {
    /// Sum of the misbehaviour bands, per mille.
    pub fn total_per_mille(&self) -> u32 {
        self.gone_per_mille
            .saturating_add(self.not_found_per_mille)
            .saturating_add(self.throttle_per_mille)
            .saturating_add(self.error_once_per_mille)
            .saturating_add(self.reset_per_mille)
    }

    /// Checks that the bands fit in 1000.
    pub fn validate(&self) -> Result<(), SinkError> {
        let total = self.total_per_mille();
        if total > 1000 {
            return Err(SinkError::Config(format!(
                "misbehaviour bands add up to {total} per mille; at most 1000"
            )));
        }
        Ok(())
    }
}

/// Verification mode: check every push request as a strict push service would, decrypt Web
/// Push messages with the subscriber's seeded keys, and check APNs and FCM credentials
/// against the trusted keys and accounts.
#[derive(Clone, PartialEq, Eq)]
pub struct Verify {
    /// The seed subscribers' keys were derived from (`SEED_KEY_SEED` of the `seed` command);
    /// see [`pushservice_seed::subscriber_keys`].
    pub key_seed: Vec<u8>,
    /// When set, the VAPID `sub` claim must equal it (403 otherwise).
    pub expected_subject: Option<String>,
    /// APNs signing keys whose provider tokens are accepted; with none, every APNs request
    /// fails with `InvalidProviderToken`.
    pub apns_keys: Vec<ApnsKey>,
    /// Google service accounts that may get access tokens and send through FCM; with none,
    /// every token request fails with `invalid_grant`.
    pub fcm_accounts: Vec<FcmAccount>,
}

impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The seed decrypts every subscriber's messages: keep it out of logs. Key ids, teams
        // and account addresses are not secret, and say which credentials are trusted.
        let apns_keys: Vec<(&str, &str)> = self
            .apns_keys
            .iter()
            .map(|key| (key.team_id.as_str(), key.key_id.as_str()))
            .collect();
        let fcm_accounts: Vec<&str> = self
            .fcm_accounts
            .iter()
            .map(|account| account.client_email.as_str())
            .collect();
        f.debug_struct("Verify")
            .field("expected_subject", &self.expected_subject)
            .field("apns_keys", &apns_keys)
            .field("fcm_accounts", &fcm_accounts)
            .finish_non_exhaustive()
    }
}

/// Delay before answering each push request, as a real push service has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max`.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Long-tailed, as real push services answer: log-normal with this median and 99th
    /// percentile, never above `cap`.
    LogNormal {
        /// Half the answers take less.
        median: Duration,
        /// 99% of the answers take less (before the cap).
        p99: Duration,
        /// Longest delay.
        cap: Duration,
    },
}

impl Latency {
    /// The delay for one request; `random` is any well-mixed 64-bit number.
    pub fn pick(&self, random: u64) -> Option<Duration> {
        match *self {
            Latency::None => None,
            Latency::Fixed(d) if d.is_zero() => None,
            Latency::Fixed(d) => Some(d),
            Latency::Uniform { min, max } => {
                let span = max.saturating_sub(min).as_micros() as u64;
                let extra = if span == 0 { 0 } else { random % (span + 1) };
                Some(min + Duration::from_micros(extra)).filter(|d| !d.is_zero())
            }
            Latency::LogNormal { median, p99, cap } => {
                // Box-Muller from the two halves of `random`, each mapped into (0, 1].
                let u1 = ((random >> 32) as f64 + 1.0) / 4_294_967_296.0;
                let u2 = ((random & 0xffff_ffff) as f64 + 1.0) / 4_294_967_296.0;
                let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                // z of the 99th percentile of the standard normal.
                let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326_348;
                let secs = median.as_secs_f64() * (sigma * normal).exp();
                Some(Duration::from_secs_f64(secs.min(cap.as_secs_f64()))).filter(|d| !d.is_zero())
            }
        }
    }

    /// Checks what the type cannot: ranges in order, a log-normal's median ≤ p99 ≤ cap.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Latency::Uniform { min, max } if min > max => Err(format!(
                "latency range {min:?}-{max:?} has its minimum above its maximum"
            )),
            Latency::LogNormal { median, p99, cap }
                if median.is_zero() || median > p99 || p99 > cap =>
            {
                Err(format!(
                    "log-normal latency: need 0 < median ({median:?}) <= p99 ({p99:?}) <= cap \
                     ({cap:?})"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    /// Parses milliseconds: `0` (none), `20` (fixed), `10-50` (uniform range) or
    /// `lognormal:80/400/2000` (log-normal with median 80, 99th percentile 400, capped at
    /// 2000).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    format!(
                        "latency {s:?}: expected milliseconds like 0, 20, 10-50 or \
                     lognormal:80/400/2000 (median/p99/cap)"
                    )
                })
        };
        if let Some(spec) = s.trim().strip_prefix("lognormal:") {
            let parts: Vec<&str> = spec.split('/').collect();
            let [median, p99, cap] = parts[..] else {
                return Err(format!(
                    "latency {s:?}: a log-normal latency is lognormal:<median>/<p99>/<cap> in \
                     milliseconds, such as lognormal:80/400/2000"
                ));
            };
            let latency = Latency::LogNormal {
                median: ms(median)?,
                p99: ms(p99)?,
                cap: ms(cap)?,
            };
            latency
                .validate()
                .map_err(|e| format!("latency {s:?}: {e}"))?;
            return Ok(latency);
        }
        match s.split_once('-') {
            None => match ms(s)? {
                d if d.is_zero() => Ok(Latency::None),
                d => Ok(Latency::Fixed(d)),
            },
            Some((min, max)) => {
                let (min, max) = (ms(min)?, ms(max)?);
                if min > max {
                    return Err(format!("latency {s:?}: minimum above maximum"));
                }
                Ok(Latency::Uniform { min, max })
            }
        }
    }
}

/// Per-kind answer delays; a kind without one uses [`SinkConfig::latency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindLatency {
    /// Web Push endpoints.
    pub web_push: Option<Latency>,
    /// APNs.
    pub apns: Option<Latency>,
    /// FCM HTTP v1.
    pub fcm: Option<Latency>,
}

/// How many concurrent HTTP/2 streams a connection allows, per kind of push service.
///
/// The sink serves every kind on one port, so it cannot know which service a connection is
/// for until its first request: a new connection advertises the smallest `initial` of the
/// three (1 with the defaults), switches to its kind's `initial` as soon as its first request
/// arrives (before answering it) and to `after_success` once a request of it succeeds. The
/// defaults are what the real services do: Google's front ends (Web Push for Chrome, FCM)
/// allow 100; APNs allows 1 until the first request on a connection succeeds, then 1,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    /// Web Push endpoints (default 100).
    pub web_push: StreamRule,
    /// APNs (default 1, then 1,000).
    pub apns: StreamRule,
    /// FCM HTTP v1 (default 100).
    pub fcm: StreamRule,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            web_push: StreamRule::fixed(100),
            apns: StreamRule {
                initial: 1,
                after_success: Some(1000),
            },
            fcm: StreamRule::fixed(100),
        }
    }
}

impl Streams {
    /// Every kind allowing `limit` streams from the start (the old simulator: 1,000).
    pub fn all(limit: u32) -> Self {
        Streams {
            web_push: StreamRule::fixed(limit),
            apns: StreamRule::fixed(limit),
            fcm: StreamRule::fixed(limit),
        }
    }

    /// What a connection advertises before its first request says which kind it is.
    pub(crate) fn before_first_request(&self) -> u32 {
        self.web_push
            .initial
            .min(self.apns.initial)
            .min(self.fcm.initial)
    }

    /// The most any kind ever allows (what the server enforces).
    pub(crate) fn most(&self) -> u32 {
        [self.web_push, self.apns, self.fcm]
            .iter()
            .map(|rule| rule.initial.max(rule.after_success.unwrap_or(0)))
            .max()
            .unwrap_or(1)
    }
}

/// One kind's `SETTINGS_MAX_CONCURRENT_STREAMS`: `initial`, then `after_success` once a
/// request on the connection has succeeded (APNs' rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRule {
    /// Streams allowed from the first request on.
    pub initial: u32,
    /// Streams allowed once a request on the connection succeeded (`None`: unchanged).
    pub after_success: Option<u32>,
}

impl StreamRule {
    /// `limit` streams, always.
    pub fn fixed(limit: u32) -> Self {
        StreamRule {
            initial: limit,
            after_success: None,
        }
    }
}

impl FromStr for StreamRule {
    type Err = String;

    /// Parses `100` (always 100) or `1:1000` (1 until a request succeeds, then 1,000).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| match part.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "stream limit {s:?}: expected a number of streams (at least 1) such as 100, or \
                 <initial>:<after the first success> such as 1:1000"
            )),
        };
        match s.split_once(':') {
            None => Ok(StreamRule::fixed(number(s)?)),
            Some((initial, after)) => Ok(StreamRule {
                initial: number(initial)?,
                after_success: Some(number(after)?),
            }),
        }
    }
}

impl fmt::Display for StreamRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.after_success {
            None => write!(f, "{}", self.initial),
            Some(after) => write!(f, "{}:{after}", self.initial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parses_none_fixed_and_ranges() {
        assert_eq!("0".parse::<Latency>(), Ok(Latency::None));
        assert_eq!(
            "20".parse::<Latency>(),
            Ok(Latency::Fixed(Duration::from_millis(20)))
        );
        assert_eq!(
            " 10 - 50 ".parse::<Latency>(),
            Ok(Latency::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(50)
            })
        );
        assert!("50-10".parse::<Latency>().is_err());
        assert!("fast".parse::<Latency>().is_err());
    }

    #[test]
    fn log_normal_latency_has_its_median_and_cap() {
        let latency: Latency = "lognormal:80/400/1000".parse().expect("valid");
        let mut state = 1u64;
        let mut samples: Vec<Duration> = (0..10_000)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                latency.pick(z ^ (z >> 31)).expect("a delay")
            })
            .collect();
        samples.sort();
        let median = samples[5_000].as_millis();
        assert!((70..=90).contains(&median), "median {median} ms");
        let p99 = samples[9_900].as_millis();
        assert!((300..=500).contains(&p99), "p99 {p99} ms");
        assert!(samples[9_999] <= Duration::from_secs(1), "capped");
        assert!("lognormal:80/40/1000".parse::<Latency>().is_err());
        assert!("lognormal:80/400".parse::<Latency>().is_err());
    }

    #[test]
    fn stream_rules_parse() {
        assert_eq!("100".parse::<StreamRule>(), Ok(StreamRule::fixed(100)));
        assert_eq!(
            " 1 : 1000 ".parse::<StreamRule>(),
            Ok(StreamRule {
                initial: 1,
                after_success: Some(1000)
            })
        );
        assert!("0".parse::<StreamRule>().is_err());
        assert!("many".parse::<StreamRule>().is_err());
        let streams = Streams::default();
        assert_eq!(streams.before_first_request(), 1);
        assert_eq!(streams.most(), 1000);
    }

    #[test]
    fn uniform_latency_stays_in_range() {
        let latency: Latency = "10-50".parse().expect("valid");
        for random in [0, 1, 40_000, 40_001, u64::MAX] {
            let d = latency.pick(random).expect("some delay");
            assert!(
                (Duration::from_millis(10)..=Duration::from_millis(50)).contains(&d),
                "{d:?}"
            );
        }
        assert_eq!(Latency::Fixed(Duration::ZERO).pick(7), None);
    }

    #[test]
    fn protocol_names_round_trip() {
        for protocol in [Protocol::Http1, Protocol::H2c, Protocol::Tls] {
            assert_eq!(protocol.to_string().parse::<Protocol>(), Ok(protocol));
        }
        assert!("h3".parse::<Protocol>().is_err());
    }

    #[test]
    fn bands_over_1000_are_rejected() {
        let mut config = SinkConfig::default();
        config.behaviour.gone_per_mille = 600;
        config.behaviour.reset_per_mille = 400;
        assert!(config.validate().is_ok());
        config.behaviour.throttle_per_mille = 1;
        let err = config.validate().expect_err("1001 per mille");
        assert!(err.to_string().contains("1001"), "{err}");
    }

    #[test]
    fn verify_debug_hides_the_seed() {
        let verify = Verify {
            key_seed: b"very-secret-seed".to_vec(),
            expected_subject: None,
            apns_keys: vec![ApnsKey {
                team_id: "TEAM123456".to_owned(),
                key_id: "KEY1234567".to_owned(),
                public_key: vec![4; 65],
            }],
            fcm_accounts: Vec::new(),
        };
        let shown = format!("{verify:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("KEY1234567"), "{shown}");
    }
}
