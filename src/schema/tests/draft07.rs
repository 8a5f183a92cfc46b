//! Draft-07 documents without `$schema`, as most schemas registered with Confluent Schema
//! Registry are written, judged as Confluent judges them: `dependencies` in both forms, tuple
//! `items` closed by `additionalItems: false`, and `definitions` reached through `$ref`, each
//! change found at the place Confluent reports it.

use serde_json::{Value, json};

use super::schema;
use crate::schema::{ChangeKind, ChangeKind::*, Compatibility, Draft, Schema, check, diff};

/// The differences from `old` to `new` as (kind, pointer), sorted.
fn found(old: &Schema, new: &Schema) -> Vec<(ChangeKind, String)> {
    let mut found: Vec<_> = diff(old, new)
        .into_iter()
        .map(|d| (d.kind, d.pointer))
        .collect();
    found.sort();
    found
}

fn at(kind: ChangeKind, pointer: &str) -> (ChangeKind, String) {
    (kind, pointer.to_string())
}

/// Backward (consumers on `new` read `old` data) and Forward verdicts against one version.
fn verdicts(old: &Schema, new: &Schema) -> (bool, bool) {
    let history = std::slice::from_ref(old);
    (
        check(Compatibility::Backward, history, new).compatible,
        check(Compatibility::Forward, history, new).compatible,
    )
}

/// A payment event: card details require a billing address, and a voucher requires a code.
fn payment(card: Value, voucher: Value) -> Schema {
    let document = json!({
        "type": "object",
        "properties": {
            "card": {"type": "string"},
            "billing": {"type": "string"},
            "zip": {"type": "string"},
            "voucher": {"type": "string"},
            "code": {"type": "string"}
        },
        "dependencies": {"card": card, "voucher": voucher}
    });
    let schema = schema(document);
    assert_eq!(schema.draft(), Draft::Draft07);
    schema
}

#[test]
fn dependency_arrays_extended_and_narrowed() {
    let old = payment(json!(["billing"]), json!(["code"]));
    let new = payment(json!(["billing", "zip"]), json!(["code"]));
    assert_eq!(
        found(&old, &new),
        [at(DependencyArrayExtended, "#/dependencies/card")]
    );
    assert_eq!(
        found(&new, &old),
        [at(DependencyArrayNarrowed, "#/dependencies/card")]
    );
    // Old data may hold a card without a zip: consumers on the new version refuse it.
    assert_eq!(verdicts(&old, &new), (false, true));
    assert_eq!(verdicts(&new, &old), (true, false));
}

#[test]
fn dependency_schemas_compared_inside() {
    let old = payment(json!({"required": ["billing"]}), json!(["code"]));
    let new = payment(json!({"required": ["billing", "zip"]}), json!(["code"]));
    assert_eq!(
        found(&old, &new),
        [at(
            RequiredAttributeAdded,
            "#/dependencies/card/required/zip"
        )]
    );
    assert_eq!(verdicts(&old, &new), (false, true));

    let without = payment(json!(["billing"]), json!(["code"]));
    let with_schema = schema(json!({
        "type": "object",
        "properties": {"card": {"type": "string"}},
        "dependencies": {"card": ["billing"], "voucher": {"properties": {"code": {"maxLength": 8}}}}
    }));
    let kinds: Vec<_> = found(&without, &with_schema)
        .into_iter()
        .filter(|(_, pointer)| pointer.starts_with("#/dependencies"))
        .collect();
    assert_eq!(
        kinds,
        [
            at(DependencyArrayRemoved, "#/dependencies/voucher"),
            at(DependencySchemaAdded, "#/dependencies/voucher"),
        ]
    );
}

/// A coordinate as a tuple of two numbers, optionally a third, nothing after.
fn point(items: Value) -> Schema {
    schema(json!({
        "type": "object",
        "properties": {"at": {"type": "array", "items": items, "additionalItems": false}}
    }))
}

#[test]
fn closed_tuples_gaining_and_losing_an_item() {
    let two = point(json!([{"type": "number"}, {"type": "number"}]));
    let three = point(json!([{"type": "number"}, {"type": "number"}, {"type": "number"}]));
    assert_eq!(
        found(&two, &three),
        [at(ItemAddedToClosedContentModel, "#/properties/at/items/2")]
    );
    assert_eq!(
        found(&three, &two),
        [at(
            ItemRemovedFromClosedContentModel,
            "#/properties/at/items/2"
        )]
    );
    // Old data has no third item, so the new version reads it; the old version refuses the
    // third item new data may carry.
    assert_eq!(verdicts(&two, &three), (true, false));
    assert_eq!(verdicts(&three, &two), (false, true));
}

#[test]
fn tuple_items_compared_by_position() {
    let old = point(json!([{"type": "integer"}, {"type": "string"}]));
    let new = point(json!([{"type": "number"}, {"type": "string", "maxLength": 2}]));
    assert_eq!(
        found(&old, &new),
        [
            at(TypeExtended, "#/properties/at/items/0"),
            at(MaxLengthAdded, "#/properties/at/items/1/maxLength"),
        ]
    );
    let opened = schema(json!({
        "type": "object",
        "properties": {"at": {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}}
    }));
    assert_eq!(
        found(&old, &opened),
        [at(AdditionalItemsAdded, "#/properties/at/additionalItems")]
    );
    assert_eq!(verdicts(&old, &opened), (true, false));
}

/// An order whose two addresses share one definition.
fn order(address: Value) -> Schema {
    schema(json!({
        "definitions": {"address": address},
        "type": "object",
        "properties": {
            "billing": {"$ref": "#/definitions/address"},
            "shipping": {"$ref": "#/definitions/address"}
        },
        "required": ["billing"]
    }))
}

#[test]
fn definitions_changes_are_found_where_they_are_used() {
    let old = order(json!({"type": "object", "properties": {"city": {"type": "string"}}}));
    let new = order(json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}, "zip": {"type": "string"}},
        "additionalProperties": false
    }));
    let mut expected = Vec::new();
    for place in ["billing", "shipping"] {
        expected.extend([
            at(
                MaxLengthAdded,
                &format!("#/properties/{place}/properties/city/maxLength"),
            ),
            at(
                OptionalPropertyAddedToOpenContentModel,
                &format!("#/properties/{place}/properties/zip"),
            ),
            at(
                AdditionalPropertiesRemoved,
                &format!("#/properties/{place}/additionalProperties"),
            ),
        ]);
    }
    expected.sort();
    assert_eq!(found(&old, &new), expected);
    assert_eq!(verdicts(&old, &new), (false, true));
}

#[test]
fn draft_07_keywords_count_without_dollar_schema_and_not_in_2020_12() {
    // The same change, once read as draft-07 and once as 2020-12, where `dependencies` and
    // tuple `items` are not keywords (2020-12 reads an array `items` as invalid).
    let dependencies = |names: Value| json!({"type": "object", "dependencies": {"a": names}});
    let draft_07 = (
        schema(dependencies(json!(["b"]))),
        schema(dependencies(json!(["b", "c"]))),
    );
    assert_eq!(
        found(&draft_07.0, &draft_07.1),
        [at(DependencyArrayExtended, "#/dependencies/a")]
    );
    let in_2020 = |names: Value| {
        let mut document = dependencies(names);
        document["$schema"] = json!(Draft::Draft202012.meta_schema_uri());
        schema(document)
    };
    assert!(found(&in_2020(json!(["b"])), &in_2020(json!(["b", "c"]))).is_empty());
    let tuple = json!({"$schema": Draft::Draft202012.meta_schema_uri(), "items": [{}]});
    assert!(Schema::parse(tuple).is_err());
}
