//! How Kubernetes names map onto broker names. Stream names join namespace and name with `_`,
//! which neither can contain, so two different objects can never map to the same stream.

/// The JetStream stream backing the Topic `namespace/name`.
pub fn stream_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// The subject space a Topic owns unless it declares its own subjects.
pub fn default_subject(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}.>")
}

/// The value recorded in a broker object's metadata to name the object that owns it.
pub fn owner_id(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_injective_across_dashes() {
        assert_ne!(stream_name("a-b", "c"), stream_name("a", "b-c"));
        assert_eq!(stream_name("shop", "orders"), "shop_orders");
    }

    #[test]
    fn default_subject_is_namespaced() {
        assert_eq!(default_subject("shop", "orders"), "shop.orders.>");
    }
}
