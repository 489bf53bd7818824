//! Building sites, pushes and subscribers.

use pushservice_model::{
    Notification, ObjectId, Platform, Priority, Push, PushSubscription, Site, Subscriber,
};

use aws_lc_rs::digest;

use crate::keys::{KeyError, generate_vapid_keys, subscriber_keys};

/// A new site with a freshly generated VAPID key pair.
pub fn new_site(subject: &str) -> Result<Site, KeyError> {
    let keys = generate_vapid_keys()?;
    Ok(Site::new(
        subject.to_owned(),
        keys.public_key,
        keys.private_key,
    ))
}

/// What a seeded push says.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTemplate {
    /// Notification title.
    pub title: String,
    /// Notification body.
    pub body: String,
    /// Icon URL.
    pub icon: Option<String>,
    /// Where a click leads.
    pub launch_url: Option<String>,
    /// Delivery priority.
    pub priority: Priority,
    /// Seconds the push service keeps it for offline devices.
    pub time_to_live: i64,
}

/// A new pending push of `site_id` from `template`.
pub fn new_push(site_id: ObjectId, template: &PushTemplate) -> Push {
    let options = Notification {
        body: Some(template.body.clone()),
        icon: template.icon.clone(),
        ..Notification::default()
    };
    let mut push = Push::new(site_id, template.title.clone(), options);
    push.launch_url = template.launch_url.clone();
    push.priority = template.priority;
    push.time_to_live = template.time_to_live;
    push
}

/// `count` new subscribers of `site_id` on `platform`. Web Push subscribers each get their
/// own derived key pair and an endpoint `{endpoint_base}/{subscriber id}`; iOS and Android
/// subscribers a device token ([`device_token`]; `endpoint_base` is not used).
pub fn subscriber_batch(
    site_id: ObjectId,
    count: usize,
    platform: Platform,
    endpoint_base: &str,
    key_seed: &[u8],
) -> Vec<Subscriber> {
    let base = endpoint_base.trim_end_matches('/');
    (0..count)
        .map(|_| {
            let id = ObjectId::new();
            match platform {
                Platform::Web => {
                    let keys = subscriber_keys(key_seed, &id);
                    let endpoint = format!("{base}/{}", id.to_hex());
                    let subscription =
                        PushSubscription::new(endpoint, &keys.public_key, &keys.auth);
                    Subscriber::new_web(id, site_id, &subscription)
                }
                Platform::Ios | Platform::Android => {
                    Subscriber::new_device(id, site_id, platform, device_token(platform, &id))
                }
            }
        })
        .collect()
}

/// The device token seeded for subscriber `id`, shaped like the real ones so providers and
/// simulators treat it as such: iOS, 64 hex digits (Apple's 32 bytes), the id followed by
/// 40 digits of SHA-256 of it; Android, an FCM-like `<id>:APA91b<hex>` of 159 characters.
/// Deterministic, so a test can compute a subscriber's token (and its simulator fate).
pub fn device_token(platform: Platform, id: &ObjectId) -> String {
    let id_hex = id.to_hex();
    let hash = digest::digest(&digest::SHA256, &id.bytes());
    let hash_hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    match platform {
        Platform::Android => format!("{id_hex}:APA91b{}", hash_hex.repeat(2)),
        Platform::Ios | Platform::Web => format!("{id_hex}{}", &hash_hex[..40]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_carry_parseable_subscriptions_with_their_derived_keys() {
        let site = ObjectId::new();
        let batch = subscriber_batch(site, 3, Platform::Web, "http://127.0.0.1:9090/wp/", b"seed");
        assert_eq!(batch.len(), 3);
        for subscriber in &batch {
            let subscription = subscriber.subscription().expect("valid pushEndPoint");
            assert_eq!(
                subscription.endpoint,
                format!("http://127.0.0.1:9090/wp/{}", subscriber.id.to_hex())
            );
            let keys = subscriber_keys(b"seed", &subscriber.id);
            assert_eq!(
                subscription.p256dh_bytes().expect("p256dh"),
                keys.public_key
            );
            assert_eq!(subscription.auth_bytes().expect("auth"), keys.auth);
            assert_eq!(subscriber.site_id, site);
        }
    }

    #[test]
    fn device_subscribers_carry_tokens_shaped_like_the_real_ones() {
        let site = ObjectId::new();
        for (platform, length) in [(Platform::Ios, 64), (Platform::Android, 159)] {
            let batch = subscriber_batch(site, 2, platform, "", b"seed");
            for subscriber in &batch {
                assert_eq!(subscriber.platform, Some(platform));
                let token = subscriber.device_token.as_deref().expect("token");
                assert_eq!(token.len(), length, "{token}");
                assert!(token.starts_with(&subscriber.id.to_hex()));
                assert_eq!(token, device_token(platform, &subscriber.id));
                assert!(subscriber.push_end_point.is_empty());
            }
            assert_ne!(batch[0].device_token, batch[1].device_token);
        }
        let ios = device_token(Platform::Ios, &ObjectId::new());
        assert!(ios.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
