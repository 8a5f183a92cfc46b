//! The durable pull consumer a Subscription asks for. Pure: spec, the Topic it reads and the
//! retry defaults it inherits in, consumer configuration (or the field to fix) out.
//!
//! Rules the server enforces, checked here so users read our message, not a server code:
//! - filters must lie inside the Topic's subjects and must not overlap each other;
//! - a backoff list may not be longer than the deliveries allowed (10116), and its first entry
//!   replaces ackWait (so the desired ackWait is that entry, or the server's rewrite would look
//!   like drift);
//! - operator-owned durables keep `inactive_threshold` at 0, or the server deletes them when idle.
//!
//! Filters always go in `filter_subjects` (never the single `filter_subject`), so moving from one
//! filter to several is an in-place update of the same field.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::consumer::{
    AckPolicy, DeliverPolicy as NatsDeliverPolicy, PriorityPolicy, pull,
};

use crate::{
    api::{
        GoDuration, RetryBackoff,
        subscription::{DeliverPolicy, SubscriptionMode, SubscriptionSpec},
        topic::DEFAULT_PARTITION_TYPE_TOKENS,
    },
    naming,
    reconcile::InvalidSpec,
    subjects::{check_subject, subject_contains, subjects_overlap},
};

pub use crate::naming::metadata;

/// Deliveries of one event when nothing says otherwise.
pub const DEFAULT_MAX_DELIVERIES: i64 = 5;
/// How long JetStream waits for an acknowledgement when nothing says otherwise.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Ceiling of an exponential backoff that names no `max`.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Which Subscription the consumer belongs to.
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionIdentity<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
}

/// What the consumer needs to know of the Topic it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    /// The stream's subjects as the Topic declares them (or its default).
    pub subjects: Vec<String>,
    /// Event type tokens of a partitioned Topic; `None` if not partitioned.
    pub partition_type_tokens: Option<usize>,
    /// Number of partitions of a partitioned Topic.
    pub partitions: Option<u32>,
    /// WorkQueue retention: each event goes to one consumer only, so consumers may not overlap.
    pub work_queue: bool,
}

impl TopicView {
    pub fn of(topic: &crate::api::Topic, namespace: &str) -> Self {
        let name = kube::ResourceExt::name_any(topic);
        let spec = &topic.spec;
        Self {
            subjects: spec
                .subjects
                .clone()
                .unwrap_or_else(|| vec![naming::default_subject(namespace, &name)]),
            partition_type_tokens: spec.partitions.map(|_| {
                spec.partition_type_tokens
                    .unwrap_or(DEFAULT_PARTITION_TYPE_TOKENS)
                    .max(1) as usize
            }),
            work_queue: spec.retention == crate::api::topic::Retention::WorkQueue,
            partitions: spec.partitions.and_then(|p| u32::try_from(p).ok()),
            name,
        }
    }
}

/// Retry settings a Subscription inherits where it sets none: from its DeadLetterPolicy, then
/// from the Topic's EventSchema.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryDefaults<'a> {
    pub max_deliveries: Option<i32>,
    pub backoff: Option<&'a RetryBackoff>,
    pub ack_wait: Option<&'a GoDuration>,
}

/// The consumer to create on the stream `stream`.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredConsumer {
    pub stream: String,
    pub config: pull::Config,
}

