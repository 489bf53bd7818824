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
    /// Delay before answering each push request.
    pub latency: Latency,
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
        }
    }
}

impl SinkConfig {
    /// Checks what types cannot: the per-mille bands fit in 1000.
    pub fn validate(&self) -> Result<(), SinkError> {
        self.behaviour.validate()?;
        if let Latency::Uniform { min, max } = self.latency
            && min > max
        {
            return Err(SinkError::Config(format!(
                "latency range {min:?}-{max:?} has its minimum above its maximum"
            )));
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
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    /// Parses milliseconds: `0` (none), `20` (fixed) or `10-50` (uniform range).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("latency {s:?}: expected milliseconds like 0, 20 or 10-50"))
        };
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
