//! What the health tests share: the states every kind is driven into and the health each must
//! read as, the two readers of health (kstatus through `kstatus-check`, Argo CD's Lua checks
//! through an embedded Lua 5.1), and the fixtures the cluster test captures.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use mlua::{Lua, LuaSerdeExt, Table, serde::SerializeOptions};
use serde_json::Value;

/// The four kinds, each with an Argo CD health check of its own name.
pub const KINDS: [&str; 4] = ["Topic", "Subscription", "DeadLetterPolicy", "EventSchema"];

/// One captured object and the health both tools must give it.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// File name in `tests/fixtures/health/`, without `.json`.
    pub fixture: &'static str,
    pub kind: &'static str,
    /// The object's name in the test namespace.
    pub name: &'static str,
    /// kstatus: Current, InProgress, Failed, Terminating.
    pub kstatus: &'static str,
    /// Part of kstatus's message.
    pub kstatus_says: &'static str,
    /// Argo CD: Healthy, Progressing, Degraded, Suspended.
    pub argo: &'static str,
    /// Part of the Lua check's message.
    pub argo_says: &'static str,
}

const fn case(
    fixture: &'static str,
    kind: &'static str,
    name: &'static str,
    (kstatus, kstatus_says): (&'static str, &'static str),
    (argo, argo_says): (&'static str, &'static str),
) -> Case {
    Case {
        fixture,
        kind,
        name,
        kstatus,
        kstatus_says,
        argo,
        argo_says,
    }
}

const READY: (&str, &str) = ("Current", "Resource is Ready");
/// Reconciled once, paused, then edited: generation 2, observedGeneration 1.
const BEHIND: (&str, &str) = (
    "InProgress",
    "generation is 2, but latest observed generation is 1",
);
/// Created while no operator ran: the API server's default observedGeneration 0.
const UNSEEN: (&str, &str) = (
    "InProgress",
    "generation is 1, but latest observed generation is 0",
);
const PAUSED: (&str, &str) = ("Suspended", "reconciliation is paused");
const PAUSED_BEHIND: (&str, &str) = ("Suspended", "generation 2 is not applied until it resumes");
const STALE: (&str, &str) = ("Progressing", "generation 2 is not reconciled yet");
const NEW: (&str, &str) = ("Progressing", "waiting for the operator");

/// The states the operator on the shared NATS server is driven into, per kind: Ready, on its
/// way (Reconciling), failed (Stalled), paused, paused and then edited, edited while the
/// operator was stopped, created while it was stopped.
pub const WITH_OPERATOR: &[Case] = &[
    case(
        "topic-ready",
        "Topic",
        "ready",
        READY,
        ("Healthy", "StreamReady"),
    ),
    case(
        "topic-failed",
        "Topic",
        "clash",
        ("Failed", "overlap"),
        ("Degraded", "SubjectsOverlap"),
    ),
    case("topic-paused", "Topic", "paused", READY, PAUSED),
    case(
        "topic-paused-edited",
        "Topic",
        "paused-edited",
        BEHIND,
        PAUSED_BEHIND,
    ),
    case("topic-edited-while-down", "Topic", "edited", BEHIND, STALE),
    case("topic-created-while-down", "Topic", "late", UNSEEN, NEW),
    case(
        "subscription-ready",
        "Subscription",
        "ready",
        READY,
        ("Healthy", "ConsumerInSync"),
    ),
    case(
        "subscription-waiting",
        "Subscription",
        "orphan",
        ("InProgress", "Topic missing does not exist"),
        ("Progressing", "TopicNotFound"),
    ),
    case(
        "subscription-rolling-out",
        "Subscription",
        "rolling",
        ("InProgress", "0 of 1 worker pods available"),
        ("Progressing", "WorkersProgressing"),
    ),
    case(
        "subscription-failed",
        "Subscription",
        "stray",
        ("Failed", "spec.filterSubjects"),
        ("Degraded", "InvalidSpec"),
    ),
    case(
        "subscription-paused",
        "Subscription",
        "paused",
        READY,
        PAUSED,
    ),
    case(
        "subscription-paused-edited",
        "Subscription",
        "paused-edited",
        BEHIND,
        PAUSED_BEHIND,
    ),
    case(
        "subscription-edited-while-down",
        "Subscription",
        "edited",
        BEHIND,
        STALE,
    ),
    case(
        "subscription-created-while-down",
        "Subscription",
        "late",
        UNSEEN,
        NEW,
    ),
    case(
        "deadletterpolicy-ready",
        "DeadLetterPolicy",
        "ready",
        READY,
        ("Healthy", "StreamReady"),
    ),
    case(
        "deadletterpolicy-waiting",
        "DeadLetterPolicy",
        "awaiting",
        ("InProgress", "Topic missing does not exist"),
        ("Progressing", "TargetNotFound"),
    ),
    case(
        "deadletterpolicy-failed",
        "DeadLetterPolicy",
        "flat",
        ("Failed", "declares no subject space"),
        ("Degraded", "InvalidSpec"),
    ),
    case(
        "deadletterpolicy-paused",
        "DeadLetterPolicy",
        "paused",
        READY,
        PAUSED,
    ),
    case(
        "deadletterpolicy-paused-edited",
        "DeadLetterPolicy",
        "paused-edited",
        BEHIND,
        PAUSED_BEHIND,
    ),
    case(
        "deadletterpolicy-edited-while-down",
        "DeadLetterPolicy",
        "edited",
        BEHIND,
        STALE,
    ),
    case(
        "deadletterpolicy-created-while-down",
        "DeadLetterPolicy",
        "late",
        UNSEEN,
        NEW,
    ),
    case(
        "eventschema-ready",
        "EventSchema",
        "ready",
        READY,
        ("Healthy", "Registered"),
    ),
    case(
        "eventschema-failed",
        "EventSchema",
        "broken",
        ("Failed", "spec.schema"),
        ("Degraded", "InvalidSpec"),
    ),
    case("eventschema-paused", "EventSchema", "paused", READY, PAUSED),
    case(
        "eventschema-paused-edited",
        "EventSchema",
        "paused-edited",
        BEHIND,
        PAUSED_BEHIND,
    ),
    case(
        "eventschema-edited-while-down",
        "EventSchema",
        "edited",
        BEHIND,
        STALE,
    ),
    case(
        "eventschema-created-while-down",
        "EventSchema",
        "late",
        UNSEEN,
        NEW,
    ),
];