pub fn desired_consumer(
    id: SubscriptionIdentity<'_>,
    spec: &SubscriptionSpec,
    topic: &TopicView,
    inherited: &[RetryDefaults<'_>],
) -> Result<DesiredConsumer, InvalidSpec> {
    if spec.mode == SubscriptionMode::Broadcast && topic.work_queue {
        return Err(InvalidSpec::new(
            "spec.mode",
            format!(
                "Broadcast gives every worker pod its own consumer, and Topic {} has WorkQueue retention, which hands each event to one consumer only (JetStream refuses overlapping consumers there); use mode WorkerGroup, or a Topic with Limits or Interest retention",
                topic.name
            ),
        ));
    }
    let name = naming::subscription_consumer_name(id.namespace, id.name);
    let filter_subjects = filters(id.namespace, spec, topic)?;
    let max_deliver = max_deliveries(spec, inherited);
    let backoff = backoff(spec, inherited, max_deliver)?;
    let ack_wait = match backoff.first() {
        Some(first) => *first,
        None => ack_wait(spec, inherited)?,
    };
    let config = pull::Config {
        durable_name: Some(name.clone()),
        name: Some(name),
        description: Some(format!(
            "Subscription {}/{} on Topic {}",
            id.namespace, id.name, topic.name
        )),
        deliver_policy: deliver_policy(spec)?,
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_deliver,
        filter_subjects,
        max_ack_pending: i64::from(spec.max_ack_pending),
        backoff,
        inactive_threshold: Duration::ZERO,
        metadata: HashMap::from([
            (
                metadata::OWNER.to_string(),
                naming::owner_id("Subscription", id.namespace, id.name),
            ),
            (metadata::GENERATION.to_string(), id.generation.to_string()),
        ]),
        ..Default::default()
    };
    Ok(DesiredConsumer {
        stream: naming::stream_name(id.namespace, &topic.name),
        config,
    })
}

/// Broadcast: the consumer of one worker pod. The Subscription's consumer under the pod's name
/// ([`naming::per_pod_consumer_name`]), so each pod reads every event at its own pace; the pod
/// is recorded in the metadata.
pub fn per_pod_consumer(subscription: &DesiredConsumer, pod: &str) -> pull::Config {
    let mut config = subscription.config.clone();
    let base = config.durable_name.clone().unwrap_or_default();
    let name = naming::per_pod_consumer_name(&base, pod);
    config.durable_name = Some(name.clone());
    config.name = Some(name);
    config.description = config.description.map(|d| format!("{d}, worker pod {pod}"));
    config
        .metadata
        .insert(metadata::POD.to_string(), pod.to_string());
    config
}

/// `ordering: PerKey` in WorkerGroup mode: one consumer per partition, each pinned by JetStream
/// to one dispatcher at a time (a priority group with the pinned-client policy), so the events
/// of a key are only ever in one pod's hands. Partitions no filter of the Subscription can
/// match get no consumer.
pub fn per_partition_consumers(
    subscription: &DesiredConsumer,
    topic: &TopicView,
    namespace: &str,
) -> Result<Vec<pull::Config>, InvalidSpec> {
    let Some(partitions) = topic
        .partitions
        .filter(|_| topic.partition_type_tokens.is_some())
    else {
        return Err(InvalidSpec::new(
            "spec.worker.ordering",
            format!(
                "PerKey needs a partitioned Topic (spec.partitions), and Topic {} has no partitions: without partition keys there is no per-key order to keep",
                topic.name
            ),
        ));
    };
    let base = subscription.config.durable_name.clone().unwrap_or_default();
    let prefix = format!("{namespace}.{}", topic.name);
    let filters = &subscription.config.filter_subjects;
    let mut consumers = Vec::new();
    for partition in 0..partitions {
        let pinned: Vec<String> = if filters.is_empty() {
            vec![format!("{prefix}.{partition}.>")]
        } else {
            filters
                .iter()
                .filter_map(|f| pin_partition(f, &prefix, partition))
                .collect()
        };
        if pinned.is_empty() {
            continue;
        }
        let mut config = subscription.config.clone();
        let name = naming::per_pod_consumer_name(&base, &format!("p{partition}"));
        config.durable_name = Some(name.clone());
        config.name = Some(name);
        config.filter_subjects = pinned;
        config.description = config
            .description
            .map(|d| format!("{d}, partition {partition}"));
        config.priority_groups = vec![PINNED_GROUP.to_string()];
        config.priority_policy = PriorityPolicy::PinnedClient;
        config.priority_timeout = pin_ttl(&subscription.config);
        config
            .metadata
            .insert(metadata::PARTITION.to_string(), partition.to_string());
        consumers.push(config);
    }
    Ok(consumers)
}

/// The priority group dispatchers pull per-partition consumers in.
pub const PINNED_GROUP: &str = "switchyard";
/// How long a partition stays pinned to a dispatcher that stopped pulling: the fail-over time
/// when a worker pod dies.
pub const PINNED_TTL: Duration = Duration::from_secs(10);

/// How long a partition stays pinned to a dispatcher that stopped pulling: at least
/// [`PINNED_TTL`], and never shorter than the longest ack deadline of the consumer (its ackWait
/// or a longer backoff delay), so that a dead dispatcher's events are redelivered before another
/// takes its keys over and handles newer events of them first.
fn pin_ttl(config: &pull::Config) -> Duration {
    config
        .backoff
        .iter()
        .copied()
        .chain([config.ack_wait, PINNED_TTL])
        .max()
        .unwrap_or(PINNED_TTL)
}

/// A stored-subject filter restricted to one partition (the token after `<ns>.<topic>`), or
/// `None` if it selects another partition only.
fn pin_partition(filter: &str, prefix: &str, partition: u32) -> Option<String> {
    let rest = filter.strip_prefix(prefix)?.strip_prefix('.')?;
    let (first, tail) = match rest.split_once('.') {
        Some((first, tail)) => (first, Some(tail)),
        None => (rest, None),
    };
    let n = partition.to_string();
    match (first, tail) {
        (">", _) => Some(format!("{prefix}.{n}.>")),
        ("*", Some(tail)) => Some(format!("{prefix}.{n}.{tail}")),
        ("*", None) => Some(format!("{prefix}.{n}")),
        (token, _) if token == n => Some(filter.to_string()),
        _ => None,
    }
}

/// Raw filters and event types as the subjects stored in the Topic's stream. Empty: everything.
fn filters(
    namespace: &str,
    spec: &SubscriptionSpec,
    topic: &TopicView,
) -> Result<Vec<String>, InvalidSpec> {
    // What the stream stores: a partitioned Topic stores `<ns>.<topic>.<partition>.<type>.<key>`.
    let stored: Vec<String> = match topic.partition_type_tokens {
        Some(_) => vec![format!("{namespace}.{}.>", topic.name)],
        None => topic.subjects.clone(),
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, subject) in spec.filter_subjects.iter().flatten().enumerate() {
        let field = format!("spec.filterSubjects[{i}]");
        check_subject(subject)
            .map_err(|why| InvalidSpec::new(&field, format!("{subject:?} {why}")))?;
        out.push((field, subject.clone()));
    }
    for (i, event_type) in spec.event_types.iter().flatten().enumerate() {
        let field = format!("spec.eventTypes[{i}]");
        out.push((
            field.clone(),
            type_subject(namespace, topic, event_type, &field)?,
        ));
    }
    for (field, subject) in &out {
        if !stored.iter().any(|s| subject_contains(s, subject)) {
            return Err(InvalidSpec::new(
                field,
                format!(
                    "{subject} lies outside the subjects of Topic {} ({}); a filter must select events of that Topic",
                    topic.name,
                    stored.join(", ")
                ),
            ));
        }
    }
    for (i, (field, subject)) in out.iter().enumerate() {
        if let Some((other_field, other)) =
            out[..i].iter().find(|(_, o)| subjects_overlap(o, subject))
        {
            return Err(InvalidSpec::new(
                field,
                format!(
                    "{subject} overlaps {other} ({other_field}); JetStream refuses overlapping filters in one consumer, so keep only the wider one"
                ),
            ));
        }
    }
    Ok(out.into_iter().map(|(_, subject)| subject).collect())
}

/// The stored subject pattern of a CloudEvents type (`order.placed`, `order.*`, `order.>`).
fn type_subject(
    namespace: &str,
    topic: &TopicView,
    event_type: &str,
    field: &str,
) -> Result<String, InvalidSpec> {
    let prefix = format!("{namespace}.{}", topic.name);
    let Some(type_tokens) = topic.partition_type_tokens else {
        return Ok(format!("{prefix}.{event_type}"));
    };
    // Partitioned: `<prefix>.<partition>.<type>.<key>`; any partition, any key.
    if event_type.ends_with(".>") || event_type == ">" {
        return Ok(format!("{prefix}.*.{event_type}"));
    }
    let tokens = event_type.split('.').count();
    if tokens != type_tokens {
        return Err(InvalidSpec::new(
            field,
            format!(
                "{event_type:?} has {tokens} token(s) but event types of the partitioned Topic {} have {type_tokens} (spec.partitionTypeTokens); use that many, or end with '>'",
                topic.name
            ),
        ));
    }
    Ok(format!("{prefix}.*.{event_type}.*"))
}

fn max_deliveries(spec: &SubscriptionSpec, inherited: &[RetryDefaults<'_>]) -> i64 {
    spec.retry
        .as_ref()
        .and_then(|r| r.max_deliveries)
        .or_else(|| inherited.iter().find_map(|d| d.max_deliveries))
        .map_or(DEFAULT_MAX_DELIVERIES, i64::from)
}

fn ack_wait(
    spec: &SubscriptionSpec,
    inherited: &[RetryDefaults<'_>],
) -> Result<Duration, InvalidSpec> {
    let (field, value) = match &spec.ack_wait {
        Some(value) => ("spec.ackWait", value),
        None => match inherited.iter().find_map(|d| d.ack_wait) {
            Some(value) => ("ackWait (inherited)", value),
            None => return Ok(DEFAULT_ACK_WAIT),
        },
    };
    match value.parse() {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(InvalidSpec::new(field, "must be longer than 0s")),
        Err(e) => Err(InvalidSpec::new(field, e.to_string())),
    }
}

/// The backoff as the list JetStream takes: at most one delay per redelivery (`max_deliver - 1`;
/// later entries could never apply), the last one repeating.
fn backoff(
    spec: &SubscriptionSpec,
    inherited: &[RetryDefaults<'_>],
    max_deliver: i64,
) -> Result<Vec<Duration>, InvalidSpec> {
    let (field, rule) = match spec.retry.as_ref().and_then(|r| r.backoff.as_ref()) {
        Some(rule) => ("spec.retry.backoff", rule),
        None => match inherited.iter().find_map(|d| d.backoff) {
            Some(rule) => ("retry.backoff (inherited)", rule),
            None => return Ok(Vec::new()),
        },
    };
    let redeliveries = usize::try_from(max_deliver - 1).unwrap_or(0);
    if redeliveries == 0 {
        return Ok(Vec::new());
    }
    let parse = |name: &str, value: &GoDuration| {
        value
            .parse()
            .map_err(|e| InvalidSpec::new(format!("{field}.{name}"), e.to_string()))
    };
    if let Some(delays) = &rule.delays {
        let delays = delays
            .iter()
            .enumerate()
            .map(|(i, d)| parse(&format!("delays[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(i) = delays.iter().position(Duration::is_zero) {
            return Err(InvalidSpec::new(
                format!("{field}.delays[{i}]"),
                "must be longer than 0s",
            ));
        }
        return Ok(delays.into_iter().take(redeliveries).collect());
    }
    let Some(initial) = &rule.initial else {
        return Err(InvalidSpec::new(field, "needs delays or initial"));
    };
    let initial = parse("initial", initial)?;
    if initial.is_zero() {
        return Err(InvalidSpec::new(
            format!("{field}.initial"),
            "must be longer than 0s",
        ));
    }
    let max = match &rule.max {
        Some(max) => parse("max", max)?,
        None => DEFAULT_BACKOFF_MAX.max(initial),
    };
    if max < initial {
        return Err(InvalidSpec::new(
            format!("{field}.max"),
            "must not be shorter than initial",
        ));
    }
    let multiplier: f64 = match &rule.multiplier {
        Some(m) => m
            .parse()
            .ok()
            .filter(|m: &f64| (1.0..=10.0).contains(m))
            .ok_or_else(|| {
                InvalidSpec::new(
                    format!("{field}.multiplier"),
                    format!("{m:?} is not a number between 1 and 10"),
                )
            })?,
        None => 2.0,
    };
    let mut delays = vec![initial];
    while delays.len() < redeliveries {
        let last = *delays.last().unwrap_or(&initial);
        if last >= max {
            break; // the last delay repeats by itself
        }
        delays.push(last.mul_f64(multiplier).min(max));
        if multiplier == 1.0 {
            break;
        }
    }
    Ok(delays)
}

fn deliver_policy(spec: &SubscriptionSpec) -> Result<NatsDeliverPolicy, InvalidSpec> {
    Ok(match spec.deliver_policy {
        DeliverPolicy::All => NatsDeliverPolicy::All,
        DeliverPolicy::New => NatsDeliverPolicy::New,
        DeliverPolicy::Last => NatsDeliverPolicy::Last,
        DeliverPolicy::ByStartSequence => {
            let sequence = spec
                .start_sequence
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    InvalidSpec::new(
                        "spec.startSequence",
                        "is required (≥ 1) with deliverPolicy ByStartSequence",
                    )
                })?;
            NatsDeliverPolicy::ByStartSequence {
                start_sequence: sequence,
            }
        }
        DeliverPolicy::ByStartTime => {
            let at = spec.start_time.as_ref().ok_or_else(|| {
                InvalidSpec::new(
                    "spec.startTime",
                    "is required with deliverPolicy ByStartTime",
                )
            })?;
            let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(at.0.as_nanosecond())
                .map_err(|e| InvalidSpec::new("spec.startTime", e.to_string()))?;
            NatsDeliverPolicy::ByStartTime { start_time }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_stays_pinned_at_least_as_long_as_its_longest_ack_deadline() {
        let mut config = pull::Config {
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(pin_ttl(&config), Duration::from_secs(30));
        config.ack_wait = Duration::from_secs(1);
        assert_eq!(pin_ttl(&config), PINNED_TTL);
        config.backoff = vec![Duration::from_secs(1), Duration::from_secs(45)];
        assert_eq!(pin_ttl(&config), Duration::from_secs(45));
    }

    fn spec(yaml: &str) -> SubscriptionSpec {
        serde_yaml::from_str(&format!("topicRef: {{name: orders}}\n{yaml}")).expect("spec")
    }

    fn plain() -> TopicView {
        TopicView {
            name: "orders".into(),
            subjects: vec!["shop.orders.>".into()],
            partition_type_tokens: None,
            work_queue: false,
            partitions: None,
        }
    }

    fn partitioned() -> TopicView {
        TopicView {
            partition_type_tokens: Some(2),
            partitions: Some(4),
            ..plain()
        }
    }

    const ID: SubscriptionIdentity<'static> = SubscriptionIdentity {
        namespace: "shop",
        name: "billing",
        generation: 3,
    };

    fn consumer(yaml: &str, topic: &TopicView) -> pull::Config {
        desired_consumer(ID, &spec(yaml), topic, &[])
            .expect(yaml)
            .config
    }

    fn invalid(yaml: &str, topic: &TopicView, inherited: &[RetryDefaults<'_>]) -> InvalidSpec {
        desired_consumer(ID, &spec(yaml), topic, inherited).expect_err(yaml)
    }

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn defaults_make_a_safe_durable_that_never_expires() {
        let desired = desired_consumer(ID, &spec(""), &plain(), &[]).unwrap();
        assert_eq!(desired.stream, "shop_orders");
        let c = desired.config;
        assert_eq!(c.durable_name.as_deref(), Some("sub_shop_billing"));
        assert_eq!(c.name, c.durable_name);
        assert!(c.filter_subjects.is_empty() && c.filter_subject.is_empty());
        assert_eq!(c.deliver_policy, NatsDeliverPolicy::All);
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.ack_wait, DEFAULT_ACK_WAIT);
        assert_eq!(c.max_deliver, DEFAULT_MAX_DELIVERIES);
        assert_eq!(c.max_ack_pending, 1000);
        assert!(c.backoff.is_empty());
        assert_eq!(c.inactive_threshold, Duration::ZERO);
        assert_eq!(c.metadata[metadata::OWNER], "Subscription/shop/billing");
        assert_eq!(c.metadata[metadata::GENERATION], "3");
    }

    #[test]
    fn broadcast_pods_get_the_subscription_consumer_under_their_own_names() {
        let desired = desired_consumer(
            ID,
            &spec("mode: Broadcast\neventTypes: [order.placed]\nworker: {image: x, replicas: 2}"),
            &plain(),
            &[],
        )
        .unwrap();
        let pod = per_pod_consumer(&desired, "billing-worker-5d8f7c9b-x2x9z");
        assert_eq!(
            pod.durable_name.as_deref(),
            Some("sub_shop_billing_billing-worker-5d8f7c9b-x2x9z")
        );
        assert_eq!(pod.name, pod.durable_name);
        assert_eq!(pod.filter_subjects, desired.config.filter_subjects);
        assert_eq!(pod.deliver_policy, desired.config.deliver_policy);
        assert_eq!(pod.inactive_threshold, Duration::ZERO);
        assert_eq!(pod.metadata[metadata::OWNER], "Subscription/shop/billing");
        assert_eq!(pod.metadata[metadata::POD], "billing-worker-5d8f7c9b-x2x9z");
        assert!(
            pod.description
                .unwrap()
                .ends_with("worker pod billing-worker-5d8f7c9b-x2x9z")
        );
    }

    #[test]
    fn per_key_order_gets_one_pinned_consumer_per_partition() {
        let all = desired_consumer(ID, &spec(""), &partitioned(), &[]).unwrap();
        let consumers = per_partition_consumers(&all, &partitioned(), "shop").unwrap();
        let names: Vec<_> = consumers
            .iter()
            .map(|c| c.durable_name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "sub_shop_billing_p0",
                "sub_shop_billing_p1",
                "sub_shop_billing_p2",
                "sub_shop_billing_p3"
            ]
        );
        assert_eq!(consumers[2].filter_subjects, ["shop.orders.2.>"]);
        assert_eq!(consumers[2].priority_policy, PriorityPolicy::PinnedClient);
        assert_eq!(consumers[2].priority_groups, [PINNED_GROUP]);
        assert_eq!(consumers[2].metadata[metadata::PARTITION], "2");
        assert_eq!(consumers[2].inactive_threshold, Duration::ZERO);

        let typed = desired_consumer(
            ID,
            &spec("eventTypes: [order.placed, payment.>]\nfilterSubjects: [shop.orders.1.audit.>]"),
            &partitioned(),
            &[],
        )
        .unwrap();
        let consumers = per_partition_consumers(&typed, &partitioned(), "shop").unwrap();
        assert_eq!(consumers.len(), 4);
        assert_eq!(
            consumers[0].filter_subjects,
            ["shop.orders.0.order.placed.*", "shop.orders.0.payment.>"]
        );
        assert_eq!(
            consumers[1].filter_subjects,
            [
                "shop.orders.1.audit.>",
                "shop.orders.1.order.placed.*",
                "shop.orders.1.payment.>"
            ],
            "a filter naming one partition goes to that partition only"
        );
        let err = per_partition_consumers(&all, &plain(), "shop").unwrap_err();
        assert_eq!(err.field, "spec.worker.ordering");
    }

    #[test]
    fn filters_are_pinned_to_a_partition() {
        let pin = |f: &str, n| pin_partition(f, "shop.orders", n);
        assert_eq!(pin("shop.orders.>", 3).as_deref(), Some("shop.orders.3.>"));
        assert_eq!(
            pin("shop.orders.*.order.*", 3).as_deref(),
            Some("shop.orders.3.order.*")
        );
        assert_eq!(
            pin("shop.orders.3.order.*", 3).as_deref(),
            Some("shop.orders.3.order.*")
        );
        assert_eq!(pin("shop.orders.2.order.*", 3), None);
        assert_eq!(pin("shop.other.>", 3), None);
    }

    #[test]
    fn broadcast_on_a_work_queue_topic_is_refused() {
        let work_queue = TopicView {
            work_queue: true,
            ..plain()
        };
        let err = invalid("mode: Broadcast\nworker: {image: x}", &work_queue, &[]);
        assert_eq!(err.field, "spec.mode");
        assert!(err.message.contains("WorkQueue"), "{err}");
        assert!(desired_consumer(ID, &spec(""), &work_queue, &[]).is_ok());
    }

    #[test]
    fn event_types_follow_the_topic_subject_convention() {
        let c = consumer(
            "eventTypes: [order.placed, payment.*, refund.>]\nfilterSubjects: [shop.orders.audit.>]",
            &plain(),
        );
        assert_eq!(
            c.filter_subjects,
            [
                "shop.orders.audit.>",
                "shop.orders.order.placed",
                "shop.orders.payment.*",
                "shop.orders.refund.>"
            ]
        );
    }

    #[test]
    fn partitioned_topics_match_any_partition_and_any_key() {
        let c = consumer(
            "eventTypes: [order.placed, payment.>]",
            &TopicView {
                partition_type_tokens: Some(2),
                ..plain()
            },
        );
        assert_eq!(
            c.filter_subjects,
            ["shop.orders.*.order.placed.*", "shop.orders.*.payment.>"]
        );
        let err = invalid("eventTypes: [order]", &partitioned(), &[]);
        assert_eq!(err.field, "spec.eventTypes[0]");
        assert!(err.message.contains("partitionTypeTokens"), "{err}");
    }

    #[test]
    fn filters_outside_the_topic_or_overlapping_each_other_are_refused() {
        let err = invalid("filterSubjects: [shop.payments.>]", &plain(), &[]);
        assert_eq!(err.field, "spec.filterSubjects[0]");
        assert!(err.message.contains("outside"), "{err}");
        let err = invalid(
            "filterSubjects: [shop.orders.>]\neventTypes: [order.placed]",
            &plain(),
            &[],
        );
        assert_eq!(err.field, "spec.eventTypes[0]");
        assert!(err.message.contains("overlaps shop.orders.>"), "{err}");
        let err = invalid("filterSubjects: [\"shop..orders\"]", &plain(), &[]);
        assert_eq!(err.field, "spec.filterSubjects[0]");
    }

    #[test]
    fn a_backoff_list_replaces_ack_wait_and_never_outgrows_the_deliveries() {
        let c = consumer(
            "ackWait: 1m\nretry: {maxDeliveries: 4, backoff: {delays: [1s, 5s, 30s]}}",
            &plain(),
        );
        assert_eq!(c.backoff, secs(&[1, 5, 30]));
        assert_eq!(
            c.ack_wait,
            Duration::from_secs(1),
            "the server would rewrite it to the first delay"
        );
        assert_eq!(c.max_deliver, 4);
        // Inherited lists are cut to one delay per redelivery.
        let policy = RetryBackoff {
            delays: Some(["1s", "2s", "3s", "4s"].map(GoDuration::new).to_vec()),
            initial: None,
            max: None,
            multiplier: None,
        };
        let inherited = [RetryDefaults {
            backoff: Some(&policy),
            ..Default::default()
        }];
        let c = desired_consumer(ID, &spec("retry: {maxDeliveries: 3}"), &plain(), &inherited)
            .unwrap()
            .config;
        assert_eq!(c.backoff, secs(&[1, 2]));
    }

    #[test]
    fn an_exponential_backoff_becomes_a_list_that_stops_at_its_ceiling() {
        let c = consumer(
            "retry: {maxDeliveries: 10, backoff: {initial: 1s, max: 10s}}",
            &plain(),
        );
        assert_eq!(c.backoff, secs(&[1, 2, 4, 8, 10]));
        let c = consumer(
            "retry: {maxDeliveries: 3, backoff: {initial: 2s, multiplier: \"3\"}}",
            &plain(),
        );
        assert_eq!(c.backoff, secs(&[2, 6]));
        let c = consumer(
            "retry: {maxDeliveries: 1, backoff: {initial: 2s}}",
            &plain(),
        );
        assert!(c.backoff.is_empty(), "one delivery: nothing to back off");
    }

    #[test]
    fn unset_retry_settings_are_inherited_in_order() {
        let schema_wait = GoDuration::new("45s");
        let policy = RetryDefaults {
            max_deliveries: Some(7),
            ..Default::default()
        };
        let schema = RetryDefaults {
            max_deliveries: Some(9),
            ack_wait: Some(&schema_wait),
            ..Default::default()
        };
        let c = desired_consumer(ID, &spec(""), &plain(), &[policy, schema])
            .unwrap()
            .config;
        assert_eq!(
            c.max_deliver, 7,
            "the DeadLetterPolicy before the EventSchema"
        );
        assert_eq!(c.ack_wait, Duration::from_secs(45));
        let c = desired_consumer(
            ID,
            &spec("retry: {maxDeliveries: 2}\nackWait: 5s"),
            &plain(),
            &[policy, schema],
        )
        .unwrap()
        .config;
        assert_eq!(
            (c.max_deliver, c.ack_wait),
            (2, Duration::from_secs(5)),
            "the Subscription's own win"
        );
    }

    #[test]
    fn start_positions_are_translated() {
        let c = consumer(
            "deliverPolicy: ByStartSequence\nstartSequence: 42",
            &plain(),
        );
        assert_eq!(
            c.deliver_policy,
            NatsDeliverPolicy::ByStartSequence { start_sequence: 42 }
        );
        let c = consumer(
            "deliverPolicy: ByStartTime\nstartTime: \"2026-05-01T00:00:00Z\"",
            &plain(),
        );
        let NatsDeliverPolicy::ByStartTime { start_time } = c.deliver_policy else {
            panic!("{:?}", c.deliver_policy);
        };
        assert_eq!(start_time.unix_timestamp(), 1_777_593_600);
        assert_eq!(
            invalid("deliverPolicy: ByStartSequence", &plain(), &[]).field,
            "spec.startSequence"
        );
    }
}
