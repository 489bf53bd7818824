//! Building sites, pushes and subscribers.

use pushservice_model::{
    Notification, ObjectId, Priority, Push, PushSubscription, Site, Subscriber,
};

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

/// `count` new Web Push subscribers of `site_id`, each with its own derived key pair and an
/// endpoint `{endpoint_base}/{subscriber id}`.
pub fn subscriber_batch(
    site_id: ObjectId,
    count: usize,
    endpoint_base: &str,
    key_seed: &[u8],
) -> Vec<Subscriber> {
    let base = endpoint_base.trim_end_matches('/');
    (0..count)
        .map(|_| {
            let id = ObjectId::new();
            let keys = subscriber_keys(key_seed, &id);
            let endpoint = format!("{base}/{}", id.to_hex());
            let subscription = PushSubscription::new(endpoint, &keys.public_key, &keys.auth);
            Subscriber::new_web(id, site_id, &subscription)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_carry_parseable_subscriptions_with_their_derived_keys() {
        let site = ObjectId::new();
        let batch = subscriber_batch(site, 3, "http://127.0.0.1:9090/wp/", b"seed");
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
}
