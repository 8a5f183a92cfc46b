//! Every rule as one row: old and new schema, the kinds expected from old to new and from new
//! to old, and whether the change is backward and forward compatible. One test checks the
//! kinds and directions, another derives each mode's verdict from the same rows.
//!
//! Each row is judged in every dialect that spells it the same way: as written, without
//! `$schema` (so read as draft-07), and with the `$schema` of each listed draft added to both
//! versions. Rows whose keywords differ in draft-07 (`prefixItems`, `dependentRequired`,
//! `dependentSchemas`) have a twin in the draft-07 spelling (tuple `items` with
//! `additionalItems`, `dependencies`) with the same verdicts.

use serde_json::{Value, json};

use super::{kinds, schema};
use crate::schema::{
    ChangeKind, ChangeKind::*, Compatibility, Draft, Draft::*, Schema, check, diff,
};

/// How a row's documents are read.
#[derive(Clone, Copy, Debug)]
enum Dialect {
    /// As written: without `$schema` that is draft-07.
    AsWritten,
    /// With `$schema` naming this draft added to both versions (a boolean schema has no room
    /// for it and stays as it is).
    Stated(Draft),
}

use Dialect::{AsWritten, Stated};

/// Spelled the same in every draft.
const FROM_04: &[Dialect] = &[
    AsWritten,
    Stated(Draft04),
    Stated(Draft06),
    Stated(Draft201909),
    Stated(Draft202012),
];
/// Needs a draft-06 keyword: `const`, `$id`, numeric exclusive bounds, boolean schemas.
const FROM_06: &[Dialect] = &[
    AsWritten,
    Stated(Draft06),
    Stated(Draft201909),
    Stated(Draft202012),
];
/// Needs `if`/`then`/`else`.
const FROM_07: &[Dialect] = &[AsWritten, Stated(Draft201909), Stated(Draft202012)];
/// Needs a 2019-09 keyword: `dependentRequired`, `unevaluated*`, `minContains`.
const SINCE_2019: &[Dialect] = &[Stated(Draft201909), Stated(Draft202012)];
/// Needs `prefixItems`.
const ONLY_2020: &[Dialect] = &[Stated(Draft202012)];
/// Tuple `items` with `additionalItems`, up to 2019-09.
const TUPLES: &[Dialect] = &[
    AsWritten,
    Stated(Draft04),
    Stated(Draft06),
    Stated(Draft201909),
];
/// Tuple `items` holding a boolean schema, from draft-06 to 2019-09.
const TUPLES_06: &[Dialect] = &[AsWritten, Stated(Draft06), Stated(Draft201909)];
/// `dependencies`, up to draft-07.
const DEPENDENCIES: &[Dialect] = &[AsWritten, Stated(Draft04), Stated(Draft06)];
/// Only as written: the row names its dialect itself.
const AS_WRITTEN: &[Dialect] = &[AsWritten];

struct Rule {
    dialects: &'static [Dialect],
    name: &'static str,
    old: Value,
    new: Value,
    /// Kinds of the differences from `old` to `new`.
    kinds: &'static [ChangeKind],
    /// Kinds of the differences from `new` to `old`.
    reverse: &'static [ChangeKind],
    /// Consumers on `new` read data written with `old`.
    backward: bool,
    /// Consumers on `old` read data written with `new`.
    forward: bool,
}

macro_rules! rule {
    ($dialects:ident, $name:literal: $old:tt => $new:tt, [$($kind:ident),*], [$($reverse:ident),*], $backward:literal, $forward:literal) => {
        Rule {
            dialects: $dialects,
            name: $name,
            old: json!($old),
            new: json!($new),
            kinds: &[$($kind),*],
            reverse: &[$($reverse),*],
            backward: $backward,
            forward: $forward,
        }
    };
}

const DRAFT_04: &str = "http://json-schema.org/draft-04/schema#";
const DRAFT_06: &str = "http://json-schema.org/draft-06/schema#";

