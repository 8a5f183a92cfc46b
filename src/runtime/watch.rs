//! How a controller sees its objects: a watch whose events reach the reconciler only when
//! something a reconcile acts on changed, and a cache that keeps only what reconciles read.
//!
//! The operator's own status writes are watch events too. Were they to trigger reconciles, a
//! Topic whose figures move (events flowing) would be rewritten in a loop. So only changes of
//! the spec (`generation`), of Switchyard's annotations, of finalizers and of the deletion
//! timestamp pass; live figures are refreshed by the periodic resync instead.
//!
//! Deletions do not reach the reconciler either (there is nothing left to reconcile); they are
//! handed out on their own channel, so a kind can report an object that went without passing
//! through its finalizer.

use std::{
    collections::{HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
};

use futures::{Stream, StreamExt, channel::mpsc};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        utils::PredicateConfig,
        watcher,
    },
};

/// Prefix of the annotations that steer reconciles (pause, adopt, and those to come).
pub const LIFECYCLE_ANNOTATION_PREFIX: &str = "switchyard.dev/";
/// Written by `kubectl apply` (client-side); a copy of the spec no reconcile reads.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A hash of everything whose change must reach the reconciler. `generation` alone would miss
/// annotations, finalizers and the start of a deletion (which does not bump it for objects
/// without finalizers).
pub fn lifecycle_hash<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    if let Some(annotations) = &meta.annotations {
        // BTreeMap: iteration order is stable.
        annotations
            .iter()
            .filter(|(key, _)| key.starts_with(LIFECYCLE_ANNOTATION_PREFIX))
            .for_each(|entry| entry.hash(&mut hasher));
    }
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// Drops what no reconcile reads before an object enters the cache: managed fields and the
/// last-applied copy of the spec are often larger than the object itself.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The watch stream a controller runs on, the cache behind it, and the objects the watch saw
/// deleted: the cache sees every change (so a reconcile reads the latest status), the stream
/// only lifecycle changes. `on_synced` is called each time the watch has listed every object (at
/// start, and after a re-list).
///
/// The deletions channel ends with the stream. A deletion that happens while the watch is
/// re-listing (after the API server was away) is not seen: the list just lacks the object.
pub fn lifecycle_stream<K>(
    api: Api<K>,
    on_synced: impl Fn() + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    mpsc::UnboundedReceiver<K>,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned,
{
    let (reader, writer) = reflector::store();
    // Unbounded: deletions are rare and each is handled once; a bounded channel would have to
    // either drop them or hold up the watch.
    let (deleted, deletions) = mpsc::unbounded();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => on_synced(),
            // Tapped here because `applied_objects` below drops deletions. A send fails only
            // once nobody listens any more, which is fine to ignore.
            Ok(watcher::Event::Delete(obj)) => {
                let _ = deleted.unbounded_send(obj.clone());
            }
            _ => {}
        })
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(lifecycle_hash, PredicateConfig::default())
        .boxed();
    (reader, stream, deletions)
}

/// Calls `listed` once, when a watch has listed every object for the first time (for caches
/// that must be complete before they are answered from).
pub fn on_first_list<K>(
    mut listed: impl FnMut() + Send + 'static,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
    let mut done = false;
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) && !done {
            done = true;
            listed();
        }
    }
}

/// A watch on a related kind reduced to the objects whose change matters: those new to the
/// watch, those whose `hash` changed, and those deleted. (kube's predicate filter sees objects
/// only, so it would swallow the deletion of an object whose hash did not change.)
pub fn related_changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    hash: fn(&K) -> Option<u64>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
{
    let mut seen: HashMap<String, Option<u64>> = HashMap::new();
    events.filter_map(move |event| {
        let key = |obj: &K| obj.meta().uid.clone().unwrap_or_default();
        let passed = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                let now = hash(&obj);
                (seen.insert(key(&obj), now) != Some(now)).then_some(Ok(obj))
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(&key(&obj));
                Some(Ok(obj))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(passed)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::core::v1::ConfigMap,
        apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time},
        jiff::Timestamp,
    };

    use super::*;

    fn object() -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.generation = Some(1);
        cm.metadata.annotations = Some(BTreeMap::from([
            (LAST_APPLIED.to_string(), "{...}".to_string()),
            ("team".to_string(), "shop".to_string()),
        ]));
        cm
    }

    #[test]
    fn status_and_foreign_metadata_changes_do_not_count() {
        let before = object();
        let mut after = before.clone();
        after.metadata.resource_version = Some("42".into());
        after.metadata.labels = Some(BTreeMap::from([("x".into(), "y".into())]));
        after
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("team".into(), "payments".into());
        after.data = Some(BTreeMap::from([("figures".into(), "moved".into())]));
        assert_eq!(lifecycle_hash(&before), lifecycle_hash(&after));
    }

    #[test]
    fn spec_lifecycle_annotations_finalizers_and_deletion_count() {
        let base = object();
        let changes: [fn(&mut ConfigMap); 4] = [
            |o| o.metadata.generation = Some(2),
            |o| {
                o.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert("switchyard.dev/paused".into(), "true".into());
            },
            |o| o.metadata.finalizers = Some(vec!["switchyard.dev/stream-cleanup".into()]),
            |o| o.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH)),
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(
                lifecycle_hash(&base),
                lifecycle_hash(&changed),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn the_first_complete_list_is_reported_once() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let mut inspect = on_first_list::<ConfigMap>(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(object()),
            watcher::Event::InitDone,
            watcher::Event::Init,
            watcher::Event::InitDone,
        ] {
            inspect(&Ok(event));
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn related_changes_pass_new_changed_and_deleted_objects_only() {
        let object = |uid: &str, generation: i64| {
            let mut cm = object();
            cm.metadata.uid = Some(uid.into());
            cm.metadata.generation = Some(generation);
            cm
        };
        let events = futures::stream::iter(
            [
                watcher::Event::Init,
                watcher::Event::InitApply(object("a", 1)),
                watcher::Event::InitDone,
                watcher::Event::Apply(object("a", 1)),
                watcher::Event::Apply(object("b", 1)),
                watcher::Event::Apply(object("a", 2)),
                watcher::Event::Delete(object("b", 1)),
                watcher::Event::Apply(object("b", 1)),
            ]
            .map(Ok),
        );
        let passed: Vec<(String, i64)> = related_changes(events, lifecycle_hash::<ConfigMap>)
            .map(|r| {
                let cm = r.unwrap();
                (cm.metadata.uid.unwrap(), cm.metadata.generation.unwrap())
            })
            .collect()
            .await;
        assert_eq!(
            passed,
            [
                ("a".to_string(), 1),
                ("b".to_string(), 1),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
                ("b".to_string(), 1)
            ],
            "the repeated a@1 is swallowed; b's deletion and return pass"
        );
    }

    #[test]
    fn slimming_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut obj = object();
        obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        slim(&mut obj);
        assert!(obj.metadata.managed_fields.is_none());
        let annotations = obj.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["team"], "shop");
    }
}
