//! `switchyard plan`, `apply` and `status` as CI and laptops run them: the real binary on
//! fixture directories (tests/fixtures/gitops, copied per test with the namespace rewritten
//! into one of the test's own) against the real nats-server (NATS_URL), no Kubernetes. Every
//! stream, consumer and registry key a test makes is named after its namespace and removed
//! when the test ends, also when it fails ([`BrokerNamespace`]).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use async_nats::jetstream::stream::Config as StreamConfig;
use common::{BrokerNamespace, connected, nats_url, unique};
use serde_json::Value;
use switchyard::{broker::Broker, naming::metadata, registry::Registry};

/// A fixture directory copied for one namespace; removed when dropped.
struct Manifests {
    dir: PathBuf,
}

impl Manifests {
    fn copy(fixture: &str, namespace: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("gitops-manifests-"));
        copy_rewritten(&fixture_path(fixture), &dir, namespace);
        Self { dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Replaces `from` by `to` in one file, which must contain it.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.join(file)).unwrap();
    }

    /// Adds a fixture file (namespace rewritten) as `file`.
    fn add(&self, fixture: &str, file: &str, namespace: &str) {
        copy_rewritten(&fixture_path(fixture), &self.dir.join(file), namespace);
    }
}

impl Drop for Manifests {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gitops")
        .join(path)
}

fn copy_rewritten(from: &Path, to: &Path, namespace: &str) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_rewritten(&entry.path(), &to.join(entry.file_name()), namespace);
        }
    } else {
        let text = std::fs::read_to_string(from).unwrap();
        let rewritten = text.replace("namespace: shop", &format!("namespace: {namespace}"));
        std::fs::write(to, rewritten).unwrap();
    }
}

