//! `switchyard schema check` as CI pipelines run it: files in, verdict out, exit code says it.

use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/schemas/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["schema", "check"])
        .args(args)
        .output()
        .expect("switchyard runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compatible_evolution_exits_zero_and_lists_each_difference() {
    let out = check(&[
        "--compatibility",
        "backward",
        &fixture("order-placed-v1.json"),
        &fixture("order-placed-v2.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "TYPE_EXTENDED",
        "#/properties/amount",
        "ENUM_ARRAY_EXTENDED",
        "is compatible under Backward",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("BREAKS"), "{text}");
}

#[test]
fn incompatible_evolution_exits_one_and_names_the_breaking_changes() {
    let out = check(&[
        "--compatibility",
        "forward",
        &fixture("order-placed-v1.json"),
        &fixture("order-placed-v2.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("BREAKS") && text.contains("ENUM_ARRAY_NARROWED"),
        "{text}"
    );
    assert!(text.contains("NOT compatible under Forward"), "{text}");
    assert!(
        text.contains("all modes: None yes, Backward yes, BackwardTransitive yes, Forward no"),
        "{text}"
    );
}

#[test]
fn transitive_mode_checks_every_earlier_version() {
    let files = [
        fixture("order-placed-v1.json"),
        fixture("order-placed-v2.yaml"),
        fixture("order-placed-v3.json"),
    ];
    let mut args = vec!["--compatibility", "backward-transitive", "--output", "json"];
    args.extend(files.iter().map(String::as_str));
    let out = check(&args);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(report["mode"], "BackwardTransitive");
    assert_eq!(report["compatible"], false);
    let against: Vec<u64> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["against"].as_u64().unwrap())
        .collect();
    assert_eq!(
        against.len(),
        2,
        "checked against both earlier versions: {report}"
    );
    assert!(against.contains(&0) && against.contains(&1));
    assert_eq!(report["previous"].as_array().unwrap().len(), 2);
    assert_eq!(report["verdicts"]["BackwardTransitive"], false);
    assert_eq!(report["verdicts"]["None"], true);
    assert_eq!(report["verdicts"].as_object().unwrap().len(), 7);
}

#[test]
fn a_schema_is_compatible_with_itself_in_every_mode() {
    for mode in [
        "none",
        "backward",
        "backward-transitive",
        "forward",
        "forward-transitive",
        "full",
        "full-transitive",
    ] {
        let v1 = fixture("order-placed-v1.json");
        let out = check(&["--compatibility", mode, &v1, &v1]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stdout(&out));
    }
}

#[test]
fn invalid_input_exits_two_with_the_file_and_the_reason() {
    for (file, reason) in [
        ("not-a-schema.json", "not a valid JSON Schema"),
        ("truncated.json", "not valid JSON"),
        ("missing.json", "cannot read"),
    ] {
        let path = fixture(file);
        let out = check(&[&fixture("order-placed-v1.json"), &path]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file) && err.contains(reason), "{file}: {err}");
        assert!(
            out.stdout.is_empty(),
            "nothing is judged when an input is bad"
        );
    }
}