#[rustfmt::skip]
fn rules() -> Vec<Rule> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let object_a = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    vec![
        // Annotations and types.
        rule!(FROM_04, "identical schemas": {"type": "string", "maxLength": 3} => {"type": "string", "maxLength": 3}, [], [], true, true),
        rule!(FROM_04, "title changed": {"type": "string", "title": "a"} => {"type": "string", "title": "b"}, [TitleChanged], [TitleChanged], true, true),
        rule!(FROM_04, "description changed": {"type": "string", "description": "a"} => {"type": "string"}, [DescriptionChanged], [DescriptionChanged], true, true),
        rule!(FROM_06, "$id changed": {"$id": "https://example.com/a.json", "type": "string"} => {"$id": "https://example.com/b.json", "type": "string"}, [IdChanged], [IdChanged], true, true),
        rule!(FROM_04, "default changed": {"type": "string", "default": "a"} => {"type": "string", "default": "b"}, [DefaultChanged], [DefaultChanged], true, true),
        rule!(FROM_04, "type changed": string => integer, [TypeChanged], [TypeChanged], false, false),
        rule!(FROM_04, "integer extended to number": {"type": "integer"} => {"type": "number"}, [TypeExtended], [TypeNarrowed], true, false),
        rule!(FROM_04, "any schema relaxed to an empty one": {"type": "string", "minLength": 1} => {}, [], [TypeChanged], true, false),
        rule!(FROM_06, "false opened to a type": false => {"type": "string"}, [], [TypeChanged], true, false),
        rule!(FROM_04, "items schema added": {"type": "array"} => {"type": "array", "items": {"type": "string"}}, [SchemaAdded], [SchemaRemoved], false, true),

        // Strings.
        rule!(FROM_04, "maxLength added": {"type": "string"} => {"type": "string", "maxLength": 5}, [MaxLengthAdded], [MaxLengthRemoved], false, true),
        rule!(FROM_04, "maxLength increased": {"type": "string", "maxLength": 5} => {"type": "string", "maxLength": 10}, [MaxLengthIncreased], [MaxLengthDecreased], true, false),
        rule!(FROM_04, "minLength added": {"type": "string"} => {"type": "string", "minLength": 1}, [MinLengthAdded], [MinLengthRemoved], false, true),
        rule!(FROM_04, "minLength increased": {"type": "string", "minLength": 1} => {"type": "string", "minLength": 3}, [MinLengthIncreased], [MinLengthDecreased], false, true),
        rule!(FROM_04, "pattern added": {"type": "string"} => {"type": "string", "pattern": "^a"}, [PatternAdded], [PatternRemoved], false, true),
        rule!(FROM_04, "pattern changed": {"type": "string", "pattern": "^a"} => {"type": "string", "pattern": "^b"}, [PatternChanged], [PatternChanged], false, false),

        // Numbers.
        rule!(FROM_04, "maximum added": {"type": "number"} => {"type": "number", "maximum": 10}, [MaximumAdded], [MaximumRemoved], false, true),
        rule!(FROM_04, "maximum increased": {"type": "number", "maximum": 10} => {"type": "number", "maximum": 20}, [MaximumIncreased], [MaximumDecreased], true, false),
        rule!(FROM_04, "minimum added": {"type": "number"} => {"type": "number", "minimum": 0}, [MinimumAdded], [MinimumRemoved], false, true),
        rule!(FROM_04, "minimum increased": {"type": "number", "minimum": 0} => {"type": "number", "minimum": 5}, [MinimumIncreased], [MinimumDecreased], false, true),
        rule!(FROM_06, "exclusiveMaximum added": {"type": "number"} => {"type": "number", "exclusiveMaximum": 10}, [ExclusiveMaximumAdded], [ExclusiveMaximumRemoved], false, true),
        rule!(FROM_06, "exclusiveMaximum increased": {"type": "number", "exclusiveMaximum": 10} => {"type": "number", "exclusiveMaximum": 11.5}, [ExclusiveMaximumIncreased], [ExclusiveMaximumDecreased], true, false),
        rule!(FROM_06, "exclusiveMinimum added": {"type": "number"} => {"type": "number", "exclusiveMinimum": 0}, [ExclusiveMinimumAdded], [ExclusiveMinimumRemoved], false, true),
        rule!(FROM_06, "exclusiveMinimum increased": {"type": "number", "exclusiveMinimum": 0} => {"type": "number", "exclusiveMinimum": 1}, [ExclusiveMinimumIncreased], [ExclusiveMinimumDecreased], false, true),
        rule!(FROM_04, "multipleOf added": {"type": "integer"} => {"type": "integer", "multipleOf": 2}, [MultipleOfAdded], [MultipleOfRemoved], false, true),
        rule!(FROM_04, "multipleOf expanded": {"type": "integer", "multipleOf": 2} => {"type": "integer", "multipleOf": 4}, [MultipleOfExpanded], [MultipleOfReduced], false, true),
        rule!(FROM_04, "multipleOf reduced below one": {"type": "number", "multipleOf": 0.5} => {"type": "number", "multipleOf": 0.25}, [MultipleOfReduced], [MultipleOfExpanded], true, false),
        rule!(FROM_04, "multipleOf changed": {"type": "integer", "multipleOf": 2} => {"type": "integer", "multipleOf": 3}, [MultipleOfChanged], [MultipleOfChanged], false, false),
        rule!(FROM_04, "multipleOf respelled": {"type": "number", "multipleOf": 2} => {"type": "number", "multipleOf": 2.0}, [], [], true, true),

        // Enums and constants.
        rule!(FROM_04, "enum extended": {"enum": ["a"]} => {"enum": ["a", "b"]}, [EnumArrayExtended], [EnumArrayNarrowed], true, false),
        rule!(FROM_04, "enum changed": {"enum": ["a", "b"]} => {"enum": ["a", "c"]}, [EnumArrayChanged], [EnumArrayChanged], false, false),
        rule!(FROM_04, "typed enum extended": {"type": "string", "enum": ["a"]} => {"type": "string", "enum": ["b", "a"]}, [EnumArrayExtended], [EnumArrayNarrowed, CombinedTypeSubschemasChanged], true, false),
        rule!(FROM_04, "enum values equal as numbers": {"enum": [1, "x"]} => {"enum": ["x", 1.0]}, [], [], true, true),
        rule!(FROM_06, "const changed": {"const": "a"} => {"const": "b"}, [EnumArrayChanged], [EnumArrayChanged], false, false),
        rule!(FROM_04, "enum added to a string": {"type": "string"} => {"type": "string", "enum": ["a"]}, [TypeChanged], [ProductTypeNarrowed], false, true),

        // Required properties.
        rule!(FROM_04, "required added": object_a => {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, [RequiredAttributeAdded], [RequiredAttributeRemoved], false, true),
        rule!(FROM_04, "required with default added": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}} => {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "required": ["a"]}, [RequiredAttributeWithDefaultAdded], [RequiredAttributeRemoved], true, true),
        rule!(FROM_04, "undeclared name required": {"type": "object"} => {"type": "object", "required": ["a"]}, [RequiredAttributeAdded], [RequiredAttributeRemoved], false, true),

        // Open content model: new names may already be in old data with any value.
        rule!(FROM_04, "optional property added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}, [OptionalPropertyAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!(FROM_04, "required property added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"]}, [RequiredPropertyAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!(FROM_04, "required property with default added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"]}, [RequiredPropertyWithDefaultAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!(FROM_04, "property accepting anything added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}, [PropertyWithEmptySchemaAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], true, true),

        // Closed content model.
        rule!(FROM_04, "optional property added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}, [OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),
        rule!(FROM_04, "required property added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}, [RequiredPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], false, false),
        rule!(FROM_04, "required property with default added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"], "additionalProperties": false}, [RequiredPropertyWithDefaultAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),
        rule!(FROM_06, "property declared false removed from closed model": {"type": "object", "properties": {"a": {"type": "string"}, "b": false}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}, [PropertyWithFalseRemovedFromClosedContentModel], [OptionalPropertyAddedToUnopenContentModel], true, true),
        rule!(SINCE_2019, "property added to model closed by unevaluatedProperties": {"type": "object", "properties": {"a": {"type": "string"}}, "unevaluatedProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "unevaluatedProperties": false}, [OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),

        // Partially open content model: additionalProperties or patternProperties with a schema.
        rule!(FROM_04, "property added covered by additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}}, [PropertyAddedIsCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!(FROM_04, "property added not covered by additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "properties": {"b": {"type": "integer"}}, "additionalProperties": {"type": "string"}}, [TypeChanged, PropertyAddedNotCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [TypeChanged, PropertyRemovedNotCoveredByPartiallyOpenContentModel], false, false),
        rule!(FROM_04, "property added covered by patternProperties": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}} => {"type": "object", "properties": {"x-a": {"type": "string"}}, "patternProperties": {"^x-": {"type": "string"}}}, [PropertyAddedIsCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!(FROM_04, "patternProperties schema narrowed": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}} => {"type": "object", "patternProperties": {"^x-": {"type": "string", "maxLength": 3}}}, [MaxLengthAdded], [MaxLengthRemoved], false, true),

        // Additional and unevaluated properties.
        rule!(FROM_04, "additionalProperties false lifted": {"type": "object", "additionalProperties": false} => {"type": "object"}, [AdditionalPropertiesAdded], [AdditionalPropertiesRemoved], true, false),
        rule!(FROM_04, "additionalProperties given a schema": {"type": "object"} => {"type": "object", "additionalProperties": {"type": "string"}}, [AdditionalPropertiesNarrowed], [AdditionalPropertiesExtended], false, true),
        rule!(FROM_04, "additionalProperties schema changed": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "additionalProperties": {"type": "integer"}}, [TypeChanged], [TypeChanged], false, false),
        rule!(SINCE_2019, "unevaluatedProperties forbidden": {"type": "object"} => {"type": "object", "unevaluatedProperties": false}, [UnevaluatedPropertiesRemoved], [UnevaluatedPropertiesAdded], false, true),
        rule!(SINCE_2019, "unevaluatedProperties given a schema": {"type": "object"} => {"type": "object", "unevaluatedProperties": {"type": "string"}}, [UnevaluatedPropertiesNarrowed], [UnevaluatedPropertiesExtended], false, true),

        // Dependencies.
        rule!(SINCE_2019, "dependentRequired added": {"type": "object"} => {"type": "object", "dependentRequired": {"a": ["b"]}}, [DependencyArrayAdded], [DependencyArrayRemoved], false, true),
        rule!(SINCE_2019, "dependentRequired extended": {"type": "object", "dependentRequired": {"a": ["b"]}} => {"type": "object", "dependentRequired": {"a": ["b", "c"]}}, [DependencyArrayExtended], [DependencyArrayNarrowed], false, true),
        rule!(SINCE_2019, "dependentRequired changed": {"type": "object", "dependentRequired": {"a": ["b"]}} => {"type": "object", "dependentRequired": {"a": ["c"]}}, [DependencyArrayChanged], [DependencyArrayChanged], false, false),
        rule!(SINCE_2019, "dependentSchemas added": {"type": "object"} => {"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}, [DependencySchemaAdded], [DependencySchemaRemoved], false, true),
        rule!(SINCE_2019, "dependentSchemas changed": {"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}} => {"type": "object", "dependentSchemas": {"a": {"required": ["c"]}}}, [RequiredAttributeAdded, RequiredAttributeRemoved], [RequiredAttributeAdded, RequiredAttributeRemoved], false, false),

        // Property counts.
        rule!(FROM_04, "maxProperties added": {"type": "object"} => {"type": "object", "maxProperties": 5}, [MaxPropertiesAdded], [MaxPropertiesRemoved], false, true),
        rule!(FROM_04, "maxProperties increased": {"type": "object", "maxProperties": 5} => {"type": "object", "maxProperties": 6}, [MaxPropertiesIncreased], [MaxPropertiesDecreased], true, false),
        rule!(FROM_04, "minProperties added": {"type": "object"} => {"type": "object", "minProperties": 1}, [MinPropertiesAdded], [MinPropertiesRemoved], false, true),
        rule!(FROM_04, "minProperties increased": {"type": "object", "minProperties": 1} => {"type": "object", "minProperties": 2}, [MinPropertiesIncreased], [MinPropertiesDecreased], false, true),

        // Arrays.
        rule!(FROM_04, "items type changed": {"type": "array", "items": string} => {"type": "array", "items": integer}, [TypeChanged], [TypeChanged], false, false),
        rule!(FROM_04, "items extended to number": {"type": "array", "items": integer} => {"type": "array", "items": {"type": "number"}}, [TypeExtended], [TypeNarrowed], true, false),
        rule!(FROM_04, "maxItems added": {"type": "array"} => {"type": "array", "maxItems": 3}, [MaxItemsAdded], [MaxItemsRemoved], false, true),
        rule!(FROM_04, "maxItems increased": {"type": "array", "maxItems": 3} => {"type": "array", "maxItems": 4}, [MaxItemsIncreased], [MaxItemsDecreased], true, false),
        rule!(FROM_04, "minItems added": {"type": "array"} => {"type": "array", "minItems": 1}, [MinItemsAdded], [MinItemsRemoved], false, true),
        rule!(FROM_04, "minItems increased": {"type": "array", "minItems": 1} => {"type": "array", "minItems": 2}, [MinItemsIncreased], [MinItemsDecreased], false, true),
        rule!(FROM_04, "uniqueItems added": {"type": "array"} => {"type": "array", "uniqueItems": true}, [UniqueItemsAdded], [UniqueItemsRemoved], false, true),
        rule!(SINCE_2019, "maxContains added": {"type": "array", "contains": string} => {"type": "array", "contains": string, "maxContains": 3}, [MaxContainsAdded], [MaxContainsRemoved], false, true),
        rule!(SINCE_2019, "maxContains increased": {"type": "array", "contains": string, "maxContains": 2} => {"type": "array", "contains": string, "maxContains": 3}, [MaxContainsIncreased], [MaxContainsDecreased], true, false),
        rule!(SINCE_2019, "minContains added": {"type": "array", "contains": string} => {"type": "array", "contains": string, "minContains": 2}, [MinContainsAdded], [MinContainsRemoved], false, true),
        rule!(SINCE_2019, "minContains increased": {"type": "array", "contains": string, "minContains": 2} => {"type": "array", "contains": string, "minContains": 3}, [MinContainsIncreased], [MinContainsDecreased], false, true),

        // Tuples and their content models.
        rule!(ONLY_2020, "item added to open tuple": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string, integer]}, [ItemAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], false, true),
        rule!(ONLY_2020, "item accepting anything added to open tuple": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string, {}]}, [ItemWithEmptySchemaAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], true, true),
        rule!(ONLY_2020, "item added to closed tuple": {"type": "array", "prefixItems": [string], "items": false} => {"type": "array", "prefixItems": [string, integer], "items": false}, [ItemAddedToClosedContentModel], [ItemRemovedFromClosedContentModel], true, false),
        rule!(ONLY_2020, "item declared false removed from closed tuple": {"type": "array", "prefixItems": [string, false], "items": false} => {"type": "array", "prefixItems": [string], "items": false}, [ItemWithFalseRemovedFromClosedContentModel], [ItemAddedToClosedContentModel], true, true),
        rule!(ONLY_2020, "item added covered by the rest's schema": {"type": "array", "prefixItems": [string], "items": integer} => {"type": "array", "prefixItems": [string, integer], "items": integer}, [ItemAddedIsCoveredByPartiallyOpenContentModel], [ItemRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!(ONLY_2020, "item added not covered by the rest's schema": {"type": "array", "prefixItems": [string], "items": integer} => {"type": "array", "prefixItems": [string, string], "items": integer}, [TypeChanged, ItemAddedNotCoveredByPartiallyOpenContentModel], [TypeChanged, ItemRemovedNotCoveredByPartiallyOpenContentModel], false, false),
        rule!(ONLY_2020, "items after the tuple allowed": {"type": "array", "prefixItems": [string], "items": false} => {"type": "array", "prefixItems": [string]}, [AdditionalItemsAdded], [AdditionalItemsRemoved], true, false),
        rule!(ONLY_2020, "items after the tuple given a schema": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string], "items": string}, [AdditionalItemsNarrowed], [AdditionalItemsExtended], false, true),
        rule!(SINCE_2019, "unevaluatedItems forbidden": {"type": "array"} => {"type": "array", "unevaluatedItems": false}, [UnevaluatedItemsRemoved], [UnevaluatedItemsAdded], false, true),
        rule!(SINCE_2019, "unevaluatedItems given a schema": {"type": "array"} => {"type": "array", "unevaluatedItems": string}, [UnevaluatedItemsNarrowed], [UnevaluatedItemsExtended], false, true),

        // Combined schemas.
        rule!(FROM_04, "sum type grows": {"anyOf": [string, integer]} => {"anyOf": [string, integer, {"type": "boolean"}]}, [SumTypeExtended], [SumTypeNarrowed], true, false),
        rule!(FROM_04, "oneOf grows": {"oneOf": [string, integer]} => {"oneOf": [string, integer, {"type": "boolean"}]}, [SumTypeExtended], [SumTypeNarrowed], true, false),
        rule!(FROM_04, "product type grows": {"allOf": [{"minLength": 1}, {"maxLength": 9}]} => {"allOf": [{"minLength": 1}, {"maxLength": 9}, {"pattern": "^a"}]}, [ProductTypeExtended], [ProductTypeNarrowed], false, true),
        rule!(FROM_04, "oneOf relaxed to anyOf": {"oneOf": [string, integer]} => {"anyOf": [string, integer]}, [CombinedTypeExtended], [CombinedTypeChanged], true, false),
        rule!(FROM_04, "anyOf changed to allOf": {"anyOf": [{"minLength": 1}, {"maxLength": 9}]} => {"allOf": [{"minLength": 1}, {"maxLength": 9}]}, [CombinedTypeChanged], [CombinedTypeExtended], false, true),
        rule!(FROM_04, "sum member replaced": {"anyOf": [string, integer]} => {"anyOf": [string, {"type": "boolean"}]}, [CombinedTypeSubschemasChanged], [CombinedTypeSubschemasChanged], false, false),
        rule!(FROM_04, "type made nullable": {"type": "string"} => {"type": ["string", "null"]}, [SumTypeExtended], [TypeChanged], true, false),
        rule!(FROM_04, "schema made one member of anyOf": string => {"anyOf": [string, integer]}, [SumTypeExtended], [TypeChanged], true, false),
        rule!(FROM_04, "allOf reduced to one of its members": {"allOf": [string, {"minLength": 2}]} => {"type": "string"}, [ProductTypeNarrowed], [TypeChanged], true, false),
        rule!(FROM_04, "single-member combinators swapped": {"anyOf": [string]} => {"oneOf": [string]}, [CombinedTypeExtended], [CombinedTypeExtended], true, true),
        rule!(FROM_04, "duplicate members collapse": {"anyOf": [string, string]} => {"anyOf": [string]}, [], [], true, true),
        rule!(FROM_04, "negated schema narrowed": {"not": string} => {"not": {"type": "string", "maxLength": 3}}, [NotTypeNarrowed], [NotTypeExtended], true, false),
        rule!(FROM_07, "conditional changed": {"if": {"required": ["a"]}, "then": {"required": ["b"]}} => {"if": {"required": ["a"]}, "then": {"required": ["c"]}}, [ConditionalChanged], [ConditionalChanged], false, false),

        // References.
        rule!(FROM_04, "change behind a $ref": {"$defs": {"a": string}, "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}} => {"$defs": {"a": integer}, "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}, [TypeChanged], [TypeChanged], false, false),
        // Reported where it is written and once more where the recursion first re-enters it.
        rule!(FROM_04, "change in a recursive schema": {"type": "object", "properties": {"name": string, "children": {"type": "array", "items": {"$ref": "#"}}}} => {"type": "object", "properties": {"name": {"type": "string", "maxLength": 9}, "children": {"type": "array", "items": {"$ref": "#"}}}}, [MaxLengthAdded, MaxLengthAdded], [MaxLengthRemoved], false, true),
        rule!(FROM_04, "identical recursive schemas": {"type": "object", "properties": {"next": {"$ref": "#"}}} => {"type": "object", "properties": {"next": {"$ref": "#"}}}, [], [], true, true),

        // Draft-07 spellings: tuples as `items: [..]` with `additionalItems`.
        rule!(TUPLES, "draft-07 item added to open tuple": {"type": "array", "items": [string]} => {"type": "array", "items": [string, integer]}, [ItemAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], false, true),
        rule!(TUPLES, "draft-07 item accepting anything added to open tuple": {"type": "array", "items": [string]} => {"type": "array", "items": [string, {}]}, [ItemWithEmptySchemaAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], true, true),
        rule!(TUPLES, "draft-07 item added to closed tuple": {"type": "array", "items": [string], "additionalItems": false} => {"type": "array", "items": [string, integer], "additionalItems": false}, [ItemAddedToClosedContentModel], [ItemRemovedFromClosedContentModel], true, false),
        rule!(TUPLES_06, "draft-07 item declared false removed from closed tuple": {"type": "array", "items": [string, false], "additionalItems": false} => {"type": "array", "items": [string], "additionalItems": false}, [ItemWithFalseRemovedFromClosedContentModel], [ItemAddedToClosedContentModel], true, true),
        rule!(TUPLES, "draft-07 item added covered by additionalItems": {"type": "array", "items": [string], "additionalItems": integer} => {"type": "array", "items": [string, integer], "additionalItems": integer}, [ItemAddedIsCoveredByPartiallyOpenContentModel], [ItemRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!(TUPLES, "draft-07 item added not covered by additionalItems": {"type": "array", "items": [string], "additionalItems": integer} => {"type": "array", "items": [string, string], "additionalItems": integer}, [TypeChanged, ItemAddedNotCoveredByPartiallyOpenContentModel], [TypeChanged, ItemRemovedNotCoveredByPartiallyOpenContentModel], false, false),
        rule!(TUPLES, "draft-07 additionalItems false lifted": {"type": "array", "items": [string], "additionalItems": false} => {"type": "array", "items": [string]}, [AdditionalItemsAdded], [AdditionalItemsRemoved], true, false),
        rule!(TUPLES, "draft-07 additionalItems given a schema": {"type": "array", "items": [string]} => {"type": "array", "items": [string], "additionalItems": string}, [AdditionalItemsNarrowed], [AdditionalItemsExtended], false, true),
        rule!(TUPLES, "draft-07 tuple item type changed": {"type": "array", "items": [string, integer]} => {"type": "array", "items": [string, string]}, [TypeChanged], [TypeChanged], false, false),

        // Draft-07 spellings: `dependencies`, an array of names or a schema per property.
        rule!(DEPENDENCIES, "draft-07 dependency array added": {"type": "object"} => {"type": "object", "dependencies": {"a": ["b"]}}, [DependencyArrayAdded], [DependencyArrayRemoved], false, true),
        rule!(DEPENDENCIES, "draft-07 dependency array extended": {"type": "object", "dependencies": {"a": ["b"]}} => {"type": "object", "dependencies": {"a": ["b", "c"]}}, [DependencyArrayExtended], [DependencyArrayNarrowed], false, true),
        rule!(DEPENDENCIES, "draft-07 dependency array changed": {"type": "object", "dependencies": {"a": ["b"]}} => {"type": "object", "dependencies": {"a": ["c"]}}, [DependencyArrayChanged], [DependencyArrayChanged], false, false),
        rule!(DEPENDENCIES, "draft-07 dependency schema added": {"type": "object"} => {"type": "object", "dependencies": {"a": {"required": ["b"]}}}, [DependencySchemaAdded], [DependencySchemaRemoved], false, true),
        rule!(DEPENDENCIES, "draft-07 dependency schema changed": {"type": "object", "dependencies": {"a": {"required": ["b"]}}} => {"type": "object", "dependencies": {"a": {"required": ["c"]}}}, [RequiredAttributeAdded, RequiredAttributeRemoved], [RequiredAttributeAdded, RequiredAttributeRemoved], false, false),
        // Confluent keeps the two forms apart, so one replacing the other is a removal and an
        // addition even where they require the same.
        rule!(DEPENDENCIES, "draft-07 dependency array replaced by a schema": {"type": "object", "dependencies": {"a": ["b"]}} => {"type": "object", "dependencies": {"a": {"required": ["b"]}}}, [DependencyArrayRemoved, DependencySchemaAdded], [DependencyArrayAdded, DependencySchemaRemoved], false, false),

        // Draft-07 spellings: `definitions`.
        rule!(FROM_04, "change behind a $ref to definitions": {"definitions": {"a": string}, "type": "object", "properties": {"x": {"$ref": "#/definitions/a"}}} => {"definitions": {"a": integer}, "type": "object", "properties": {"x": {"$ref": "#/definitions/a"}}}, [TypeChanged], [TypeChanged], false, false),
        rule!(FROM_04, "definition narrowed behind a $ref": {"definitions": {"a": string}, "type": "object", "properties": {"x": {"$ref": "#/definitions/a"}}} => {"definitions": {"a": {"type": "string", "maxLength": 3}}, "type": "object", "properties": {"x": {"$ref": "#/definitions/a"}}}, [MaxLengthAdded], [MaxLengthRemoved], false, true),

        // Keywords of another dialect count for nothing, as a validator ignores them.
        rule!(AS_WRITTEN, "prefixItems ignored in draft-07": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string, integer], "items": false}, [SchemaAdded], [SchemaRemoved], false, true),
        rule!(AS_WRITTEN, "dependentRequired ignored in draft-07": {"type": "object"} => {"type": "object", "dependentRequired": {"a": ["b"]}}, [], [], true, true),
        rule!(AS_WRITTEN, "unevaluatedProperties ignored in draft-07": {"type": "object"} => {"type": "object", "unevaluatedProperties": false}, [], [], true, true),
        rule!(AS_WRITTEN, "dependencies ignored in 2020-12": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"} => {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "dependencies": {"a": ["b"]}}, [], [], true, true),

        // Draft-06: numeric exclusive bounds, `const`, no conditionals.
        rule!(AS_WRITTEN, "draft-06 const changed": {"$schema": DRAFT_06, "const": "a"} => {"$schema": DRAFT_06, "const": "b"}, [EnumArrayChanged], [EnumArrayChanged], false, false),
        rule!(AS_WRITTEN, "draft-06 exclusiveMinimum decreased": {"$schema": DRAFT_06, "type": "number", "exclusiveMinimum": 5} => {"$schema": DRAFT_06, "type": "number", "exclusiveMinimum": 4.5}, [ExclusiveMinimumDecreased], [ExclusiveMinimumIncreased], true, false),
        rule!(AS_WRITTEN, "draft-06 ignores if/then/else": {"$schema": DRAFT_06, "if": {"required": ["a"]}, "then": {"required": ["b"]}} => {"$schema": DRAFT_06, "if": {"required": ["a"]}, "then": {"required": ["c"]}}, [], [], true, true),

        // Draft-04: `id`, and exclusive bounds as booleans beside `minimum` and `maximum`.
        rule!(AS_WRITTEN, "draft-04 id changed": {"$schema": DRAFT_04, "id": "https://example.com/a.json", "type": "string"} => {"$schema": DRAFT_04, "id": "https://example.com/b.json", "type": "string"}, [IdChanged], [IdChanged], true, true),
        rule!(AS_WRITTEN, "draft-04 minimum made exclusive": {"$schema": DRAFT_04, "type": "number", "minimum": 0} => {"$schema": DRAFT_04, "type": "number", "minimum": 0, "exclusiveMinimum": true}, [ExclusiveMinimumAdded], [ExclusiveMinimumRemoved], false, true),
        rule!(AS_WRITTEN, "draft-04 maximum made exclusive": {"$schema": DRAFT_04, "type": "number", "maximum": 10, "exclusiveMaximum": false} => {"$schema": DRAFT_04, "type": "number", "maximum": 10, "exclusiveMaximum": true}, [ExclusiveMaximumAdded], [ExclusiveMaximumRemoved], false, true),
        // The bound moved: its own difference decides, whatever the flags.
        rule!(AS_WRITTEN, "draft-04 exclusive minimum lowered and made inclusive": {"$schema": DRAFT_04, "type": "number", "minimum": 5, "exclusiveMinimum": true} => {"$schema": DRAFT_04, "type": "number", "minimum": 4}, [MinimumDecreased], [MinimumIncreased], true, false),
        rule!(AS_WRITTEN, "draft-04 exclusive maximum raised": {"$schema": DRAFT_04, "type": "number", "maximum": 5, "exclusiveMaximum": true} => {"$schema": DRAFT_04, "type": "number", "maximum": 6, "exclusiveMaximum": true}, [MaximumIncreased], [MaximumDecreased], true, false),
        rule!(AS_WRITTEN, "draft-04 ignores const": {"$schema": DRAFT_04, "const": "a"} => {"$schema": DRAFT_04, "const": "b"}, [], [], true, true),
    ]
}

