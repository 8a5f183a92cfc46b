//! What a Subscription's reconciles read besides the Subscription itself, from caches instead
//! of API requests: the Topics (it names one), the worker Deployments (it owns one) and, in
//! Broadcast mode, the worker pods (each gets its own consumer). The watches filling the caches
//! also wake the Subscriptions concerned, and only when something they act on changed.

use std::{
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
    api::{Subscription, Topic},
    reconcile::topic::referred_topic_change,
    runtime::{
        Context, Error, api_for,
        relations::referrers,
        watch::{on_first_list, related_changes, slim},
    },
};

/// Label every worker Deployment carries, so the cache holds Switchyard's only.
const MANAGED_BY_SWITCHYARD: &str = "app.kubernetes.io/managed-by=switchyard";

type PodMeta = PartialObjectMeta<Pod>;

/// The caches, readable by reconciles from the start; the watches filling them are started
/// with the controller ([`Caches::watch`]).
pub struct Caches {
    topics: Store<Topic>,
    deployments: Store<Deployment>,
    pods: Store<PodMeta>,
    writers: Mutex<Option<CacheWriters>>,
    /// How many of the [`LISTS`] watches have listed their objects.
    synced: Arc<tokio::sync::watch::Sender<usize>>,
}

/// The watches whose first list [`Caches::synced`] waits for.
const LISTS: usize = 3;

/// Counts a watch's first complete list into `synced`.
fn count_first_list<K>(
    synced: &Arc<tokio::sync::watch::Sender<usize>>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
    let synced = synced.clone();
    on_first_list(move || synced.send_modify(|lists| *lists += 1))
}

struct CacheWriters {
    topics: Writer<Topic>,
    deployments: Writer<Deployment>,
    pods: Writer<PodMeta>,
}

impl Default for Caches {
    fn default() -> Self {
        let (topics, topic_writer) = reflector::store();
        let (deployments, deployment_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        Self {
            topics,
            deployments,
            pods,
            writers: Mutex::new(Some(CacheWriters {
                topics: topic_writer,
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
                "the watches on Topics, worker Deployments and Broadcast worker pods have not all listed their objects yet; check that the operator may list and watch them",
            )),
        }
    }

    /// Adds the watches that fill the caches and wake Subscriptions: a Topic appearing,
    /// changing its spec or going away wakes the Subscriptions naming it; a worker Deployment
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
        let namespace = ctx.config.namespace.as_deref();
        let topics = watcher(
            api_for::<Topic>(&ctx.client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .inspect(count_first_list(&self.synced))
        .modify(slim)
        .reflect(writers.topics);
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
                referrers(subscriptions, |guard: &DeserializeGuard<Subscription>| {
                    guard
                        .0
                        .as_ref()
                        .map(|sub| vec![sub.spec.topic_ref.name.clone()])
                        .unwrap_or_default()
                }),
            )
            .watches_stream(related_changes(pods, |_| Some(0)), pod_owner)
    }
}

/// The Subscription a Broadcast worker pod belongs to, from its label.
fn pod_owner(pod: PodMeta) -> Option<ObjectRef<DeserializeGuard<Subscription>>> {
    let subscription = pod.labels().get(SUBSCRIPTION_LABEL)?;
    Some(ObjectRef::new(subscription).within(pod.meta().namespace.as_deref()?))
}
