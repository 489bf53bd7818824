//! Delivery message encode (parser side, borrowed envelope into a reused buffer) and decode
//! (sender side), the per-message serialization cost of the pipeline.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pushservice_model::{
    DELIVERY_VERSION, DeliveryEnvelope, DeliveryMessage, Notification, NotificationPayload,
    ObjectId, Push, TargetRef, Urgency,
};

fn push() -> Push {
    let options = Notification {
        body: Some("Everything 50% off until midnight, only in the app".into()),
        icon: Some("https://shop.example/icons/sale-192.png".into()),
        tag: Some("sale".into()),
        ..Notification::default()
    };
    let mut push = Push::new(ObjectId::new(), "Flash sale".into(), options);
    push.launch_url = Some("https://shop.example/sale?utm_source=push".into());
    push
}

fn bench(c: &mut Criterion) {
    let push = push();
    let payload = NotificationPayload::of(&push).to_raw();
    let (push_id, site_id, subscriber_id) = (
        push.id.to_hex(),
        push.site_id.to_hex(),
        ObjectId::new().to_hex(),
    );
    let endpoint = format!("https://fcm.googleapis.com/fcm/send/{}", "x".repeat(140));
    let p256dh =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    let auth = "BTBZMqHH6r4Tts7J_aSIgg";
    let envelope = DeliveryEnvelope {
        v: DELIVERY_VERSION,
        push_id: &push_id,
        site_id: &site_id,
        subscriber_id: &subscriber_id,
        target: TargetRef::Web {
            endpoint: &endpoint,
            p256dh,
            auth,
        },
        ttl: 259_200,
        urgency: Urgency::Normal,
        topic: None,
        attempt: 0,
        payload: &payload,
    };
    let mut buffer = Vec::with_capacity(1024);
    c.bench_function("delivery message encode (envelope, reused buffer)", |b| {
        b.iter(|| {
            black_box(&envelope).write_json(&mut buffer);
            black_box(buffer.len())
        })
    });
    envelope.write_json(&mut buffer);
    let bytes = buffer.clone();
    c.bench_function("delivery message decode", |b| {
        b.iter(|| DeliveryMessage::from_json(black_box(&bytes)).map(|m| m.ttl))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
