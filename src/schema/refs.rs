//! `$ref` resolution within one document: base URIs from `$id` (`id` in draft-04), `$anchor`s
//! and, up to draft-07, plain-name fragments in `$id`, and JSON pointer fragments. Nothing is
//! ever fetched; a reference leaving the document is refused.

use std::collections::HashMap;

use serde_json::Value;
use url::Url;

use super::document::Draft;

/// The base URI of a document without `$id`, so that relative references still resolve.
const DEFAULT_BASE: &str = "json-schema:///";

/// Keywords whose value is one subschema.
pub(crate) const SINGLE_SUBSCHEMA: &[&str] = &[
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "items",
];
/// Keywords whose value is an array of subschemas.
pub(crate) const ARRAY_OF_SUBSCHEMAS: &[&str] =
    &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
/// Keywords whose value maps names to subschemas.
pub(crate) const MAP_OF_SUBSCHEMAS: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "dependencies",
    "$defs",
    "definitions",
];

/// Where the references of one document can lead.
pub(crate) struct RefIndex<'a> {
    bases: Vec<Url>,
    /// Base of every schema object that holds a reference, by address.
    base_of: HashMap<usize, usize>,
    /// Schema resources by URI without fragment.
    resources: HashMap<String, &'a Value>,
    /// Anchored subschemas by full URI (`base#name`).
    anchors: HashMap<String, &'a Value>,
}

/// The address of a value inside the document, stable while the document is borrowed.
pub(crate) fn address(value: &Value) -> usize {
    std::ptr::from_ref(value) as usize
}

impl<'a> RefIndex<'a> {
    /// Walks every subschema once, without recursion, recording `$id`s and anchors.
    pub fn new(document: &'a Value, draft: Draft) -> Self {
        let default_base = Url::parse(DEFAULT_BASE).expect("the default base is a valid URL");
        let mut index = RefIndex {
            resources: HashMap::from([(default_base.to_string(), document)]),
            bases: vec![default_base],
            base_of: HashMap::new(),
            anchors: HashMap::new(),
        };
        let mut stack = vec![(document, 0usize)];
        while let Some((value, mut base)) = stack.pop() {
            let Value::Object(map) = value else { continue };
            if let Some(Value::String(id)) = map.get(draft.id_keyword()) {
                base = index.enter_id(id, base, value, draft);
            }
            for anchor in ["$anchor", "$dynamicAnchor"] {
                if let Some(Value::String(name)) = map.get(anchor) {
                    let key = format!("{}#{name}", without_fragment(&index.bases[base]));
                    index.anchors.entry(key).or_insert(value);
                }
            }
            if ["$ref", "$dynamicRef", "$recursiveRef"]
                .iter()
                .any(|k| map.contains_key(*k))
            {
                index.base_of.insert(address(value), base);
            }
            for keyword in SINGLE_SUBSCHEMA {
                if let Some(child) = map.get(*keyword).filter(|v| !v.is_array()) {
                    stack.push((child, base));
                }
            }
            for keyword in ARRAY_OF_SUBSCHEMAS {
                if let Some(Value::Array(children)) = map.get(*keyword) {
                    stack.extend(children.iter().map(|child| (child, base)));
                }
            }
            for keyword in MAP_OF_SUBSCHEMAS {
                if let Some(Value::Object(children)) = map.get(*keyword) {
                    stack.extend(children.values().map(|child| (child, base)));
                }
            }
        }
        index
    }

    /// Records a `$id` and returns the base URI in force below it.
    fn enter_id(&mut self, id: &str, base: usize, value: &'a Value, draft: Draft) -> usize {
        // Before 2019-09 a fragment-only `$id` was how a subschema got a plain-name anchor.
        if draft <= Draft::Draft07
            && let Some(name) = id.strip_prefix('#')
        {
            let key = format!("{}#{name}", without_fragment(&self.bases[base]));
            self.anchors.entry(key).or_insert(value);
            return base;
        }
        let Ok(mut url) = self.bases[base].join(id) else {
            return base;
        };
        url.set_fragment(None);
        self.resources.entry(url.to_string()).or_insert(value);
        self.bases.push(url);
        self.bases.len() - 1
    }

    /// The subschema `reference`, written in the schema object `holder`, points to.
    pub fn resolve(&self, holder: &Value, reference: &str) -> Result<&'a Value, String> {
        let base = &self.bases[self.base_of.get(&address(holder)).copied().unwrap_or(0)];
        let url = base
            .join(reference)
            .map_err(|e| format!("it is not a valid URI reference ({e})"))?;
        let fragment = percent_decode(url.fragment().unwrap_or(""));
        let resource_uri = without_fragment(&url);
        let resource = self.resources.get(&resource_uri).ok_or_else(|| {
            "it points outside this document, and only references within the document are followed"
                .to_string()
        })?;
        let target = if fragment.is_empty() {
            Some(*resource)
        } else if fragment.starts_with('/') {
            resource.pointer(&fragment)
        } else {
            self.anchors
                .get(&format!("{resource_uri}#{fragment}"))
                .copied()
        };
        match target {
            Some(value @ (Value::Object(_) | Value::Bool(_))) => Ok(value),
            Some(_) => Err("it points to a value that is not a schema".to_string()),
            None => Err("nothing in the document has that location".to_string()),
        }
    }
}

fn without_fragment(url: &Url) -> String {
    let mut url = url.clone();
    url.set_fragment(None);
    url.to_string()
}

/// Decodes `%XX` escapes, as URI fragments carry JSON pointers with spaces or `%` encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
