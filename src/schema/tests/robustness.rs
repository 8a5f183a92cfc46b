//! Inputs that must end in an error or a verdict, never a crash: deep documents, huge ones,
//! long and tangled chains of references.

use serde_json::{Map, Value, json};

use super::schema;
use crate::schema::{
    ChangeKind, Compatibility, Draft, MAX_DEPTH, Schema, SchemaError, check, diff,
};

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

/// Runs `test` on a thread with the stack test threads get by default (2 MiB), whatever
/// RUST_MIN_STACK says, so that passing proves the depth fits there.
fn on_a_default_test_stack(test: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(test)
        .expect("a thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Levels of `properties` in the deepest accepted test document: each level nests two JSON
/// containers, and the leaf two more.
const LEVELS_AT_LIMIT: usize = (MAX_DEPTH - 2) / 2;

/// The leaves: an array of strings (two levels), the same with `maxLength`, and one level
/// deeper.
fn leaf(variant: &str) -> Value {
    match variant {
        "old" => json!({"type": "array", "items": {"type": "string"}}),
        "new" => json!({"type": "array", "items": {"type": "string", "maxLength": 3}}),
        _ => json!({"type": "array", "items": {"type": "array", "items": {}}}),
    }
}

/// [`nested_properties`] as JSON text, written without serializing a deep value.
fn nested_text(levels: usize, leaf: &Value) -> String {
    let mut text = String::new();
    for _ in 0..levels {
        text.push_str(r#"{"type": "object", "properties": {"a": "#);
    }
    text.push_str(&leaf.to_string());
    for _ in 0..levels {
        text.push_str("}}");
    }
    text
}

#[test]
fn documents_at_the_depth_limit_parse_and_compare_on_a_default_stack() {
    on_a_default_test_stack(|| {
        assert_eq!(2 * LEVELS_AT_LIMIT + 2, MAX_DEPTH);
        let expected_pointer = format!(
            "#{}/items/maxLength",
            "/properties/a".repeat(LEVELS_AT_LIMIT)
        );
        let from_values = (
            schema(nested_properties(LEVELS_AT_LIMIT, leaf("old"))),
            schema(nested_properties(LEVELS_AT_LIMIT, leaf("new"))),
        );
        let from_text = (
            Schema::from_json_str(&nested_text(LEVELS_AT_LIMIT, &leaf("old"))).unwrap(),
            Schema::from_json_str(&nested_text(LEVELS_AT_LIMIT, &leaf("new"))).unwrap(),
        );
        for (old, new) in [from_values, from_text] {
            let differences = diff(&old, &new);
            assert_eq!(differences.len(), 1);
            assert_eq!(differences[0].kind, ChangeKind::MaxLengthAdded);
            assert_eq!(differences[0].pointer, expected_pointer);
            assert!(diff(&new, &old).iter().all(|d| d.compatible));
            assert!(!check(Compatibility::Backward, std::slice::from_ref(&old), &new).compatible);
            assert!(check(Compatibility::Forward, std::slice::from_ref(&old), &new).compatible);
            let copy = old.clone();
            drop(old);
            assert!(diff(&copy, &copy).is_empty());
        }
    });
}

#[test]
fn documents_at_the_depth_limit_pass_every_meta_schema_on_a_default_stack() {
    on_a_default_test_stack(|| {
        for draft in Draft::ALL {
            let mut document = nested_properties(LEVELS_AT_LIMIT, leaf("old"));
            document["$schema"] = json!(draft.meta_schema_uri());
            assert_eq!(schema(document).draft(), draft);
        }
        // The same depth through keywords that nest one level at a time.
        let mut not = json!({"type": "string"});
        for _ in 1..MAX_DEPTH {
            not = Value::Object(Map::from_iter([("not".to_string(), not)]));
        }
        not["$schema"] = json!(Draft::Draft202012.meta_schema_uri());
        assert!(Schema::parse(not).is_ok());
    });
}

#[test]
fn one_level_beyond_the_limit_is_refused() {
    on_a_default_test_stack(|| {
        let too_deep = nested_properties(LEVELS_AT_LIMIT, leaf("deeper"));
        assert_eq!(
            Schema::parse(too_deep).map(|_| ()),
            Err(SchemaError::TooDeep { limit: MAX_DEPTH })
        );
        let text = nested_text(LEVELS_AT_LIMIT, &leaf("deeper"));
        assert_eq!(
            Schema::from_json_str(&text).map(|_| ()),
            Err(SchemaError::TooDeep { limit: MAX_DEPTH })
        );
    });
}

#[test]
fn a_hundred_thousand_levels_are_refused_not_overflowed() {
    on_a_default_test_stack(|| {
        let mut value = Value::Null;
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        let document = Value::Object(Map::from_iter([("default".to_string(), value)]));
        let error = Schema::parse(document).unwrap_err();
        assert_eq!(error, SchemaError::TooDeep { limit: MAX_DEPTH });
        assert!(error.to_string().contains("1000 levels"), "{error}");

        let schemas = nested_properties(100_000, json!({"type": "string"}));
        assert_eq!(
            Schema::parse(schemas).map(|_| ()),
            Err(SchemaError::TooDeep { limit: MAX_DEPTH })
        );

        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            Schema::from_json_str(&text).map(|_| ()),
            Err(SchemaError::TooDeep { limit: MAX_DEPTH })
        );
        let text = nested_text(100_000, &json!({"type": "string"}));
        assert_eq!(
            Schema::from_json_str(&text).map(|_| ()),
            Err(SchemaError::TooDeep { limit: MAX_DEPTH })
        );
    });
}

#[test]
fn brackets_inside_strings_do_not_count_as_nesting() {
    let text = format!(
        r#"{{"description": "{}", "type": "string"}}"#,
        "[{".repeat(5_000)
    );
    assert!(Schema::from_json_str(&text).is_ok());
    let escaped = r#"{"description": "a \" [[[", "type": "string"}"#;
    assert!(Schema::from_json_str(escaped).is_ok());
}

#[test]
fn malformed_deep_text_is_refused_without_overflowing() {
    on_a_default_test_stack(|| {
        // Within the limit but never closed: the parser, not the depth check, refuses it.
        let text = "[".repeat(MAX_DEPTH);
        assert!(matches!(
            Schema::from_json_str(&text),
            Err(SchemaError::Malformed { .. })
        ));
        let trailing = format!("{} x", nested_text(LEVELS_AT_LIMIT, &leaf("old")));
        assert!(matches!(
            Schema::from_json_str(&trailing),
            Err(SchemaError::Malformed { .. })
        ));
    });
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
