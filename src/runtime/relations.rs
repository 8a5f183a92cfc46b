//! How related kinds wake each other without polling. A Subscription names its Topic; when the
//! Topic appears or changes, every Subscription naming it must be reconciled. The referring
//! kind's controller watches the referred kind and maps each of its objects to the referrers
//! found in the referring kind's own cache (a reverse lookup, no API call):
//!
//! ```text
//! Controller::for_stream(subscriptions, subscription_store.clone())
//!     .watches_stream(topics, referrers(subscription_store, |s| vec![topic name of s]))
//! ```

use kube::{
    Resource,
    runtime::reflector::{ObjectRef, Store},
};

/// Maps an object of the referred kind to the objects in `store` (same namespace) whose
/// `refers_to` names it.
pub fn referrers<K, Referred>(
    store: Store<K>,
    refers_to: fn(&K) -> Vec<String>,
) -> impl Fn(Referred) -> Vec<ObjectRef<K>> + Send + Sync + Clone + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    Referred: Resource,
{
    move |referred: Referred| {
        let meta = referred.meta();
        let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref())
        else {
            return Vec::new();
        };
        store
            .state()
            .iter()
            .filter(|k| k.meta().namespace.as_deref() == Some(namespace))
            .filter(|k| refers_to(k).iter().any(|n| n == name))
            .map(|k| ObjectRef::from_obj(k.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn config_map(namespace: &str, name: &str, refers_to: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(namespace.into());
        cm.metadata.name = Some(name.into());
        cm.data = Some([("topic".to_string(), refers_to.to_string())].into());
        cm
    }

    fn topic_of(cm: &ConfigMap) -> Vec<String> {
        cm.data
            .as_ref()
            .and_then(|d| d.get("topic").cloned())
            .into_iter()
            .collect()
    }

    #[test]
    fn a_referred_object_wakes_exactly_its_referrers_in_its_namespace() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for cm in [
            config_map("shop", "billing", "orders"),
            config_map("shop", "shipping", "orders"),
            config_map("shop", "audit", "payments"),
            config_map("other", "billing", "orders"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(cm));
        }
        let wake = referrers::<ConfigMap, ConfigMap>(store, topic_of);
        let mut woken: Vec<String> = wake(config_map("shop", "orders", ""))
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap(), r.name))
            .collect();
        woken.sort();
        assert_eq!(woken, ["shop/billing", "shop/shipping"]);
        assert!(wake(config_map("shop", "unknown", "")).is_empty());
    }
}
