//! Which URLs and addresses the senders may connect to: the endpoint policy against SSRF.
//!
//! Subscriber endpoints come from browsers, that is from anyone, so a subscription could make
//! the senders POST to a loopback service, the private network they run in, or a cloud
//! metadata endpoint. [`EndpointPolicy`] is the one rule for all of that, used at two points:
//!
//! - [`EndpointPolicy::check_url`] before a request (and by anything that accepts endpoints):
//!   `https` only, no user information, an allowed host suffix when a list is set, and an IP
//!   literal host must be public. IP literals never reach a resolver, so this is what stops
//!   `https://10.0.0.5/x`.
//! - [`PolicyResolver`] at connection time, installed in every provider's client by
//!   [`crate::build_client`]: it resolves names itself and drops every address the policy
//!   refuses, so a name that resolves (or is later re-pointed) to `127.0.0.1` or a metadata
//!   address is refused too. Redirects are off in those clients, so no second URL sneaks in.
//!
//! [`is_public`] is the pure address classification behind both. It is deny-by-default for
//! IPv6 (only global unicast `2000::/3` can be public) and unwraps every IPv6 form that
//! embeds an IPv4 address (mapped, compatible, NAT64, 6to4), so `[::ffff:127.0.0.1]` is
//! judged as `127.0.0.1`.
//!
//! `allow_private` lifts the scheme and address rules for simulators on loopback (plain
//! `http` and h2c included); the host list still applies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Where the senders may connect. `Default` is the production rule: public `https` only, any
/// host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Allow `http://`, loopback, private and other non-public addresses (simulators only;
    /// `SENDER_ALLOW_PRIVATE_ENDPOINTS`).
    pub allow_private: bool,
    /// Host suffixes endpoints must match on a label boundary (`example.com` allows
    /// `push.example.com` and `example.com`, not `evilexample.com`); empty allows any host
    /// (`SENDER_ENDPOINT_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<String>,
}

/// Why an endpoint was refused. Displays as `endpoint not allowed: <why>`; never contains the
/// URL's path (a capability), only its scheme, host or address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefused {
    /// Not a URL at all.
    #[error("endpoint not allowed: not a valid URL ({0})")]
    Invalid(String),
    /// A scheme other than `https` (or `http` with `allow_private`).
    #[error("endpoint not allowed: {0}:// is not allowed; push services use https")]
    Scheme(String),
    /// `user:password@` in the authority.
    #[error("endpoint not allowed: the URL carries user information")]
    UserInfo,
    /// No host.
    #[error("endpoint not allowed: the URL has no host")]
    NoHost,
    /// The host matches none of the allowed suffixes.
    #[error("endpoint not allowed: {0} is not in SENDER_ENDPOINT_ALLOWED_HOSTS")]
    HostNotListed(String),
    /// An address the policy refuses (given literally, or the only kind a name resolved to).
    #[error("endpoint not allowed: {address} is {class}")]
    Address {
        /// The address.
        address: IpAddr,
        /// What kind of address it is, with its article ("a private address").
        class: &'static str,
    },
    /// A name that resolved to no address the policy allows.
    #[error("endpoint not allowed: {host} resolves only to refused addresses ({first} is {class})")]
    Resolved {
        /// The name.
        host: String,
        /// The first refused address.
        first: IpAddr,
        /// Its kind.
        class: &'static str,
    },
}

impl EndpointPolicy {
    /// Parses a comma-separated list of host suffixes (`SENDER_ENDPOINT_ALLOWED_HOSTS`):
    /// lowercased, surrounding dots dropped, empty entries skipped; an entry that is not a
    /// host name is an error saying what is expected.
    pub fn parse_allowed_hosts(list: &str) -> Result<Vec<String>, String> {
        let mut hosts = Vec::new();
        for host in list.split(',') {
            let host = host.trim().trim_matches('.').to_ascii_lowercase();
            if host.is_empty() {
                continue;
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(format!(
                    "{host:?} is not a host name; give comma-separated host names such as \
                     push.services.mozilla.com"
                ));
            }
            hosts.push(host);
        }
        Ok(hosts)
    }

