//! A report as text (one line per problem, then which source each EventSchema was compared with,
//! the notes and a summary line) or as JSON (the shape README.md documents). Pure.

use std::fmt::Write as _;

use serde::Serialize;

use super::report::{Against, Checked, Problem, Report, Severity, SourceUsed};

/// Version of the JSON shape; raised only when a field changes meaning or goes away.
pub const JSON_FORMAT: u32 = 1;

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        let _ = writeln!(out, "{}", problem_line(problem));
    }
    for source in &report.sources {
        let against = match source.source {
            Against::Registry => "compared with the registry",
            Against::Git => "compared with git",
            Against::None => "not compared",
        };
        let _ = writeln!(
            out,
            "source: {} v{} in {} (document {}): {against}: {}",
            source.object, source.version, source.file, source.document, source.detail
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out, "{}", summary(report));
    out
}

pub fn problem_line(problem: &Problem) -> String {
    let severity = match problem.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut line = format!("{severity}: {}", problem.file);
    if let Some(document) = problem.document {
        let _ = write!(line, " (document {document})");
    }
    if let Some(object) = &problem.object {
        let _ = write!(line, ": {object}");
    }
    if let Some(path) = &problem.path {
        let _ = write!(line, ": {path}");
    }
    let _ = write!(line, ": {} [{}]", problem.message, problem.check.as_str());
    line
}

fn summary(report: &Report) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let mut line = format!(
        "{} in {} checked",
        plural(report.objects.len(), "object"),
        plural(report.files, "file")
    );
    if report.ignored > 0 {
        let _ = write!(
            line,
            ", {} of other API groups ignored",
            plural(report.ignored, "object")
        );
    }
    let (errors, warnings) = (report.errors(), report.warnings());
    if errors == 0 && warnings == 0 {
        line.push_str(": no problems");
    } else {
        let _ = write!(
            line,
            ": {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    line
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format: u32,
    ok: bool,
    summary: JsonSummary,
    objects: &'a [Checked],
    problems: &'a [Problem],
    sources: &'a [SourceUsed],
    notes: &'a [String],
}

#[derive(Serialize)]
struct JsonSummary {
    files: usize,
    objects: usize,
    ignored: usize,
    errors: usize,
    warnings: usize,
}

pub fn json(report: &Report) -> String {
    let shape = JsonReport {
        format: JSON_FORMAT,
        ok: report.errors() == 0,
        summary: JsonSummary {
            files: report.files,
            objects: report.objects.len(),
            ignored: report.ignored,
            errors: report.errors(),
            warnings: report.warnings(),
        },
        objects: &report.objects,
        problems: &report.problems,
        sources: &report.sources,
        notes: &report.notes,
    };
    let mut text = serde_json::to_string_pretty(&shape).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::validate::report::{Check, ObjectId};

    fn report() -> Report {
        let id = ObjectId {
            kind: "Subscription".into(),
            namespace: "shop".into(),
            name: "billing".into(),
        };
        let schema = ObjectId {
            kind: "EventSchema".into(),
            namespace: "shop".into(),
            name: "order-placed".into(),
        };
        Report {
            files: 2,
            objects: vec![Checked {
                file: "subs.yaml".into(),
                document: 2,
                object: id.clone(),
            }],
            ignored: 1,
            problems: vec![
                Problem {
                    severity: Severity::Error,
                    check: Check::Reference,
                    file: "subs.yaml".into(),
                    document: Some(2),
                    object: Some(id),
                    path: Some("spec.topicRef.name".into()),
                    message: "Topic shop/orders is not among the manifests".into(),
                },
                Problem {
                    severity: Severity::Warning,
                    check: Check::Manifest,
                    file: "x.yaml".into(),
                    document: None,
                    object: None,
                    path: None,
                    message: "odd".into(),
                },
            ],
            sources: vec![SourceUsed {
                object: schema,
                file: "schemas.yaml".into(),
                document: 1,
                version: 2,
                source: Against::Git,
                detail: "HEAD:schemas.yaml (v1)".into(),
            }],
            notes: vec!["CEL rules were evaluated offline".into()],
        }
    }

    #[test]
    fn text_has_one_line_per_problem_then_sources_notes_and_a_summary() {
        assert_eq!(
            text(&report()),
            "error: subs.yaml (document 2): Subscription shop/billing: spec.topicRef.name: Topic shop/orders is not among the manifests [reference]\n\
             warning: x.yaml: odd [manifest]\n\
             source: EventSchema shop/order-placed v2 in schemas.yaml (document 1): compared with git: HEAD:schemas.yaml (v1)\n\
             note: CEL rules were evaluated offline\n\
             1 object in 2 files checked, 1 object of other API groups ignored: 1 error, 1 warning\n"
        );
        assert_eq!(
            text(&Report::default()),
            "0 objects in 0 files checked: no problems\n"
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let value: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(
            value,
            json!({
                "format": 1,
                "ok": false,
                "summary": {"files": 2, "objects": 1, "ignored": 1, "errors": 1, "warnings": 1},
                "objects": [{"file": "subs.yaml", "document": 2, "kind": "Subscription", "namespace": "shop", "name": "billing"}],
                "problems": [
                    {"severity": "error", "check": "reference", "file": "subs.yaml", "document": 2,
                     "object": {"kind": "Subscription", "namespace": "shop", "name": "billing"},
                     "path": "spec.topicRef.name", "message": "Topic shop/orders is not among the manifests"},
                    {"severity": "warning", "check": "manifest", "file": "x.yaml", "document": null,
                     "object": null, "path": null, "message": "odd"},
                ],
                "sources": [{"object": {"kind": "EventSchema", "namespace": "shop", "name": "order-placed"},
                             "file": "schemas.yaml", "document": 1, "version": 2, "source": "git",
                             "detail": "HEAD:schemas.yaml (v1)"}],
                "notes": ["CEL rules were evaluated offline"],
            })
        );
    }
}
