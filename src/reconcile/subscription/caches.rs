//! What a Subscription's reconciles read besides the Subscription itself, from caches instead
//! of API requests: the Topics (it names one), the EventSchemas (it, or its Topic, may name
//! one), the worker Deployments (it owns one) and, in Broadcast mode, the worker pods (each
//! gets its own consumer). The watches filling the caches also wake the Subscriptions
//! concerned, and only when something they act on changed.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Resource, ResourceExt,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};

use super::workers::{MODE_LABEL, SUBSCRIPTION_LABEL};
use crate::{
    api::{EventSchema, Subscription, Topic},
    conditions::{self, ConditionType},
    reconcile::topic::referred_topic_change,
    runtime::{
        Context, Error, api_for,
        relations::referrers,
        watch::{lifecycle_hash, on_first_list, related_changes, slim},
    },
};

/// Label every worker Deployment carries, so the cache holds Switchyard's only.
const MANAGED_BY_SWITCHYARD: &str = "app.kubernetes.io/managed-by=switchyard";

type PodMeta = PartialObjectMeta<Pod>;

/// The caches, readable by reconciles from the start; the watches filling them are started
/// with the controller ([`Caches::watch`]).
pub struct Caches {
    topics: Store<Topic>,
    event_schemas: Store<EventSchema>,
    deployments: Store<Deployment>,
    pods: Store<PodMeta>,
    writers: Mutex<Option<CacheWriters>>,
    /// How many of the [`LISTS`] watches have listed their objects.
    synced: Arc<tokio::sync::watch::Sender<usize>>,
}

/// The watches whose first list [`Caches::synced`] waits for.
const LISTS: usize = 4;

/// Counts a watch's first complete list into `synced`.
fn count_first_list<K>(
    synced: &Arc<tokio::sync::watch::Sender<usize>>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
    let synced = synced.clone();
    on_first_list(move || synced.send_modify(|lists| *lists += 1))
}

struct CacheWriters {
    topics: Writer<Topic>,
    event_schemas: Writer<EventSchema>,
    deployments: Writer<Deployment>,
    pods: Writer<PodMeta>,
}