/// A row's documents in one dialect.
fn read_in(dialect: Dialect, document: &Value) -> Value {
    let mut document = document.clone();
    if let (Stated(draft), Value::Object(map)) = (dialect, &mut document) {
        map.insert("$schema".into(), json!(draft.meta_schema_uri()));
    }
    document
}

/// One row in one dialect, compiled.
struct Case {
    label: String,
    old: Schema,
    new: Schema,
    kinds: &'static [ChangeKind],
    reverse: &'static [ChangeKind],
    backward: bool,
    forward: bool,
}

/// Every row in every dialect it applies to.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for rule in rules() {
        for &dialect in rule.dialects {
            cases.push(Case {
                label: format!("{} ({dialect:?})", rule.name),
                old: schema(read_in(dialect, &rule.old)),
                new: schema(read_in(dialect, &rule.new)),
                kinds: rule.kinds,
                reverse: rule.reverse,
                backward: rule.backward,
                forward: rule.forward,
            });
        }
    }
    cases
}

#[test]
fn every_rule_reports_its_kinds_in_both_directions() {
    for case in cases() {
        let (old, new, label) = (&case.old, &case.new, &case.label);
        let mut expected = case.kinds.to_vec();
        expected.sort_unstable();
        let mut reverse = case.reverse.to_vec();
        reverse.sort_unstable();
        assert_eq!(kinds(old, new), expected, "{label}: old → new");
        assert_eq!(kinds(new, old), reverse, "{label}: new → old");
        let compatible = |diffs: Vec<crate::schema::Difference>| diffs.iter().all(|d| d.compatible);
        assert_eq!(
            compatible(diff(old, new)),
            case.backward,
            "{label}: backward"
        );
        assert_eq!(compatible(diff(new, old)), case.forward, "{label}: forward");
    }
}

