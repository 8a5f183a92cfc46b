//! Reading the manifests: the files `-f` names (directories searched recursively for `.yaml`,
//! `.yml` and `.json`, `-` for standard input), split into documents. A path that cannot be
//! read stops the run; a document that cannot be parsed is a problem of that document.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

use super::report::Origin;

/// How standard input is named in the output.
pub const STDIN: &str = "<stdin>";

/// One document of a file: its value, or why it could not be parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub value: Result<Value, String>,
}

/// A file to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::File(path) => path.display().to_string(),
            Input::Stdin => STDIN.into(),
        }
    }
}

/// The files named by `paths`, in order: a file as given, whatever its extension; a directory's
/// manifest files in name order, hidden entries (`.git`) left out; `-` as standard input (once).
pub fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            if !inputs.contains(&Input::Stdin) {
                inputs.push(Input::Stdin);
            }
            continue;
        }
        let metadata =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut inputs)?;
        } else {
            inputs.push(Input::File(path.clone()));
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, inputs: &mut Vec<Input>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // Symbolic links to directories are not followed: they could lead in circles.
        let metadata = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if metadata.is_dir() {
            walk(&path, inputs)?;
        } else if is_manifest(&path) {
            inputs.push(Input::File(path));
        }
    }
    Ok(())
}

/// Whether a file found in a directory is read as manifests.
pub fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

/// The text of an input.
pub fn read(input: &Input) -> Result<String, String> {
    match input {
        Input::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Input::Stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(text)
        }
    }
}

/// Whether a file's text is parsed as JSON (by its extension) rather than YAML.
pub fn is_json(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// The documents of a file's text: YAML documents separated by `---`, or JSON values one after
/// the other. Empty documents are left out but keep their place in the count. Parsing stops at
/// the first document that cannot be parsed, which is returned as an error.
pub fn parse(file: &str, text: &str, json: bool) -> Vec<Document> {
    let origin = |document| Origin {
        file: file.to_string(),
        document,
    };
    let values: Vec<Result<Value, String>> = if json {
        let mut values = Vec::new();
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let failed = value.is_err();
            values.push(value.map_err(|e| format!("not valid JSON: {e}")));
            if failed {
                break;
            }
        }
        values
    } else {
        let mut values = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"));
            let failed = value.is_err();
            values.push(value);
            if failed {
                break;
            }
        }
        values
    };
    values
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !matches!(value, Ok(Value::Null)))
        .map(|(index, value)| Document {
            origin: origin(index + 1),
            value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(documents: &[Document]) -> Vec<(usize, Result<Value, String>)> {
        documents
            .iter()
            .map(|d| (d.origin.document, d.value.clone()))
            .collect()
    }

    #[test]
    fn yaml_documents_keep_their_place_when_some_are_empty() {
        let text = "---\n# only a comment\n---\nkind: Topic\n---\n---\nkind: Subscription\n";
        let documents = parse("a.yaml", text, false);
        assert_eq!(
            values(&documents),
            vec![
                (2, Ok(json!({"kind": "Topic"}))),
                (4, Ok(json!({"kind": "Subscription"})))
            ]
        );
        assert!(documents.iter().all(|d| d.origin.file == "a.yaml"));
    }

    #[test]
    fn a_broken_document_is_reported_and_ends_the_file() {
        let documents = parse("a.yaml", "kind: Topic\n---\nkind: [unclosed\n", false);
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].value, Ok(json!({"kind": "Topic"})));
        let error = documents[1].value.clone().unwrap_err();
        assert!(error.starts_with("not valid YAML"), "{error}");
    }

    #[test]
    fn json_files_may_hold_several_values() {
        let documents = parse(
            "a.json",
            r#"{"kind": "Topic"} {"kind": "EventSchema"}"#,
            true,
        );
        assert_eq!(documents.len(), 2);
        let broken = parse("a.json", r#"{"kind": "#, true);
        assert!(
            broken[0]
                .value
                .clone()
                .unwrap_err()
                .starts_with("not valid JSON")
        );
    }

    #[test]
    fn directories_are_searched_recursively_for_manifest_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("switchyard-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in [
            "b.yaml",
            "a/c.yml",
            "a/d.json",
            "a/notes.txt",
            ".git/config.yaml",
            "e.YAML",
        ] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let found = inputs(&[dir.clone(), PathBuf::from("-"), PathBuf::from("-")]);
        let names: Vec<String> = found
            .unwrap()
            .iter()
            .map(|i| {
                i.name()
                    .trim_start_matches(&dir.display().to_string())
                    .to_string()
            })
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            names,
            ["/a/c.yml", "/a/d.json", "/b.yaml", "/e.YAML", STDIN]
        );
    }

    #[test]
    fn a_missing_path_stops_the_run() {
        let error = inputs(&[PathBuf::from("/nonexistent/manifests")]).unwrap_err();
        assert!(error.contains("/nonexistent/manifests"), "{error}");
    }
}
