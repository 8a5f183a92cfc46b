//! Rendering the Helm chart and the kustomize bases, for the tests that compare and install them.
//! `helm` and `kubectl` come from PATH (`source target/dev-env/env`, as for every integration test).

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

/// The chart in the repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/switchyard")
}

/// Runs helm; returns (success, stdout, stderr).
pub fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("helm")
        .args(args)
        .output()
        .expect("helm on PATH (source target/dev-env/env; `make tools` builds it)");
    split(out)
}

fn split(out: Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of `chart` as release `release` in `namespace` with extra arguments
/// (`--set`, `-f`); the rendered objects, or helm's error.
pub fn render_chart(
    chart: &Path,
    release: &str,
    namespace: &str,
    extra: &[&str],
) -> Result<Vec<Value>, String> {
    let chart = chart.to_str().expect("UTF-8 path");
    let mut args = vec!["template", release, chart, "--namespace", namespace];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = helm(&args);
    if !ok {
        return Err(stderr);
    }
    Ok(documents(&stdout))
}

/// The repository's chart with default values, as release `switchyard` in `switchyard-system`
/// (what `config/default` is equivalent to), plus `extra` arguments.
pub fn render(extra: &[&str]) -> Result<Vec<Value>, String> {
    render_chart(&chart_dir(), "switchyard", "switchyard-system", extra)
}

/// `kubectl kustomize` of a directory of the repository.
pub fn kustomize(dir: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .expect("kubectl on PATH (source target/dev-env/env)");
    let (ok, stdout, stderr) = split(out);
    assert!(ok, "kubectl kustomize {dir}: {stderr}");
    documents(&stdout)
}

/// The objects of a multi-document YAML stream (empty documents skipped).
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).expect("rendered YAML parses");
            serde_json::to_value(value).expect("rendered YAML is JSON-compatible")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `Kind namespace/name` of an object, its identity for comparisons.
pub fn identity(obj: &Value) -> String {
    format!(
        "{} {}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Objects by identity; fails on a duplicate.
pub fn by_identity(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for obj in objects {
        let id = identity(&obj);
        assert!(map.insert(id.clone(), obj).is_none(), "{id} rendered twice");
    }
    map
}

/// The objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

/// The one object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {}",
        found.len()
    );
    found[0]
}

/// Labels and annotations only Helm sets: what an object installed by kustomize lacks.
pub const HELM_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];
pub const HELM_ANNOTATIONS: [&str; 1] = ["helm.sh/resource-policy"];

/// The object without Helm's own labels and annotations (and without the maps they leave empty).
pub fn without_helm_metadata(mut obj: Value) -> Value {
    let metadata = obj["metadata"].as_object_mut().expect("metadata");
    for (field, keys) in [
        ("labels", &HELM_LABELS[..]),
        ("annotations", &HELM_ANNOTATIONS[..]),
    ] {
        if let Some(map) = metadata.get_mut(field).and_then(Value::as_object_mut) {
            for key in keys {
                map.remove(*key);
            }
            if map.is_empty() {
                metadata.remove(field);
            }
        }
    }
    obj
}

/// JSON pointers at which two values differ.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(a, b, "", &mut out);
    out
}

fn diff(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{at}/{key}");
                match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, &path, out),
                    (x, _) => out.push(format!(
                        "{path} only in the {}",
                        if x.is_some() { "first" } else { "second" }
                    )),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                diff(x, y, &format!("{at}/{i}"), out);
            }
        }
        // YAML tools differ in how they write numbers (kustomize writes 1.0 as 1).
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{at}: {x} vs {y}")),
    }
}

/// A copy of the repository's chart in a fresh temporary directory, removed when dropped.
pub struct ChartCopy {
    pub dir: PathBuf,
}

impl ChartCopy {
    pub fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-chart-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        copy_dir(&chart_dir(), &dir);
        Self { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

impl Drop for ChartCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
