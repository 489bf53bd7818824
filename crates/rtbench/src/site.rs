//! `--create-site`: a new site with a realtime secret, so a benchmark needs no other tool.
//!
//! The site is made as `pushctl site create` makes one (fresh VAPID keys, no API key), and the
//! secret as `POST /v1/sites/{siteId}/realtime/secret` makes one; both go straight to MongoDB.

use anyhow::Context as _;
use pushservice_config::MongoSettings;
use pushservice_store::Store;

/// Creates the site; returns its id and realtime secret.
pub async fn create(mongo: &MongoSettings) -> anyhow::Result<(String, String)> {
    let store = Store::connect(mongo)
        .await
        .context("connecting to MongoDB to create the site")?;
    let site = pushservice_control::sites::new_site("mailto:rtbench@example.invalid", &[])
        .map_err(|e| anyhow::anyhow!("making a site: {e}"))?;
    store.insert_site(&site).await?;
    let secret = pushservice_realtime::new_secret();
    if !store.rotate_realtime_secret(site.id, &secret).await? {
        anyhow::bail!("site {} vanished right after it was created", site.id);
    }
    store.close().await;
    Ok((site.id.to_hex(), secret))
}