impl Default for Caches {
    fn default() -> Self {
        let (topics, topic_writer) = reflector::store();
        let (event_schemas, event_schema_writer) = reflector::store();
        let (deployments, deployment_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        Self {
            topics,
            event_schemas,
            deployments,
            pods,
            writers: Mutex::new(Some(CacheWriters {
                topics: topic_writer,
                event_schemas: event_schema_writer,
                deployments: deployment_writer,
                pods: pod_writer,
            })),
            synced: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Caches {
    pub fn topic(&self, namespace: &str, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn event_schema(&self, namespace: &str, name: &str) -> Option<Arc<EventSchema>> {
        self.event_schemas
            .get(&ObjectRef::new(name).within(namespace))
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Names of the worker pods of a Broadcast Subscription, sorted; pods shutting down count
    /// until they are gone, so their in-flight events can still be acknowledged.
    pub fn broadcast_pods(&self, namespace: &str, subscription: &str) -> Vec<String> {
        let mut pods: Vec<String> = self
            .pods
            .state()
            .iter()
            .filter(|pod| pod.namespace().as_deref() == Some(namespace))
            .filter(|pod| {
                pod.labels().get(SUBSCRIPTION_LABEL).map(String::as_str) == Some(subscription)
            })
            .map(|pod| pod.name_any())
            .collect();
        pods.sort();
        pods
    }

    /// Waits until every cache has listed its objects once: before that a missing Topic or
    /// pod may only be missing from the cache, and a per-pod consumer would look orphaned.
    /// (kube's `Store::wait_until_ready` wakes a single waiter; reconciles run concurrently.)
    /// Gives up after `patience` with the reason, so a watch that cannot list (RBAC, say)
    /// shows up as failing reconciles instead of silent ones.
    pub async fn synced(&self, patience: Duration) -> Result<(), Error> {
        let mut synced = self.synced.subscribe();
        match tokio::time::timeout(patience, synced.wait_for(|lists| *lists >= LISTS)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::NotSynced(
                "the watches on Topics, EventSchemas, worker Deployments and Broadcast worker pods have not all listed their objects yet; check that the operator may list and watch them",
            )),
        }
    }

    /// Adds the watches that fill the caches and wake Subscriptions: a Topic appearing,
    /// changing its spec or going away wakes the Subscriptions naming it; an EventSchema
    /// appearing, going away, changing its spec or registering a version wakes the
    /// Subscriptions bound to it (by their own schemaRef or their Topic's); a worker Deployment
    /// changing wakes its owner; a Broadcast worker pod starting or going away wakes its
    /// Subscription. Called once per controller run.
    pub fn watch(
        &self,
        controller: Controller<DeserializeGuard<Subscription>>,
        subscriptions: Store<DeserializeGuard<Subscription>>,
        ctx: &Context,
    ) -> Controller<DeserializeGuard<Subscription>> {
        let Some(writers) = self.writers.lock().expect("cache writers").take() else {
            return controller;
        };
        let namespace = ctx.namespace.as_deref();
        let topics = watcher(
            api_for::<Topic>(&ctx.client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .inspect(count_first_list(&self.synced))
        .modify(slim)
        .reflect(writers.topics);
        let event_schemas = watcher(
            api_for::<EventSchema>(&ctx.client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .inspect(count_first_list(&self.synced))
        .modify(slim)
        .reflect(writers.event_schemas);
        let deployments = watcher(
            api_for::<Deployment>(&ctx.client, namespace),
            watcher::Config::default()
                .labels(MANAGED_BY_SWITCHYARD)
                .any_semantic(),
        )
        .default_backoff()
        .inspect(count_first_list(&self.synced))
        .modify(slim)
        .reflect(writers.deployments)
        .touched_objects();
        // Metadata only: names and labels are all a reconcile reads of a pod.
        let pods = watcher(
            api_for::<PodMeta>(&ctx.client, namespace),
            watcher::Config::default()
                .labels(&format!("{MODE_LABEL}=Broadcast"))
                .any_semantic(),
        )
        .default_backoff()
        .inspect(count_first_list(&self.synced))
        .modify(slim)
        .reflect(writers.pods);
        controller
            .owns_stream(deployments)
            .watches_stream(
                related_changes(topics, referred_topic_change),
                referrers(
                    subscriptions.clone(),
                    |guard: &DeserializeGuard<Subscription>| {
                        guard
                            .0
                            .as_ref()
                            .map(|sub| vec![sub.spec.topic_ref.name.clone()])
                            .unwrap_or_default()
                    },
                ),
            )
            .watches_stream(
                related_changes(event_schemas, referred_schema_change),
                bound_subscriptions(subscriptions, self.topics.clone()),
            )
            .watches_stream(related_changes(pods, |_| Some(0)), pod_owner)
    }
}

/// What of an EventSchema its Subscriptions act on: its lifecycle, and what it registered
/// (the registry's versions, as its status reports them), so that a Subscription waiting for a
/// version to register is woken when one does.
fn referred_schema_change(schema: &EventSchema) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    lifecycle_hash(schema).hash(&mut hasher);
    if let Some(status) = &schema.status {
        status.latest_version.hash(&mut hasher);
        status.registered_versions.hash(&mut hasher);
        status.fingerprint.hash(&mut hasher);
        conditions::find(&status.conditions, ConditionType::Ready)
            .map(|c| &c.status)
            .hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Maps an EventSchema to the Subscriptions of its namespace bound to it: those naming it in
/// their schemaRef, and those without one whose Topic (from the Topic cache) names it.
fn bound_subscriptions(
    subscriptions: Store<DeserializeGuard<Subscription>>,
    topics: Store<Topic>,
) -> impl Fn(EventSchema) -> Vec<ObjectRef<DeserializeGuard<Subscription>>> + Send + Sync + Clone + 'static
{
    move |schema: EventSchema| {
        let (Some(namespace), name) = (schema.namespace(), schema.name_any()) else {
            return Vec::new();
        };
        subscriptions
            .state()
            .iter()
            .filter(|guard| guard.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|guard| {
                let Ok(sub) = &guard.0 else { return false };
                let named = match &sub.spec.schema_ref {
                    Some(own) => Some(own.name.clone()),
                    None => topics
                        .get(&ObjectRef::new(&sub.spec.topic_ref.name).within(&namespace))
                        .and_then(|topic| topic.spec.schema_ref.as_ref().map(|r| r.name.clone())),
                };
                named.as_deref() == Some(name.as_str())
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// The Subscription a Broadcast worker pod belongs to, from its label.
fn pod_owner(pod: PodMeta) -> Option<ObjectRef<DeserializeGuard<Subscription>>> {
    let subscription = pod.labels().get(SUBSCRIPTION_LABEL)?;
    Some(ObjectRef::new(subscription).within(pod.meta().namespace.as_deref()?))
}