/// Runs the binary against the shared NATS.
fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("NATS_URL", nats_url())
        .output()
        .expect("switchyard runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON output ({e}): {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

/// `plan --output json`: the plan and the exit code.
fn plan(manifests: &Manifests, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["plan", "-f", manifests.path(), "--output", "json"];
    args.extend(extra);
    let out = switchyard(&args);
    (json(&out), exit_code(&out))
}

/// The steps of a plan that change the broker or are refused, as (action, kind, name, target
/// name, fields as "field: old → new"), sorted.
fn changes(plan: &Value) -> Vec<(String, String, String, String, Vec<String>)> {
    let mut found: Vec<_> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !matches!(s["action"].as_str(), Some("unchanged" | "skipped")))
        .map(|s| {
            let target = &s["target"];
            let target_name = match target["type"].as_str().unwrap() {
                "schemaVersion" => format!(
                    "{} v{}",
                    target["eventType"].as_str().unwrap(),
                    target["version"]
                ),
                _ => target["name"].as_str().unwrap().to_string(),
            };
            let fields = s["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {} → {}",
                        f["field"].as_str().unwrap(),
                        f["old"].as_str().unwrap_or("-"),
                        f["new"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            (
                s["action"].as_str().unwrap().to_string(),
                s["object"]["kind"].as_str().unwrap().to_string(),
                s["object"]["name"].as_str().unwrap().to_string(),
                target_name,
                fields,
            )
        })
        .collect();
    found.sort();
    found
}

fn summary(plan: &Value, action: &str) -> u64 {
    plan["summary"][action].as_u64().unwrap()
}

async fn stream_config(broker: &Broker, name: &str) -> StreamConfig {
    broker
        .stream_info(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("stream {name} exists"))
        .config
}

async fn registry(broker: &Broker) -> Registry {
    Registry::open_existing(broker)
        .await
        .unwrap()
        .expect("the registry bucket exists")
}

#[tokio::test]
async fn plan_lists_the_creates_apply_makes_them_and_changes_are_planned_field_by_field() {
    let ns = BrokerNamespace::new("gitops");
    let n = &ns.name;
    let manifests = Manifests::copy("topology", n);
    let broker = connected(&nats_url()).await;

    let (first, code) = plan(&manifests, &[]);
    assert_eq!(code, 2, "changes pending: {first:#}");
    let creates: Vec<(String, String, String)> = changes(&first)
        .into_iter()
        .map(|(action, kind, _, target, _)| (action, kind, target))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("DeadLetterPolicy", format!("{n}_failures_dlq")),
        ("EventSchema", "order.placed v1".to_string()),
        ("Subscription", format!("sub_{n}_audit")),
        ("Subscription", format!("sub_{n}_billing")),
        ("Subscription", format!("sub_{n}_welcome-mail")),
        ("Topic", format!("{n}_orders")),
        ("Topic", format!("{n}_users")),
    ]
    .into_iter()
    .map(|(kind, target)| ("create".to_string(), kind.to_string(), target))
    .collect();
    assert_eq!(creates, expected);
    assert_eq!(summary(&first, "update") + summary(&first, "delete"), 0);
    let skipped: Vec<&Value> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{first:#}");
    assert_eq!(skipped[0]["target"]["name"], "billing-worker");
    assert!(
        skipped[0]["message"]
            .as_str()
            .unwrap()
            .contains("Kubernetes only")
    );
    assert!(
        broker
            .stream_info(&format!("{n}_orders"))
            .await
            .unwrap()
            .is_none(),
        "plan writes nothing"
    );

    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("+ created Topic {n}/orders → stream {n}_orders")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("skipped Subscription"),
        "{}",
        stdout(&out)
    );

    let orders = stream_config(&broker, &format!("{n}_orders")).await;
    assert_eq!(orders.max_age, Duration::from_secs(3600));
    assert_eq!(orders.subjects, [format!("{n}.orders.>")]);
    assert_eq!(
        orders.metadata.get(metadata::OWNER),
        Some(&format!("Topic/{n}/orders"))
    );
    let users = stream_config(&broker, &format!("{n}_users")).await;
    assert_eq!(users.duplicate_window, Duration::from_secs(60));
    let dead_letters = stream_config(&broker, &format!("{n}_failures_dlq")).await;
    assert_eq!(dead_letters.subjects, [format!("_dlq.{n}.failures.>")]);
    let billing = broker
        .consumer_info(&format!("{n}_orders"), &format!("sub_{n}_billing"))
        .await
        .unwrap()
        .expect("billing consumer");
    assert_eq!(billing.config.max_deliver, 5, "its own retry wins");
    assert_eq!(
        billing.config.filter_subjects,
        [format!("{n}.orders.order.placed")]
    );
    let audit = broker
        .consumer_info(&format!("{n}_orders"), &format!("sub_{n}_audit"))
        .await
        .unwrap()
        .expect("audit consumer");
    assert_eq!(
        audit.config.max_deliver, 4,
        "the DeadLetterPolicy's default"
    );
    assert_eq!(
        audit.config.ack_wait,
        Duration::from_secs(45),
        "the bound schema's default"
    );
    assert_eq!(
        audit
            .config
            .metadata
            .get(metadata::SCHEMA)
            .map(String::as_str),
        Some("order.placed v1")
    );
    let holding = registry(&broker)
        .await
        .holding(n, "order.placed", false)
        .await
        .unwrap();
    let (latest, _) = holding.latest.expect("order.placed is registered");
    assert_eq!((latest.record.version, latest.versions), (1, vec![1]));

    let (again, code) = plan(&manifests, &[]);
    assert_eq!(code, 0, "nothing left to do: {again:#}");
    assert!(changes(&again).is_empty(), "{again:#}");
    let text = switchyard(&["plan", "-f", manifests.path()]);
    assert_eq!(exit_code(&text), 0);
    assert!(stdout(&text).contains("No changes"), "{}", stdout(&text));

    manifests.edit("topics/orders.yaml", "maxAge: 1h", "maxAge: 2h");
    manifests.edit(
        "subscriptions/billing.yaml",
        "maxDeliveries: 5",
        "maxDeliveries: 7",
    );
    manifests.add("order-placed-v2.yaml", "schemas/order-placed-v2.yaml", n);
    let (changed, code) = plan(&manifests, &[]);
    assert_eq!(code, 2, "{changed:#}");
    let fingerprint = |version: i64| {
        changed["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["target"]["version"] == version)
            .and_then(|s| s["fields"].as_array())
            .and_then(|f| f.iter().find(|f| f["field"] == "fingerprint"))
            .and_then(|f| f["new"].as_str())
            .map(str::to_owned)
    };
    let v2_fingerprint = fingerprint(2).expect("v2 is registered with its fingerprint");
    assert_eq!(
        changes(&changed),
        vec![
            (
                "create".to_string(),
                "EventSchema".to_string(),
                "order-placed".to_string(),
                "order.placed v2".to_string(),
                vec![
                    "version: - → v2".to_string(),
                    "compatibility: - → Backward".to_string(),
                    format!("fingerprint: - → {v2_fingerprint}"),
                    "latest: v1 → v2".to_string(),
                ]
            ),
            (
                "update".to_string(),
                "Subscription".to_string(),
                "billing".to_string(),
                format!("sub_{n}_billing"),
                vec!["retry.maxDeliveries: 5 → 7".to_string()]
            ),
            (
                "update".to_string(),
                "Topic".to_string(),
                "orders".to_string(),
                format!("{n}_orders"),
                vec!["maxAge: 1h → 2h".to_string()]
            ),
        ]
    );
    let text = stdout(&switchyard(&["plan", "-f", manifests.path()]));
    assert!(
        text.contains(&format!(
            "~ update Topic {n}/orders → stream {n}_orders\n      maxAge: 1h → 2h"
        )),
        "{text}"
    );

    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stream_config(&broker, &format!("{n}_orders")).await.max_age,
        Duration::from_secs(7200)
    );
    let billing = broker
        .consumer_info(&format!("{n}_orders"), &format!("sub_{n}_billing"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(billing.config.max_deliver, 7);
    let (latest, _) = registry(&broker)
        .await
        .holding(n, "order.placed", false)
        .await
        .unwrap()
        .latest
        .unwrap();
    assert_eq!((latest.record.version, latest.versions), (2, vec![1, 2]));

    let (last, code) = plan(&manifests, &[]);
    assert_eq!(code, 0, "{last:#}");
    assert!(changes(&last).is_empty(), "{last:#}");
}

#[tokio::test]
async fn refused_changes_are_flagged_by_plan_and_apply_applies_nothing() {
    let ns = BrokerNamespace::new("gitops");
    let n = &ns.name;
    let manifests = Manifests::copy("partitioned", n);
    let broker = connected(&nats_url()).await;
    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let orders_before = stream_config(&broker, &format!("{n}_orders")).await;
    assert!(orders_before.subject_transform.is_some(), "partitioned");

    manifests.edit("topics.yaml", "partitions: 4", "partitions: 2");
    // A change that could be applied, to see that it is not while another is refused.
    manifests.edit("topics.yaml", "maxAge: 1h", "maxAge: 2h");
    manifests.remove("schemas/order-placed-v2.yaml");

    let (refused, code) = plan(&manifests, &[]);
    assert_eq!(code, 1, "{refused:#}");
    let steps = refused["steps"].as_array().unwrap();
    let refusal = |kind: &str| {
        steps
            .iter()
            .find(|s| s["action"] == "refused" && s["object"]["kind"] == kind)
            .unwrap_or_else(|| panic!("a refused {kind}: {refused:#}"))
    };
    let topic = refusal("Topic");
    assert_eq!(topic["object"]["name"], "orders");
    let message = topic["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.partitions: the stream has 4 partitions"),
        "{message}"
    );
    assert!(message.contains("restore spec.partitions"), "{message}");
    assert_eq!(topic["fields"][0]["old"], "4");
    assert_eq!(topic["fields"][0]["new"], "2");
    let schema = refusal("EventSchema");
    assert_eq!(schema["target"]["version"], 1);
    let message = schema["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.version 1 is below v2"),
        "{message}"
    );
    assert_eq!(summary(&refused, "refused"), 2);
    assert_eq!(summary(&refused, "update"), 1, "users' maxAge is planned");

    let text = switchyard(&["plan", "-f", manifests.path()]);
    assert_eq!(exit_code(&text), 1);
    assert!(
        stdout(&text).contains(&format!(
            "! refused Topic {n}/orders → stream {n}_orders\n      spec.partitions: 4 → 2"
        )),
        "{}",
        stdout(&text)
    );

    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 1, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Nothing was applied"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("spec.partitions"), "{}", stdout(&out));
    let orders_after = stream_config(&broker, &format!("{n}_orders")).await;
    assert_eq!(
        orders_after.subject_transform, orders_before.subject_transform,
        "still 4 partitions"
    );
    assert_eq!(
        stream_config(&broker, &format!("{n}_users")).await.max_age,
        Duration::from_secs(3600),
        "no object is applied while a change is refused"
    );
    let (latest, _) = registry(&broker)
        .await
        .holding(n, "order.placed", false)
        .await
        .unwrap()
        .latest
        .unwrap();
    assert_eq!(latest.record.version, 2, "the registry keeps v2");

    let json = json(&switchyard(&[
        "apply",
        "-f",
        manifests.path(),
        "--output",
        "json",
    ]));
    assert_eq!(json["applied"], false);
    assert!(
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "notAttempted"),
        "{json:#}"
    );
}

