//! Where each consumer's dead letters go, answered for the relay from watch caches of
//! Subscriptions, Topics and DeadLetterPolicies: the consumer's Subscription, the policy it
//! names (or its Topic names), and that policy's target. Answers come from memory; the relay
//! asks once per advisory.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use futures::{StreamExt, future::BoxFuture};
use kube::{
    ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use super::target::{self, PolicyIdentity};
use crate::{
    api::{DeadLetterPolicy, Subscription, Topic, topic::Retention},
    conditions::{self, ConditionType},
    deadletter::{Route, Routes, SubjectLayout, Target},
    naming,
    runtime::{
        Context, api_for,
        watch::{on_first_list, slim},
    },
};

/// The kinds a route is made of; routes are answered once all three were listed.
const LISTS: usize = 3;

/// Routes from watch caches.
pub struct CachedRoutes {
    subscriptions: Store<Subscription>,
    topics: Store<Topic>,
    policies: Store<DeadLetterPolicy>,
    listed: Arc<AtomicUsize>,
}

impl CachedRoutes {
    /// The routes, and the watches that fill their caches (to run next to the relay).
    pub fn watching(ctx: &Context) -> (Self, BoxFuture<'static, ()>) {
        let namespace = ctx.namespace.as_deref();
        let listed = Arc::new(AtomicUsize::new(0));
        let (subscriptions, subscription_writer) = reflector::store();
        let (topics, topic_writer) = reflector::store();
        let (policies, policy_writer) = reflector::store();
        let config = || watcher::Config::default().any_semantic();
        let subscriptions_watch =
            watcher(api_for::<Subscription>(&ctx.client, namespace), config())
                .default_backoff()
                .inspect(count_first_list(&listed))
                .modify(slim)
                .reflect(subscription_writer)
                .for_each(|_| async {});
        let topics_watch = watcher(api_for::<Topic>(&ctx.client, namespace), config())
            .default_backoff()
            .inspect(count_first_list(&listed))
            .modify(slim)
            .reflect(topic_writer)
            .for_each(|_| async {});
        let policies_watch = watcher(
            api_for::<DeadLetterPolicy>(&ctx.client, namespace),
            config(),
        )
        .default_backoff()
        .inspect(count_first_list(&listed))
        .modify(slim)
        .reflect(policy_writer)
        .for_each(|_| async {});
        let watches = Box::pin(async move {
            tokio::join!(subscriptions_watch, topics_watch, policies_watch);
        });
        (
            Self {
                subscriptions,
                topics,
                policies,
                listed,
            },
            watches,
        )
    }

    fn answer(&self, stream: &str, consumer: &str) -> Route {
        if self.listed.load(Ordering::Relaxed) < LISTS {
            return wait(
                "the operator is still reading Subscriptions, Topics and DeadLetterPolicies",
            );
        }
        let Some((namespace, name)) = naming::subscription_of_consumer(consumer) else {
            return Route::NotManaged;
        };
        let Some(subscription) = self
            .subscriptions
            .get(&ObjectRef::new(name).within(namespace))
        else {
            // Its consumers go with it; what is left is nobody's.
            return Route::NotManaged;
        };
        let topic_name = &subscription.spec.topic_ref.name;
        let Some(topic) = self
            .topics
            .get(&ObjectRef::new(topic_name).within(namespace))
        else {
            return Route::NotManaged;
        };
        if naming::stream_name(namespace, topic_name) != stream {
            return Route::NotManaged;
        }
        let Some(policy_name) = subscription
            .spec
            .dead_letter_policy_ref
            .as_ref()
            .or(topic.spec.dead_letter_policy_ref.as_ref())
            .map(|r| r.name.clone())
        else {
            // No policy: the failure is final, as JetStream alone would have it.
            return Route::NotManaged;
        };
        let Some(policy) = self
            .policies
            .get(&ObjectRef::new(&policy_name).within(namespace))
        else {
            return wait(&format!(
                "DeadLetterPolicy {namespace}/{policy_name} does not exist"
            ));
        };
        if !ready_at_its_generation(&policy) {
            return wait(&format!(
                "DeadLetterPolicy {namespace}/{policy_name} is not Ready; see its status"
            ));
        }
        let target_topic = policy
            .spec
            .target
            .topic_ref
            .as_ref()
            .and_then(|t| self.topics.get(&ObjectRef::new(&t.name).within(namespace)));
        let id = PolicyIdentity {
            namespace,
            name: &policy_name,
            generation: policy.metadata.generation.unwrap_or_default(),
        };
        let desired = match target::desired(id, &policy.spec, target_topic.as_deref()) {
            Ok(desired) => desired,
            Err(invalid) => {
                return wait(&format!(
                    "DeadLetterPolicy {namespace}/{policy_name}: {invalid}"
                ));
            }
        };
        Route::Deliver(Arc::new(Target {
            policy: format!("{namespace}/{policy_name}"),
            stream: desired.stream,
            subject_prefix: desired.subject_prefix,
            layout: SubjectLayout {
                topic_prefix: topic_prefix(namespace, &topic),
                partitioned: topic.spec.partitions.is_some(),
            },
            capture: policy.spec.capture.clone(),
            release_original: matches!(
                topic.spec.retention,
                Retention::WorkQueue | Retention::Interest
            ),
        }))
    }
}

impl Routes for CachedRoutes {
    async fn route(&self, stream: &str, consumer: &str) -> Route {
        self.answer(stream, consumer)
    }
}

fn count_first_list<K>(
    listed: &Arc<AtomicUsize>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
    let listed = listed.clone();
    on_first_list(move || {
        listed.fetch_add(1, Ordering::Relaxed);
    })
}

fn wait(why: &str) -> Route {
    Route::Wait { why: why.into() }
}

/// A policy whose Ready condition is True for its current spec.
fn ready_at_its_generation(policy: &DeadLetterPolicy) -> bool {
    policy.status.as_ref().is_some_and(|status| {
        status.observed_generation == policy.metadata.generation
            && conditions::find(&status.conditions, ConditionType::Ready)
                .is_some_and(|c| c.status == "True")
    })
}

/// The subject prefix every event of a Topic has: `<namespace>.<topic>` unless it declares its
/// own subjects, then the common prefix of the first.
fn topic_prefix(namespace: &str, topic: &Topic) -> String {
    match topic.spec.subjects.as_ref().and_then(|s| s.first()) {
        Some(subject) => subject
            .trim_end_matches(".>")
            .trim_end_matches(".*")
            .to_string(),
        None => format!("{namespace}.{}", topic.name_any()),
    }
}
