//! Compiles a validated document into a [`Model`].
//!
//! Each subschema is compiled once, keyed by its address in the document, from a work list
//! rather than by recursion: a `$ref` only queues its target, so chains and cycles of
//! references cost neither stack nor repeated work.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::{
    SchemaError,
    canonical::{canonical, canonical_entries},
    document::Draft,
    model::{
        Additional, Annotations, ArrayKind, Combined, Criterion, Kind, Model, Node, NodeId,
        NumberKind, ObjectKind, PatternProperty, StringKind,
    },
    refs::{ARRAY_OF_SUBSCHEMAS, MAP_OF_SUBSCHEMAS, RefIndex, SINGLE_SUBSCHEMA, address},
};

/// Keywords that make a schema without `type` an object schema, with the first dialect that
/// has each (everit's lists for drafts 4 to 7, plus the later ones).
const OBJECT_KEYWORDS: &[(&str, Draft)] = &[
    ("properties", Draft::Draft04),
    ("patternProperties", Draft::Draft04),
    ("additionalProperties", Draft::Draft04),
    ("required", Draft::Draft04),
    ("minProperties", Draft::Draft04),
    ("maxProperties", Draft::Draft04),
    ("dependencies", Draft::Draft04),
    ("propertyNames", Draft::Draft06),
    ("unevaluatedProperties", Draft::Draft201909),
    ("dependentRequired", Draft::Draft201909),
    ("dependentSchemas", Draft::Draft201909),
];
const ARRAY_KEYWORDS: &[(&str, Draft)] = &[
    ("items", Draft::Draft04),
    ("additionalItems", Draft::Draft04),
    ("minItems", Draft::Draft04),
    ("maxItems", Draft::Draft04),
    ("uniqueItems", Draft::Draft04),
    ("contains", Draft::Draft06),
    ("unevaluatedItems", Draft::Draft201909),
    ("minContains", Draft::Draft201909),
    ("maxContains", Draft::Draft201909),
    ("prefixItems", Draft::Draft202012),
];
const NUMBER_KEYWORDS: &[(&str, Draft)] = &[
    ("minimum", Draft::Draft04),
    ("maximum", Draft::Draft04),
    ("exclusiveMinimum", Draft::Draft04),
    ("exclusiveMaximum", Draft::Draft04),
    ("multipleOf", Draft::Draft04),
];
const STRING_KEYWORDS: &[(&str, Draft)] = &[
    ("minLength", Draft::Draft04),
    ("maxLength", Draft::Draft04),
    ("pattern", Draft::Draft04),
];

pub(crate) fn build(document: &Value, draft: Draft) -> Result<Model, SchemaError> {
    let mut builder = Builder {
        document,
        draft,
        index: RefIndex::new(document, draft),
        nodes: Vec::new(),
        by_address: HashMap::new(),
        queue: Vec::new(),
        sources: Vec::new(),
    };
    let root = builder.alloc(document);
    while let Some((id, value)) = builder.queue.pop() {
        let node = builder.compile(value)?;
        builder.nodes[id] = node;
    }
    builder.resolve_reference_chains()?;
    Ok(Model {
        nodes: builder.nodes,
        root,
    })
}

struct Builder<'a> {
    document: &'a Value,
    draft: Draft,
    index: RefIndex<'a>,
    nodes: Vec<Node>,
    by_address: HashMap<usize, NodeId>,
    queue: Vec<(NodeId, &'a Value)>,
    /// The subschema each node was compiled from; `None` for nodes standing for a part of one.
    sources: Vec<Option<&'a Value>>,
}

impl<'a> Builder<'a> {
    /// The node of a subschema in the document, queued for compilation on first sight.
    fn alloc(&mut self, value: &'a Value) -> NodeId {
        *self.by_address.entry(address(value)).or_insert_with(|| {
            self.nodes.push(Node::default());
            self.sources.push(Some(value));
            let id = self.nodes.len() - 1;
            self.queue.push((id, value));
            id
        })
    }

    /// A node that stands for part of a schema object, not for a place in the document.
    fn push(&mut self, kind: Kind) -> NodeId {
        self.nodes.push(Node {
            annotations: Annotations::default(),
            kind,
        });
        self.sources.push(None);
        self.nodes.len() - 1
    }

