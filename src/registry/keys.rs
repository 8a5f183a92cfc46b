//! Where the registry keeps what, in its key-value bucket ([`crate::naming::SCHEMA_BUCKET`]).
//!
//! Every event type of every namespace has one key per registered version and one pointer to
//! the latest:
//! - `<namespace>.<eventType>.v<version>`: that version's record, written once, never changed;
//! - `<namespace>.<eventType>.latest`: the latest version's record and the list of every
//!   registered version, moved forward by compare-and-set only.
//!
//! One key per version keeps each version out of reach of the bucket's per-key history cap.
//! Namespaces contain no `.` and event type tokens start with a letter, so a key's first token is
//! its namespace and its last token is `latest` or `v<digits>`; no two event types share a key.

/// The key holding version `version` of `event_type` in `namespace`.
pub fn version_key(namespace: &str, event_type: &str, version: i64) -> String {
    format!("{namespace}.{event_type}.v{version}")
}

/// The key pointing at the latest version of `event_type` in `namespace`.
pub fn latest_key(namespace: &str, event_type: &str) -> String {
    format!("{namespace}.{event_type}.latest")
}

/// The key a consumer of the schema follows: a pinned version, or the latest.
pub fn bound_key(namespace: &str, event_type: &str, pinned: Option<i64>) -> String {
    match pinned {
        Some(version) => version_key(namespace, event_type, version),
        None => latest_key(namespace, event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_event_types_never_meet() {
        // `a.b` at version 1 and the event type `a.b.v1` (a legal type) keep apart.
        assert_eq!(version_key("shop", "a.b", 1), "shop.a.b.v1");
        assert_eq!(latest_key("shop", "a.b.v1"), "shop.a.b.v1.latest");
        assert_ne!(
            latest_key("shop", "a.b"),
            version_key("shop", "a.b.latest", 1)
        );
        assert_eq!(
            bound_key("shop", "order.placed", None),
            "shop.order.placed.latest"
        );
        assert_eq!(
            bound_key("shop", "order.placed", Some(3)),
            "shop.order.placed.v3"
        );
    }
}
