//! The previous version of a manifest file in git (`--against`, default `HEAD`): the file found by
//! its path in that revision, through the `git` command. Outside a repository, or for a file the
//! revision does not have, there is nothing to compare.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::{load, objects, report::ObjectId};
use crate::{reconcile::event_schema::candidate, registry::Candidate};

/// What a revision holds for a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Previous {
    /// The file's text in the revision, and how to name it (`HEAD:manifests/schema.yaml`).
    Text { spec: String, text: String },
    /// Nothing to compare, and why.
    Nothing(String),
}

/// Reads files as a git revision holds them; remembers each repository's answer.
pub struct Git {
    rev: String,
    /// `--against` was given: a revision that does not exist stops the run.
    explicit: bool,
    /// Repository top level → the revision's commit there, or why there is none.
    commits: HashMap<PathBuf, Result<String, String>>,
}

impl Git {
    pub fn new(against: Option<&str>) -> Self {
        Self {
            rev: against.unwrap_or("HEAD").to_string(),
            explicit: against.is_some(),
            commits: HashMap::new(),
        }
    }

    /// `file` as the revision holds it. An error only when `--against` names no revision of
    /// the file's repository.
    pub fn previous(&mut self, file: &Path) -> Result<Previous, String> {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let top = match git(&dir, &["rev-parse", "--show-toplevel"]) {
            Ok(top) => PathBuf::from(top.trim_end()),
            Err(Failure::Missing) => return Ok(Previous::Nothing("git is not installed".into())),
            Err(Failure::Refused(_)) => {
                return Ok(Previous::Nothing(format!(
                    "{} is not in a git repository",
                    file.display()
                )));
            }
        };
        let commit = match self.commit(&top)? {
            Ok(commit) => commit,
            Err(why) => return Ok(Previous::Nothing(why)),
        };
        let relative = match (file.canonicalize(), top.canonicalize()) {
            (Ok(file), Ok(top)) => file.strip_prefix(&top).map(Path::to_path_buf).ok(),
            _ => None,
        };
        let Some(relative) = relative else {
            return Ok(Previous::Nothing(format!(
                "{} could not be placed in the repository at {}",
                file.display(),
                top.display()
            )));
        };
        let relative = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let object = format!("{commit}:{relative}");
        let spec = format!("{}:{relative}", self.rev);
        if git(&top, &["cat-file", "-e", &object]).is_err() {
            return Ok(Previous::Nothing(format!(
                "{relative} is not in {}: a new file, nothing to compare",
                self.rev
            )));
        }
        match git(&top, &["show", &object]) {
            Ok(text) => Ok(Previous::Text { spec, text }),
            Err(Failure::Refused(why)) => Ok(Previous::Nothing(format!(
                "git could not read {spec}: {}",
                why.trim()
            ))),
            Err(Failure::Missing) => Ok(Previous::Nothing("git is not installed".into())),
        }
    }

    /// The revision's commit in the repository at `top`; the outer error stops the run.
    fn commit(&mut self, top: &Path) -> Result<Result<String, String>, String> {
        if !self.commits.contains_key(top) {
            let asked = format!("{}^{{commit}}", self.rev);
            let answer = git(top, &["rev-parse", "--verify", "--quiet", &asked])
                .map(|commit| commit.trim_end().to_string())
                .map_err(|_| {
                    format!(
                        "{} names no commit in the git repository at {} (a repository without commits has nothing to compare)",
                        self.rev,
                        top.display()
                    )
                });
            self.commits.insert(top.to_path_buf(), answer);
        }
        match &self.commits[top] {
            Err(why) if self.explicit => Err(format!("--against {}: {why}", self.rev)),
            answer => Ok(answer.clone()),
        }
    }
}

enum Failure {
    /// The `git` command is not there.
    Missing,
    /// It ran and refused.
    Refused(String),
}

/// Runs `git -C dir args…`; its standard output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Result<String, Failure> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Failure::Missing,
            _ => Failure::Refused(e.to_string()),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Failure::Refused(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

/// The earlier version of the EventSchema `id` (of type `event_type`) in a file's previous
/// text: the object of the same name, else the one of the same event type in its namespace.
/// `Ok(None)`: the text holds neither. Pure.
pub fn previous_candidate(
    file: &str,
    text: &str,
    id: &ObjectId,
    event_type: &str,
    namespace: &str,
) -> Result<Option<Candidate>, String> {
    let sorted = objects::sort(load::parse(file, text, load::is_json(file)), namespace);
    let schemas: Vec<&objects::Object> = sorted
        .objects
        .iter()
        .filter(|o| o.id.kind == "EventSchema" && o.id.namespace == id.namespace)
        .collect();
    let same_type = |o: &&&objects::Object| {
        o.value.pointer("/spec/eventType").and_then(Value::as_str) == Some(event_type)
    };
    let Some(previous) = schemas
        .iter()
        .find(|o| o.id == *id)
        .or_else(|| schemas.iter().find(same_type))
    else {
        return Ok(None);
    };
    let schema = serde_json::from_value(previous.value.clone())
        .map_err(|e| format!("cannot be read as an EventSchema: {e}"))?;
    candidate(&schema, String::new()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ObjectId {
            kind: "EventSchema".into(),
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    const TEXT: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: Topic
metadata: {name: orders}
---
apiVersion: switchyard.dev/v1alpha1
kind: EventSchema
metadata: {name: order-placed}
spec: {eventType: order.placed, version: 3, schema: {type: object}}
---
apiVersion: switchyard.dev/v1alpha1
kind: EventSchema
metadata: {name: user-created}
spec: {eventType: user.created, version: 1, schema: {type: object}}
";

    #[test]
    fn the_previous_version_is_found_by_name_then_by_event_type() {
        let by_name =
            previous_candidate("s.yaml", TEXT, &id("order-placed"), "order.placed", "shop")
                .unwrap()
                .unwrap();
        assert_eq!(
            (by_name.event_type.as_str(), by_name.version),
            ("order.placed", 3)
        );
        let renamed = previous_candidate("s.yaml", TEXT, &id("orders-v2"), "user.created", "shop")
            .unwrap()
            .unwrap();
        assert_eq!(renamed.event_type, "user.created");
        assert!(
            previous_candidate("s.yaml", TEXT, &id("x"), "order.paid", "shop")
                .unwrap()
                .is_none()
        );
        assert!(
            previous_candidate("s.yaml", TEXT, &id("order-placed"), "order.placed", "other")
                .unwrap()
                .is_none(),
            "another namespace's schema is another schema"
        );
    }

    #[test]
    fn a_previous_version_that_is_no_schema_says_why() {
        let text = "apiVersion: switchyard.dev/v1alpha1\nkind: EventSchema\nmetadata: {name: a}\nspec: {eventType: a.b, version: 1, schema: {type: 42}}\n";
        let error = previous_candidate("s.yaml", text, &id("a"), "a.b", "shop").unwrap_err();
        assert!(error.contains("spec.schema"), "{error}");
    }

    #[test]
    fn outside_a_repository_there_is_nothing_to_compare() {
        let dir = std::env::temp_dir().join(format!("switchyard-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.yaml");
        std::fs::write(&file, TEXT).unwrap();
        let previous = Git::new(None).previous(&file);
        std::fs::remove_dir_all(&dir).unwrap();
        match previous.unwrap() {
            Previous::Nothing(why) => assert!(
                why.contains("not in a git repository") || why.contains("git is not installed"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