    fn compile(&mut self, value: &'a Value) -> Result<Node, SchemaError> {
        let map = match value {
            Value::Bool(true) => return Ok(Node::default()),
            Value::Bool(false) => {
                return Ok(Node {
                    annotations: Annotations::default(),
                    kind: Kind::False,
                });
            }
            Value::Object(map) => map,
            _ => {
                return Err(SchemaError::Invalid {
                    message: "a subschema must be an object or a boolean".to_string(),
                    location: locate(self.document, value),
                });
            }
        };
        let mut families = self.families(value, map)?;
        let kind = match families.len() {
            0 => Kind::True,
            1 => families.remove(0),
            _ => Kind::Combined(Combined {
                criterion: Criterion::All,
                members: families.into_iter().map(|kind| self.push(kind)).collect(),
                synthetic: true,
            }),
        };
        Ok(Node {
            annotations: annotations(map, self.draft),
            kind,
        })
    }

    /// One kind per keyword family present, in everit's order of extraction.
    fn families(
        &mut self,
        value: &'a Value,
        map: &'a Map<String, Value>,
    ) -> Result<Vec<Kind>, SchemaError> {
        let mut families = Vec::new();
        if let Some(Value::Array(values)) = map.get("enum") {
            let mut values: Vec<String> = values.iter().map(canonical).collect();
            values.sort_unstable();
            values.dedup();
            families.push(Kind::Enum(values));
        }
        if let Some(constant) = map.get("const").filter(|_| self.draft >= Draft::Draft06) {
            families.push(Kind::Const(canonical(constant)));
        }
        for criterion in [Criterion::All, Criterion::Any, Criterion::One] {
            if let Some(Value::Array(members)) = map.get(criterion.keyword()) {
                let mut seen = HashSet::new();
                let members = members
                    .iter()
                    .filter(|member| seen.insert(canonical(member)))
                    .map(|member| self.alloc(member))
                    .collect();
                families.push(Kind::Combined(Combined {
                    criterion,
                    members,
                    synthetic: false,
                }));
            }
        }
        if let Some(negated) = map.get("not") {
            families.push(Kind::Not(self.alloc(negated)));
        }
        for keyword in ["$ref", "$dynamicRef", "$recursiveRef"] {
            if let Some(Value::String(reference)) = map.get(keyword) {
                let target = self.index.resolve(value, reference).map_err(|reason| {
                    SchemaError::UnresolvableRef {
                        reference: reference.clone(),
                        location: locate(self.document, value),
                        reason,
                    }
                })?;
                families.push(Kind::Ref(self.alloc(target)));
            }
        }
        let conditional = ["else", "if", "then"].map(|keyword| (keyword, map.get(keyword)));
        if self.draft >= Draft::Draft07 && conditional.iter().any(|(_, value)| value.is_some()) {
            families.push(Kind::Conditional(canonical_entries(
                conditional
                    .iter()
                    .filter_map(|(keyword, value)| Some((*keyword, (*value)?))),
            )));
        }
        self.typed(value, map, &mut families)?;
        Ok(families)
    }

