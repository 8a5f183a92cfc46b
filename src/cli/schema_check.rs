//! `switchyard schema check`: judge a candidate schema against earlier versions, for CI.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::schema::{self, Compatibility, Direction, Report, Schema};

/// Every mode with its verdict, shown beside the verdict of the chosen mode.
type Verdicts = Vec<(Compatibility, bool)>;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The compatibility mode to judge by.
    #[arg(long, value_enum, default_value = "backward")]
    pub compatibility: Compatibility,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Earlier versions, oldest first, then the candidate last. Each is a JSON or YAML schema
    /// document, or an EventSchema manifest (its spec.schema is used).
    #[arg(required = true, num_args = 1.., value_name = "PREVIOUS... CANDIDATE")]
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Exit codes, as documented: 0 compatible, 1 incompatible, 2 invalid input.
const INCOMPATIBLE: u8 = 1;
const INVALID_INPUT: u8 = 2;

pub fn run(args: &CheckArgs) -> ExitCode {
    let schemas: Result<Vec<Schema>, String> = args.files.iter().map(|f| load(f)).collect();
    let mut schemas = match schemas {
        Ok(s) => s,
        Err(message) => {
            eprintln!("switchyard schema check: {message}");
            return ExitCode::from(INVALID_INPUT);
        }
    };
    let candidate = schemas.pop().expect("clap requires at least one file");
    let report = schema::check(args.compatibility, &schemas, &candidate);
    let verdicts = schema::verdicts(&schemas, &candidate);
    let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let rendered = match args.output {
        Output::Text => render_text(&report, &verdicts, &names),
        Output::Json => render_json(&report, &verdicts, &names),
    };
    print!("{rendered}");
    if report.compatible {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INCOMPATIBLE)
    }
}

/// Reads one schema: a JSON or YAML file holding either the schema itself or an EventSchema
/// manifest. Every failure names the file and what is wrong.
pub fn load(path: &Path) -> Result<Schema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let document: serde_json::Value = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?
    } else {
        serde_yaml::from_str(&text)
            .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?
    };
    let document = match document.get("kind").and_then(|k| k.as_str()) {
        Some("EventSchema") => document.pointer("/spec/schema").cloned().ok_or_else(|| {
            format!(
                "{}: EventSchema manifest has no spec.schema",
                path.display()
            )
        })?,
        _ => document,
    };
    Schema::parse(document).map_err(|e| format!("{}: not a valid JSON Schema: {e}", path.display()))
}

fn direction_text(direction: Direction) -> &'static str {
    match direction {
        Direction::Backward => "backward (the candidate reads data written with",
        Direction::Forward => "forward (data written with the candidate is read by",
    }
}

fn render_text(report: &Report, verdicts: &Verdicts, names: &[String]) -> String {
    let mut out = String::new();
    let candidate = names.last().map(String::as_str).unwrap_or_default();
    for check in &report.checks {
        let against = names.get(check.against).map(String::as_str).unwrap_or("?");
        let _ = writeln!(out, "{} {against}):", direction_text(check.direction));
        if check.differences.is_empty() {
            let _ = writeln!(out, "  no differences");
        }
        for d in &check.differences {
            let verdict = if d.compatible { "ok     " } else { "BREAKS " };
            let _ = writeln!(out, "  {verdict} {:<48} {}", d.kind.as_str(), d.pointer);
        }
    }
    let all: Vec<String> = verdicts
        .iter()
        .map(|(mode, ok)| format!("{mode:?} {}", if *ok { "yes" } else { "no" }))
        .collect();
    let _ = writeln!(out, "all modes: {}", all.join(", "));
    let mode = format!("{:?}", report.mode);
    let breaking = report.breaking().count();
    if report.compatible {
        let _ = writeln!(out, "{candidate} is compatible under {mode}");
    } else {
        let _ = writeln!(
            out,
            "{candidate} is NOT compatible under {mode}: {breaking} breaking change(s)"
        );
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    candidate: &'a str,
    previous: &'a [String],
    #[serde(flatten)]
    report: &'a Report,
    /// Every mode's verdict, keyed by mode name.
    verdicts: std::collections::BTreeMap<String, bool>,
}

fn render_json(report: &Report, verdicts: &Verdicts, names: &[String]) -> String {
    let (candidate, previous) = names
        .split_last()
        .map(|(c, p)| (c.as_str(), p))
        .unwrap_or(("", &[]));
    let json = JsonReport {
        candidate,
        previous,
        report,
        verdicts: verdicts
            .iter()
            .map(|(mode, ok)| (format!("{mode:?}"), *ok))
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}
