//! Properties every verdict must have, over generated schemas: a schema is compatible with
//! itself under every mode; Full is Backward and Forward; a transitive verdict implies the
//! plain one; Backward from a to b is Forward from b to a. And no document, however odd,
//! makes parsing or comparing panic.

use proptest::{collection::vec, option, prelude::*};
use serde_json::{Map, Value, json};

use super::rules::MODES;
use crate::schema::{Compatibility, Draft, Schema, check, diff, verdicts};

fn names() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("x-d")].prop_map(str::to_string)
}

fn small_values() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("a")),
        Just(json!("b")),
        Just(json!(1)),
        Just(json!(2.0)),
        Just(json!(null)),
        Just(json!({"k": [true]})),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(json!({})),
        Just(json!({"type": "boolean"})),
        Just(json!({"type": "null"})),
        Just(json!({"$ref": "#"})),
        Just(json!({"$ref": "#/$defs/shared"})),
        (
            option::of(0..4u64),
            option::of(4..9u64),
            option::of(prop_oneof![Just("^a"), Just("b$")])
        )
            .prop_map(|(min, max, pattern)| {
                let mut schema = json!({"type": "string"});
                insert(&mut schema, "minLength", min.map(Value::from));
                insert(&mut schema, "maxLength", max.map(Value::from));
                insert(&mut schema, "pattern", pattern.map(Value::from));
                schema
            }),
        (
            any::<bool>(),
            option::of(-3..3i64),
            option::of(3..9i64),
            option::of(prop_oneof![Just(json!(2)), Just(json!(0.5))])
        )
            .prop_map(|(integer, min, max, multiple)| {
                let mut schema = json!({"type": if integer { "integer" } else { "number" }});
                insert(&mut schema, "minimum", min.map(Value::from));
                insert(&mut schema, "exclusiveMaximum", max.map(Value::from));
                insert(&mut schema, "multipleOf", multiple);
                schema
            }),
        vec(small_values(), 1..4).prop_map(|values| json!({"enum": values})),
        small_values().prop_map(|value| json!({"const": value})),
    ]
}

fn schema_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            (
                vec((names(), inner.clone()), 0..4),
                vec(names(), 0..3),
                prop_oneof![
                    Just(None),
                    Just(Some(json!(false))),
                    Just(Some(json!(true))),
                    inner.clone().prop_map(Some)
                ],
                option::of(inner.clone()),
                option::of(prop_oneof![Just(json!(false)), inner.clone()]),
                option::of(prop_oneof![
                    vec(names(), 1..3).prop_map(|names| json!(names)),
                    inner.clone()
                ]),
            )
                .prop_map(
                    |(properties, required, additional, pattern, unevaluated, dependency)| {
                        let mut schema =
                            json!({"type": "object", "properties": Map::from_iter(properties)});
                        if !required.is_empty() {
                            insert(&mut schema, "required", Some(json!(required)));
                        }
                        insert(&mut schema, "additionalProperties", additional);
                        insert(
                            &mut schema,
                            "patternProperties",
                            pattern.map(|p| json!({"^x-": p})),
                        );
                        insert(&mut schema, "unevaluatedProperties", unevaluated);
                        insert(
                            &mut schema,
                            "dependencies",
                            dependency.map(|d| json!({"a": d})),
                        );
                        schema
                    }
                ),
            (
                option::of(inner.clone()),
                vec(inner.clone(), 0..3),
                option::of(0..3u64),
                any::<bool>()
            )
                .prop_map(|(items, prefix, min, unique)| {
                    let mut schema = json!({"type": "array"});
                    if !prefix.is_empty() {
                        insert(&mut schema, "prefixItems", Some(json!(prefix)));
                    }
                    insert(&mut schema, "items", items);
                    insert(&mut schema, "minItems", min.map(Value::from));
                    if unique {
                        insert(&mut schema, "uniqueItems", Some(json!(true)));
                    }
                    schema
                }),
            (
                prop_oneof![Just("anyOf"), Just("oneOf"), Just("allOf")],
                vec(inner.clone(), 1..4)
            )
                .prop_map(|(keyword, members)| json!({keyword: members})),
            inner.clone().prop_map(|negated| json!({"not": negated})),
            (inner.clone(), inner.clone())
                .prop_map(|(condition, then)| json!({"if": condition, "then": then})),
            (inner.clone(), "[a-z]{0,3}").prop_map(|(mut schema, title)| {
                insert(&mut schema, "title", Some(json!(title)));
                schema
            }),
            Just(json!({"type": ["string", "null"], "maxLength": 3})),
        ]
    })
}

