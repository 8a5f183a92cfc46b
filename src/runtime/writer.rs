//! The only code that writes to the Kubernetes API for a reconcile: status, finalizers and
//! Kubernetes Events. Every write first checks that this instance still leads (so a replica that
//! lost its Lease writes nothing), and is counted per kind.

use std::sync::Arc;

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
        self.api(obj)?
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
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
