//! Why a document was refused before any comparison.

use thiserror::Error;

/// A document that cannot be used as a schema version. Every message names what is wrong and,
/// where there is one, the JSON pointer (`#/properties/age`) of the offending place.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// The text is not JSON at all.
    #[error("the schema is not valid JSON: {message} (line {line}, column {column})")]
    Malformed {
        message: String,
        line: usize,
        column: usize,
    },
    /// The JSON is neither an object nor a boolean, the only two shapes a schema can take.
    #[error("the schema must be a JSON object (or true/false), not {found}")]
    NotAnObject { found: &'static str },
    /// Arrays and objects nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH) levels, which no
    /// real schema needs.
    #[error(
        "the schema nests more than {limit} levels of JSON arrays and objects; move repeated parts into definitions ($defs) and reference them"
    )]
    TooDeep { limit: usize },
    /// `$schema` names a dialect we do not compare.
    #[error(
        "$schema {uri:?} is not supported: use http://json-schema.org/draft-07/schema# (what a schema without $schema is read as), https://json-schema.org/draft/2020-12/schema, https://json-schema.org/draft/2019-09/schema, http://json-schema.org/draft-06/schema# or http://json-schema.org/draft-04/schema#"
    )]
    UnsupportedDraft { uri: String },
    /// The document breaks its dialect's meta-schema, or holds a pattern that does not compile.
    #[error("invalid JSON Schema at {location}: {message}")]
    Invalid { message: String, location: String },
    /// A `$ref` points outside the document or to nothing in it.
    #[error("$ref {reference:?} at {location} cannot be resolved: {reason}")]
    UnresolvableRef {
        reference: String,
        location: String,
        reason: String,
    },
    /// `$ref`s lead only to other `$ref`s and back, so the schema never says anything.
    #[error(
        "$ref at {location} leads only through other $refs back to itself; a recursive schema needs a keyword such as properties or items on the way"
    )]
    RefCycle { location: String },
}
