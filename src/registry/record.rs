//! What the registry stores for a version: the schema in canonical form with its fingerprint,
//! the mode it was checked under, when and from which EventSchema it was registered, and the
//! processing defaults its publisher recommends.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::event_schema::{Compatibility, ProcessingDefaults};

/// One registered version of an event type's schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRecord {
    pub event_type: String,
    pub version: i64,
    pub compatibility: Compatibility,
    /// `sha256:<hex>` of the canonical text of `schema`.
    pub fingerprint: String,
    /// The JSON Schema document, canonical (keys sorted, numbers by value).
    pub schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ProcessingDefaults>,
    /// RFC 3339.
    pub registered_at: String,
    /// `<namespace>/<name>` of the EventSchema that registered it.
    pub registered_by: String,
}

/// The value of an event type's `latest` key: the latest version's record, and every registered
/// version, ascending. A consumer following the latest reads it as a plain [`SchemaRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latest {
    #[serde(flatten)]
    pub record: SchemaRecord,
    pub versions: Vec<i64>,
}

/// The canonical text of a schema document and its fingerprint. Two documents that differ only
/// in key order or number spelling have the same fingerprint.
pub fn fingerprint(document: &Value) -> (String, String) {
    let canonical = crate::schema::canonical_text(document);
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (canonical, format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_and_number_spelling() {
        let a = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}});
        let b = json!({"properties": {"n": {"minimum": 1.0, "type": "integer"}}, "type": "object"});
        let c = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 2}}});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a).1, fingerprint(&c).1);
        assert!(fingerprint(&a).1.starts_with("sha256:"));
        assert_eq!(fingerprint(&a).1.len(), "sha256:".len() + 64);
    }

    #[test]
    fn a_latest_pointer_reads_as_a_record() {
        let record = SchemaRecord {
            event_type: "order.placed".into(),
            version: 2,
            compatibility: Compatibility::Backward,
            fingerprint: "sha256:00".into(),
            schema: json!({"type": "object"}),
            defaults: None,
            registered_at: "2026-12-05T00:00:00Z".into(),
            registered_by: "shop/order-placed".into(),
        };
        let latest = Latest {
            record: record.clone(),
            versions: vec![1, 2],
        };
        let text = serde_json::to_vec(&latest).unwrap();
        assert_eq!(
            serde_json::from_slice::<SchemaRecord>(&text).unwrap(),
            record
        );
        assert_eq!(serde_json::from_slice::<Latest>(&text).unwrap(), latest);
    }
}