#[tokio::test]
async fn status_shows_what_apply_made_with_live_figures() {
    let ns = BrokerNamespace::new("gitops");
    let n = &ns.name;
    let manifests = Manifests::copy("topology", n);
    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    let client = async_nats::connect(nats_url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    for i in 0..3 {
        jetstream
            .publish(
                format!("{n}.orders.order.placed"),
                format!("{{\"orderId\": \"{i}\"}}").into(),
            )
            .await
            .unwrap()
            .await
            .expect("stored");
    }

    let out = switchyard(&["status", "--namespace", n, "--output", "json"]);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    let status = json(&out);
    assert_eq!(status["format"], 1);
    let find = |list: &str, key: &str, value: &str| -> Value {
        status[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o[key] == value)
            .unwrap_or_else(|| panic!("{list} has {value}: {status:#}"))
            .clone()
    };
    let orders = find("topics", "name", "orders");
    assert_eq!(orders["stream"], format!("{n}_orders"));
    assert_eq!(orders["subjects"][0], format!("{n}.orders.>"));
    assert_eq!(orders["messages"], 3);
    assert!(orders["bytes"].as_i64().unwrap() > 0);
    assert_eq!(orders["consumers"], 2);
    assert_eq!(find("topics", "name", "users")["messages"], 0);
    let billing = find("subscriptions", "name", "billing");
    assert_eq!(billing["topic"], "orders");
    assert_eq!(billing["consumers"][0], format!("sub_{n}_billing"));
    assert_eq!(billing["pending"], 3);
    assert_eq!(billing["ackPending"], 0);
    assert_eq!(billing["lag"], 3);
    assert_eq!(find("subscriptions", "name", "welcome-mail")["lag"], 0);
    let dead_letters = find("deadLetters", "policy", "failures");
    assert_eq!(dead_letters["stream"], format!("{n}_failures_dlq"));
    assert_eq!(dead_letters["deadLetters"], 0);
    let schema = find("schemas", "eventType", "order.placed");
    assert_eq!(schema["latestVersion"], 1);
    assert_eq!(schema["versions"], serde_json::json!([1]));
    assert_eq!(
        status["topics"].as_array().unwrap().len(),
        2,
        "only this namespace"
    );

    let out = switchyard(&["status", "-n", n]);
    assert_eq!(exit_code(&out), 0);
    let text = stdout(&out);
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("a line for {start}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert!(text.starts_with("TOPIC"), "{text}");
    assert_eq!(
        line(&format!("{n}/billing")),
        [
            format!("{n}/billing").as_str(),
            "orders",
            &format!("sub_{n}_billing"),
            "3",
            "0",
            "0",
            "3"
        ]
    );
    assert_eq!(line(&format!("{n}/orders"))[4], "3", "messages: {text}");
    assert!(text.contains(&format!("{n}_failures_dlq")), "{text}");
    assert!(text.contains(&format!("{n}/order.placed")), "{text}");
}

#[tokio::test]
async fn pruning_deletes_only_what_switchyard_made_for_objects_no_longer_named() {
    let ns = BrokerNamespace::new("gitops");
    let n = &ns.name;
    let manifests = Manifests::copy("topology", n);
    let broker = connected(&nats_url()).await;
    let out = switchyard(&["apply", "-f", manifests.path()]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    // Made by hand in the namespace's name space: no owner recorded, never pruned.
    broker
        .create_stream(&StreamConfig {
            name: format!("{n}_by-hand"),
            subjects: vec![format!("{n}.by-hand.>")],
            ..StreamConfig::default()
        })
        .await
        .unwrap();

    manifests.remove("topics/users.yaml");
    manifests.remove("subscriptions/welcome-mail.yaml");
    manifests.remove("subscriptions/audit.yaml");
    let (without_prune, code) = plan(&manifests, &[]);
    assert_eq!(
        code, 0,
        "without --prune nothing is deleted: {without_prune:#}"
    );

    let (pruning, code) = plan(&manifests, &["--prune"]);
    assert_eq!(code, 2, "{pruning:#}");
    let deletes: Vec<(String, String, String)> = changes(&pruning)
        .into_iter()
        .map(|(action, kind, name, target, _)| (action, format!("{kind} {name}"), target))
        .collect();
    assert_eq!(
        deletes,
        [
            (
                "delete".to_string(),
                "Subscription audit".to_string(),
                format!("sub_{n}_audit")
            ),
            (
                "delete".to_string(),
                "Topic users".to_string(),
                format!("{n}_users")
            ),
        ]
    );

    let out = switchyard(&["apply", "-f", manifests.path(), "--prune"]);
    assert_eq!(exit_code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        broker
            .stream_info(&format!("{n}_users"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        broker
            .consumer_info(&format!("{n}_orders"), &format!("sub_{n}_audit"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        broker
            .consumer_info(&format!("{n}_orders"), &format!("sub_{n}_billing"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        broker
            .stream_info(&format!("{n}_by-hand"))
            .await
            .unwrap()
            .is_some(),
        "a stream Switchyard did not make is left alone"
    );
    let (after, code) = plan(&manifests, &["--prune"]);
    assert_eq!(code, 0, "{after:#}");
}

#[tokio::test]
async fn invalid_manifests_get_validates_errors_and_nothing_is_applied() {
    let ns = BrokerNamespace::new("gitops");
    let n = &ns.name;
    let manifests = Manifests::copy("invalid", n);
    for command in ["plan", "apply"] {
        let out = switchyard(&[command, "-f", manifests.path()]);
        assert_eq!(exit_code(&out), 1, "{command}: {}", stdout(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "Topic {n}/orders: spec.replicas: \"three\" is not of type \"integer\" [crd-schema]"
            )),
            "{command}: {text}"
        );
        assert!(
            text.contains(&format!(
                "Subscription {n}/billing: spec.topicRef.name: Topic {n}/orderz is not among the manifests"
            )),
            "{command}: {text}"
        );
        assert!(
            !text.contains("--allow-external-refs"),
            "no flag of validate's is suggested: {text}"
        );
        assert!(
            stderr(&out).contains("the manifests have errors"),
            "{}",
            stderr(&out)
        );
    }
    let report = json(&switchyard(&[
        "plan",
        "-f",
        manifests.path(),
        "--output",
        "json",
    ]));
    assert_eq!(report["ok"], false);
    assert_eq!(report["summary"]["errors"], 2);
    let broker = connected(&nats_url()).await;
    assert!(
        broker
            .stream_info(&format!("{n}_orders"))
            .await
            .unwrap()
            .is_none(),
        "nothing was applied"
    );

    let out = switchyard(&["plan", "-f", "/nonexistent/manifests"]);
    assert_eq!(exit_code(&out), 1);
    assert!(
        stderr(&out).contains("cannot read /nonexistent/manifests"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "--nats-url", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 1);
    assert!(
        stderr(&out).contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
}
