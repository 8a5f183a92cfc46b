//! The Argo CD health checks and `kstatus-check` on the objects `tests/health.rs` captured from
//! a real cluster (`tests/fixtures/health/`), and on hand-made edge cases; no cluster needed.

mod health_support;

use std::collections::BTreeSet;

use health_support::{
    KINDS, all_cases, argo_health, argo_script, argo_script_path, fixtures_dir, judge,
    read_fixture, run_kstatus_check,
};
use serde_json::{Value, json};

#[test]
fn the_four_health_checks_are_one_script() {
    let topic = argo_script("Topic");
    for kind in KINDS {
        assert_eq!(
            argo_script(kind),
            topic,
            "{} differs from health-Topic.lua: keep the four byte-identical",
            argo_script_path(kind).display()
        );
    }
}

#[test]
fn every_fixture_reads_as_expected_to_kstatus_and_argo_cd() {
    let cases: Vec<_> = all_cases().collect();
    let objects: Vec<Value> = cases.iter().map(|case| read_fixture(case)).collect();
    let wrong = judge(&cases, &objects);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_fixture_file_is_a_case() {
    let files: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/health")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cases: BTreeSet<String> = all_cases().map(|c| format!("{}.json", c.fixture)).collect();
    assert_eq!(
        files, cases,
        "fixtures without a case, or cases without a fixture"
    );
}

fn topic(metadata: Value, status: Value) -> Value {
    let mut object = json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "shop", "generation": 1},
        "spec": {},
    });
    for (key, value) in metadata.as_object().unwrap() {
        object["metadata"][key] = value.clone();
    }
    if !status.is_null() {
        object["status"] = status;
    }
    object
}

fn ready(status: &str, reason: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": "m",
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

fn health(object: &Value) -> (String, String) {
    argo_health(&argo_script("Topic"), object).unwrap_or_else(|e| panic!("{e}: {object}"))
}

#[test]
fn lua_check_reads_states_the_cluster_rarely_shows() {
    let cases = [
        // An object stored before the CRD defaulted observedGeneration has no status at all.
        (
            topic(json!({}), Value::Null),
            "Progressing",
            "waiting for the operator",
        ),
        (
            topic(json!({}), json!({})),
            "Progressing",
            "waiting for the operator",
        ),
        (
            topic(
                json!({}),
                json!({"observedGeneration": 1, "conditions": [ready("Unknown", "Checking")]}),
            ),
            "Progressing",
            "Ready=Unknown Checking",
        ),
        (
            topic(
                json!({}),
                json!({"observedGeneration": 1, "conditions": [ready("False", "Something")]}),
            ),
            "Progressing",
            "Ready=False Something",
        ),
        (
            topic(
                json!({}),
                json!({"observedGeneration": 1, "conditions": []}),
            ),
            "Progressing",
            "no Ready condition",
        ),
        // Paused before the operator wrote anything.
        (
            topic(
                json!({"annotations": {"switchyard.dev/paused": "true"}}),
                Value::Null,
            ),
            "Suspended",
            "generation 1 is not applied",
        ),
        // Any other value of the annotation pauses nothing.
        (
            topic(
                json!({"annotations": {"switchyard.dev/paused": "false"}}),
                json!({"observedGeneration": 1, "conditions": [ready("True", "StreamReady")]}),
            ),
            "Healthy",
            "StreamReady: m",
        ),
        (
            topic(
                json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}),
                Value::Null,
            ),
            "Progressing",
            "being deleted",
        ),
        // Stalled wins over a Ready that is still True from an earlier generation's pass.
        (
            topic(
                json!({}),
                json!({"observedGeneration": 1, "conditions": [
                    ready("True", "StreamReady"),
                    {"type": "Stalled", "status": "True", "reason": "ChangeRefused", "message": "no"}
                ]}),
            ),
            "Degraded",
            "ChangeRefused: no",
        ),
    ];
    for (object, status, says) in cases {
        let (got, message) = health(&object);
        assert_eq!(got, status, "{message} for {object}");
        assert!(
            message.contains(says),
            "{message:?} lacks {says:?} for {object}"
        );
    }
}

#[test]
fn lua_check_failures_are_reported_not_swallowed() {
    // Argo CD always passes metadata; without it the script fails, and the runner says so.
    let error = argo_health(&argo_script("Topic"), &json!({"kind": "Topic"})).unwrap_err();
    assert!(error.contains("the health check failed"), "{error}");
    let error = argo_health("return {status = \"Fine\"}", &json!({})).unwrap_err();
    assert!(error.contains("not a health status"), "{error}");
}

#[test]
fn kstatus_check_reads_lists_and_documents_and_refuses_bad_input() {
    let dir = std::env::temp_dir().join(format!("switchyard-kstatus-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let documents = write(
        "documents.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: Topic\nmetadata: {name: a, generation: 2}\nstatus: {observedGeneration: 1}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: switchyard.dev/v1alpha1, kind: Topic, metadata: {name: b, deletionTimestamp: \"2026-01-01T00:00:00Z\"}}\n- {apiVersion: switchyard.dev/v1alpha1, kind: Topic, metadata: {name: c, generation: 1}, status: {observedGeneration: 1, conditions: [{type: Stalled, status: \"True\", reason: X, message: stuck}]}}\n",
    );
    let (code, stdout, stderr) = run_kstatus_check(&[&documents]);
    assert_eq!(code, 0, "{stderr}");
    let verdicts: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let read: Vec<(&str, &str)> = verdicts
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        read,
        [("a", "InProgress"), ("b", "Terminating"), ("c", "Failed")]
    );

    let bad = [
        (
            write("not-an-object.json", "{\"a\": 1}"),
            "not a Kubernetes object",
        ),
        (write("broken.yaml", "kind: [\n"), "document 1"),
        (write("empty.yaml", "---\n"), "no objects found"),
        (dir.join("missing.yaml"), "no such file"),
    ];
    for (path, says) in &bad {
        let (code, _, stderr) = run_kstatus_check(&[path.as_path()]);
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        assert!(
            stderr.contains(says),
            "{}: {stderr:?} lacks {says:?}",
            path.display()
        );
        assert!(
            stderr.contains(&*path.to_string_lossy()),
            "names the file: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
