//! The consumer configuration a Subscription translates to, as a real nats-server accepts and
//! reports it back: the groundwork of the Subscription reconciler.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use common::*;
use switchyard::{
    api::SubscriptionSpec,
    reconcile::subscription::consumer_config::{
        SubscriptionIdentity, TopicView, desired_consumer, metadata,
    },
};

fn spec(yaml: &str) -> SubscriptionSpec {
    serde_yaml::from_str(&format!("topicRef: {{name: orders}}\n{yaml}")).expect("spec")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_keeps_the_translated_config_and_one_filter_grows_into_several_in_place() {
    let broker = broker(&nats_url()).await;
    let namespace = format!("subcfg{:x}", rand::random::<u32>());
    let topic = TopicView {
        name: "orders".into(),
        subjects: vec![format!("{namespace}.orders.>")],
        partition_type_tokens: None,
        work_queue: false,
        partitions: None,
    };
    let stream = format!("{namespace}_orders");
    let _guard = StreamGuard(stream.clone());
    broker
        .create_stream(&StreamConfig {
            name: stream.clone(),
            subjects: topic.subjects.clone(),
            ..Default::default()
        })
        .await
        .expect("stream");
    let id = SubscriptionIdentity {
        namespace: &namespace,
        name: "billing",
        generation: 1,
    };

    let one = desired_consumer(
        id,
        &spec("eventTypes: [order.placed]\nretry: {maxDeliveries: 6, backoff: {initial: 1s, max: 8s}}"),
        &topic,
        &[],
    )
    .unwrap();
    let created = broker
        .create_consumer(&stream, one.config.clone())
        .await
        .expect("the server accepts the translated config");
    let c = &created.config;
    assert_eq!(c.filter_subjects, one.config.filter_subjects, "{c:?}");
    assert_eq!(c.ack_wait, Duration::from_secs(1));
    assert_eq!(c.backoff, one.config.backoff);
    assert_eq!(c.max_deliver, 6);
    assert_eq!(c.inactive_threshold, Duration::ZERO);
    assert_eq!(
        c.metadata[metadata::OWNER],
        format!("Subscription/{namespace}/billing")
    );

    // Some events, one consumed, so the position can be checked after the update.
    for i in 0..3 {
        broker
            .jetstream()
            .publish(
                format!("{namespace}.orders.order.placed"),
                format!("{i}").into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let name = one.config.durable_name.clone().unwrap();
    let before = broker.consumer_info(&stream, &name).await.unwrap().unwrap();
    assert_eq!(before.num_pending, 3);

    let several = desired_consumer(
        SubscriptionIdentity {
            generation: 2,
            ..id
        },
        &spec(
            "eventTypes: [order.placed, order.shipped]\nfilterSubjects: [\"*.orders.audit.>\"]\nretry: {maxDeliveries: 6, backoff: {initial: 1s, max: 8s}}",
        ),
        &topic,
        &[],
    );
    // The raw filter names another namespace's token as a wildcard: outside the Topic.
    assert!(several.is_err());
    let several = desired_consumer(
        SubscriptionIdentity { generation: 2, ..id },
        &spec("eventTypes: [order.placed, order.shipped]\nretry: {maxDeliveries: 6, backoff: {initial: 1s, max: 8s}}"),
        &topic,
        &[],
    )
    .unwrap();
    let updated = broker
        .update_consumer(&stream, several.config.clone())
        .await
        .expect("one filter → several is an update");
    assert_eq!(
        updated.config.filter_subjects,
        several.config.filter_subjects
    );
    assert_eq!(updated.num_pending, 3, "the position survives the update");
    assert_eq!(
        updated.created, before.created,
        "the same consumer, not a new one"
    );
}