#[test]
fn every_rule_gives_each_mode_its_verdict() {
    for case in cases() {
        for mode in MODES {
            let expected = match mode {
                Compatibility::None => true,
                Compatibility::Backward | Compatibility::BackwardTransitive => case.backward,
                Compatibility::Forward | Compatibility::ForwardTransitive => case.forward,
                Compatibility::Full | Compatibility::FullTransitive => {
                    case.backward && case.forward
                }
            };
            let report = check(mode, std::slice::from_ref(&case.old), &case.new);
            let label = &case.label;
            assert_eq!(report.compatible, expected, "{label} under {mode:?}");
            assert_eq!(
                report.breaking().next().is_none(),
                expected,
                "{label} under {mode:?}"
            );
        }
    }
}

/// The rows written without `$schema`, with a draft-07 spelling where it differs, cover every
/// rule a draft-07 document can express.
#[test]
fn draft_07_documents_are_judged_by_every_rule_they_can_spell() {
    let cases = cases();
    let draft_07: Vec<&Case> = cases
        .iter()
        .filter(|case| case.old.draft() == Draft07 && case.new.draft() == Draft07)
        .collect();
    let only_later = [
        MaxContainsAdded,
        MaxContainsRemoved,
        MaxContainsIncreased,
        MaxContainsDecreased,
        MinContainsAdded,
        MinContainsRemoved,
        MinContainsIncreased,
        MinContainsDecreased,
        UnevaluatedPropertiesAdded,
        UnevaluatedPropertiesRemoved,
        UnevaluatedPropertiesExtended,
        UnevaluatedPropertiesNarrowed,
        UnevaluatedItemsAdded,
        UnevaluatedItemsRemoved,
        UnevaluatedItemsExtended,
        UnevaluatedItemsNarrowed,
    ];
    for kind in ChangeKind::ALL {
        if only_later.contains(kind) {
            continue;
        }
        assert!(
            draft_07
                .iter()
                .any(|case| case.kinds.contains(kind) || case.reverse.contains(kind)),
            "no draft-07 row exercises {kind}"
        );
    }
}

#[test]
fn every_change_kind_has_a_rule() {
    let rules = rules();
    for kind in ChangeKind::ALL {
        assert!(
            rules
                .iter()
                .any(|rule| rule.kinds.contains(kind) || rule.reverse.contains(kind)),
            "no rule exercises {kind}"
        );
    }
}

pub(super) const MODES: [Compatibility; 7] = [
    Compatibility::None,
    Compatibility::Backward,
    Compatibility::BackwardTransitive,
    Compatibility::Forward,
    Compatibility::ForwardTransitive,
    Compatibility::Full,
    Compatibility::FullTransitive,
];