    /// The families `type` names or, without `type`, the ones its keywords imply.
    fn typed(
        &mut self,
        value: &'a Value,
        map: &'a Map<String, Value>,
        families: &mut Vec<Kind>,
    ) -> Result<(), SchemaError> {
        let names: Vec<&str> = match map.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => {
                let draft = self.draft;
                let has = |keywords: &[(&str, Draft)]| {
                    keywords
                        .iter()
                        .any(|(k, since)| draft >= *since && map.contains_key(*k))
                };
                if has(OBJECT_KEYWORDS) {
                    families.push(self.object(value, map)?);
                }
                if has(ARRAY_KEYWORDS) {
                    families.push(self.array(map));
                }
                if has(NUMBER_KEYWORDS) {
                    families.push(Kind::Number(number(map, false, self.draft)));
                }
                if has(STRING_KEYWORDS) {
                    families.push(Kind::String(string(map)));
                }
                return Ok(());
            }
        };
        let mut kinds = Vec::with_capacity(names.len());
        for name in names {
            kinds.push(match name {
                "string" => Kind::String(string(map)),
                "integer" => Kind::Number(number(map, true, self.draft)),
                "number" => Kind::Number(number(map, false, self.draft)),
                "boolean" => Kind::Boolean,
                "null" => Kind::Null,
                "object" => self.object(value, map)?,
                "array" => self.array(map),
                _ => Kind::True,
            });
        }
        match kinds.len() {
            0 => {}
            1 => families.append(&mut kinds),
            _ => {
                let members = kinds.into_iter().map(|kind| self.push(kind)).collect();
                families.push(Kind::Combined(Combined {
                    criterion: Criterion::Any,
                    members,
                    synthetic: true,
                }));
            }
        }
        Ok(())
    }

    fn object(
        &mut self,
        value: &'a Value,
        map: &'a Map<String, Value>,
    ) -> Result<Kind, SchemaError> {
        let schemas = |builder: &mut Self, keyword: &str| -> BTreeMap<String, NodeId> {
            match map.get(keyword) {
                Some(Value::Object(entries)) => entries
                    .iter()
                    .map(|(name, schema)| (name.clone(), builder.alloc(schema)))
                    .collect(),
                _ => BTreeMap::new(),
            }
        };
        let properties = schemas(self, "properties");
        let mut pattern_properties = BTreeMap::new();
        if let Some(Value::Object(entries)) = map.get("patternProperties") {
            for (pattern, schema) in entries {
                let regex = fancy_regex::Regex::new(pattern).map_err(|e| SchemaError::Invalid {
                    message: format!("patternProperties key {pattern:?} is not a regular expression we can match: {e}"),
                    location: format!("{}/patternProperties", locate(self.document, value)),
                })?;
                let schema = self.alloc(schema);
                pattern_properties.insert(pattern.clone(), PatternProperty { regex, schema });
            }
        }
        let (dependent_required, dependent_schemas, required_keyword, schemas_keyword) = if self
            .draft
            <= Draft::Draft07
        {
            let mut required = BTreeMap::new();
            let mut schemas = BTreeMap::new();
            if let Some(Value::Object(entries)) = map.get("dependencies") {
                for (name, dependency) in entries {
                    match dependency {
                        Value::Array(names) => {
                            required.insert(name.clone(), strings(names));
                        }
                        schema => {
                            schemas.insert(name.clone(), self.alloc(schema));
                        }
                    }
                }
            }
            (required, schemas, "dependencies", "dependencies")
        } else {
            let required = match map.get("dependentRequired") {
                Some(Value::Object(entries)) => entries
                    .iter()
                    .filter_map(|(name, names)| Some((name.clone(), strings(names.as_array()?))))
                    .collect(),
                _ => BTreeMap::new(),
            };
            (
                required,
                schemas(self, "dependentSchemas"),
                "dependentRequired",
                "dependentSchemas",
            )
        };
        Ok(Kind::Object(Box::new(ObjectKind {
            properties,
            required: map
                .get("required")
                .and_then(Value::as_array)
                .map(|names| strings(names))
                .unwrap_or_default(),
            pattern_properties,
            additional: self.additional(map.get("additionalProperties")),
            unevaluated: self.since_2019(map.get("unevaluatedProperties")),
            dependent_required,
            dependent_required_keyword: required_keyword,
            dependent_schemas,
            dependent_schemas_keyword: schemas_keyword,
            min_properties: count(map.get("minProperties")),
            max_properties: count(map.get("maxProperties")),
        })))
    }

    fn array(&mut self, map: &'a Map<String, Value>) -> Kind {
        let tuple = |builder: &mut Self, items: &'a [Value]| -> Vec<NodeId> {
            items.iter().map(|item| builder.alloc(item)).collect()
        };
        let (items, prefix, prefix_keyword, additional, additional_keyword) =
            if self.draft == Draft::Draft202012 {
                match map.get("prefixItems") {
                    Some(Value::Array(prefix)) => {
                        let prefix = tuple(self, prefix);
                        (
                            None,
                            prefix,
                            "prefixItems",
                            self.additional(map.get("items")),
                            "items",
                        )
                    }
                    _ => {
                        let items = map.get("items").map(|items| self.alloc(items));
                        (items, Vec::new(), "prefixItems", Additional::OPEN, "items")
                    }
                }
            } else {
                let additional = self.additional(map.get("additionalItems"));
                match map.get("items") {
                    Some(Value::Array(prefix)) => (
                        None,
                        tuple(self, prefix),
                        "items",
                        additional,
                        "additionalItems",
                    ),
                    other => {
                        let items = other.map(|items| self.alloc(items));
                        (items, Vec::new(), "items", additional, "additionalItems")
                    }
                }
            };
        let since_2019 = self.draft >= Draft::Draft201909;
        Kind::Array(Box::new(ArrayKind {
            items,
            prefix,
            prefix_keyword,
            additional,
            additional_keyword,
            unevaluated: self.since_2019(map.get("unevaluatedItems")),
            min_items: count(map.get("minItems")),
            max_items: count(map.get("maxItems")),
            min_contains: count(map.get("minContains").filter(|_| since_2019)),
            max_contains: count(map.get("maxContains").filter(|_| since_2019)),
            unique_items: map.get("uniqueItems") == Some(&Value::Bool(true)),
        }))
    }

    fn additional(&mut self, keyword: Option<&'a Value>) -> Additional {
        match keyword {
            None | Some(Value::Bool(true)) => Additional::OPEN,
            Some(Value::Bool(false)) => Additional {
                permits: false,
                schema: None,
            },
            Some(schema) => Additional {
                permits: true,
                schema: Some(self.alloc(schema)),
            },
        }
    }

    /// A keyword that only exists from draft 2019-09 on, such as `unevaluatedProperties`.
    fn since_2019(&mut self, keyword: Option<&'a Value>) -> Option<NodeId> {
        keyword
            .filter(|_| self.draft >= Draft::Draft201909)
            .map(|schema| self.alloc(schema))
    }

    /// Points every `Ref` straight at the first node that is not a `Ref`, refusing loops made
    /// of references alone. Each chain is walked once: every node on it is repointed.
    fn resolve_reference_chains(&mut self) -> Result<(), SchemaError> {
        for start in 0..self.nodes.len() {
            let mut chain = Vec::new();
            let mut seen = HashSet::new();
            let mut current = start;
            while let Kind::Ref(next) = self.nodes[current].kind {
                if !seen.insert(current) {
                    let holder = self.sources[current].unwrap_or(self.document);
                    return Err(SchemaError::RefCycle {
                        location: locate(self.document, holder),
                    });
                }
                chain.push(current);
                current = next;
            }
            for id in chain {
                self.nodes[id].kind = Kind::Ref(current);
            }
        }
        Ok(())
    }
}

