//! `switchyard dlq list|show|replay|purge`: look at the dead letters of a DeadLetterPolicy (or of
//! any dead-letter stream), replay them to their original subjects, purge them.
//!
//! Exit codes: 0 done; 1 dead letters failed to replay, or NATS or the API server failed;
//! 2 bad input (flags, an unknown stream, policy or sequence, a purge not confirmed).

mod filters;
mod render;

use std::{
    io::{BufRead, IsTerminal, Write},
    num::{NonZeroU32, NonZeroUsize},
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kube::Api;
use time::OffsetDateTime;

use self::filters::Filters;
use super::NatsArgs;
use crate::{
    api::DeadLetterPolicy,
    broker::{Broker, BrokerError, codes},
    deadletter::{self, Progress, ReplayOptions, inspect},
};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first: sequence, age, reason, deliveries, original subject.
    List(ListArgs),
    /// Show one dead letter with every header and its payload.
    Show(ShowArgs),
    /// Publish dead letters again to their original subjects (they stay in the dead-letter
    /// stream). Exit code 1 if any could not be republished.
    Replay(ReplayArgs),
    /// Remove dead letters. Asks for confirmation on a terminal; needs --yes otherwise.
    Purge(PurgeArgs),
}

/// Which dead-letter stream to work on, how to reach it, and how to answer.
#[derive(Debug, Args)]
pub struct Target {
    /// The dead-letter stream (a DeadLetterPolicy's status.streamName, or a Topic's stream).
    #[arg(long, required_unless_present = "policy", conflicts_with = "policy")]
    pub stream: Option<String>,
    /// A DeadLetterPolicy whose stream to use, read through the kubeconfig.
    #[arg(long)]
    pub policy: Option<String>,
    /// Namespace of --policy (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, requires = "policy")]
    pub namespace: Option<String>,
    /// Output format: text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub filters: Filters,
    /// Dead letters listed at most.
    #[arg(long, default_value = "100")]
    pub limit: NonZeroUsize,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: Target,
    /// The dead letter's sequence in its stream (the SEQ column of `dlq list`).
    pub sequence: u64,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub filters: Filters,
    /// Dead letters republished per second at most (default: as fast as NATS acknowledges).
    #[arg(long)]
    pub rate: Option<NonZeroU32>,
    /// Id of this replay (default: a new one per run). Running a replay again with the same id
    /// within the Topics' duplicate window republishes nothing twice, e.g. after an
    /// interruption.
    #[arg(long)]
    pub replay_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub filters: Filters,
    /// Purge without asking.
    #[arg(long)]
    pub yes: bool,
}

/// Exit code when dead letters failed to replay, or a server failed.
const FAILED: u8 = 1;
/// Exit code for bad input.
const BAD_INPUT: u8 = 2;
/// How long to wait for the first connection to NATS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Replays reading fewer messages than this finish too soon for a progress bar.
const PROGRESS_BAR_FROM: u64 = 200;

/// What ended a command early: a message for stderr and the exit code.
struct Stop {
    code: u8,
    message: String,
}

impl Stop {
    fn bad_input(message: impl Into<String>) -> Self {
        Self {
            code: BAD_INPUT,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            code: FAILED,
            message: message.into(),
        }
    }
}

/// Runs a `dlq` command; the exit code says how it went.
pub async fn run(command: DlqCommand) -> ExitCode {
    let (name, result) = match command {
        DlqCommand::List(args) => ("list", list(args).await),
        DlqCommand::Show(args) => ("show", show(args).await),
        DlqCommand::Replay(args) => ("replay", replay(args).await),
        DlqCommand::Purge(args) => ("purge", purge(args).await),
    };
    match result {
        Ok(code) => code,
        Err(stop) => {
            eprintln!("switchyard dlq {name}: {}", stop.message);
            ExitCode::from(stop.code)
        }
    }
}

