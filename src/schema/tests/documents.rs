//! Parsing, refusal messages, pointers, and verdicts over a history of versions.

use serde_json::json;

use super::schema;
use crate::schema::{
    ChangeKind, Compatibility, Direction, Draft, Schema, SchemaError, check, diff,
};

fn refused(document: serde_json::Value) -> SchemaError {
    Schema::parse(document).expect_err("the document should be refused")
}

#[test]
fn draft_comes_from_dollar_schema_and_defaults_to_draft_07() {
    assert_eq!(schema(json!({"type": "string"})).draft(), Draft::Draft07);
    assert_eq!(schema(json!(true)).draft(), Draft::Draft07);
    for (uri, draft) in [
        ("http://json-schema.org/draft-04/schema#", Draft::Draft04),
        ("http://json-schema.org/draft-04/schema", Draft::Draft04),
        ("https://json-schema.org/draft-06/schema#", Draft::Draft06),
        ("http://json-schema.org/draft-07/schema#", Draft::Draft07),
        (
            "https://json-schema.org/draft/2019-09/schema",
            Draft::Draft201909,
        ),
        (
            "https://json-schema.org/draft/2020-12/schema#",
            Draft::Draft202012,
        ),
    ] {
        assert_eq!(schema(json!({"$schema": uri})).draft(), draft, "{uri}");
    }
    for draft in Draft::ALL {
        let document = json!({"$schema": draft.meta_schema_uri(), "type": "string"});
        assert_eq!(schema(document).draft(), draft);
    }
}

#[test]
fn each_draft_is_checked_against_its_own_meta_schema() {
    let draft_04 = "http://json-schema.org/draft-04/schema#";
    let draft_06 = "http://json-schema.org/draft-06/schema#";
    // Draft-04 has boolean exclusive bounds and no boolean schemas; draft-06 the reverse.
    let numeric_bound = json!({"$schema": draft_04, "type": "number", "exclusiveMinimum": 5});
    assert!(
        matches!(refused(numeric_bound), SchemaError::Invalid { location, .. } if location == "#/exclusiveMinimum")
    );
    let boolean_bound =
        json!({"$schema": draft_06, "type": "number", "minimum": 5, "exclusiveMinimum": true});
    assert!(
        matches!(refused(boolean_bound), SchemaError::Invalid { location, .. } if location == "#/exclusiveMinimum")
    );
    let boolean_schema = json!({"$schema": draft_04, "properties": {"a": true}});
    assert!(
        matches!(refused(boolean_schema), SchemaError::Invalid { location, .. } if location == "#/properties/a")
    );
    assert!(Schema::parse(json!({"$schema": draft_06, "properties": {"a": true}})).is_ok());
    assert!(
        Schema::parse(json!({"$schema": draft_04, "minimum": 5, "exclusiveMinimum": true})).is_ok()
    );
    // Without `$schema`, draft-07: `dependencies` must hold arrays or schemas.
    let bad_dependency = json!({"dependencies": {"a": "b"}});
    assert!(
        matches!(refused(bad_dependency), SchemaError::Invalid { location, .. } if location == "#/dependencies/a")
    );
}

#[test]
fn document_is_kept_as_given() {
    let document = json!({"type": "object", "title": "Order"});
    assert_eq!(schema(document.clone()).document(), &document);
}

#[test]
fn invalid_schema_is_refused_with_the_validators_message_and_location() {
    let error = refused(json!({"type": "object", "properties": {"age": {"minimum": "ten"}}}));
    let SchemaError::Invalid { message, location } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(location, "#/properties/age/minimum");
    assert!(message.contains("\"ten\""), "{message}");
    assert!(
        error
            .to_string()
            .starts_with("invalid JSON Schema at #/properties/age/minimum: ")
    );
}

#[test]
fn unknown_type_name_is_refused() {
    let error = refused(json!({"type": "strin"}));
    assert!(
        matches!(&error, SchemaError::Invalid { location, .. } if location == "#/type"),
        "{error:?}"
    );
}

#[test]
fn non_schema_json_is_refused() {
    for (document, found) in [
        (json!([1, 2]), "an array"),
        (json!("string"), "a string"),
        (json!(3), "a number"),
        (json!(null), "null"),
    ] {
        assert_eq!(refused(document), SchemaError::NotAnObject { found });
    }
}

