//! `switchyard plan -f`, `apply -f` and `status`: GitOps without a cluster. The manifests are
//! read and checked as `switchyard validate` does; planning and applying are
//! [`crate::gitops`]'s, the operator's reconcile core.
//!
//! Exit codes: `plan` 0 no changes, 2 changes pending, 1 refused changes, invalid manifests or
//! a failure; `apply` 0 applied (or nothing to do), 1 otherwise; `status` 0, or 1 on a failure.

mod render;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Args;

use super::{
    NatsArgs,
    schema_check::Output,
    validate::{self, Check, Severity},
};
use crate::{
    broker::Broker,
    gitops::{self, Manifests, PlanOptions},
};

/// Which manifests, and the namespace of those that name none.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest file or directory (searched recursively for .yaml, .yml and .json files);
    /// `-` reads standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of the objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Also delete what Switchyard made on the broker for the manifests' namespaces that the
    /// manifests no longer name (streams with their events, consumers).
    #[arg(long)]
    pub prune: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this namespace's objects (default: every namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `plan`: changes pending.
const CHANGES_PENDING: u8 = 2;
/// Refused changes, invalid manifests, or a failure.
const FAILED: u8 = 1;
/// How long the first connection to NATS may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn plan(args: PlanArgs) -> ExitCode {
    let Some((manifests, broker)) = prepare("plan", &args).await else {
        return ExitCode::from(FAILED);
    };
    let options = PlanOptions { prune: args.prune };
    match gitops::plan(&broker, &manifests, options).await {
        Ok(plan) => {
            let rendered = match args.output {
                Output::Text => render::plan_text(&plan),
                Output::Json => render::plan_json(&plan),
            };
            print!("{rendered}");
            if plan.refused() > 0 {
                ExitCode::from(FAILED)
            } else if plan.changes() > 0 {
                ExitCode::from(CHANGES_PENDING)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("switchyard plan: cannot read the broker: {e}");
            ExitCode::from(FAILED)
        }
    }
}

pub async fn apply(args: PlanArgs) -> ExitCode {
    let Some((manifests, broker)) = prepare("apply", &args).await else {
        return ExitCode::from(FAILED);
    };
    let options = PlanOptions { prune: args.prune };
    let plan = match gitops::plan(&broker, &manifests, options).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("switchyard apply: cannot read the broker: {e}; nothing was applied");
            return ExitCode::from(FAILED);
        }
    };
    let applied = gitops::apply(&broker, plan).await;
    let rendered = match args.output {
        Output::Text => render::applied_text(&applied),
        Output::Json => render::applied_json(&applied),
    };
    print!("{rendered}");
    if applied.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    }
}

pub async fn status(args: StatusArgs) -> ExitCode {
    let broker = match connect(&args.nats).await {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("switchyard status: {e}");
            return ExitCode::from(FAILED);
        }
    };
    match gitops::topology(&broker, args.namespace.as_deref()).await {
        Ok(topology) => {
            let rendered = match args.output {
                Output::Text => render::topology_text(&topology, args.namespace.as_deref()),
                Output::Json => render::topology_json(&topology),
            };
            print!("{rendered}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard status: cannot read the broker: {e}");
            ExitCode::from(FAILED)
        }
    }
}

/// The checked manifests and a connection, or `None` once the reason is printed. Invalid
/// manifests get validate's report (on standard output, in the chosen format); warnings go
/// to standard error.
async fn prepare(command: &str, args: &PlanArgs) -> Option<(Manifests, Broker)> {
    let files = &args.manifests;
    let offline = match validate::check_manifests(&files.files, &files.namespace) {
        Ok(offline) => offline,
        Err(e) => {
            eprintln!("switchyard {command}: {e}");
            return None;
        }
    };
    if offline.report.errors() > 0 {
        let rendered = match args.output {
            Output::Text => validate::render_text(&offline.report),
            Output::Json => validate::render_json(&offline.report),
        };
        print!("{rendered}");
        eprintln!(
            "switchyard {command}: the manifests have errors (listed above); nothing was {}",
            if command == "plan" {
                "planned"
            } else {
                "applied"
            }
        );
        return None;
    }
    // Validate's warnings about lower versions of an event type concern its registry check;
    // a plan judges every version of the history.
    for warning in offline
        .report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning && p.check != Check::Version)
    {
        eprintln!("{}", validate::problem_line(warning));
    }
    let objects = offline
        .objects
        .into_iter()
        .map(|o| (o.id.kind.clone(), o.value));
    let manifests = match Manifests::from_values(objects) {
        Ok(manifests) => manifests,
        Err(e) => {
            eprintln!("switchyard {command}: {e}");
            return None;
        }
    };
    match connect(&args.nats).await {
        Ok(broker) => Some((manifests, broker)),
        Err(e) => {
            eprintln!("switchyard {command}: {e}");
            None
        }
    }
}

/// A connection to NATS, once it is up.
async fn connect(nats: &NatsArgs) -> Result<Broker, String> {
    let options = nats
        .to_options()
        .map_err(|e| format!("invalid NATS settings: {e}"))?;
    let broker = Broker::connect(&options)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", nats.url))?;
    let mut connected = broker.connection_state();
    match tokio::time::timeout(CONNECT_TIMEOUT, connected.wait_for(|up| *up)).await {
        Ok(Ok(_)) => Ok(broker),
        _ => Err(format!(
            "cannot reach NATS at {} within {CONNECT_TIMEOUT:?} (check --nats-url and the credentials)",
            nats.url
        )),
    }
}
