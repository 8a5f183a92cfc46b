//! Turning a JSON document into a [`Schema`]: shape and depth checks, the dialect's
//! meta-schema, then compilation with every `$ref` resolved.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SchemaError, build::build, model::Model};

/// How deeply arrays and objects may nest in a document, the root counting as level 1: a
/// schema can nest about 500 `properties` deep. It is the default nesting limit of Jackson, the
/// JSON parser behind Confluent Schema Registry, so every schema Confluent reads is accepted.
/// Deeper documents are refused with [`SchemaError::TooDeep`], whether given as text or as a
/// [`Value`]; no depth, however large, overflows the stack.
pub const MAX_DEPTH: usize = 1000;

/// Stack reserved per level of nesting for the parts that recurse once per level and cannot
/// grow their own stack: serde_json's parser and serializer, and the meta-schema validator.
/// Debug builds were measured at under 4 KiB per level (the 2020-12 meta-schema on nested
/// `not`s); only address space is reserved, and only for documents deep enough to need more
/// than the thread has left.
const STACK_PER_LEVEL: usize = 16 * 1024;
/// Stack reserved on top of the per-level share.
const STACK_BASE: usize = 256 * 1024;
/// Documents up to this depth are dropped the ordinary way; deeper ones without recursion.
const SHALLOW: usize = 64;

/// The JSON Schema dialects we compare, oldest first. `$schema` names one; a document without
/// it is read as draft-07, as Confluent Schema Registry reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Draft {
    /// `http://json-schema.org/draft-04/schema#`: `id`, and `exclusiveMinimum` and
    /// `exclusiveMaximum` as booleans on `minimum` and `maximum`; no `const`, `contains`,
    /// `propertyNames` or boolean schemas.
    Draft04,
    /// `http://json-schema.org/draft-06/schema#`: `$id`, numeric exclusive bounds, `const`,
    /// `contains`, `propertyNames` and boolean schemas.
    Draft06,
    /// `http://json-schema.org/draft-07/schema#`, also what a document without `$schema` is
    /// read as: draft-06 plus `if`/`then`/`else`.
    Draft07,
    /// `https://json-schema.org/draft/2019-09/schema`: `dependentRequired` and
    /// `dependentSchemas` instead of `dependencies`, `unevaluated*`, `minContains`/
    /// `maxContains`, `$anchor`.
    Draft201909,
    /// `https://json-schema.org/draft/2020-12/schema`: `prefixItems`, and `items` for what
    /// follows the tuple.
    Draft202012,
}

impl Draft {
    /// Every dialect, oldest first.
    pub const ALL: [Draft; 5] = [
        Draft::Draft04,
        Draft::Draft06,
        Draft::Draft07,
        Draft::Draft201909,
        Draft::Draft202012,
    ];

    /// The dialect's meta-schema URI, as `$schema` usually spells it.
    pub fn meta_schema_uri(self) -> &'static str {
        match self {
            Draft::Draft04 => "http://json-schema.org/draft-04/schema#",
            Draft::Draft06 => "http://json-schema.org/draft-06/schema#",
            Draft::Draft07 => "http://json-schema.org/draft-07/schema#",
            Draft::Draft201909 => "https://json-schema.org/draft/2019-09/schema",
            Draft::Draft202012 => "https://json-schema.org/draft/2020-12/schema",
        }
    }

    /// The dialect `$schema` names; a document without `$schema` is read as draft-07.
    /// Either scheme and a trailing `#` are accepted for every dialect.
    fn of(document: &Value) -> Result<Draft, SchemaError> {
        let Some(Value::String(uri)) = document.get("$schema") else {
            return Ok(Draft::Draft07);
        };
        let normalized = uri
            .trim_end_matches('#')
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        match normalized {
            "json-schema.org/draft/2020-12/schema" => Ok(Draft::Draft202012),
            "json-schema.org/draft/2019-09/schema" => Ok(Draft::Draft201909),
            "json-schema.org/draft-07/schema" => Ok(Draft::Draft07),
            "json-schema.org/draft-06/schema" => Ok(Draft::Draft06),
            "json-schema.org/draft-04/schema" => Ok(Draft::Draft04),
            _ => Err(SchemaError::UnsupportedDraft { uri: uri.clone() }),
        }
    }

    /// The keyword that gives a schema its URI: `id` in draft-04, `$id` after.
    pub(crate) fn id_keyword(self) -> &'static str {
        if self == Draft::Draft04 { "id" } else { "$id" }
    }

    /// Checks the document against this dialect's meta-schema. The validators are compiled
    /// once per process by the jsonschema crate (it keeps them in `LazyLock`s), and its
    /// default features, which would fetch remote references, are off.
    fn check(self, document: &Value) -> Result<(), SchemaError> {
        let result = match self {
            Draft::Draft04 => jsonschema::draft4::meta::validate(document),
            Draft::Draft06 => jsonschema::draft6::meta::validate(document),
            Draft::Draft07 => jsonschema::draft7::meta::validate(document),
            Draft::Draft201909 => jsonschema::draft201909::meta::validate(document),
            Draft::Draft202012 => jsonschema::draft202012::meta::validate(document),
        };
        // The message can quote the offending part of the document, which is serialized by
        // recursion: it is written here, on the stack sized for the document.
        result.map_err(|error| SchemaError::Invalid {
            message: error.to_string(),
            location: format!("#{}", error.instance_path().as_str()),
        })
    }
}