#[test]
fn malformed_json_text_is_refused_with_its_position() {
    let error = Schema::from_json_str("{\"type\": \"string\",\n  \"maxLength\": }").unwrap_err();
    let SchemaError::Malformed { line, column, .. } = error else {
        panic!("expected Malformed, got {error:?}");
    };
    assert_eq!((line, column), (2, 16));
    assert!(Schema::from_json_str(r#"{"type": "string"}"#).is_ok());
}

#[test]
fn unsupported_dialects_are_refused() {
    let error = refused(json!({"$schema": "http://json-schema.org/draft-03/schema#"}));
    assert_eq!(
        error,
        SchemaError::UnsupportedDraft {
            uri: "http://json-schema.org/draft-03/schema#".into()
        }
    );
    let message = error.to_string();
    for draft in Draft::ALL {
        assert!(message.contains(draft.meta_schema_uri()), "{message}");
    }
}

#[test]
fn references_outside_the_document_are_refused() {
    let error = refused(json!({"properties": {"a": {"$ref": "https://example.com/other.json"}}}));
    let SchemaError::UnresolvableRef {
        reference,
        location,
        reason,
    } = error
    else {
        panic!("expected UnresolvableRef");
    };
    assert_eq!(reference, "https://example.com/other.json");
    assert_eq!(location, "#/properties/a");
    assert!(reason.contains("outside this document"), "{reason}");
}

#[test]
fn references_to_nothing_are_refused() {
    let error = refused(json!({"$ref": "#/$defs/missing"}));
    assert!(matches!(error, SchemaError::UnresolvableRef { ref location, .. } if location == "#"));
}

#[test]
fn references_made_only_of_references_are_refused() {
    let document = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
    assert!(matches!(refused(document), SchemaError::RefCycle { .. }));
    assert!(matches!(
        refused(json!({"$ref": "#"})),
        SchemaError::RefCycle { .. }
    ));
}

#[test]
fn references_resolve_by_anchor_id_and_escaped_pointer() {
    let old = schema(json!({
        "$id": "https://example.com/order.json",
        "$defs": {
            "a/b": {"$anchor": "money", "type": "number"},
            "customer": {"$id": "customer.json", "type": "string"}
        },
        "type": "object",
        "properties": {
            "total": {"$ref": "#money"},
            "tax": {"$ref": "#/$defs/a~1b"},
            "customer": {"$ref": "https://example.com/customer.json"},
            "fee": {"$ref": "order.json#/$defs/a~1b"}
        }
    }));
    assert!(diff(&old, &old).is_empty());
    let changed = json!({"$defs": {"a b": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/a%20b"}}});
    assert!(Schema::parse(changed).is_ok());
}

#[test]
fn draft_07_plain_name_ids_are_anchors() {
    let document = json!({
        "definitions": {"price": {"$id": "#price", "type": "number"}},
        "properties": {"price": {"$ref": "#price"}}
    });
    assert!(Schema::parse(document).is_ok());
}

#[test]
fn draft_04_ids_set_the_base_and_name_anchors() {
    let document = |price: serde_json::Value| {
        json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "https://example.com/order.json",
            "definitions": {
                "price": price,
                "customer": {"id": "customer.json", "type": "string"}
            },
            "type": "object",
            "properties": {
                "total": {"$ref": "#price"},
                "customer": {"$ref": "https://example.com/customer.json"}
            }
        })
    };
    let old = schema(document(json!({"id": "#price", "type": "number"})));
    let new = schema(document(json!({"id": "#price", "type": "integer"})));
    let differences = diff(&old, &new);
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].kind, ChangeKind::TypeNarrowed);
    assert_eq!(differences[0].pointer, "#/properties/total");
    // `$id` means nothing in draft-04: the reference finds no anchor.
    let dollar_id = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "definitions": {"price": {"$id": "#price", "type": "number"}},
        "properties": {"total": {"$ref": "#price"}}
    });
    assert!(matches!(
        refused(dollar_id),
        SchemaError::UnresolvableRef { .. }
    ));
}

