//! A push's notification, read once per push instead of once per delivery.
//!
//! Every delivery message of a push carries the same payload. An APNs or FCM delivery needs
//! it as fields (title, body, launch URL …), and APNs as a JSON body that is the same for
//! every device of the push; parsing and serializing them again for each of a million
//! messages is work that needs doing once. The cache is keyed by push id and checked
//! against the payload text (a comparison, not a parse), so a message whose payload differs
//! from the one cached (an edited push, a replayed dead letter of an older version) is read
//! on its own. Web Push needs neither: the parser put the payload's final bytes in the
//! message, and they are encrypted as they are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use pushservice_apns::{ApnsPayload, build_payload};
use pushservice_model::{DeliveryMessage, PayloadFields, Urgency};

/// Pushes remembered at once; more are rare (a sender works through a few pushes at a time),
/// and the cache is simply emptied when it fills.
const MAX_PUSHES: usize = 256;

/// One push's payload, read.
#[derive(Debug)]
pub struct Prepared {
    /// The payload's text, to tell a different payload under the same push id.
    raw: Box<str>,
    urgency: Urgency,
    /// The notification's fields.
    pub fields: PayloadFields,
    apns: OnceLock<ApnsPayload>,
}

impl Prepared {
    /// The APNs request body and headers, built on first use.
    pub fn apns(&self) -> &ApnsPayload {
        self.apns
            .get_or_init(|| build_payload(&self.fields, self.urgency))
    }
}

/// Read payloads by push id; shared by all deliveries of a sender.
#[derive(Debug, Default)]
pub struct PreparedPayloads {
    pushes: Mutex<HashMap<String, Arc<Prepared>>>,
}

impl PreparedPayloads {
    /// The payload of `message`, read (or found read); the error says why it is unreadable.
    pub fn get(&self, message: &DeliveryMessage) -> Result<Arc<Prepared>, String> {
        let raw = message.payload.get();
        {
            let pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(prepared) = pushes.get(&message.push_id)
                && prepared.urgency == message.urgency
                && *prepared.raw == *raw
            {
                return Ok(Arc::clone(prepared));
            }
        }
        let prepared = Arc::new(Prepared {
            raw: raw.into(),
            urgency: message.urgency,
            fields: PayloadFields::parse(&message.payload).map_err(|e| e.to_string())?,
            apns: OnceLock::new(),
        });
        let mut pushes = self.pushes.lock().unwrap_or_else(|p| p.into_inner());
        if pushes.len() >= MAX_PUSHES {
            pushes.clear();
        }
        pushes.insert(message.push_id.clone(), Arc::clone(&prepared));
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use pushservice_model::Target;

    use super::*;
    use crate::deliver::test_message;

    fn message(push_id: &str, payload: &str, urgency: Urgency) -> DeliveryMessage {
        let mut message = test_message(Target::Ios { token: "t".into() }, payload);
        message.push_id = push_id.into();
        message.urgency = urgency;
        message
    }

    #[test]
    fn a_push_is_read_once_and_a_different_payload_on_its_own() {
        let payloads = PreparedPayloads::default();
        let sale = r#"{"pushId":"p1","title":"Sale","options":{"body":"Half price"}}"#;
        let first = payloads
            .get(&message("p1", sale, Urgency::Normal))
            .expect("read");
        let again = payloads
            .get(&message("p1", sale, Urgency::Normal))
            .expect("read");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second delivery reuses the first's"
        );
        assert_eq!(first.fields.title, "Sale");
        assert!(
            std::ptr::eq(first.apns(), again.apns()),
            "and its APNs body"
        );

        let edited = r#"{"pushId":"p1","title":"Sale ends","options":{}}"#;
        let other = payloads
            .get(&message("p1", edited, Urgency::Normal))
            .expect("read");
        assert_eq!(other.fields.title, "Sale ends", "not the cached payload");
        let urgent = payloads
            .get(&message("p1", edited, Urgency::VeryLow))
            .expect("read");
        assert_eq!(urgent.apns().priority, 5, "built for its own urgency");
        assert_eq!(other.apns().priority, 10);
        assert!(
            payloads
                .get(&message("p2", "[1]", Urgency::Normal))
                .is_err()
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let payloads = PreparedPayloads::default();
        for i in 0..(MAX_PUSHES * 3) {
            let id = format!("p{i}");
            payloads
                .get(&message(&id, r#"{"title":"t"}"#, Urgency::Normal))
                .expect("read");
        }
        let held = payloads.pushes.lock().expect("lock").len();
        assert!(held <= MAX_PUSHES, "{held} pushes held");
    }
}