/// A validated schema version, compiled and ready to compare.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Shared, so that cloning a version never copies (by recursion) a deep document.
    document: Arc<Value>,
    draft: Draft,
    /// How deeply the document nests, at most [`MAX_DEPTH`].
    depth: usize,
    pub(crate) model: Model,
}

impl Schema {
    /// Validates `document` and compiles it. A document that is not a JSON Schema of a
    /// supported dialect is refused with the validator's message and the place it points to;
    /// one nesting deeper than [`MAX_DEPTH`] with [`SchemaError::TooDeep`].
    pub fn parse(document: Value) -> Result<Schema, SchemaError> {
        let Some(depth) = nesting_depth(&document, MAX_DEPTH) else {
            dismantle(document);
            return Err(SchemaError::TooDeep { limit: MAX_DEPTH });
        };
        match compile(&document, depth) {
            Ok((draft, model)) => Ok(Schema {
                document: Arc::new(document),
                draft,
                depth,
                model,
            }),
            Err(error) => {
                drop_document(document, depth);
                Err(error)
            }
        }
    }

    /// Parses JSON text and validates it as [`Schema::parse`] does. Text nesting deeper than
    /// [`MAX_DEPTH`] is refused before it is parsed.
    pub fn from_json_str(text: &str) -> Result<Schema, SchemaError> {
        let Some(depth) = text_nesting_depth(text, MAX_DEPTH) else {
            return Err(SchemaError::TooDeep { limit: MAX_DEPTH });
        };
        let malformed = |error: serde_json::Error| SchemaError::Malformed {
            message: error.to_string(),
            line: error.line(),
            column: error.column(),
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        // The depth is bounded above; serde_json's own limit (128) is below MAX_DEPTH.
        deserializer.disable_recursion_limit();
        let document =
            with_stack_for(depth, || Value::deserialize(&mut deserializer)).map_err(malformed)?;
        if let Err(error) = deserializer.end() {
            drop_document(document, depth);
            return Err(malformed(error));
        }
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

impl Drop for Schema {
    fn drop(&mut self) {
        if self.depth > SHALLOW
            && let Some(document) = Arc::get_mut(&mut self.document)
        {
            dismantle(std::mem::take(document));
        }
    }
}

/// The dialect and the compiled model of a document nesting `depth` levels.
fn compile(document: &Value, depth: usize) -> Result<(Draft, Model), SchemaError> {
    let found = match document {
        Value::Object(_) | Value::Bool(_) => None,
        Value::Null => Some("null"),
        Value::Number(_) => Some("a number"),
        Value::String(_) => Some("a string"),
        Value::Array(_) => Some("an array"),
    };
    if let Some(found) = found {
        return Err(SchemaError::NotAnObject { found });
    }
    let draft = Draft::of(document)?;
    with_stack_for(depth, || draft.check(document))?;
    let model = build(document, draft)?;
    Ok((draft, model))
}

/// Runs `f`, which recurses at most once per level of a document nesting `depth` levels, on a
/// stack with room for it: the current one when enough is left, else a fresh segment.
fn with_stack_for<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    let needed = STACK_BASE + depth * STACK_PER_LEVEL;
    stacker::maybe_grow(needed, needed, f)
}

/// How many levels arrays and objects nest (0 for a scalar), or `None` beyond `limit`; found
/// without recursion so that any depth can be measured.
fn nesting_depth(document: &Value, limit: usize) -> Option<usize> {
    let mut deepest = 0;
    let mut stack = vec![(document, 1usize)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if level > limit => return None,
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, level + 1))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    Some(deepest)
}

/// [`nesting_depth`] of JSON text, counting brackets outside strings. Exact for valid JSON;
/// text that is not JSON is measured roughly and then refused by the parser.
fn text_nesting_depth(text: &str, limit: usize) -> Option<usize> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return None;
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

/// Drops a document nesting `depth` levels without recursing once per level if it is deep.
fn drop_document(document: Value, depth: usize) {
    if depth > SHALLOW {
        dismantle(document);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_depth_ignores_brackets_in_strings() {
        assert_eq!(text_nesting_depth(r#"{"a": "[[{\"]]"}"#, 10), Some(1));
        assert_eq!(text_nesting_depth(r#"[[], {"a": [1]}]"#, 10), Some(3));
        assert_eq!(text_nesting_depth("[[[]]]", 2), None);
        assert_eq!(text_nesting_depth("true", 2), Some(0));
    }

    #[test]
    fn value_depth_counts_the_root() {
        let value: Value = serde_json::from_str(r#"[[], {"a": [1]}]"#).unwrap();
        assert_eq!(nesting_depth(&value, 10), Some(3));
        assert_eq!(nesting_depth(&value, 2), None);
        assert_eq!(nesting_depth(&Value::Null, 0), Some(0));
    }

    #[test]
    fn every_draft_is_named_by_its_meta_schema_uri() {
        for draft in Draft::ALL {
            let document = serde_json::json!({"$schema": draft.meta_schema_uri()});
            assert_eq!(Draft::of(&document), Ok(draft));
        }
    }
}