/// Sets `key` when `value` is given and `schema` is an object.
fn insert(schema: &mut Value, key: &str, value: Option<Value>) {
    if let (Value::Object(map), Some(value)) = (schema, value) {
        map.insert(key.to_string(), value);
    }
}

/// Generated documents that are valid schemas, with a shared definition for `$ref`s to reach,
/// in any dialect: without `$schema` (draft-07) or naming one, spelled as that dialect spells
/// tuples and dependencies. Draft-04 refuses most of them (boolean schemas, numeric bounds).
fn schema() -> impl Strategy<Value = Schema> {
    let dialect = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Draft::Draft04)),
        1 => Just(Some(Draft::Draft06)),
        1 => Just(Some(Draft::Draft07)),
        1 => Just(Some(Draft::Draft201909)),
        3 => Just(Some(Draft::Draft202012)),
    ];
    (schema_value(), schema_value(), dialect).prop_filter_map(
        "not a valid schema",
        |(mut root, shared, dialect)| {
            insert(&mut root, "$defs", Some(json!({"shared": shared})));
            let draft = dialect.unwrap_or(Draft::Draft07);
            respell(&mut root, draft);
            insert(
                &mut root,
                "$schema",
                dialect.map(|d| json!(d.meta_schema_uri())),
            );
            Schema::parse(root).ok()
        },
    )
}

