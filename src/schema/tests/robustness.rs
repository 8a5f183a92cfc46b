//! Inputs that must end in an error or a verdict, never a crash: deep documents, huge ones,
//! long and tangled chains of references.

use serde_json::{Map, Value, json};

use super::schema;
use crate::schema::{ChangeKind, Compatibility, MAX_DEPTH, Schema, SchemaError, check, diff};

/// `levels` nested `{"properties": {"a": ...}}`, built without recursion (`json!` would
/// serialize the interpolated value again at every level).
fn nested_properties(levels: usize, leaf: Value) -> Value {
    let mut value = leaf;
    for _ in 0..levels {
        let properties = Map::from_iter([("a".to_string(), value)]);
        value = Value::Object(Map::from_iter([
            ("type".to_string(), json!("object")),
            ("properties".to_string(), Value::Object(properties)),
        ]));
    }
    value
}

#[test]
fn ten_thousand_levels_of_json_are_refused_not_overflowed() {
    let mut value = Value::Null;
    for _ in 0..10_000 {
        value = Value::Array(vec![value]);
    }
    let mut document = Map::new();
    document.insert("default".into(), value);
    let error = Schema::parse(Value::Object(document)).unwrap_err();
    assert_eq!(error, SchemaError::TooDeep { limit: MAX_DEPTH });
    assert!(error.to_string().contains("128"));
}

#[test]
fn ten_thousand_levels_of_schemas_are_refused() {
    let document = nested_properties(10_000, json!({"type": "string"}));
    assert_eq!(
        Schema::parse(document).map(|_| ()),
        Err(SchemaError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn ten_thousand_levels_of_text_are_refused() {
    let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        Schema::from_json_str(&text).map(|_| ()),
        Err(SchemaError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn the_deepest_accepted_document_parses_and_compares() {
    // Each level of properties nests two JSON containers.
    let levels = MAX_DEPTH / 2 - 1;
    let old = schema(nested_properties(levels, json!({"type": "string"})));
    let new = schema(nested_properties(
        levels,
        json!({"type": "string", "maxLength": 3}),
    ));
    let differences = diff(&old, &new);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].kind, ChangeKind::MaxLengthAdded);
    assert_eq!(
        differences[0].pointer,
        format!("#{}/maxLength", "/properties/a".repeat(levels))
    );
    assert!(Schema::parse(nested_properties(levels + 1, json!({}))).is_err());
}

/// An object with `count` properties of assorted types, some required.
fn wide(count: usize, tweak: impl Fn(usize) -> Option<Value>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for i in 0..count {
        let schema = tweak(i).unwrap_or_else(|| match i % 4 {
            0 => json!({"type": "string", "maxLength": 64}),
            1 => json!({"type": "integer", "minimum": 0}),
            2 => json!({"type": "array", "items": {"type": "string"}}),
            _ => json!({"type": "object", "properties": {"x": {"type": "boolean"}}}),
        });
        properties.insert(format!("field{i}"), schema);
        if i % 3 == 0 {
            required.push(json!(format!("field{i}")));
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

#[test]
fn five_thousand_properties_compare_in_linear_passes() {
    let old = schema(wide(5_000, |_| None));
    let new = schema(wide(5_000, |i| {
        (i % 500 == 1).then(|| json!({"type": "number", "minimum": 0}))
    }));
    let differences = diff(&old, &new);
    assert_eq!(differences.len(), 10);
    assert!(
        differences
            .iter()
            .all(|d| d.kind == ChangeKind::TypeExtended)
    );
    assert!(check(Compatibility::Backward, std::slice::from_ref(&old), &new).compatible);
    assert!(!check(Compatibility::Full, &[old], &new).compatible);
}

/// `count` definitions, each holding the next one in a property.
fn chain(count: usize, last: Value) -> Value {
    let mut defs = Map::new();
    for i in 0..count {
        let next = if i + 1 == count {
            last.clone()
        } else {
            json!({"$ref": format!("#/$defs/d{}", i + 1)})
        };
        defs.insert(
            format!("d{i}"),
            json!({"type": "object", "properties": {"next": next}}),
        );
    }
    json!({"$defs": defs, "$ref": "#/$defs/d0"})
}

#[test]
fn a_long_chain_of_references_compares_without_overflowing() {
    let old = schema(chain(5_000, json!({"type": "string"})));
    let new = schema(chain(5_000, json!({"type": "integer"})));
    let differences = diff(&old, &new);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].kind, ChangeKind::TypeChanged);
    assert_eq!(
        differences[0].pointer.matches("/properties/next").count(),
        5_000
    );
}

#[test]
fn a_long_chain_of_bare_references_resolves() {
    let mut defs = Map::new();
    for i in 0..5_000 {
        defs.insert(
            format!("d{i}"),
            json!({"$ref": format!("#/$defs/d{}", i + 1)}),
        );
    }
    defs.insert("d5000".into(), json!({"type": "string"}));
    let old = schema(json!({"$defs": defs, "$ref": "#/$defs/d0"}));
    assert!(diff(&old, &old).is_empty());
    assert_eq!(
        diff(&old, &schema(json!({"type": "integer"})))[0].kind,
        ChangeKind::TypeChanged
    );
}

#[test]
fn definitions_referring_to_one_another_stay_tractable() {
    // Every definition is a sum of references to all of them: comparing naively would
    // branch without end; memoized, each pair of definitions is compared once.
    let count = 12;
    let defs: Map<String, Value> = (0..count)
        .map(|i| {
            let members: Vec<Value> = (0..count)
                .map(|j| json!({"type": "object", "properties": {format!("p{i}"): {"$ref": format!("#/$defs/d{j}")}}}))
                .collect();
            (format!("d{i}"), json!({"anyOf": members}))
        })
        .collect();
    let document = json!({"$defs": defs, "$ref": "#/$defs/d0"});
    let old = schema(document.clone());
    let mut changed = document;
    changed["$defs"]["d3"]["anyOf"][0]["properties"]["p3"] = json!({"type": "string"});
    let new = schema(changed);
    assert!(diff(&old, &old).is_empty());
    assert!(!check(Compatibility::Full, &[old], &new).compatible);
}

#[test]
fn mutual_recursion_through_combinations_terminates() {
    let document = json!({
        "$defs": {
            "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"type": "string"}]},
            "b": {"oneOf": [{"$ref": "#/$defs/a"}, {"type": "integer"}]}
        },
        "allOf": [{"$ref": "#/$defs/a"}, {"not": {"$ref": "#/$defs/b"}}]
    });
    let old = schema(document.clone());
    let mut changed = document;
    changed["$defs"]["b"]["oneOf"][1] = json!({"type": "boolean"});
    let new = schema(changed);
    assert!(diff(&old, &old).is_empty());
    for mode in super::rules::MODES {
        let report = check(mode, std::slice::from_ref(&old), &new);
        assert_eq!(report.mode, mode);
    }
}

#[test]
fn unmatchable_patterns_are_refused_not_panicked() {
    let error = Schema::parse(json!({"patternProperties": {"(": {}}})).unwrap_err();
    assert!(
        matches!(&error, SchemaError::Invalid { location, .. } if location == "#/patternProperties"),
        "{error:?}"
    );
}
