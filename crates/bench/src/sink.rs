//! Talking to the simulator (`push-sink`) and the daemons' health endpoints over HTTP.
//!
//! The simulator's counters are its [`Stats`] (`GET /__sink/stats`, `POST /__sink/reset`),
//! deserialised with the simulator's own type so the two cannot drift apart. Under TLS the
//! client trusts exactly the certificate the simulator wrote (`PUSH_SINK_CERT_OUT`), nothing
//! else. HTTP/1.1 is enough here: the simulator answers it on every protocol, and these are a
//! few requests a second.

use std::time::Duration;

use anyhow::Context as _;
use pushservice_push_sink::Stats;

/// HTTP client for the simulator's admin endpoints and the daemons' `/readyz`.
#[derive(Debug, Clone)]
pub struct SinkClient {
    http: reqwest::Client,
    base_url: String,
}

impl SinkClient {
    /// A client for the simulator at `base_url`, trusting only `cert_pem` for TLS.
    pub fn new(base_url: &str, cert_pem: Option<&[u8]>) -> anyhow::Result<SinkClient> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2));
        if let Some(pem) = cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .context("reading the simulator's certificate")?;
            builder = builder.tls_certs_only([cert]);
        }
        Ok(SinkClient {
            http: builder.build().context("building the HTTP client")?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The simulator's counters now.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let url = format!("{}/__sink/stats", self.base_url);
        self.stats_from(self.http.get(&url), &url).await
    }

    /// Zeroes the simulator's counters (returning those it had).
    pub async fn reset(&self) -> anyhow::Result<Stats> {
        let url = format!("{}/__sink/reset", self.base_url);
        self.stats_from(self.http.post(&url), &url).await
    }

    async fn stats_from(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> anyhow::Result<Stats> {
        let response = request
            .send()
            .await
            .with_context(|| format!("asking the simulator at {url}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("{url} answered {body:?}"))
    }

    /// Waits until the simulator answers its stats endpoint.
    pub async fn wait_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        loop {
            match self.stats().await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() >= timeout => {
                    return Err(e.context(format!("the simulator did not answer in {timeout:?}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// True when `GET url` answers 200 (a daemon's `/readyz`).
    pub async fn is_ok(&self, url: &str) -> bool {
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }
}

/// Final outcomes the simulator has handed out: distinct subscribers accepted, plus requests
/// answered "gone" (404, 410) or a permanent failure (400, 401, 403, 413), which senders do
/// not retry. The delivery phase is over when this reaches the number of delivery messages.
pub fn final_outcomes(stats: &Stats) -> u64 {
    let rejected: u64 = [400u16, 401, 403, 404, 410, 413]
        .iter()
        .filter_map(|code| stats.by_status.get(code))
        .sum();
    stats.distinct_accepted + rejected
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn outcomes_count_distinct_acceptances_and_final_rejections_only() {
        let stats = Stats {
            accepted: 105,
            distinct_accepted: 100,
            duplicates: 5,
            by_status: BTreeMap::from([(201, 105), (410, 7), (429, 3), (500, 2), (400, 1)]),
            ..Stats::default()
        };
        assert_eq!(final_outcomes(&stats), 108);
    }
}