async fn list(args: ListArgs) -> Result<ExitCode, Stop> {
    let selection = args.filters.selection().map_err(Stop::bad_input)?;
    let (broker, stream) = open(&args.target).await?;
    // One more than shown tells whether the limit cut the listing short.
    let limit = args.limit.get();
    let mut entries = inspect::list(&broker, &stream, &selection, limit.saturating_add(1))
        .await
        .map_err(|e| broker_stop(&stream, e))?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    print(match args.target.output {
        Output::Text => render::list_text(&stream, &entries, more, OffsetDateTime::now_utc()),
        Output::Json => render::list_json(&stream, &entries, more),
    });
    Ok(ExitCode::SUCCESS)
}

async fn show(args: ShowArgs) -> Result<ExitCode, Stop> {
    let (broker, stream) = open(&args.target).await?;
    let shown = inspect::show(&broker, &stream, args.sequence)
        .await
        .map_err(|e| broker_stop(&stream, e))?
        .ok_or_else(|| {
            Stop::bad_input(format!(
                "stream {stream} holds no message at sequence {} (purged, expired, or not \
                 written yet): `switchyard dlq list` shows the sequences it holds",
                args.sequence
            ))
        })?;
    print(match args.target.output {
        Output::Text => render::show_text(&stream, &shown, OffsetDateTime::now_utc()),
        Output::Json => render::show_json(&stream, &shown),
    });
    Ok(ExitCode::SUCCESS)
}

async fn replay(args: ReplayArgs) -> Result<ExitCode, Stop> {
    let selection = args.filters.selection().map_err(Stop::bad_input)?;
    let trigger = args.replay_id.clone().unwrap_or_else(new_replay_id);
    if trigger.trim().is_empty() {
        return Err(Stop::bad_input("--replay-id must not be empty"));
    }
    let (broker, stream) = open(&args.target).await?;
    let options = ReplayOptions {
        rate: args.rate,
        trigger: trigger.clone(),
    };
    let bar = Bar::new();
    let report = deadletter::replay(&broker, &stream, &selection, &options, |p| bar.show(p))
        .await
        .map_err(|e| {
            let mut stop = broker_stop(&stream, e);
            if stop.code == FAILED {
                // Part may be done: the same id lets a rerun skip it.
                stop.message.push_str(&format!(
                    "; rerun with --replay-id {trigger} to republish nothing twice"
                ));
            }
            stop
        });
    bar.finish();
    let report = report?;
    print(match args.target.output {
        Output::Text => render::replay_text(&stream, &trigger, &report),
        Output::Json => render::replay_json(&stream, &trigger, &report),
    });
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

async fn purge(args: PurgeArgs) -> Result<ExitCode, Stop> {
    let selection = args.filters.selection().map_err(Stop::bad_input)?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !interactive {
        return Err(Stop::bad_input(
            "refusing to purge without confirmation: there is no terminal to ask on; \
             pass --yes to purge",
        ));
    }
    let (broker, stream) = open(&args.target).await?;
    if !args.yes {
        let selected = inspect::count(&broker, &stream, &selection)
            .await
            .map_err(|e| broker_stop(&stream, e))?;
        if selected == 0 {
            print(render_purge(args.target.output, &stream, 0));
            return Ok(ExitCode::SUCCESS);
        }
        let what = if selection.is_everything() {
            format!("all {selected} dead letters")
        } else {
            format!("the {selected} selected dead letters")
        };
        if !confirm(&format!("Purge {what} from stream {stream}? [y/N] ")) {
            eprintln!("Nothing purged.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let purged = inspect::purge(&broker, &stream, &selection)
        .await
        .map_err(|e| broker_stop(&stream, e))?;
    print(render_purge(args.target.output, &stream, purged));
    Ok(ExitCode::SUCCESS)
}

fn render_purge(output: Output, stream: &str, purged: u64) -> String {
    match output {
        Output::Text => render::purge_text(stream, purged),
        Output::Json => render::purge_json(stream, purged),
    }
}

/// Connects to NATS and finds the stream the target names.
async fn open(target: &Target) -> Result<(Broker, String), Stop> {
    let stream = match (&target.stream, &target.policy) {
        (Some(stream), _) => stream.clone(),
        (None, Some(policy)) => policy_stream(policy, target.namespace.as_deref()).await?,
        (None, None) => return Err(Stop::bad_input("name a --stream or a --policy")),
    };
    check_stream_name(&stream)?;
    let options = target
        .nats
        .to_options()
        .map_err(|e| Stop::bad_input(format!("invalid NATS settings: {e}")))?;
    let broker = Broker::connect(&options).await.map_err(|e| match e {
        BrokerError::Config(_) => Stop::bad_input(e.to_string()),
        other => Stop::failed(other.to_string()),
    })?;
    let mut connected = broker.connection_state();
    if !matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connected.wait_for(|up| *up)).await,
        Ok(Ok(_))
    ) {
        return Err(Stop::failed(format!(
            "cannot reach NATS within {CONNECT_TIMEOUT:?}: check --nats-url and the credentials"
        )));
    }
    Ok((broker, stream))
}

/// JetStream stream names are subject tokens: a name that is not one could only be misread.
fn check_stream_name(stream: &str) -> Result<(), Stop> {
    let bad = stream.is_empty()
        || stream.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        });
    if bad {
        return Err(Stop::bad_input(format!(
            "{stream:?} cannot be a stream name: stream names are not empty and contain no \
             whitespace, '.', '*', '>', '/' or '\\'"
        )));
    }
    Ok(())
}