#[test]
fn pointers_name_the_place_of_each_change() {
    let old = schema(json!({
        "$defs": {"status": {"type": "string", "enum": ["new", "paid"]}},
        "type": "object",
        "properties": {
            "a/b": {"type": "string"},
            "status": {"$ref": "#/$defs/status"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "choice": {"anyOf": [{"type": "string"}, {"type": "integer", "maximum": 5}]}
        },
        "required": ["a/b"]
    }));
    let new = schema(json!({
        "$defs": {"status": {"type": "string", "enum": ["new", "paid", "void"]}},
        "type": "object",
        "properties": {
            "a/b": {"type": "string", "maxLength": 5},
            "status": {"$ref": "#/$defs/status"},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "choice": {"anyOf": [{"type": "string"}, {"type": "integer", "maximum": 9}]}
        }
    }));
    let mut found: Vec<(ChangeKind, String)> = diff(&old, &new)
        .into_iter()
        .map(|d| (d.kind, d.pointer))
        .collect();
    found.sort();
    let mut expected = vec![
        (
            ChangeKind::RequiredAttributeRemoved,
            "#/required/a~1b".to_string(),
        ),
        (
            ChangeKind::MaxLengthAdded,
            "#/properties/a~1b/maxLength".to_string(),
        ),
        (
            ChangeKind::EnumArrayExtended,
            "#/properties/status/enum".to_string(),
        ),
        (
            ChangeKind::MinLengthAdded,
            "#/properties/tags/items/minLength".to_string(),
        ),
        (
            ChangeKind::MaximumIncreased,
            "#/properties/choice/anyOf/1/maximum".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn root_changes_are_at_the_root_pointer() {
    let differences = diff(
        &schema(json!({"type": "string"})),
        &schema(json!({"type": "integer"})),
    );
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].pointer, "#");
    assert!(!differences[0].compatible);
    assert_eq!(differences[0].to_string(), "TYPE_CHANGED at #");
}

#[test]
fn differences_serialize_with_stable_names() {
    let differences = diff(
        &schema(json!({"type": "integer"})),
        &schema(json!({"type": "number"})),
    );
    assert_eq!(
        serde_json::to_value(&differences).unwrap(),
        json!([{"kind": "TYPE_EXTENDED", "pointer": "#", "compatible": true}])
    );
    for kind in ChangeKind::ALL {
        let name = kind.as_str();
        assert!(
            name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{name}"
        );
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
    }
}

/// Three versions of one field's maximum length: 30, then 10, then the candidate.
fn lengths(lengths: [u64; 3]) -> (Vec<Schema>, Schema) {
    let version = |n: u64| schema(json!({"type": "string", "maxLength": n}));
    (
        vec![version(lengths[0]), version(lengths[1])],
        version(lengths[2]),
    )
}

#[test]
fn transitive_backward_checks_every_earlier_version() {
    // 20 reads what 10 allowed but not what 30 did.
    let (history, candidate) = lengths([30, 10, 20]);
    assert!(check(Compatibility::Backward, &history, &candidate).compatible);
    let report = check(Compatibility::BackwardTransitive, &history, &candidate);
    assert!(!report.compatible);
    let againsts: Vec<_> = report
        .checks
        .iter()
        .map(|c| (c.direction, c.against))
        .collect();
    assert_eq!(
        againsts,
        [(Direction::Backward, 1), (Direction::Backward, 0)]
    );
    let breaking: Vec<_> = report
        .breaking()
        .map(|(c, d)| (c.against, d.kind))
        .collect();
    assert_eq!(breaking, [(0, ChangeKind::MaxLengthDecreased)]);
}

#[test]
fn transitive_forward_checks_every_earlier_version() {
    // What 20 allows, 30 reads and 10 does not.
    let (history, candidate) = lengths([10, 30, 20]);
    assert!(check(Compatibility::Forward, &history, &candidate).compatible);
    assert!(!check(Compatibility::ForwardTransitive, &history, &candidate).compatible);
    assert!(!check(Compatibility::FullTransitive, &history, &candidate).compatible);
}

#[test]
fn full_checks_both_directions_against_the_latest() {
    let (history, candidate) = lengths([10, 30, 20]);
    let report = check(Compatibility::Full, &history, &candidate);
    let directions: Vec<_> = report
        .checks
        .iter()
        .map(|c| (c.direction, c.against))
        .collect();
    assert_eq!(
        directions,
        [(Direction::Backward, 1), (Direction::Forward, 1)]
    );
    assert!(!report.compatible);
    assert_eq!(report.breaking().count(), 1);
}

#[test]
fn empty_history_and_mode_none_compare_nothing() {
    let candidate = schema(json!({"type": "string"}));
    for mode in super::rules::MODES {
        let report = check(mode, &[], &candidate);
        assert!(report.compatible && report.checks.is_empty(), "{mode:?}");
    }
    let history = [schema(json!({"type": "integer"}))];
    let report = check(Compatibility::None, &history, &candidate);
    assert!(report.compatible && report.checks.is_empty());
}

#[test]
fn report_serializes_for_json_output() {
    let history = [schema(json!({"type": "integer"}))];
    let report = check(
        Compatibility::Backward,
        &history,
        &schema(json!({"type": "string"})),
    );
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "mode": "Backward",
            "compatible": false,
            "checks": [{
                "direction": "Backward",
                "against": 0,
                "differences": [{"kind": "TYPE_CHANGED", "pointer": "#", "compatible": false}]
            }]
        })
    );
}
