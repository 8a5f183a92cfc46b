//! `switchyard validate -f DIR`: offline checks of a set of manifests, for CI.
//!
//! - [`load`]: files and directories into documents.
//! - [`objects`]: which documents are Switchyard objects.
//! - [`crd_schema`]: each object against its CRD (OpenAPI schema, CEL rules).
//! - [`refs`]: references between the objects.
//! - [`event_schemas`]: EventSchema documents and the versions of each event type.
//! - [`verdict`]: a version judged against what was published before it.
//! - [`registry`] and [`history`]: where "before" comes from: the registry, or git.
//! - [`report`] and [`render`]: what was found, as text or JSON.
//!
//! Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 the command could not run.

mod crd_schema;
mod event_schemas;
mod history;
mod load;
mod objects;
mod refs;
mod registry;
mod render;
mod report;
mod verdict;

use std::{collections::HashSet, path::PathBuf, process::ExitCode};

use clap::Args;

use self::{
    crd_schema::CrdSchemas,
    event_schemas::Published,
    history::{Git, Previous},
    registry::RegistryReader,
    report::{Against, Checked, ObjectId, Origin, Report, SourceUsed},
    verdict::Baseline,
};
pub(crate) use self::{
    objects::Object,
    render::{json as render_json, problem_line, text as render_text},
    report::{Check, Severity},
};
use super::{NatsCredentialArgs, schema_check::Output};
use crate::schema::Compatibility;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest file or directory (searched recursively for .yaml, .yml and .json files);
    /// `-` reads standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of the objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// References to objects that are not among the manifests are warnings instead of errors
    /// (for objects applied from elsewhere).
    #[arg(long)]
    pub allow_external_refs: bool,
    /// Without a registry, compare each EventSchema with its file as it is in this git revision.
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
    /// Compare EventSchemas with the schema registry of this NATS server (comma-separated
    /// URLs); it must be reachable. Without it, the server in NATS_URL is tried, and git is used
    /// when it cannot be reached.
    #[arg(long = "nats-url", value_name = "URLS")]
    pub nats_url: Option<String>,
    /// Never read the registry, even when NATS_URL is set: compare with git.
    #[arg(long, conflicts_with = "nats_url")]
    pub no_registry: bool,
    #[command(flatten)]
    pub nats: NatsCredentialArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

const PROBLEMS_FOUND: u8 = 1;
const CANNOT_RUN: u8 = 2;

pub async fn run(args: ValidateArgs) -> ExitCode {
    match validate(&args).await {
        Ok(report) => {
            let rendered = match args.output {
                Output::Text => render::text(&report),
                Output::Json => render::json(&report),
            };
            print!("{rendered}");
            if report.errors() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(PROBLEMS_FOUND)
            }
        }
        Err(message) => {
            eprintln!("switchyard validate: {message}");
            ExitCode::from(CANNOT_RUN)
        }
    }
}

/// Every check; an error stops the run (exit code 2).
async fn validate(args: &ValidateArgs) -> Result<Report, String> {
    let Offline {
        mut report,
        objects,
    } = check_objects(
        &args.files,
        &args.namespace,
        if args.allow_external_refs {
            refs::Outside::Allowed
        } else {
            refs::Outside::Flagged
        },
    )?;
    let (published, heads) = check_event_schemas(&objects, &mut report);
    if !published.is_empty() {
        compare(args, &published, &heads, &mut report).await?;
    }
    report.sort();
    Ok(report)
}

/// The manifests read and checked without a broker: what was found, and the objects.
pub(crate) struct Offline {
    pub report: Report,
    pub objects: Vec<Object>,
}

/// The manifests `files` name, read and checked as `validate` checks them without a registry
/// or git: documents, CRD schemas and CEL rules, objects defined twice, references (all within
/// the set), EventSchema documents and the versions of each event type within the set. What
/// `plan` and `apply` start from. An error: the command could not run.
pub(crate) fn check_manifests(files: &[PathBuf], namespace: &str) -> Result<Offline, String> {
    let mut offline = check_objects(files, namespace, refs::Outside::Refused)?;
    // Transitions are judged against the broker itself.
    offline.report.notes.clear();
    check_event_schemas(&offline.objects, &mut offline.report);
    offline.report.sort();
    Ok(offline)
}

