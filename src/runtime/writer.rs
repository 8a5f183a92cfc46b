//! The only code that writes to the Kubernetes API for a reconcile: status, finalizers and
//! Kubernetes Events. Every write first checks that this instance still leads (so a replica that
//! lost its Lease writes nothing), and is counted per kind.

use std::{
    collections::{HashMap, VecDeque, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::NamespaceResourceScope,
    runtime::events::{Event, Recorder},
};
use serde::Serialize;
use serde_json::json;
use tracing::{debug, warn};

use super::{Error, FIELD_MANAGER, kube_events::KubeEvent, lease::Leadership};
use crate::metrics::Metrics;

pub struct Writer {
    client: kube::Client,
    recorder: Recorder,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    recent: Mutex<HashMap<String, RecentWrites>>,
}

/// What this writer last did to one object, to recognise a cached copy that predates it.
///
/// The finalizer patch is itself a watch event, and the reconcile it wakes may read the object
/// from the cache before the status written right after the patch has arrived there: it would
/// write the same status again. Remembering which resourceVersions our own writes replaced
/// (compared for equality only, as the API conventions ask) avoids that second write without
/// trusting the cache less otherwise: a copy at any other version is compared as usual.
#[derive(Default)]
struct RecentWrites {
    /// Versions of the object our writes replaced (the newest few).
    replaced: VecDeque<String>,
    /// Hash of the status last written.
    status: Option<u64>,
}

const REMEMBERED_VERSIONS: usize = 4;
const MAX_REMEMBERED_OBJECTS: usize = 50_000;

impl RecentWrites {
    fn replaced(&mut self, version: Option<String>) {
        if let Some(version) = version {
            if self.replaced.len() == REMEMBERED_VERSIONS {
                self.replaced.pop_front();
            }
            self.replaced.push_back(version);
        }
    }
}

fn hash_of(value: &serde_json::Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

impl Writer {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        leadership: Leadership,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            leadership,
            metrics,
            recent: Mutex::default(),
        }
    }

    /// Whether `obj` is a copy our last status write replaced and `status` is what we wrote
    /// then: writing it again would change nothing.
    fn already_written<K: Resource>(&self, obj: &K, status: &serde_json::Value) -> bool {
        let (Some(uid), Some(version)) = (
            obj.meta().uid.as_ref(),
            obj.meta().resource_version.as_ref(),
        ) else {
            return false;
        };
        let recent = self.recent.lock().expect("recent writes");
        recent.get(uid).is_some_and(|writes| {
            writes.status == Some(hash_of(status)) && writes.replaced.contains(version)
        })
    }

    fn remember<K: Resource>(
        &self,
        before: &K,
        after: Option<&K>,
        status: Option<&serde_json::Value>,
    ) {
        let Some(uid) = before.meta().uid.clone() else {
            return;
        };
        let mut recent = self.recent.lock().expect("recent writes");
        // Objects deleted without a finalizer are never forgotten one by one; a bound keeps
        // churn from growing the map (forgetting only costs a possible repeated write).
        if recent.len() >= MAX_REMEMBERED_OBJECTS && !recent.contains_key(&uid) {
            recent.clear();
        }
        let writes = recent.entry(uid).or_default();
        writes.replaced(before.meta().resource_version.clone());
        if let Some(status) = status {
            writes.status = Some(hash_of(status));
        } else if let Some(after) = after {
            // A finalizer patch: the status at that version is still the one last written.
            writes.replaced(after.meta().resource_version.clone());
        }
    }

    /// Forgets a deleted object.
    pub fn forget<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.meta().uid.as_ref() {
            self.recent.lock().expect("recent writes").remove(uid);
        }
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    fn api<K>(&self, obj: &K) -> Result<Api<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        let namespace = obj
            .meta()
            .namespace
            .as_deref()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        Ok(Api::namespaced(self.client.clone(), namespace))
    }

    /// Server-side applies the whole status as Switchyard's field manager.
    pub async fn status<K, S>(&self, kind: &'static str, obj: &K, status: &S) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: Serialize,
    {
        self.leadership.ensure()?;
        let status = serde_json::to_value(status).map_err(|_| Error::MissingField("status"))?;
        if self.already_written(obj, &status) {
            debug!(kind, name = %obj.name_any(), "status already written from this version");
            return Ok(());
        }
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        self.api(obj)?
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.remember(obj, None, Some(&status));
        self.metrics.observe_write(kind, "status");
        debug!(kind, name = %obj.name_any(), "status written");
        Ok(())
    }

    /// Server-side applies an object Switchyard owns (e.g. a worker Deployment) and returns it as
    /// stored, status included.
    pub async fn apply_child<C>(&self, kind: &'static str, child: &C) -> Result<C, Error>
    where
        C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.leadership.ensure()?;
        let applied = self
            .api(child)?
            .patch(
                &child.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(child),
            )
            .await?;
        self.metrics.observe_write(kind, "child");
        Ok(applied)
    }

    /// Deletes an object Switchyard owns; `false` if it was already gone.
    pub async fn delete_child<C>(&self, kind: &'static str, child: &C) -> Result<bool, Error>
    where
        C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.leadership.ensure()?;
        match self
            .api(child)?
            .delete(&child.name_any(), &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => {
                self.metrics.observe_write(kind, "child");
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the finalizer list. The resourceVersion makes it a compare-and-set, so another
    /// writer's finalizer is never lost.
    pub async fn finalizers<K>(
        &self,
        kind: &'static str,
        obj: &K,
        finalizers: Vec<String>,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.leadership.ensure()?;
        let patch = json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": obj.resource_version(),
            }
        });
        let patched = self
            .api(obj)?
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.remember(obj, Some(&patched), None);
        self.metrics.observe_write(kind, "finalizers");
        Ok(())
    }

    /// Records a Kubernetes Event on the object. A failure is logged, not returned: losing an
    /// Event must not fail a reconcile that did its work.
    pub async fn event(&self, kind: &'static str, reference: &ObjectReference, event: KubeEvent) {
        if self.leadership.ensure().is_err() {
            return;
        }
        let reason = event.reason;
        let recorded = Event {
            type_: event.type_,
            reason: reason.to_string(),
            note: Some(event.note),
            action: "Reconcile".into(),
            secondary: None,
        };
        match self.recorder.publish(&recorded, reference).await {
            Ok(()) => {
                self.metrics.observe_write(kind, "event");
                debug!(kind, reason, "Kubernetes Event recorded");
            }
            Err(e) => warn!(error = %e, kind, reason, "could not record a Kubernetes Event"),
        }
    }
}