    /// Checks `url` and returns it parsed (scheme and host lowercased, default port dropped).
    pub fn check_url(&self, url: &str) -> Result<url::Url, EndpointRefused> {
        let parsed = url::Url::parse(url).map_err(|e| EndpointRefused::Invalid(e.to_string()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            other => return Err(EndpointRefused::Scheme(other.to_owned())),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(EndpointRefused::UserInfo);
        }
        let host = match parsed.host() {
            None => return Err(EndpointRefused::NoHost),
            Some(url::Host::Domain("")) => {
                return Err(EndpointRefused::NoHost);
            }
            Some(host) => host,
        };
        if !self.allowed_hosts.is_empty() {
            let name = match &host {
                url::Host::Domain(domain) => domain.trim_end_matches('.').to_owned(),
                url::Host::Ipv4(ip) => ip.to_string(),
                url::Host::Ipv6(ip) => ip.to_string(),
            };
            if !self.host_listed(&name) {
                return Err(EndpointRefused::HostNotListed(name));
            }
        }
        match host {
            url::Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip))?,
            url::Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip))?,
            url::Host::Domain(_) => {}
        }
        Ok(parsed)
    }

    /// Refuses an address that is not public, unless `allow_private`.
    pub fn check_ip(&self, address: IpAddr) -> Result<(), EndpointRefused> {
        match (self.allow_private, non_public_class(address)) {
            (false, Some(class)) => Err(EndpointRefused::Address { address, class }),
            _ => Ok(()),
        }
    }

    /// This policy without its host list: for the hosts that come from configuration (APNs,
    /// FCM, the OAuth endpoint) rather than from subscribers.
    pub fn addresses_only(&self) -> EndpointPolicy {
        EndpointPolicy {
            allow_private: self.allow_private,
            allowed_hosts: Vec::new(),
        }
    }

    fn host_listed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|suffix| {
            let suffix = suffix.trim().trim_matches('.');
            !suffix.is_empty()
                && host.len() >= suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && (host.len() == suffix.len()
                    || host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
        })
    }
}

/// Whether `address` may be connected to under the production rule: not loopback, private,
/// link-local, shared (CGNAT), multicast, broadcast, reserved, documentation, benchmarking,
/// unique- or site-local, a cloud metadata address, or an IPv6 form embedding any of those.
pub fn is_public(address: IpAddr) -> bool {
    non_public_class(address).is_none()
}

/// What kind of non-public address `address` is, or `None` when it is public.
pub fn non_public_class(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

/// Metadata services of cloud providers, refused even where their range would not be.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean ...
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure host (WireServer), a public address
];
/// AWS's IPv6 instance metadata address.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn v4_class(address: Ipv4Addr) -> Option<&'static str> {
    if METADATA_V4.contains(&address) {
        return Some("a cloud metadata address");
    }
    #[rustfmt::skip]
    let ranges: [([u8; 4], u32, &'static str); 16] = [
        ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (CGNAT) address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 0, 0, 0], 24, "an IETF protocol assignment address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([255, 255, 255, 255], 32, "the broadcast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    ranges
        .iter()
        .find(|(network, prefix, _)| in_v4(address, *network, *prefix))
        .map(|(_, _, class)| *class)
}

fn in_v6(address: Ipv6Addr, network: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(address) & mask == u128::from(network) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(address: Ipv6Addr) -> Ipv4Addr {
    // Truncation keeps exactly the low 32 bits, which is the point.
    Ipv4Addr::from(u128::from(address) as u32)
}

fn v6_class(address: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(address);
    if address == METADATA_V6 {
        return Some("a cloud metadata address");
    }
    if bits == 0 {
        return Some("the unspecified address");
    }
    if bits == 1 {
        return Some("a loopback address");
    }
    // Forms that embed an IPv4 address are judged by it.
    let embedded = if bits >> 32 == 0xffff {
        // ::ffff:a.b.c.d, IPv4-mapped.
        Some(low_v4(address))
    } else if bits >> 32 == 0 {
        // ::a.b.c.d, IPv4-compatible (deprecated, still routed by some stacks).
        Some(low_v4(address))
    } else if in_v6(address, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        // 64:ff9b::a.b.c.d, NAT64 well-known prefix.
        Some(low_v4(address))
    } else if in_v6(address, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        // 2002:AABB:CCDD::/48, 6to4 of a.b.c.d.
        Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32))
    } else {
        None
    };
    if let Some(v4) = embedded {
        return v4_class(v4);
    }
    #[rustfmt::skip]
    let ranges: [(Ipv6Addr, u32, &'static str); 12] = [
        (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "a local-use NAT64 address"),
        (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "a discard-only address"),
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "a Teredo tunnel address"),
        (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48, "a benchmarking address"),
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "an IETF protocol assignment address"),
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "a documentation address"),
        (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "a documentation address"),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "a unique-local address"),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "a link-local address"),
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "a site-local address"),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "a multicast address"),
        // Only global unicast can be public: the rest is unassigned or reserved.
        (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3, ""),
    ];
    match ranges
        .iter()
        .find(|(network, prefix, _)| in_v6(address, *network, *prefix))
    {
        Some((_, _, "")) => None,
        Some((_, _, class)) => Some(class),
        None => Some("a reserved address"),
    }
}