fn annotations(map: &Map<String, Value>, draft: Draft) -> Annotations {
    let text = |keyword: &str| map.get(keyword).and_then(Value::as_str).map(str::to_string);
    Annotations {
        id: text(draft.id_keyword()),
        title: text("title"),
        description: text("description"),
        default: map.get("default").map(canonical),
    }
}

fn string(map: &Map<String, Value>) -> StringKind {
    StringKind {
        min_length: count(map.get("minLength")),
        max_length: count(map.get("maxLength")),
        pattern: map
            .get("pattern")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// Draft-04 spells an exclusive bound as `exclusiveMinimum: true` beside `minimum`; later
/// drafts as the number itself, `exclusiveMinimum: 5`. Each spelling is kept as written, so
/// that verdicts within a dialect are Confluent's.
fn number(map: &Map<String, Value>, integer: bool, draft: Draft) -> NumberKind {
    let limit = |keyword: &str| map.get(keyword).and_then(Value::as_f64);
    let flag =
        |keyword: &str| draft == Draft::Draft04 && map.get(keyword) == Some(&Value::Bool(true));
    NumberKind {
        integer,
        minimum: limit("minimum"),
        maximum: limit("maximum"),
        exclusive_minimum: limit("exclusiveMinimum"),
        exclusive_maximum: limit("exclusiveMaximum"),
        minimum_is_exclusive: flag("exclusiveMinimum"),
        maximum_is_exclusive: flag("exclusiveMaximum"),
        multiple_of: match map.get("multipleOf") {
            Some(Value::Number(n)) => Some(n.clone()),
            _ => None,
        },
    }
}

/// A non-negative integer keyword; JSON Schema counts `2.0` as the integer 2.
fn count(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })
}

fn strings(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The JSON pointer of `target` inside `document`, found by walking it without recursion.
/// Only used to word an error, so its cost does not matter.
pub(crate) fn locate(document: &Value, target: &Value) -> String {
    let wanted = address(target);
    let mut stack = vec![(document, String::from("#"))];
    while let Some((value, pointer)) = stack.pop() {
        if address(value) == wanted {
            return pointer;
        }
        let Value::Object(map) = value else { continue };
        let child = |segment: &str| format!("{pointer}/{}", escape(segment));
        for keyword in SINGLE_SUBSCHEMA {
            if let Some(value) = map.get(*keyword) {
                stack.push((value, child(keyword)));
            }
        }
        for keyword in ARRAY_OF_SUBSCHEMAS {
            if let Some(Value::Array(items)) = map.get(*keyword) {
                for (i, item) in items.iter().enumerate() {
                    stack.push((item, format!("{}/{i}", child(keyword))));
                }
            }
        }
        for keyword in MAP_OF_SUBSCHEMAS {
            if let Some(Value::Object(entries)) = map.get(*keyword) {
                for (name, item) in entries {
                    stack.push((item, format!("{}/{}", child(keyword), escape(name))));
                }
            }
        }
    }
    String::from("#")
}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
