//! The pushapi routes the benchmark calls, as plain functions over a `reqwest::Client` (each
//! load worker passes its own), with JSON bodies prepared by the caller.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::api::load::Answer;

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `POST url` with a JSON body and, when given, `Authorization: Bearer <bearer>`.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: String,
    bearer: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    read(request.send().await?).await
}

/// `GET url` with an optional bearer token.
pub async fn get(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    read(request.send().await?).await
}

async fn read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = response.status().as_u16();
    let body = response.bytes().await?.to_vec();
    Ok(Reply { status, body })
}

/// A site created by the benchmark.
#[derive(Debug, Clone)]
pub struct Site {
    /// Its id.
    pub id: String,
    /// Its first API key (the secret, shown once).
    pub key: String,
}

/// `POST /v1/sites` with the admin token.
pub async fn create_site(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    stamp: &str,
) -> anyhow::Result<Site> {
    #[derive(Deserialize)]
    struct Created {
        site: IdOnly,
        #[serde(rename = "apiKey")]
        api_key: Key,
    }
    #[derive(Deserialize)]
    struct Key {
        key: String,
    }
    let body = serde_json::json!({
        "subject": "mailto:pushbench@example.com",
        "allowedOrigins": [format!("https://pushbench-{}.example.com", stamp.to_ascii_lowercase())],
    })
    .to_string();
    let url = format!("{base}/v1/sites");
    let reply = post_json(http, &url, body, Some(admin_token))
        .await
        .with_context(|| format!("POST {url}"))?;
    anyhow::ensure!(
        reply.status == 201,
        "POST {url} answered {}: {}",
        reply.status,
        reply.text()
    );
    let created: Created = serde_json::from_slice(&reply.body)
        .with_context(|| format!("POST {url} answered {}", reply.text()))?;
    Ok(Site {
        id: created.site.id,
        key: created.api_key.key,
    })
}

/// `POST /v1/sites/{siteId}/pushes` with the site key and `send: true`: pushapi ignores
/// events of a push that was never sent. It is marked `processing` and its raw-push message
/// goes to the run's topic, where no parser reads it: nothing is delivered.
pub async fn create_push(
    http: &reqwest::Client,
    base: &str,
    site: &Site,
    stamp: &str,
) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "title": format!("pushbench api {stamp}"),
        "options": { "body": "Tracking events of a benchmark." },
        "launchUrl": "https://example.com/",
        "send": true,
    })
    .to_string();
    let url = format!("{base}/v1/sites/{}/pushes", site.id);
    let reply = post_json(http, &url, body, Some(&site.key))
        .await
        .with_context(|| format!("POST {url}"))?;
    anyhow::ensure!(
        reply.status == 201,
        "POST {url} answered {}: {}",
        reply.status,
        reply.text()
    );
    let push: IdOnly = serde_json::from_slice(&reply.body)
        .with_context(|| format!("POST {url} answered {}", reply.text()))?;
    Ok(push.id)
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// A registration's answer: `{id, created}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Registered {
    /// Subscriber id.
    pub id: String,
    /// Whether a new subscriber was created.
    pub created: bool,
}

/// `POST /v1/sites/{siteId}/subscribers` without credentials, as a browser does.
pub async fn register(
    http: &reqwest::Client,
    url: &str,
    body: String,
) -> Answer<Option<Registered>> {
    match post_json(http, url, body, None).await {
        Ok(reply) => Answer {
            status: Some(reply.status),
            value: serde_json::from_slice(&reply.body).ok(),
            retries: 0,
        },
        Err(_) => Answer {
            status: None,
            value: None,
            retries: 0,
        },
    }
}

/// Most times an event is repeated after a 503 (pushapi's event queue full).
const BUSY_RETRIES: u32 = 50;

/// `POST /v1/events`, as a service worker does; a 503 (the event queue is full) is repeated
/// after its `Retry-After` pause, shortened to 200 ms, as a retrying worker would.
pub async fn post_event(http: &reqwest::Client, url: &str, body: String) -> Answer<()> {
    let mut retries = 0;
    loop {
        match post_json(http, url, body.clone(), None).await {
            Ok(reply) if reply.status == 503 && retries < BUSY_RETRIES => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(reply) => {
                return Answer {
                    status: Some(reply.status),
                    value: (),
                    retries,
                };
            }
            Err(_) => {
                return Answer {
                    status: None,
                    value: (),
                    retries,
                };
            }
        }
    }
}

/// `totals` of `GET /v1/pushes/{pushId}` that the events move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct EventTotals {
    /// `totals.delivered`.
    pub delivered: i64,
    /// `totals.clicked`.
    pub clicked: i64,
    /// `totals.closed`.
    pub closed: i64,
}

/// `GET /v1/pushes/{pushId}` → its event totals.
pub async fn push_totals(
    http: &reqwest::Client,
    base: &str,
    push_id: &str,
    key: &str,
) -> anyhow::Result<EventTotals> {
    #[derive(Deserialize)]
    struct View {
        totals: EventTotals,
    }
    let url = format!("{base}/v1/pushes/{push_id}");
    let reply = get(http, &url, Some(key))
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        reply.status == 200,
        "GET {url} answered {}: {}",
        reply.status,
        reply.text()
    );
    let view: View = serde_json::from_slice(&reply.body)
        .with_context(|| format!("GET {url} answered {}", reply.text()))?;
    Ok(view.totals)
}

/// The value of an unlabelled counter in pushapi's `GET /metrics` (Prometheus text).
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let reply = get(http, &format!("{base}/metrics"), None).await.ok()?;
    (reply.status == 200)
        .then(|| parse_metric(&reply.text(), name))
        .flatten()
}

/// `name value` of a Prometheus text exposition (the unlabelled series).
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP pushapi_events_counted_total x\n\
                    # TYPE pushapi_events_counted_total counter\n\
                    pushapi_events_counted_total_other 9\n\
                    pushapi_events_counted_total 1234\n";
        assert_eq!(
            parse_metric(text, "pushapi_events_counted_total"),
            Some(1234.0)
        );
        assert_eq!(parse_metric(text, "pushapi_events_received_total"), None);
    }
}
