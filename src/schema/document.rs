//! Turning a JSON document into a [`Schema`]: shape and depth checks, the dialect's
//! meta-schema, then compilation with every `$ref` resolved.

use serde::Serialize;
use serde_json::Value;

use super::{SchemaError, build::build, model::Model};

/// How deeply arrays and objects may nest in a document. It equals serde_json's own limit when
/// parsing text, so every document that parses is accepted; it also keeps the meta-schema
/// validator, which recurses, far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 128;

/// The JSON Schema dialects we compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Draft {
    Draft07,
    Draft201909,
    Draft202012,
}

impl Draft {
    /// The dialect `$schema` names; a document without `$schema` is read as 2020-12.
    fn of(document: &Value) -> Result<Draft, SchemaError> {
        let Some(Value::String(uri)) = document.get("$schema") else {
            return Ok(Draft::Draft202012);
        };
        let normalized = uri
            .trim_end_matches('#')
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        match normalized {
            "json-schema.org/draft/2020-12/schema" => Ok(Draft::Draft202012),
            "json-schema.org/draft/2019-09/schema" => Ok(Draft::Draft201909),
            "json-schema.org/draft-07/schema" => Ok(Draft::Draft07),
            _ => Err(SchemaError::UnsupportedDraft { uri: uri.clone() }),
        }
    }

    /// Checks the document against this dialect's meta-schema. The validators are compiled
    /// once per process by the jsonschema crate (it keeps them in `LazyLock`s), and its
    /// default features, which would fetch remote references, are off.
    fn check(self, document: &Value) -> Result<(), SchemaError> {
        let result = match self {
            Draft::Draft07 => jsonschema::draft7::meta::validate(document),
            Draft::Draft201909 => jsonschema::draft201909::meta::validate(document),
            Draft::Draft202012 => jsonschema::draft202012::meta::validate(document),
        };
        result.map_err(|error| SchemaError::Invalid {
            message: error.to_string(),
            location: format!("#{}", error.instance_path().as_str()),
        })
    }
}

/// A validated schema version, compiled and ready to compare.
#[derive(Clone, Debug)]
pub struct Schema {
    document: Value,
    draft: Draft,
    pub(crate) model: Model,
}

impl Schema {
    /// Validates `document` and compiles it. A document that is not a JSON Schema of a
    /// supported dialect is refused with the validator's message and the place it points to.
    pub fn parse(document: Value) -> Result<Schema, SchemaError> {
        if nesting_exceeds(&document, MAX_DEPTH) {
            dismantle(document);
            return Err(SchemaError::TooDeep { limit: MAX_DEPTH });
        }
        let found = match &document {
            Value::Object(_) | Value::Bool(_) => None,
            Value::Null => Some("null"),
            Value::Number(_) => Some("a number"),
            Value::String(_) => Some("a string"),
            Value::Array(_) => Some("an array"),
        };
        if let Some(found) = found {
            return Err(SchemaError::NotAnObject { found });
        }
        let draft = Draft::of(&document)?;
        draft.check(&document)?;
        let model = build(&document, draft)?;
        Ok(Schema {
            document,
            draft,
            model,
        })
    }

    /// Parses JSON text and validates it as [`Schema::parse`] does.
    pub fn from_json_str(text: &str) -> Result<Schema, SchemaError> {
        let document = serde_json::from_str(text).map_err(|error| {
            if error.to_string().starts_with("recursion limit exceeded") {
                SchemaError::TooDeep { limit: MAX_DEPTH }
            } else {
                SchemaError::Malformed {
                    message: error.to_string(),
                    line: error.line(),
                    column: error.column(),
                }
            }
        })?;
        Schema::parse(document)
    }

    /// The document as given.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The dialect the document is read in.
    pub fn draft(&self) -> Draft {
        self.draft
    }
}

/// Whether arrays and objects nest more than `limit` levels, found without recursion so that
/// any depth can be measured.
fn nesting_exceeds(document: &Value, limit: usize) -> bool {
    let mut stack = vec![(document, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let inside = depth + 1;
        match value {
            Value::Array(_) | Value::Object(_) if inside > limit => return true,
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, inside))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, inside))),
            _ => {}
        }
    }
    false
}

/// Drops a document of any depth without recursion: serde_json's own drop recurses once per
/// level and would overflow the stack on the documents this module refuses for depth.
fn dismantle(document: Value) {
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, child)| child)),
            _ => {}
        }
    }
}