/// Rewrites the 2020-12 spelling of tuples, and `dependencies`, the way `draft` spells them.
fn respell(value: &mut Value, draft: Draft) {
    let Value::Object(map) = value else { return };
    if draft < Draft::Draft202012
        && let Some(prefix) = map.remove("prefixItems")
    {
        if let Some(rest) = map.remove("items") {
            map.insert("additionalItems".into(), rest);
        }
        map.insert("items".into(), prefix);
    }
    if draft >= Draft::Draft201909
        && let Some(Value::Object(dependencies)) = map.remove("dependencies")
    {
        for (name, dependency) in dependencies {
            let keyword = if dependency.is_array() {
                "dependentRequired"
            } else {
                "dependentSchemas"
            };
            if let Value::Object(entries) = map
                .entry(keyword)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                entries.insert(name, dependency);
            }
        }
    }
    // Maps of subschemas (`properties`) are walked as if they were schemas too: generated
    // names never collide with the keywords rewritten.
    for child in map.values_mut() {
        match child {
            Value::Array(items) => items.iter_mut().for_each(|item| respell(item, draft)),
            child => respell(child, draft),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_schema_is_compatible_with_itself_in_every_mode(schema in schema()) {
        prop_assert!(diff(&schema, &schema).is_empty(), "{:?}", diff(&schema, &schema));
        let history = [schema.clone(), schema.clone()];
        for mode in MODES {
            prop_assert!(check(mode, &history, &schema).compatible, "{mode:?}");
        }
    }

    #[test]
    fn full_is_backward_and_forward(history in vec(schema(), 1..4), candidate in schema()) {
        for (full, backward, forward) in [
            (Compatibility::Full, Compatibility::Backward, Compatibility::Forward),
            (Compatibility::FullTransitive, Compatibility::BackwardTransitive, Compatibility::ForwardTransitive),
        ] {
            prop_assert_eq!(
                check(full, &history, &candidate).compatible,
                check(backward, &history, &candidate).compatible
                    && check(forward, &history, &candidate).compatible
            );
        }
    }

    #[test]
    fn a_transitive_verdict_implies_the_plain_one(history in vec(schema(), 1..4), candidate in schema()) {
        for (transitive, plain) in [
            (Compatibility::BackwardTransitive, Compatibility::Backward),
            (Compatibility::ForwardTransitive, Compatibility::Forward),
            (Compatibility::FullTransitive, Compatibility::Full),
        ] {
            if check(transitive, &history, &candidate).compatible {
                prop_assert!(check(plain, &history, &candidate).compatible);
            }
        }
    }

    #[test]
    fn backward_from_a_to_b_is_forward_from_b_to_a(a in schema(), b in schema()) {
        let backward = check(Compatibility::Backward, std::slice::from_ref(&a), &b);
        let forward = check(Compatibility::Forward, std::slice::from_ref(&b), &a);
        prop_assert_eq!(backward.compatible, forward.compatible);
        prop_assert_eq!(&backward.checks[0].differences, &forward.checks[0].differences);
    }

    #[test]
    fn all_mode_verdicts_agree_with_checking_each_mode(history in vec(schema(), 0..4), candidate in schema()) {
        let all = verdicts(&history, &candidate);
        prop_assert_eq!(all.len(), MODES.len());
        for (mode, compatible) in all {
            prop_assert_eq!(compatible, check(mode, &history, &candidate).compatible, "{:?}", mode);
        }
    }

    #[test]
    fn the_listed_differences_agree_with_the_verdict(a in schema(), b in schema()) {
        let report = check(Compatibility::Full, std::slice::from_ref(&a), &b);
        prop_assert_eq!(report.compatible, report.breaking().next().is_none());
    }

    #[test]
    fn odd_documents_never_panic(a in odd_document(), b in odd_document()) {
        if let (Ok(a), Ok(b)) = (Schema::parse(a), Schema::parse(b)) {
            for mode in MODES {
                check(mode, std::slice::from_ref(&a), &b);
            }
        }
    }
}

/// Schema keywords with values of any type, mostly wrong.
fn odd_document() -> impl Strategy<Value = Value> {
    let keyword = prop_oneof![
        Just("type"),
        Just("properties"),
        Just("items"),
        Just("prefixItems"),
        Just("anyOf"),
        Just("allOf"),
        Just("not"),
        Just("$ref"),
        Just("$defs"),
        Just("$id"),
        Just("$anchor"),
        Just("required"),
        Just("enum"),
        Just("const"),
        Just("additionalProperties"),
        Just("patternProperties"),
        Just("dependentRequired"),
        Just("dependencies"),
        Just("definitions"),
        Just("additionalItems"),
        Just("exclusiveMinimum"),
        Just("id"),
        Just("multipleOf"),
        Just("minimum"),
        Just("maxLength"),
        Just("pattern"),
        Just("unevaluatedItems"),
        Just("$schema"),
    ];
    let scalar = prop_oneof![
        Just(json!(null)),
        Just(json!(true)),
        Just(json!(false)),
        Just(json!(0)),
        Just(json!(-1.5)),
        Just(json!(1e300)),
        Just(json!("string")),
        Just(json!("#")),
        Just(json!("#/$defs/a")),
        Just(json!("#/properties/a")),
        Just(json!("^(")),
        Just(json!("object")),
        Just(json!("https://json-schema.org/draft/2019-09/schema")),
        Just(json!("http://json-schema.org/draft-04/schema#")),
        Just(json!("http://json-schema.org/draft-06/schema#")),
        Just(json!("#/definitions/a")),
    ];
    scalar.prop_recursive(5, 64, 5, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(
                (keyword.clone().prop_map(str::to_string), inner.clone()),
                0..5
            )
            .prop_map(|entries| Value::Object(Map::from_iter(entries))),
            vec(("[a-c]", inner), 0..3).prop_map(|entries| Value::Object(Map::from_iter(entries))),
        ]
    })
}