/// Reads the manifests and checks each object against its CRD, duplicates and references.
fn check_objects(
    files: &[PathBuf],
    namespace: &str,
    outside: refs::Outside,
) -> Result<Offline, String> {
    let inputs = load::inputs(files)?;
    if inputs.is_empty() {
        return Err(format!(
            "no manifest files (.yaml, .yml, .json) in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut documents = Vec::new();
    for input in &inputs {
        let name = input.name();
        let text = load::read(input)?;
        documents.extend(load::parse(&name, &text, load::is_json(&name)));
    }
    let sorted = objects::sort(documents, namespace);
    let objects = sorted.objects;
    let mut report = Report {
        files: inputs.len(),
        ignored: sorted.ignored,
        problems: sorted.problems,
        notes: vec![crd_schema::TRANSITION_RULES_NOTE.into()],
        ..Report::default()
    };
    let crds = CrdSchemas::embedded()?;
    for object in &objects {
        report.problems.extend(crds.check(object));
        report.objects.push(Checked {
            file: object.origin.file.clone(),
            document: object.origin.document,
            object: object.id.clone(),
        });
    }
    report.problems.extend(objects::duplicates(&objects));
    report.problems.extend(refs::check(&objects, outside));
    Ok(Offline { report, objects })
}

/// Checks the EventSchema documents of the objects without errors so far, and the versions of
/// each event type; returns those that can be judged and the index of the highest version of
/// each event type.
fn check_event_schemas<'a>(
    objects: &'a [Object],
    report: &mut Report,
) -> (Vec<Published<'a>>, Vec<usize>) {
    let broken: HashSet<(Origin, ObjectId)> = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .filter_map(|p| {
            let origin = Origin {
                file: p.file.clone(),
                document: p.document?,
            };
            Some((origin, p.object.clone()?))
        })
        .collect();
    let (published, problems) = event_schemas::parse(objects, |o| {
        broken.contains(&(o.origin.clone(), o.id.clone()))
    });
    report.problems.extend(problems);
    let (heads, problems) = event_schemas::versions(&published);
    report.problems.extend(problems);
    (published, heads)
}

/// Judges each EventSchema against the registry when one is used, else against git.
async fn compare(
    args: &ValidateArgs,
    published: &[Published<'_>],
    heads: &[usize],
    report: &mut Report,
) -> Result<(), String> {
    match open_registry(args, report).await? {
        Some(registry) => against_registry(&registry, published, heads, report).await,
        None => against_git(args, published, report),
    }
}

/// The registry to read: `--nats-url` must be reachable; NATS_URL is only tried.
async fn open_registry(
    args: &ValidateArgs,
    report: &mut Report,
) -> Result<Option<RegistryReader>, String> {
    if args.no_registry {
        return Ok(None);
    }
    let (url, required) = match (&args.nats_url, std::env::var("NATS_URL")) {
        (Some(url), _) => (url.clone(), true),
        (None, Ok(url)) if !url.trim().is_empty() => (url, false),
        _ => return Ok(None),
    };
    let options = args
        .nats
        .to_options(&url)
        .map_err(|e| format!("invalid NATS settings: {e}"))?;
    match RegistryReader::connect(&options).await {
        Ok(registry) => Ok(Some(registry)),
        Err(e) if required => Err(format!(
            "cannot read the schema registry: {e} (check --nats-url and the credentials)"
        )),
        Err(e) => {
            report.notes.push(format!(
                "the NATS server in NATS_URL could not be reached ({e}): EventSchemas were compared with git instead"
            ));
            Ok(None)
        }
    }
}

async fn against_registry(
    registry: &RegistryReader,
    published: &[Published<'_>],
    heads: &[usize],
    report: &mut Report,
) -> Result<(), String> {
    for (index, schema) in published.iter().enumerate() {
        let candidate = &schema.candidate;
        if !heads.contains(&index) {
            report.sources.push(source(
                schema,
                Against::None,
                "a higher version of the same event type is among the manifests: only that one is compared with the registry".into(),
            ));
            continue;
        }
        let transitive = matches!(
            candidate.compatibility,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        );
        let holding = registry
            .holding(&candidate.namespace, &candidate.event_type, transitive)
            .await
            .map_err(|e| format!("cannot read the schema registry: {e}"))?;
        let detail = match (&holding.latest, registry.has_bucket()) {
            (Some((latest, _)), _) => format!(
                "registered versions of {} in namespace {}: {}",
                candidate.event_type,
                candidate.namespace,
                latest
                    .versions
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, true) => format!(
                "nothing is registered for {} in namespace {} yet",
                candidate.event_type, candidate.namespace
            ),
            (None, false) => {
                "the registry's bucket does not exist yet: nothing is registered".into()
            }
        };
        report
            .problems
            .extend(verdict::judge(schema, &holding, Baseline::Registry));
        report
            .sources
            .push(source(schema, Against::Registry, detail));
    }
    Ok(())
}

fn against_git(
    args: &ValidateArgs,
    published: &[Published<'_>],
    report: &mut Report,
) -> Result<(), String> {
    let mut git = Git::new(args.against.as_deref());
    for schema in published {
        let origin = &schema.object.origin;
        if origin.file == load::STDIN {
            report.sources.push(source(
                schema,
                Against::None,
                "read from standard input: there is no file to look up in git".into(),
            ));
            continue;
        }
        let (spec, text) = match git.previous(std::path::Path::new(&origin.file))? {
            Previous::Text { spec, text } => (spec, text),
            Previous::Nothing(why) => {
                report.sources.push(source(schema, Against::None, why));
                continue;
            }
        };
        let candidate = &schema.candidate;
        let previous = history::previous_candidate(
            &origin.file,
            &text,
            &schema.object.id,
            &candidate.event_type,
            &args.namespace,
        );
        match previous {
            Ok(Some(previous)) => {
                report.problems.extend(verdict::judge(
                    schema,
                    &verdict::holding_of(&previous),
                    Baseline::Git(&spec),
                ));
                report.sources.push(source(
                    schema,
                    Against::Git,
                    format!("{spec} (v{})", previous.version),
                ));
            }
            Ok(None) => report.sources.push(source(
                schema,
                Against::None,
                format!(
                    "{spec} holds no EventSchema {} nor one of type {}: nothing to compare",
                    schema.object.id.name, candidate.event_type
                ),
            )),
            Err(e) => report.sources.push(source(
                schema,
                Against::None,
                format!("{spec} holds no readable earlier version ({e}): nothing to compare"),
            )),
        }
    }
    Ok(())
}

fn source(schema: &Published<'_>, against: Against, detail: String) -> SourceUsed {
    SourceUsed {
        object: schema.object.id.clone(),
        file: schema.object.origin.file.clone(),
        document: schema.object.origin.document,
        version: schema.candidate.version,
        source: against,
        detail,
    }
}
