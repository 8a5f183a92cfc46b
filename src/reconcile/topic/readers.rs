//! The Subscriptions still reading a Topic, named in the Events of its deletion: whoever deletes
//! a Topic learns which consumers that affects, on the Topic itself (each Subscription reports
//! its side as TopicNotFound). Finding them is an API list: deletions are rare, and the
//! Subscription controller's cache belongs to another controller.

use kube::{Api, ResourceExt, api::ListParams, core::DeserializeGuard};

use crate::{
    api::{Subscription, Topic},
    runtime::{Context, kube_events::KubeEvent},
};

/// At most this many names go into a note: Event notes are limited to 1 KiB.
const NAMES_SHOWN: usize = 10;

/// Names of the Subscriptions in the Topic's namespace that refer to it, sorted.
pub async fn reading(ctx: &Context, topic: &Topic) -> Result<Vec<String>, kube::Error> {
    let namespace = topic.namespace().unwrap_or_default();
    // Guarded: one Subscription this version cannot read must not hide the others.
    let api: Api<DeserializeGuard<Subscription>> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = api.list(&ListParams::default()).await?;
    let subscriptions = list.items.iter().filter_map(|guard| guard.0.as_ref().ok());
    Ok(readers_of(&topic.name_any(), subscriptions))
}

/// Pure: the Subscriptions referring to the Topic `topic`, sorted by name. Those being deleted
/// do not count: they are going away themselves and lose nothing.
pub fn readers_of<'a>(
    topic: &str,
    subscriptions: impl IntoIterator<Item = &'a Subscription>,
) -> Vec<String> {
    let mut names: Vec<String> = subscriptions
        .into_iter()
        .filter(|sub| sub.spec.topic_ref.name == topic && sub.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

/// "Subscription billing" or "Subscriptions billing, shipping", long lists cut short.
pub fn named(readers: &[String]) -> String {
    let noun = if readers.len() == 1 {
        "Subscription"
    } else {
        "Subscriptions"
    };
    let shown = readers
        .iter()
        .take(NAMES_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match readers.len().checked_sub(NAMES_SHOWN) {
        Some(more) if more > 0 => format!("{noun} {shown} and {more} more"),
        _ => format!("{noun} {shown}"),
    }
}

/// Reason of the Event on a Topic deleted without its stream while Subscriptions read it.
pub const DELETED_WHILE_SUBSCRIBED: &str = "DeletedWhileSubscribed";
/// Reason of the Event on a Topic whose stream was deleted with it while Subscriptions read it;
/// apart from `StreamDeleted`, since Kubernetes folds Events of one reason on one object into a
/// series that keeps the first note.
pub const STREAM_DELETED_WHILE_SUBSCRIBED: &str = "StreamDeletedWhileSubscribed";

/// The Event for a Topic deleted while keeping its stream (deletionPolicy Retain), if any
/// Subscription still reads it.
pub fn retained_event(topic: &str, stream: &str, readers: &[String]) -> Option<KubeEvent> {
    if readers.is_empty() {
        return None;
    }
    let them = named(readers);
    let consumers = if readers.len() == 1 {
        "its consumer keeps its position; it reports"
    } else {
        "their consumers keep their position; they report"
    };
    Some(KubeEvent::warning(
        DELETED_WHILE_SUBSCRIBED,
        format!(
            "Topic {topic} was deleted while {them} still read it; its stream {stream} is retained \
             (deletionPolicy Retain) and {consumers} TopicNotFound until the Topic exists again"
        ),
    ))
}

/// The Event for a Topic whose stream, and with it every consumer on it, was deleted.
pub fn stream_deleted_event(stream: &str, readers: &[String]) -> KubeEvent {
    if readers.is_empty() {
        return KubeEvent::normal(
            "StreamDeleted",
            format!("deleted stream {stream} and its events"),
        );
    }
    let lost = if readers.len() == 1 {
        "its consumer"
    } else {
        "their consumers"
    };
    KubeEvent::warning(
        STREAM_DELETED_WHILE_SUBSCRIBED,
        format!(
            "deleted stream {stream} and its events; {} still referred to it and lost {lost}",
            named(readers)
        ),
    )
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::EventType;

    use super::*;

    fn subscription(name: &str, topic: &str, deleting: bool) -> Subscription {
        let mut sub: Subscription = serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  topicRef: {{name: {topic}}}\n"
        ))
        .expect("subscription");
        if deleting {
            sub.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        sub
    }

    #[test]
    fn readers_are_the_live_subscriptions_of_the_topic_sorted() {
        let subs = [
            subscription("shipping", "orders", false),
            subscription("welcome-mail", "users", false),
            subscription("billing", "orders", false),
            subscription("leaving", "orders", true),
        ];
        assert_eq!(readers_of("orders", &subs), ["billing", "shipping"]);
        assert!(readers_of("payments", &subs).is_empty());
    }

    #[test]
    fn long_lists_are_cut_short_to_fit_an_event_note() {
        assert_eq!(named(&["billing".into()]), "Subscription billing");
        let many: Vec<String> = (0..25).map(|i| format!("sub-{i:02}")).collect();
        let text = named(&many);
        assert!(text.starts_with("Subscriptions sub-00, sub-01,"), "{text}");
        assert!(text.ends_with("sub-09 and 15 more"), "{text}");
        let event = stream_deleted_event("shop_orders", &many);
        assert!(event.note.len() < 1024, "{}", event.note.len());
    }

    #[test]
    fn a_retained_topic_gets_a_warning_only_when_read() {
        assert_eq!(retained_event("orders", "shop_orders", &[]), None);
        let event = retained_event(
            "orders",
            "shop_orders",
            &["billing".into(), "shipping".into()],
        )
        .unwrap();
        assert_eq!(
            (event.type_, event.reason),
            (EventType::Warning, DELETED_WHILE_SUBSCRIBED)
        );
        assert_eq!(
            event.note,
            "Topic orders was deleted while Subscriptions billing, shipping still read it; its stream shop_orders is retained (deletionPolicy Retain) and their consumers keep their position; they report TopicNotFound until the Topic exists again"
        );
    }

    #[test]
    fn a_deleted_stream_names_the_subscriptions_that_lost_their_consumers() {
        let quiet = stream_deleted_event("shop_orders", &[]);
        assert_eq!(
            (quiet.type_, quiet.reason),
            (EventType::Normal, "StreamDeleted")
        );
        let loud = stream_deleted_event("shop_orders", &["billing".into(), "shipping".into()]);
        assert_eq!(
            (loud.type_, loud.reason),
            (EventType::Warning, STREAM_DELETED_WHILE_SUBSCRIBED)
        );
        assert_eq!(
            loud.note,
            "deleted stream shop_orders and its events; Subscriptions billing, shipping still referred to it and lost their consumers"
        );
    }
}