const UNAVAILABLE: (&str, &str) = ("InProgress", "cannot reach NATS");
const RETRYING: (&str, &str) = ("Progressing", "BrokerUnavailable");

/// The states of an operator whose NATS server went away: every kind retrying, and a Topic
/// whose deletion waits for NATS to delete its stream.
pub const BROKER_DOWN: &[Case] = &[
    case(
        "topic-broker-unavailable",
        "Topic",
        "unreachable",
        UNAVAILABLE,
        RETRYING,
    ),
    case(
        "subscription-broker-unavailable",
        "Subscription",
        "unreachable",
        UNAVAILABLE,
        RETRYING,
    ),
    case(
        "deadletterpolicy-broker-unavailable",
        "DeadLetterPolicy",
        "unreachable",
        UNAVAILABLE,
        RETRYING,
    ),
    case(
        "eventschema-broker-unavailable",
        "EventSchema",
        "unreachable",
        UNAVAILABLE,
        RETRYING,
    ),
    case(
        "topic-deleting",
        "Topic",
        "doomed",
        ("Terminating", "scheduled for deletion"),
        ("Progressing", "being deleted"),
    ),
];

/// Every case with a fixture.
pub fn all_cases() -> impl Iterator<Item = &'static Case> {
    WITH_OPERATOR.iter().chain(BROKER_DOWN)
}

/// Where the captured objects are kept.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
}

/// Setting this rewrites the fixtures from what the cluster test captures.
pub const REFRESH_ENV: &str = "SWITCHYARD_REFRESH_HEALTH_FIXTURES";

/// The namespace fixtures are written with, so refreshing them changes only what changed.
pub const FIXTURE_NAMESPACE: &str = "shop";

/// A captured object as kept in a fixture: without the fields that change on every capture and
/// say nothing about health (managedFields, uid, resourceVersion), its namespace (also in names
/// and subjects in messages) replaced by [`FIXTURE_NAMESPACE`] and every time by one, so a
/// refresh changes the fixtures only where the operator's status did.
pub fn as_fixture(object: &Value, namespace: &str) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for noise in ["managedFields", "uid", "resourceVersion"] {
            meta.remove(noise);
        }
    }
    let text = serde_json::to_string(&object)
        .expect("JSON")
        .replace(namespace, FIXTURE_NAMESPACE);
    let times = fancy_regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let text = times.replace_all(&text, "2026-01-01T00:00:00Z");
    serde_json::from_str(&text).expect("JSON")
}

