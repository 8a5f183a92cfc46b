//! Every rule as one row: old and new schema, the kinds expected from old to new and from new
//! to old, and whether the change is backward and forward compatible. One test checks the
//! kinds and directions, another derives each mode's verdict from the same rows.

use serde_json::{Value, json};

use super::{kinds, schema};
use crate::schema::{ChangeKind, ChangeKind::*, Compatibility, check, diff};

struct Rule {
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
    ($name:literal: $old:tt => $new:tt, [$($kind:ident),*], [$($reverse:ident),*], $backward:literal, $forward:literal) => {
        Rule {
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

const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";

#[rustfmt::skip]
fn rules() -> Vec<Rule> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let object_a = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    vec![
        // Annotations and types.
        rule!("identical schemas": {"type": "string", "maxLength": 3} => {"type": "string", "maxLength": 3}, [], [], true, true),
        rule!("title changed": {"type": "string", "title": "a"} => {"type": "string", "title": "b"}, [TitleChanged], [TitleChanged], true, true),
        rule!("description changed": {"type": "string", "description": "a"} => {"type": "string"}, [DescriptionChanged], [DescriptionChanged], true, true),
        rule!("$id changed": {"$id": "https://example.com/a.json", "type": "string"} => {"$id": "https://example.com/b.json", "type": "string"}, [IdChanged], [IdChanged], true, true),
        rule!("default changed": {"type": "string", "default": "a"} => {"type": "string", "default": "b"}, [DefaultChanged], [DefaultChanged], true, true),
        rule!("type changed": string => integer, [TypeChanged], [TypeChanged], false, false),
        rule!("integer extended to number": {"type": "integer"} => {"type": "number"}, [TypeExtended], [TypeNarrowed], true, false),
        rule!("any schema relaxed to an empty one": {"type": "string", "minLength": 1} => {}, [], [TypeChanged], true, false),
        rule!("false opened to a type": false => {"type": "string"}, [], [TypeChanged], true, false),
        rule!("items schema added": {"type": "array"} => {"type": "array", "items": {"type": "string"}}, [SchemaAdded], [SchemaRemoved], false, true),

        // Strings.
        rule!("maxLength added": {"type": "string"} => {"type": "string", "maxLength": 5}, [MaxLengthAdded], [MaxLengthRemoved], false, true),
        rule!("maxLength increased": {"type": "string", "maxLength": 5} => {"type": "string", "maxLength": 10}, [MaxLengthIncreased], [MaxLengthDecreased], true, false),
        rule!("minLength added": {"type": "string"} => {"type": "string", "minLength": 1}, [MinLengthAdded], [MinLengthRemoved], false, true),
        rule!("minLength increased": {"type": "string", "minLength": 1} => {"type": "string", "minLength": 3}, [MinLengthIncreased], [MinLengthDecreased], false, true),
        rule!("pattern added": {"type": "string"} => {"type": "string", "pattern": "^a"}, [PatternAdded], [PatternRemoved], false, true),
        rule!("pattern changed": {"type": "string", "pattern": "^a"} => {"type": "string", "pattern": "^b"}, [PatternChanged], [PatternChanged], false, false),

        // Numbers.
        rule!("maximum added": {"type": "number"} => {"type": "number", "maximum": 10}, [MaximumAdded], [MaximumRemoved], false, true),
        rule!("maximum increased": {"type": "number", "maximum": 10} => {"type": "number", "maximum": 20}, [MaximumIncreased], [MaximumDecreased], true, false),
        rule!("minimum added": {"type": "number"} => {"type": "number", "minimum": 0}, [MinimumAdded], [MinimumRemoved], false, true),
        rule!("minimum increased": {"type": "number", "minimum": 0} => {"type": "number", "minimum": 5}, [MinimumIncreased], [MinimumDecreased], false, true),
        rule!("exclusiveMaximum added": {"type": "number"} => {"type": "number", "exclusiveMaximum": 10}, [ExclusiveMaximumAdded], [ExclusiveMaximumRemoved], false, true),
        rule!("exclusiveMaximum increased": {"type": "number", "exclusiveMaximum": 10} => {"type": "number", "exclusiveMaximum": 11.5}, [ExclusiveMaximumIncreased], [ExclusiveMaximumDecreased], true, false),
        rule!("exclusiveMinimum added": {"type": "number"} => {"type": "number", "exclusiveMinimum": 0}, [ExclusiveMinimumAdded], [ExclusiveMinimumRemoved], false, true),
        rule!("exclusiveMinimum increased": {"type": "number", "exclusiveMinimum": 0} => {"type": "number", "exclusiveMinimum": 1}, [ExclusiveMinimumIncreased], [ExclusiveMinimumDecreased], false, true),
        rule!("multipleOf added": {"type": "integer"} => {"type": "integer", "multipleOf": 2}, [MultipleOfAdded], [MultipleOfRemoved], false, true),
        rule!("multipleOf expanded": {"type": "integer", "multipleOf": 2} => {"type": "integer", "multipleOf": 4}, [MultipleOfExpanded], [MultipleOfReduced], false, true),
        rule!("multipleOf reduced below one": {"type": "number", "multipleOf": 0.5} => {"type": "number", "multipleOf": 0.25}, [MultipleOfReduced], [MultipleOfExpanded], true, false),
        rule!("multipleOf changed": {"type": "integer", "multipleOf": 2} => {"type": "integer", "multipleOf": 3}, [MultipleOfChanged], [MultipleOfChanged], false, false),
        rule!("multipleOf respelled": {"type": "number", "multipleOf": 2} => {"type": "number", "multipleOf": 2.0}, [], [], true, true),

        // Enums and constants.
        rule!("enum extended": {"enum": ["a"]} => {"enum": ["a", "b"]}, [EnumArrayExtended], [EnumArrayNarrowed], true, false),
        rule!("enum changed": {"enum": ["a", "b"]} => {"enum": ["a", "c"]}, [EnumArrayChanged], [EnumArrayChanged], false, false),
        rule!("typed enum extended": {"type": "string", "enum": ["a"]} => {"type": "string", "enum": ["b", "a"]}, [EnumArrayExtended], [EnumArrayNarrowed, CombinedTypeSubschemasChanged], true, false),
        rule!("enum values equal as numbers": {"enum": [1, "x"]} => {"enum": ["x", 1.0]}, [], [], true, true),
        rule!("const changed": {"const": "a"} => {"const": "b"}, [EnumArrayChanged], [EnumArrayChanged], false, false),
        rule!("enum added to a string": {"type": "string"} => {"type": "string", "enum": ["a"]}, [TypeChanged], [ProductTypeNarrowed], false, true),

        // Required properties.
        rule!("required added": object_a => {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, [RequiredAttributeAdded], [RequiredAttributeRemoved], false, true),
        rule!("required with default added": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}} => {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "required": ["a"]}, [RequiredAttributeWithDefaultAdded], [RequiredAttributeRemoved], true, true),
        rule!("undeclared name required": {"type": "object"} => {"type": "object", "required": ["a"]}, [RequiredAttributeAdded], [RequiredAttributeRemoved], false, true),

        // Open content model: new names may already be in old data with any value.
        rule!("optional property added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}, [OptionalPropertyAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!("required property added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"]}, [RequiredPropertyAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!("required property with default added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"]}, [RequiredPropertyWithDefaultAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], false, true),
        rule!("property accepting anything added to open model": object_a => {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}, [PropertyWithEmptySchemaAddedToOpenContentModel], [PropertyRemovedFromOpenContentModel], true, true),

        // Closed content model.
        rule!("optional property added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}, [OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),
        rule!("required property added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}, [RequiredPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], false, false),
        rule!("required property with default added to closed model": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"], "additionalProperties": false}, [RequiredPropertyWithDefaultAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),
        rule!("property declared false removed from closed model": {"type": "object", "properties": {"a": {"type": "string"}, "b": false}, "additionalProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}, [PropertyWithFalseRemovedFromClosedContentModel], [OptionalPropertyAddedToUnopenContentModel], true, true),
        rule!("property added to model closed by unevaluatedProperties": {"type": "object", "properties": {"a": {"type": "string"}}, "unevaluatedProperties": false} => {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "unevaluatedProperties": false}, [OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedFromClosedContentModel], true, false),

        // Partially open content model: additionalProperties or patternProperties with a schema.
        rule!("property added covered by additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}}, [PropertyAddedIsCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!("property added not covered by additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "properties": {"b": {"type": "integer"}}, "additionalProperties": {"type": "string"}}, [TypeChanged, PropertyAddedNotCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [TypeChanged, PropertyRemovedNotCoveredByPartiallyOpenContentModel], false, false),
        rule!("property added covered by patternProperties": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}} => {"type": "object", "properties": {"x-a": {"type": "string"}}, "patternProperties": {"^x-": {"type": "string"}}}, [PropertyAddedIsCoveredByPartiallyOpenContentModel, OptionalPropertyAddedToUnopenContentModel], [PropertyRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!("patternProperties schema narrowed": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}} => {"type": "object", "patternProperties": {"^x-": {"type": "string", "maxLength": 3}}}, [MaxLengthAdded], [MaxLengthRemoved], false, true),

        // Additional and unevaluated properties.
        rule!("additionalProperties false lifted": {"type": "object", "additionalProperties": false} => {"type": "object"}, [AdditionalPropertiesAdded], [AdditionalPropertiesRemoved], true, false),
        rule!("additionalProperties given a schema": {"type": "object"} => {"type": "object", "additionalProperties": {"type": "string"}}, [AdditionalPropertiesNarrowed], [AdditionalPropertiesExtended], false, true),
        rule!("additionalProperties schema changed": {"type": "object", "additionalProperties": {"type": "string"}} => {"type": "object", "additionalProperties": {"type": "integer"}}, [TypeChanged], [TypeChanged], false, false),
        rule!("unevaluatedProperties forbidden": {"type": "object"} => {"type": "object", "unevaluatedProperties": false}, [UnevaluatedPropertiesRemoved], [UnevaluatedPropertiesAdded], false, true),
        rule!("unevaluatedProperties given a schema": {"type": "object"} => {"type": "object", "unevaluatedProperties": {"type": "string"}}, [UnevaluatedPropertiesNarrowed], [UnevaluatedPropertiesExtended], false, true),

        // Dependencies.
        rule!("dependentRequired added": {"type": "object"} => {"type": "object", "dependentRequired": {"a": ["b"]}}, [DependencyArrayAdded], [DependencyArrayRemoved], false, true),
        rule!("dependentRequired extended": {"type": "object", "dependentRequired": {"a": ["b"]}} => {"type": "object", "dependentRequired": {"a": ["b", "c"]}}, [DependencyArrayExtended], [DependencyArrayNarrowed], false, true),
        rule!("dependentRequired changed": {"type": "object", "dependentRequired": {"a": ["b"]}} => {"type": "object", "dependentRequired": {"a": ["c"]}}, [DependencyArrayChanged], [DependencyArrayChanged], false, false),
        rule!("dependentSchemas added": {"type": "object"} => {"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}, [DependencySchemaAdded], [DependencySchemaRemoved], false, true),
        rule!("dependentSchemas changed": {"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}} => {"type": "object", "dependentSchemas": {"a": {"required": ["c"]}}}, [RequiredAttributeAdded, RequiredAttributeRemoved], [RequiredAttributeAdded, RequiredAttributeRemoved], false, false),
        rule!("draft-07 dependencies extended": {"$schema": DRAFT_07, "type": "object", "dependencies": {"a": ["b"]}} => {"$schema": DRAFT_07, "type": "object", "dependencies": {"a": ["b", "c"]}}, [DependencyArrayExtended], [DependencyArrayNarrowed], false, true),

        // Property counts.
        rule!("maxProperties added": {"type": "object"} => {"type": "object", "maxProperties": 5}, [MaxPropertiesAdded], [MaxPropertiesRemoved], false, true),
        rule!("maxProperties increased": {"type": "object", "maxProperties": 5} => {"type": "object", "maxProperties": 6}, [MaxPropertiesIncreased], [MaxPropertiesDecreased], true, false),
        rule!("minProperties added": {"type": "object"} => {"type": "object", "minProperties": 1}, [MinPropertiesAdded], [MinPropertiesRemoved], false, true),
        rule!("minProperties increased": {"type": "object", "minProperties": 1} => {"type": "object", "minProperties": 2}, [MinPropertiesIncreased], [MinPropertiesDecreased], false, true),

        // Arrays.
        rule!("items type changed": {"type": "array", "items": string} => {"type": "array", "items": integer}, [TypeChanged], [TypeChanged], false, false),
        rule!("items extended to number": {"type": "array", "items": integer} => {"type": "array", "items": {"type": "number"}}, [TypeExtended], [TypeNarrowed], true, false),
        rule!("maxItems added": {"type": "array"} => {"type": "array", "maxItems": 3}, [MaxItemsAdded], [MaxItemsRemoved], false, true),
        rule!("maxItems increased": {"type": "array", "maxItems": 3} => {"type": "array", "maxItems": 4}, [MaxItemsIncreased], [MaxItemsDecreased], true, false),
        rule!("minItems added": {"type": "array"} => {"type": "array", "minItems": 1}, [MinItemsAdded], [MinItemsRemoved], false, true),
        rule!("minItems increased": {"type": "array", "minItems": 1} => {"type": "array", "minItems": 2}, [MinItemsIncreased], [MinItemsDecreased], false, true),
        rule!("uniqueItems added": {"type": "array"} => {"type": "array", "uniqueItems": true}, [UniqueItemsAdded], [UniqueItemsRemoved], false, true),
        rule!("maxContains added": {"type": "array", "contains": string} => {"type": "array", "contains": string, "maxContains": 3}, [MaxContainsAdded], [MaxContainsRemoved], false, true),
        rule!("maxContains increased": {"type": "array", "contains": string, "maxContains": 2} => {"type": "array", "contains": string, "maxContains": 3}, [MaxContainsIncreased], [MaxContainsDecreased], true, false),
        rule!("minContains added": {"type": "array", "contains": string} => {"type": "array", "contains": string, "minContains": 2}, [MinContainsAdded], [MinContainsRemoved], false, true),
        rule!("minContains increased": {"type": "array", "contains": string, "minContains": 2} => {"type": "array", "contains": string, "minContains": 3}, [MinContainsIncreased], [MinContainsDecreased], false, true),

        // Tuples and their content models.
        rule!("item added to open tuple": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string, integer]}, [ItemAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], false, true),
        rule!("item accepting anything added to open tuple": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string, {}]}, [ItemWithEmptySchemaAddedToOpenContentModel], [ItemRemovedFromOpenContentModel], true, true),
        rule!("item added to closed tuple": {"type": "array", "prefixItems": [string], "items": false} => {"type": "array", "prefixItems": [string, integer], "items": false}, [ItemAddedToClosedContentModel], [ItemRemovedFromClosedContentModel], true, false),
        rule!("item declared false removed from closed tuple": {"type": "array", "prefixItems": [string, false], "items": false} => {"type": "array", "prefixItems": [string], "items": false}, [ItemWithFalseRemovedFromClosedContentModel], [ItemAddedToClosedContentModel], true, true),
        rule!("item added covered by the rest's schema": {"type": "array", "prefixItems": [string], "items": integer} => {"type": "array", "prefixItems": [string, integer], "items": integer}, [ItemAddedIsCoveredByPartiallyOpenContentModel], [ItemRemovedIsCoveredByPartiallyOpenContentModel], true, true),
        rule!("item added not covered by the rest's schema": {"type": "array", "prefixItems": [string], "items": integer} => {"type": "array", "prefixItems": [string, string], "items": integer}, [TypeChanged, ItemAddedNotCoveredByPartiallyOpenContentModel], [TypeChanged, ItemRemovedNotCoveredByPartiallyOpenContentModel], false, false),
        rule!("items after the tuple allowed": {"type": "array", "prefixItems": [string], "items": false} => {"type": "array", "prefixItems": [string]}, [AdditionalItemsAdded], [AdditionalItemsRemoved], true, false),
        rule!("items after the tuple given a schema": {"type": "array", "prefixItems": [string]} => {"type": "array", "prefixItems": [string], "items": string}, [AdditionalItemsNarrowed], [AdditionalItemsExtended], false, true),
        rule!("draft-07 item added to closed tuple": {"$schema": DRAFT_07, "type": "array", "items": [string], "additionalItems": false} => {"$schema": DRAFT_07, "type": "array", "items": [string, integer], "additionalItems": false}, [ItemAddedToClosedContentModel], [ItemRemovedFromClosedContentModel], true, false),
        rule!("unevaluatedItems forbidden": {"type": "array"} => {"type": "array", "unevaluatedItems": false}, [UnevaluatedItemsRemoved], [UnevaluatedItemsAdded], false, true),
        rule!("unevaluatedItems given a schema": {"type": "array"} => {"type": "array", "unevaluatedItems": string}, [UnevaluatedItemsNarrowed], [UnevaluatedItemsExtended], false, true),

        // Combined schemas.
        rule!("sum type grows": {"anyOf": [string, integer]} => {"anyOf": [string, integer, {"type": "boolean"}]}, [SumTypeExtended], [SumTypeNarrowed], true, false),
        rule!("oneOf grows": {"oneOf": [string, integer]} => {"oneOf": [string, integer, {"type": "boolean"}]}, [SumTypeExtended], [SumTypeNarrowed], true, false),
        rule!("product type grows": {"allOf": [{"minLength": 1}, {"maxLength": 9}]} => {"allOf": [{"minLength": 1}, {"maxLength": 9}, {"pattern": "^a"}]}, [ProductTypeExtended], [ProductTypeNarrowed], false, true),
        rule!("oneOf relaxed to anyOf": {"oneOf": [string, integer]} => {"anyOf": [string, integer]}, [CombinedTypeExtended], [CombinedTypeChanged], true, false),
        rule!("anyOf changed to allOf": {"anyOf": [{"minLength": 1}, {"maxLength": 9}]} => {"allOf": [{"minLength": 1}, {"maxLength": 9}]}, [CombinedTypeChanged], [CombinedTypeExtended], false, true),
        rule!("sum member replaced": {"anyOf": [string, integer]} => {"anyOf": [string, {"type": "boolean"}]}, [CombinedTypeSubschemasChanged], [CombinedTypeSubschemasChanged], false, false),
        rule!("type made nullable": {"type": "string"} => {"type": ["string", "null"]}, [SumTypeExtended], [TypeChanged], true, false),
        rule!("schema made one member of anyOf": string => {"anyOf": [string, integer]}, [SumTypeExtended], [TypeChanged], true, false),
        rule!("allOf reduced to one of its members": {"allOf": [string, {"minLength": 2}]} => {"type": "string"}, [ProductTypeNarrowed], [TypeChanged], true, false),
        rule!("single-member combinators swapped": {"anyOf": [string]} => {"oneOf": [string]}, [CombinedTypeExtended], [CombinedTypeExtended], true, true),
        rule!("duplicate members collapse": {"anyOf": [string, string]} => {"anyOf": [string]}, [], [], true, true),
        rule!("negated schema narrowed": {"not": string} => {"not": {"type": "string", "maxLength": 3}}, [NotTypeNarrowed], [NotTypeExtended], true, false),
        rule!("conditional changed": {"if": {"required": ["a"]}, "then": {"required": ["b"]}} => {"if": {"required": ["a"]}, "then": {"required": ["c"]}}, [ConditionalChanged], [ConditionalChanged], false, false),

        // References.
        rule!("change behind a $ref": {"$defs": {"a": string}, "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}} => {"$defs": {"a": integer}, "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}, [TypeChanged], [TypeChanged], false, false),
        // Reported where it is written and once more where the recursion first re-enters it.
        rule!("change in a recursive schema": {"type": "object", "properties": {"name": string, "children": {"type": "array", "items": {"$ref": "#"}}}} => {"type": "object", "properties": {"name": {"type": "string", "maxLength": 9}, "children": {"type": "array", "items": {"$ref": "#"}}}}, [MaxLengthAdded, MaxLengthAdded], [MaxLengthRemoved], false, true),
        rule!("identical recursive schemas": {"type": "object", "properties": {"next": {"$ref": "#"}}} => {"type": "object", "properties": {"next": {"$ref": "#"}}}, [], [], true, true),
    ]
}

#[test]
fn every_rule_reports_its_kinds_in_both_directions() {
    for rule in rules() {
        let (old, new) = (schema(rule.old.clone()), schema(rule.new.clone()));
        let mut expected = rule.kinds.to_vec();
        expected.sort_unstable();
        let mut reverse = rule.reverse.to_vec();
        reverse.sort_unstable();
        assert_eq!(kinds(&old, &new), expected, "{}: old → new", rule.name);
        assert_eq!(kinds(&new, &old), reverse, "{}: new → old", rule.name);
        let compatible = |diffs: Vec<crate::schema::Difference>| diffs.iter().all(|d| d.compatible);
        assert_eq!(
            compatible(diff(&old, &new)),
            rule.backward,
            "{}: backward",
            rule.name
        );
        assert_eq!(
            compatible(diff(&new, &old)),
            rule.forward,
            "{}: forward",
            rule.name
        );
    }
}

#[test]
fn every_rule_gives_each_mode_its_verdict() {
    for rule in rules() {
        let (old, new) = (schema(rule.old.clone()), schema(rule.new.clone()));
        for mode in MODES {
            let expected = match mode {
                Compatibility::None => true,
                Compatibility::Backward | Compatibility::BackwardTransitive => rule.backward,
                Compatibility::Forward | Compatibility::ForwardTransitive => rule.forward,
                Compatibility::Full | Compatibility::FullTransitive => {
                    rule.backward && rule.forward
                }
            };
            let report = check(mode, std::slice::from_ref(&old), &new);
            assert_eq!(report.compatible, expected, "{} under {mode:?}", rule.name);
            assert_eq!(
                report.breaking().next().is_none(),
                expected,
                "{} under {mode:?}",
                rule.name
            );
        }
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
