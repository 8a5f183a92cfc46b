//! The compiled form of a schema version: every subschema classified once, the way Confluent's
//! JSON Schema library (everit) classifies it, so that the diff compares like with like.
//!
//! A schema object whose keywords belong to several families (say `type: string` plus `enum`)
//! becomes a synthetic `allOf` of one node per family, and `type: [a, b]` a synthetic `anyOf`:
//! that is how everit builds them, and Confluent's verdicts depend on it (adding `enum` to a
//! plain string is a type change there, not a narrowing).
//!
//! Nodes live in one arena and refer to each other by index, so recursive schemas are plain
//! cycles in the graph and memory stays linear in the document.

use std::collections::{BTreeMap, BTreeSet};

/// Index of a node in [`Model::nodes`].
pub(crate) type NodeId = usize;

/// A compiled schema version.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub nodes: Vec<Node>,
    pub root: NodeId,
}

impl Model {
    /// The node a subschema stands for: the target of a `$ref`, or the node itself.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        match self.nodes[id].kind {
            Kind::Ref(target) => target,
            _ => id,
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[self.resolve(id)]
    }
}

/// One subschema.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    pub annotations: Annotations,
    pub kind: Kind,
}

/// The keywords that never change what validates, compared only to be reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Annotations {
    pub id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Canonical JSON of `default`, so that `1` and `1.0` count as the same default.
    pub default: Option<String>,
}

/// What a subschema accepts, by family.
#[derive(Clone, Debug, Default)]
pub(crate) enum Kind {
    /// `true` or a schema without assertions (`{}`): accepts everything.
    #[default]
    True,
    /// `false`: accepts nothing.
    False,
    /// `$ref`; the target is never itself a `Ref` once the model is built.
    Ref(NodeId),
    Boolean,
    Null,
    String(StringKind),
    Number(NumberKind),
    /// Canonical JSON of each allowed value, sorted and without duplicates.
    Enum(Vec<String>),
    /// Canonical JSON of the only allowed value.
    Const(String),
    Not(NodeId),
    Combined(Combined),
    Object(Box<ObjectKind>),
    Array(Box<ArrayKind>),
    /// Canonical JSON of `{"if", "then", "else"}`.
    Conditional(String),
}

impl Kind {
    /// Whether two nodes are of the same everit schema class, the precondition for comparing
    /// their keywords rather than reporting a type change.
    pub fn same_class(&self, other: &Kind) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StringKind {
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NumberKind {
    /// `type: integer` rather than `number`.
    pub integer: bool,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// `exclusiveMinimum` as a number (draft-06 on).
    pub exclusive_minimum: Option<f64>,
    /// `exclusiveMaximum` as a number (draft-06 on).
    pub exclusive_maximum: Option<f64>,
    /// Draft-04's `exclusiveMinimum: true`: `minimum` itself is excluded.
    pub minimum_is_exclusive: bool,
    /// Draft-04's `exclusiveMaximum: true`: `maximum` itself is excluded.
    pub maximum_is_exclusive: bool,
    pub multiple_of: Option<serde_json::Number>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    pub fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }

    pub fn is_sum(self) -> bool {
        matches!(self, Criterion::Any | Criterion::One)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Combined {
    pub criterion: Criterion,
    /// Members without duplicates (by canonical JSON), in document order.
    pub members: Vec<NodeId>,
    /// Built from keywords of several families or from `type: [..]`, not written as
    /// `allOf`/`anyOf`: its members get no pointer segment of their own.
    pub synthetic: bool,
}

/// Whether further properties or items are allowed, and under which schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Additional {
    /// False for `false`.
    pub permits: bool,
    /// The schema for a schema-valued keyword; `None` when absent or `true`.
    pub schema: Option<NodeId>,
}

impl Additional {
    pub const OPEN: Additional = Additional {
        permits: true,
        schema: None,
    };

    /// Absent or `true`.
    pub fn is_open(self) -> bool {
        self.permits && self.schema.is_none()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PatternProperty {
    pub regex: fancy_regex::Regex,
    pub schema: NodeId,
}

#[derive(Clone, Debug)]
pub(crate) struct ObjectKind {
    pub properties: BTreeMap<String, NodeId>,
    pub required: BTreeSet<String>,
    pub pattern_properties: BTreeMap<String, PatternProperty>,
    pub additional: Additional,
    pub unevaluated: Option<NodeId>,
    pub dependent_required: BTreeMap<String, BTreeSet<String>>,
    /// `dependentRequired`, or `dependencies` up to draft-07.
    pub dependent_required_keyword: &'static str,
    pub dependent_schemas: BTreeMap<String, NodeId>,
    /// `dependentSchemas`, or `dependencies` up to draft-07.
    pub dependent_schemas_keyword: &'static str,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct ArrayKind {
    /// The schema every item must match (`items` without a tuple).
    pub items: Option<NodeId>,
    /// The tuple: `prefixItems`, or `items: [..]` before 2020-12.
    pub prefix: Vec<NodeId>,
    pub prefix_keyword: &'static str,
    /// Items after the tuple: `items` next to `prefixItems`, or `additionalItems` before 2020-12.
    pub additional: Additional,
    pub additional_keyword: &'static str,
    pub unevaluated: Option<NodeId>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_contains: Option<u64>,
    pub max_contains: Option<u64>,
    pub unique_items: bool,
}