/// A `reqwest` resolver that enforces an [`EndpointPolicy`] on resolved addresses: names are
/// resolved with tokio (the system resolver, as reqwest's default does) and refused addresses
/// dropped; a name left with none fails with [`EndpointRefused::Resolved`], which
/// [`crate::outcome_from_error`] turns into a permanent outcome.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<EndpointPolicy>,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: EndpointPolicy) -> Self {
        PolicyResolver {
            policy: Arc::new(policy),
        }
    }

    /// The allowed addresses of `host` (port 0: reqwest puts the URL's port in).
    pub async fn resolve_allowed(
        &self,
        host: &str,
    ) -> Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((host, 0)).await?.collect();
        let mut first_refused = None;
        let allowed: Vec<std::net::SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match self.policy.check_ip(addr.ip()) {
                Ok(()) => true,
                Err(EndpointRefused::Address { address, class }) => {
                    first_refused.get_or_insert((address, class));
                    false
                }
                Err(_) => false,
            })
            .collect();
        match (allowed.is_empty(), first_refused) {
            (true, Some((first, class))) => Err(Box::new(EndpointRefused::Resolved {
                host: host.to_owned(),
                first,
                class,
            })),
            _ => Ok(allowed),
        }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let allowed = resolver.resolve_allowed(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The [`EndpointRefused`] somewhere in `err`'s source chain, if the policy is why it failed.
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a EndpointRefused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<EndpointRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address literal")
    }

    #[test]
    fn public_addresses_are_public() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "142.250.74.106",
            "17.188.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "2a00:1450:4001:80b::200a",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(text)), "{text} should be public");
        }
    }

    #[test]
    fn non_public_addresses_are_named() {
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            ("127.0.0.1", "a loopback address"), ("127.255.255.254", "a loopback address"),
            ("10.0.0.5", "a private address"), ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"), ("192.168.1.1", "a private address"),
            ("169.254.1.1", "a link-local address"), ("100.64.0.1", "a shared (CGNAT) address"),
            ("100.127.255.255", "a shared (CGNAT) address"),
            ("0.0.0.0", "an unspecified (\"this network\") address"),
            ("0.1.2.3", "an unspecified (\"this network\") address"),
            ("224.0.0.1", "a multicast address"), ("239.255.255.250", "a multicast address"),
            ("255.255.255.255", "the broadcast address"), ("240.0.0.1", "a reserved address"),
            ("192.0.2.1", "a documentation address"), ("198.51.100.7", "a documentation address"),
            ("203.0.113.9", "a documentation address"), ("198.18.0.1", "a benchmarking address"),
            ("198.19.255.255", "a benchmarking address"),
            ("192.0.0.8", "an IETF protocol assignment address"),
            ("::", "the unspecified address"), ("::1", "a loopback address"),
            ("fe80::1", "a link-local address"), ("febf::1", "a link-local address"),
            ("fec0::1", "a site-local address"), ("fc00::1", "a unique-local address"),
            ("fd12:3456::1", "a unique-local address"), ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"), ("2001:2::1", "a benchmarking address"),
            ("2001::1", "a Teredo tunnel address"), ("100::1", "a discard-only address"),
            ("64:ff9b:1::1", "a local-use NAT64 address"), ("4000::1", "a reserved address"),
        ];
        for &(text, class) in table {
            assert_eq!(non_public_class(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn cloud_metadata_addresses_are_refused_even_in_public_space() {
        for text in [
            "169.254.169.254",
            "169.254.170.2",
            "100.100.100.200",
            "192.0.0.192",
            "168.63.129.16",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert_eq!(
                non_public_class(ip(text)),
                Some("a cloud metadata address"),
                "{text}"
            );
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_address() {
        for (text, class) in [
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:10.1.2.3", "a private address"),
            ("::ffff:192.168.0.1", "a private address"),
            ("::127.0.0.1", "a loopback address"),
            ("::10.0.0.1", "a private address"),
            ("64:ff9b::127.0.0.1", "a loopback address"),
            ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),
            ("2002:7f00:1::", "a loopback address"),
            ("2002:a00:1::1", "a private address"),
            ("2002:a9fe:a9fe::", "a cloud metadata address"),
        ] {
            assert_eq!(non_public_class(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn urls_must_be_https_without_userinfo_and_public_literals() {
        let policy = EndpointPolicy::default();
        let url = policy
            .check_url("HTTPS://Push.Example.COM:443/wp/abc")
            .expect("allowed");
        assert_eq!(
            url.origin().ascii_serialization(),
            "https://push.example.com"
        );
        for (url, message) in [
            (
                "http://push.example.com/x",
                "endpoint not allowed: http:// is not allowed; push services use https",
            ),
            (
                "ftp://push.example.com/x",
                "endpoint not allowed: ftp:// is not allowed; push services use https",
            ),
            (
                "https://10.0.0.5/x",
                "endpoint not allowed: 10.0.0.5 is a private address",
            ),
            (
                "https://[::ffff:7f00:1]:8443/x",
                "endpoint not allowed: ::ffff:127.0.0.1 is a loopback address",
            ),
            (
                "https://169.254.169.254/latest/meta-data",
                "endpoint not allowed: 169.254.169.254 is a cloud metadata address",
            ),
            (
                // The URL standard reads 0x7f.1 as 127.0.0.1: literals are judged as parsed.
                "https://0x7f.1/x",
                "endpoint not allowed: 127.0.0.1 is a loopback address",
            ),
            (
                "https://user:pw@push.example.com/x",
                "endpoint not allowed: the URL carries user information",
            ),
        ] {
            let refused = policy.check_url(url).expect_err(url);
            assert_eq!(refused.to_string(), message, "{url}");
        }
        assert!(matches!(
            policy.check_url("not a url"),
            Err(EndpointRefused::Invalid(_))
        ));
    }

    #[test]
    fn allow_private_lifts_scheme_and_address_rules_only() {
        let policy = EndpointPolicy {
            allow_private: true,
            allowed_hosts: Vec::new(),
        };
        for url in [
            "http://127.0.0.1:9090/wp/x",
            "https://[::1]:8443/x",
            "https://10.0.0.5/x",
            "https://localhost:1/x",
        ] {
            policy.check_url(url).expect(url);
        }
        assert!(policy.check_ip(ip("127.0.0.1")).is_ok());
        assert!(matches!(
            policy.check_url("ftp://127.0.0.1/x"),
            Err(EndpointRefused::Scheme(_))
        ));
        assert_eq!(
            policy.check_url("https://u@127.0.0.1/x"),
            Err(EndpointRefused::UserInfo)
        );
    }

    #[test]
    fn allowed_hosts_match_suffixes_on_label_boundaries() {
        let policy = EndpointPolicy {
            allow_private: false,
            allowed_hosts: vec!["example.com".into(), " .Push.Services.Mozilla.com ".into()],
        };
        for url in [
            "https://example.com/x",
            "https://push.example.com/x",
            "https://a.b.example.com./x",
            "https://updates.push.services.mozilla.com/wpush/v2/x",
        ] {
            policy.check_url(url).expect(url);
        }
        for url in [
            "https://evilexample.com/x",
            "https://example.com.evil.net/x",
            "https://fcm.googleapis.com/x",
        ] {
            let refused = policy.check_url(url).expect_err(url);
            assert!(
                refused
                    .to_string()
                    .ends_with("is not in SENDER_ENDPOINT_ALLOWED_HOSTS"),
                "{refused}"
            );
        }
        assert!(
            policy
                .addresses_only()
                .check_url("https://fcm.googleapis.com/x")
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_and_names_the_policy() {
        let resolver = PolicyResolver::new(EndpointPolicy::default());
        let err = resolver
            .resolve_allowed("localhost")
            .await
            .expect_err("localhost is loopback only");
        let refused = refusal_in(err.as_ref()).expect("the refusal is in the chain");
        assert!(
            refused
                .to_string()
                .starts_with("endpoint not allowed: localhost resolves only to refused addresses"),
            "{refused}"
        );
        let open = PolicyResolver::new(EndpointPolicy {
            allow_private: true,
            allowed_hosts: Vec::new(),
        });
        let addrs = open.resolve_allowed("localhost").await.expect("allowed");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
