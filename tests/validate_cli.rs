//! `switchyard validate` as CI pipelines run it: the real binary on fixture directories, real git
//! repositories in temporary directories for the history, and the real nats-server (NATS_URL)
//! for the registry, where versions are registered under a namespace unique to the test and
//! purged afterwards, also when the test fails.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{PrivateNats, connected, nats_url, unique};
use serde_json::Value;
use switchyard::{
    api::EventSchema,
    naming::SCHEMA_BUCKET,
    reconcile::event_schema::candidate,
    registry::{Decision, Registration, Registry, decide},
};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/validate")
        .join(path)
}

/// The binary with a clean environment for the registry: no NATS_URL unless a test gives one.
fn switchyard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.arg("validate").env_remove("NATS_URL");
    command
}

fn validate(args: &[&str]) -> Output {
    switchyard().args(args).output().expect("switchyard runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON output ({e}): {}", stdout(out)))
}

/// The problems of a JSON report as (severity, check, path) triples.
fn problems(report: &Value) -> Vec<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["check"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A temporary directory removed when dropped, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A git repository in a temporary directory, holding `schemas/order-placed.yaml`.
struct Repo(TempDir);

impl Repo {
    fn new() -> Self {
        let repo = Self(TempDir::new("validate-git-"));
        repo.git(&["init", "--quiet"]);
        std::fs::create_dir_all(repo.0.path("schemas")).unwrap();
        repo
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.0.0)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// Writes the evolution fixture `version` as the schema file.
    fn write(&self, version: &str) -> PathBuf {
        let file = self.path_of_schema();
        std::fs::copy(fixture(&format!("evolution/{version}")), &file).unwrap();
        file
    }

    fn path_of_schema(&self) -> PathBuf {
        self.0.path("schemas/order-placed.yaml")
    }

    fn commit(&self, version: &str) {
        self.write(version);
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", version]);
    }
}

#[test]
fn a_valid_set_passes_with_other_groups_ignored_and_exit_code_zero() {
    let out = validate(&["-f", fixture("valid").to_str().unwrap(), "-n", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.ends_with(
            "5 objects in 4 files checked, 1 object of other API groups ignored: no problems\n"
        ),
        "{text}"
    );
    assert!(text.contains("CEL rules were evaluated offline"), "{text}");
}

#[test]
fn broken_references_are_errors_unless_external_references_are_allowed() {
    let dir = fixture("broken-refs");
    let out = validate(&["-f", dir.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    let reference = |severity: &str, path: &str| {
        (
            severity.to_string(),
            "reference".to_string(),
            path.to_string(),
        )
    };
    assert_eq!(
        problems(&report),
        vec![
            reference("error", "spec.topicRef.name"),
            reference("error", "spec.schemaRef.version"),
            reference("error", "spec.target.topicRef.name"),
        ]
    );
    assert_eq!(report["problems"][0]["object"]["name"], "billing");
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Topic shop/orderz"),
        "{report}"
    );

    let out = validate(&[
        "-f",
        dir.to_str().unwrap(),
        "--allow-external-refs",
        "--output",
        "json",
    ]);
    let report = json(&out);
    // A pinned version above the set's is wrong wherever the targets live.
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(
        problems(&report),
        vec![
            reference("warning", "spec.topicRef.name"),
            reference("error", "spec.schemaRef.version"),
            reference("warning", "spec.target.topicRef.name"),
        ]
    );
}

#[test]
fn crd_schema_violations_are_reported_with_file_document_object_and_path() {
    let out = validate(&["-f", fixture("crd-violations").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let file = "crd-violations/manifests.yaml";
    for expected in [
        format!(
            "{file} (document 1): Topic shop/wrong-type: spec.replicas: \"three\" is not of type \"integer\" [crd-schema]"
        ),
        format!(
            "{file} (document 2): Topic shop/unknown-field: spec.retension: unknown field \"retension\""
        ),
        format!(
            "{file} (document 3): Subscription shop/missing-field: spec.topicRef: required field is missing [crd-schema]"
        ),
        format!(
            "{file} (document 4): Topic shop/cel-rule: spec.duplicateWindow: spec.duplicateWindow must not be longer than spec.maxAge [cel]"
        ),
        format!(
            "{file} (document 5): Queue shop/unknown-kind: kind: switchyard.dev has no kind \"Queue\""
        ),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.ends_with("4 objects in 1 file checked: 5 errors, 0 warnings\n"),
        "{text}"
    );
}

#[test]
fn an_invalid_json_schema_is_reported_where_the_engine_points() {
    let out = validate(&[
        "-f",
        fixture("invalid-schema").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(
        problems(&report),
        vec![(
            "error".into(),
            "json-schema".into(),
            "spec.schema#/properties/orderId/type".into()
        )]
    );
}

#[test]
fn the_json_output_has_the_documented_shape() {
    let out = validate(&[
        "-f",
        fixture("valid").to_str().unwrap(),
        "-n",
        "shop",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "format", "notes", "objects", "ok", "problems", "sources", "summary"
        ]
    );
    assert_eq!(report["format"], 1);
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["summary"],
        serde_json::json!({"files": 4, "objects": 5, "ignored": 1, "errors": 0, "warnings": 0})
    );
    let objects: Vec<String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap(),
                o["namespace"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        objects,
        [
            "DeadLetterPolicy shop/failures",
            "EventSchema shop/order-placed",
            "Subscription shop/billing",
            "Topic shop/orders",
            "Topic shop/dead-letters",
        ]
    );
    let source = &report["sources"][0];
    assert_eq!(source["object"]["name"], "order-placed");
    assert_eq!(source["version"], 2);
    assert!(
        ["git", "none"].contains(&source["source"].as_str().unwrap()),
        "{source}"
    );
    assert!(source["detail"].is_string());
}

#[test]
fn manifests_are_read_from_standard_input() {
    let mut child = switchyard()
        .args(["-f", "-", "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(fixture("broken-refs/manifests.yaml")).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["problems"][0]["file"], "<stdin>");
    assert_eq!(report["sources"][0]["source"], "none");
}

#[test]
fn exit_code_two_when_the_command_cannot_run() {
    let missing = validate(&["-f", "/nonexistent/manifests"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/manifests"));
    assert!(missing.stdout.is_empty());

    let empty = TempDir::new("validate-empty-");
    let out = validate(&["-f", empty.str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest files"));

    let bad_flag = validate(&["-f", fixture("valid").to_str().unwrap(), "--output", "xml"]);
    assert_eq!(bad_flag.status.code(), Some(2));

    let unreachable = validate(&[
        "-f",
        fixture("valid").to_str().unwrap(),
        "-n",
        "shop",
        "--nats-url",
        "nats://127.0.0.1:1",
    ]);
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot read the schema registry"),
        "{unreachable:?}"
    );
}

#[test]
fn an_unreachable_nats_url_from_the_environment_falls_back_to_git() {
    let out = switchyard()
        .args(["-f", fixture("valid").to_str().unwrap(), "-n", "shop"])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("could not be reached")
            && stdout(&out).contains("compared with git instead"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn git_history_catches_a_downgrade() {
    let repo = Repo::new();
    repo.commit("v2.yaml");
    let file = repo.write("v1.yaml");
    let out = validate(&["-f", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(
        problems(&report),
        vec![("error".into(), "version".into(), "spec.version".into())]
    );
    let message = report["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.version 1 is below HEAD:schemas/order-placed.yaml (v2)"),
        "{message}"
    );
    assert_eq!(report["sources"][0]["source"], "git");
    assert_eq!(
        report["sources"][0]["detail"],
        "HEAD:schemas/order-placed.yaml (v2)"
    );
}

#[test]
fn git_history_catches_an_incompatible_change_and_names_each_breaking_change() {
    let repo = Repo::new();
    repo.commit("v1.yaml");
    let file = repo.write("v3-breaking.yaml");
    let out = validate(&["-f", file.to_str().unwrap(), "--no-registry"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("EventSchema default/order-placed: spec.schema#/")
            && text.contains(
                "v3 breaks Backward compatibility with HEAD:schemas/order-placed.yaml (v1)"
            )
            && text.contains("[compatibility]"),
        "{text}"
    );
    assert!(
        text.contains("compared with git: HEAD:schemas/order-placed.yaml (v1)"),
        "{text}"
    );

    // The compatible evolution passes against the same history.
    repo.write("v2.yaml");
    let out = validate(&["-f", file.to_str().unwrap(), "--no-registry"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn git_history_catches_changed_content_of_a_published_version() {
    let repo = Repo::new();
    repo.commit("v1.yaml");
    let file = repo.write("v1-changed.yaml");
    let out = validate(&["-f", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        problems(&json(&out)),
        vec![("error".into(), "version".into(), "spec.schema".into())]
    );
}

#[test]
fn against_names_the_revision_and_a_revision_that_does_not_exist_stops_the_run() {
    let repo = Repo::new();
    repo.commit("v2.yaml");
    repo.commit("v3-breaking.yaml");
    let file = repo.path_of_schema();
    // Against HEAD (v3 itself) nothing changed; against the commit before, v3 breaks v2.
    assert_eq!(
        validate(&["-f", file.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let out = validate(&["-f", file.to_str().unwrap(), "--against", "HEAD~1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("HEAD~1:schemas/order-placed.yaml (v2)"));

    let out = validate(&["-f", file.to_str().unwrap(), "--against", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-branch"));
}

#[test]
fn a_new_file_or_one_outside_git_has_nothing_to_compare() {
    let repo = Repo::new();
    repo.commit("v1.yaml");
    let new = repo.0.path("schemas/new.yaml");
    std::fs::copy(fixture("evolution/v3-breaking.yaml"), &new).unwrap();
    let out = validate(&["-f", new.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["sources"][0]["source"], "none");
    assert!(
        report["sources"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("new file"),
        "{report}"
    );

    let outside = TempDir::new("validate-nogit-");
    std::fs::copy(fixture("evolution/v1.yaml"), outside.path("s.yaml")).unwrap();
    let report = json(&validate(&["-f", outside.str(), "--output", "json"]));
    assert!(
        report["sources"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not in a git repository"),
        "{report}"
    );
}

/// Registers evolution fixtures under a unique namespace; the namespace's registry keys are
/// purged when dropped.
struct Registered {
    namespace: String,
}

impl Registered {
    async fn new(versions: &[&str]) -> Self {
        let registered = Self {
            namespace: unique("validate"),
        };
        let broker = connected(&nats_url()).await;
        let registry = Registry::open(&broker).await.expect("registry");
        for version in versions {
            let text = std::fs::read_to_string(fixture(&format!("evolution/{version}"))).unwrap();
            let mut schema: EventSchema = serde_yaml::from_str(&text).unwrap();
            schema.metadata.namespace = Some(registered.namespace.clone());
            let candidate = candidate(&schema, "2026-12-05T00:00:00Z".into()).unwrap();
            let holding = registry
                .holding(&candidate.namespace, &candidate.event_type, false)
                .await
                .unwrap();
            assert!(
                matches!(decide(&candidate, &holding), Decision::Register { .. }),
                "{version} registers"
            );
            let registration = registry.register(&candidate, &holding).await.unwrap();
            assert!(matches!(registration, Registration::Committed(..)));
        }
        registered
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(client) = async_nats::connect(nats_url()).await else {
                    return;
                };
                let jetstream = async_nats::jetstream::new(client);
                if let Ok(stream) = jetstream.get_stream(format!("KV_{SCHEMA_BUCKET}")).await {
                    let _ = stream
                        .purge()
                        .filter(format!("$KV.{SCHEMA_BUCKET}.{namespace}.>"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn validate_against_registry(version: &str, namespace: &str) -> Output {
    validate(&[
        "-f",
        fixture(&format!("evolution/{version}")).to_str().unwrap(),
        "-n",
        namespace,
        "--nats-url",
        &nats_url(),
        "--output",
        "json",
    ])
}

#[tokio::test]
async fn the_registry_catches_a_downgrade() {
    let registered = Registered::new(&["v1.yaml", "v2.yaml"]).await;
    let out = validate_against_registry("v1.yaml", &registered.namespace);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(
        problems(&report),
        vec![("error".into(), "version".into(), "spec.version".into())]
    );
    let message = report["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.version 1 is below the registry (v2 of order.placed")
            && message.contains(&format!("{}/order-placed", registered.namespace)),
        "{message}"
    );
    let source = &report["sources"][0];
    assert_eq!(source["source"], "registry");
    assert!(
        source["detail"].as_str().unwrap().contains("v1, v2"),
        "{source}"
    );
}

#[tokio::test]
async fn the_registry_catches_an_incompatible_change_and_accepts_what_it_holds() {
    let registered = Registered::new(&["v1.yaml", "v2.yaml"]).await;
    let out = validate_against_registry("v3-breaking.yaml", &registered.namespace);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    let found = problems(&report);
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|(severity, check, path)| severity == "error"
                && check == "compatibility"
                && path.starts_with("spec.schema#/")),
        "{report}"
    );
    assert!(
        found.iter().any(|(_, _, path)| path.contains("total")),
        "the new required property is named: {report}"
    );
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("v3 breaks Backward compatibility with the registry (v2"),
        "{report}"
    );

    let out = validate_against_registry("v2.yaml", &registered.namespace);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = validate_against_registry("v1-changed.yaml", &registered.namespace);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[tokio::test]
async fn reading_the_registry_never_creates_its_bucket() {
    let nats = PrivateNats::start();
    let out = validate(&[
        "-f",
        fixture("valid").to_str().unwrap(),
        "-n",
        "shop",
        "--nats-url",
        &nats.url(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["sources"][0]["source"], "registry");
    assert!(
        report["sources"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("bucket does not exist"),
        "{report}"
    );
    let broker = connected(&nats.url()).await;
    assert_eq!(
        broker
            .stream_info(&format!("KV_{SCHEMA_BUCKET}"))
            .await
            .unwrap()
            .map(|info| info.config.name),
        None
    );
}

#[tokio::test]
async fn of_two_versions_in_the_set_only_the_highest_is_compared_with_the_registry() {
    let registered = Registered::new(&["v1.yaml"]).await;
    let dir = TempDir::new("validate-two-");
    std::fs::copy(fixture("evolution/v1.yaml"), dir.path("v1.yaml")).unwrap();
    std::fs::copy(fixture("evolution/v2.yaml"), dir.path("v2.yaml")).unwrap();
    let out = validate(&[
        "-f",
        dir.str(),
        "-n",
        &registered.namespace,
        "--nats-url",
        &nats_url(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(
        problems(&report),
        vec![("warning".into(), "version".into(), "spec.version".into())]
    );
    let sources: Vec<(i64, &str)> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["version"].as_i64().unwrap(),
                s["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sources, vec![(1, "none"), (2, "registry")]);
}