/// The stream a DeadLetterPolicy names in its status.
async fn policy_stream(name: &str, namespace: Option<&str>) -> Result<String, Stop> {
    let client = kube::Client::try_default().await.map_err(|e| {
        Stop::bad_input(format!(
            "cannot use the kubeconfig to read DeadLetterPolicy {name}: {e} (or name the \
             stream with --stream)"
        ))
    })?;
    let namespace = namespace.unwrap_or(client.default_namespace()).to_string();
    let api: Api<DeadLetterPolicy> = Api::namespaced(client, &namespace);
    let policy = api
        .get_opt(name)
        .await
        .map_err(|e| {
            Stop::failed(format!(
                "cannot read DeadLetterPolicy {namespace}/{name}: {e}"
            ))
        })?
        .ok_or_else(|| {
            Stop::bad_input(format!(
                "DeadLetterPolicy {namespace}/{name} not found: check the name and the \
                 namespace (-n); `kubectl get dlp -A` lists them"
            ))
        })?;
    policy
        .status
        .and_then(|status| status.stream_name)
        .filter(|stream| !stream.is_empty())
        .ok_or_else(|| {
            Stop::bad_input(format!(
                "DeadLetterPolicy {namespace}/{name} has no dead-letter stream yet \
                 (status.streamName is unset): is the operator running? `kubectl describe dlp \
                 -n {namespace} {name}` says why"
            ))
        })
}

/// A broker failure as the user should read it: an unknown stream is bad input.
fn broker_stop(stream: &str, error: BrokerError) -> Stop {
    if error.code() == Some(codes::STREAM_NOT_FOUND) {
        Stop::bad_input(format!(
            "stream {stream} does not exist: check --stream, or the policy's status.streamName"
        ))
    } else {
        Stop::failed(format!("stream {stream}: {error}"))
    }
}

/// A fresh replay id: when, plus a random part so that two runs in the same second differ.
fn new_replay_id() -> String {
    format!(
        "cli-{}-{:08x}",
        OffsetDateTime::now_utc().unix_timestamp(),
        rand::random::<u32>()
    )
}

fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn print(text: String) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The replay's progress bar on stderr; drawn only on a terminal, and only once a replay turns
/// out to be long.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} read, {msg} [{elapsed_precise}, ETA {eta}]",
            )
            .expect("valid progress template"),
        );
        Self(bar)
    }

    fn show(&self, progress: Progress) {
        if progress.to_read < PROGRESS_BAR_FROM {
            return;
        }
        self.0.set_length(progress.to_read);
        self.0.set_position(progress.read);
        self.0.set_message(format!(
            "{} replayed, {} failed",
            progress.done, progress.failed
        ));
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