pub fn read_fixture(case: &Case) -> Value {
    let path = fixtures_dir().join(format!("{}.json", case.fixture));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; capture it with {REFRESH_ENV}=1 cargo test --test health",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn write_fixture(case: &Case, object: &Value) {
    let path = fixtures_dir().join(format!("{}.json", case.fixture));
    std::fs::create_dir_all(fixtures_dir()).expect("fixtures dir");
    let text = serde_json::to_string_pretty(object).expect("JSON") + "\n";
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Argo CD
// ---------------------------------------------------------------------------------------------

/// The Argo CD health check of a kind, as the chart ships it.
pub fn argo_script_path(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/switchyard/files/argocd")
        .join(format!("health-{kind}.lua"))
}

pub fn argo_script(kind: &str) -> String {
    let path = argo_script_path(kind);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The statuses Argo CD accepts from a health check.
const ARGO_STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

/// Runs a health check as Argo CD does: the object as the global `obj` (JSON null as nil, as
/// Argo CD converts it), the script's result a table {status, message}. Returns (status,
/// message), or why the script failed or returned something Argo CD would not take.
pub fn argo_health(script: &str, object: &Value) -> Result<(String, String), String> {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let obj = lua
        .to_value_with(object, options)
        .map_err(|e| format!("converting the object: {e}"))?;
    lua.globals()
        .set("obj", obj)
        .map_err(|e| format!("setting obj: {e}"))?;
    let result: Table = lua
        .load(script)
        .set_name("health.lua")
        .eval()
        .map_err(|e| format!("the health check failed: {e}"))?;
    let status: String = result
        .get("status")
        .map_err(|e| format!("the result has no status string: {e}"))?;
    let message: Option<String> = result
        .get("message")
        .map_err(|e| format!("the result's message is no string: {e}"))?;
    if !ARGO_STATUSES.contains(&status.as_str()) {
        return Err(format!("{status:?} is not a health status Argo CD knows"));
    }
    Ok((status, message.unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// kstatus
// ---------------------------------------------------------------------------------------------

/// What kstatus computed for one object.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Kstatus {
    pub kind: String,
    pub name: String,
    pub status: String,
    pub message: String,
}

/// The `kstatus-check` binary `make tools` builds (on PATH after sourcing the dev env).
pub fn kstatus_check_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("SWITCHYARD_TOOLS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("kstatus-check"))
        .find(|p| p.is_file())
        .expect("kstatus-check is not installed: run `make tools` (hack/tools.sh kstatus-check)")
}

/// Runs `kstatus-check` on `args`; returns (exit code, stdout, stderr).
pub fn run_kstatus_check(args: &[&Path]) -> (i32, String, String) {
    let out = Command::new(kstatus_check_bin())
        .args(args)
        .output()
        .expect("kstatus-check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kstatus's verdicts on `objects`, in order: each is written to a file of its own in a scratch
/// directory (removed afterwards) and all are read by one run of `kstatus-check`.
pub fn kstatus(objects: &[Value]) -> Vec<Kstatus> {
    static SCRATCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("switchyard-kstatus-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let files: Vec<PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let path = dir.join(format!("{i:03}.json"));
            std::fs::write(&path, serde_json::to_vec(object).unwrap()).expect("write object");
            path
        })
        .collect();
    let args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, stdout, stderr) = run_kstatus_check(&args);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "kstatus-check failed: {stderr}");
    let verdicts: Vec<Kstatus> = serde_json::from_str(&stdout).expect("kstatus-check prints JSON");
    assert_eq!(
        verdicts.len(),
        objects.len(),
        "one verdict per object: {stdout}"
    );
    verdicts
}

/// Checks both readers against every case; returns every disagreement, so one run shows all.
pub fn judge(cases: &[&Case], objects: &[Value]) -> Vec<String> {
    let verdicts = kstatus(objects);
    let mut wrong = Vec::new();
    for ((case, object), verdict) in cases.iter().zip(objects).zip(&verdicts) {
        let who = format!("{} ({} {})", case.fixture, case.kind, case.name);
        assert_eq!(
            (verdict.kind.as_str(), verdict.name.as_str()),
            (case.kind, case.name),
            "{who}: kstatus-check answered out of order"
        );
        if verdict.status != case.kstatus || !verdict.message.contains(case.kstatus_says) {
            wrong.push(format!(
                "{who}: kstatus says {} ({}), expected {} (… {} …)",
                verdict.status, verdict.message, case.kstatus, case.kstatus_says
            ));
        }
        if let Some(problem) = progress_conditions_disagree(case, object) {
            wrong.push(format!("{who}: {problem}"));
        }
        match argo_health(&argo_script(case.kind), object) {
            Ok((status, message)) if status == case.argo && message.contains(case.argo_says) => {}
            Ok((status, message)) => wrong.push(format!(
                "{who}: Argo CD check says {status} ({message}), expected {} (… {} …)",
                case.argo, case.argo_says
            )),
            Err(e) => wrong.push(format!("{who}: {e}")),
        }
    }
    wrong
}

/// The status of the object's condition `type_`, if it has one.
fn condition_status<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .get("status")?
        .as_str()
}

/// The kstatus conditions must say what the case is, not only lead kstatus there by another
/// path (kstatus also reads a Ready=False as InProgress): a failure carries `Stalled=True`, an
/// object on its way at its current generation `Reconciling=True`, a healthy one neither.
fn progress_conditions_disagree(case: &Case, object: &Value) -> Option<String> {
    let reconciling = condition_status(object, "Reconciling");
    let stalled = condition_status(object, "Stalled");
    let current =
        object.pointer("/status/observedGeneration") == object.pointer("/metadata/generation");
    let expected = match (case.kstatus, case.argo) {
        ("Failed", _) => (None, Some("True")),
        ("Current", _) => (None, None),
        ("InProgress" | "Terminating", "Progressing") if current => (Some("True"), None),
        _ => return None,
    };
    (expected != (reconciling, stalled)).then(|| {
        format!(
            "Reconciling={reconciling:?} Stalled={stalled:?}, expected Reconciling={:?} Stalled={:?}",
            expected.0, expected.1
        )
    })
}
