//! The `switchyard` command line.

mod dispatch;
mod dlq;
mod gitops;
mod schema_check;
mod validate;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    broker::{
        BrokerOptions,
        credentials::{self, AuthSource, CredentialSources, CredentialsDir, UserName},
    },
    crdgen,
    deadletter::{AdvisoryScope, AdvisoryStream, RelayConfig},
    naming,
    runtime::{self, OperatorConfig, crd_check::CrdCheckMode, lease::LeaseConfig},
    telemetry::{self, LogFormat},
};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Declarative event topology for NATS JetStream on Kubernetes"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Deliver a durable consumer's events to an HTTP handler as CloudEvents (the worker
    /// pods' sidecar; also usable on its own).
    Dispatch(Box<dispatch::DispatchArgs>),
    /// Inspect, replay and purge dead letters of a DeadLetterPolicy or a dead-letter stream.
    /// Exit code 0: done; 1: dead letters failed to replay, or a server failed; 2: bad input.
    Dlq {
        #[command(subcommand)]
        command: Box<dlq::DlqCommand>,
    },
    /// Check a directory of manifests before they are applied, for CI: each object against its
    /// CRD (OpenAPI schema and CEL rules), references between the objects, EventSchema
    /// documents, and each EventSchema version against the registry or the previous version in
    /// git. Exit code 0: no errors (warnings allowed); 1: errors found; 2: could not run.
    Validate(Box<validate::ValidateArgs>),
    /// Show what applying the manifests would change on NATS (streams, consumers, dead-letter
    /// streams, schema registry versions), field by field, and which changes are refused.
    /// Exit code 0: no changes; 2: changes pending; 1: refused changes, invalid manifests or a
    /// failure.
    Plan(Box<gitops::PlanArgs>),
    /// Reconcile the manifests straight into NATS, without Kubernetes (the operator's reconcile
    /// core; worker Deployments are skipped). Applies nothing while a change is refused.
    /// Exit code 0: applied (or nothing to do); 1: refused, invalid, or stopped by a failure.
    Apply(Box<gitops::PlanArgs>),
    /// Show the topology Switchyard manages on NATS: Topics' streams, Subscriptions' consumers
    /// with lag, dead-letter streams, registered schema versions. Exit code 1 on a failure.
    Status(Box<gitops::StatusArgs>),
    /// Work with event schemas without a cluster.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Check a candidate schema against earlier versions under a compatibility mode.
    /// Exit code 0: compatible; 1: incompatible; 2: invalid input.
    Check(schema_check::CheckArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only these namespaces, comma-separated (default: all namespaces). Each needs the
    /// operator's Role there (the Helm chart's rbac.namespaced mode creates them).
    #[arg(long, env = "SWITCHYARD_NAMESPACE", value_delimiter = ',', value_parser = parse_namespace)]
    pub namespace: Vec<String>,
    /// At start, compare the served CRDs with those this operator was built with: `enforce`
    /// stops with an error saying how to upgrade them, `warn` logs it and runs, `off` skips the
    /// check (no read access to CRDs).
    #[arg(
        long,
        env = "SWITCHYARD_CRD_CHECK",
        value_enum,
        default_value = "enforce"
    )]
    pub crd_check: CrdCheckArg,
    /// How often objects in sync are checked again for drift on the broker.
    #[arg(long, env = "SWITCHYARD_RESYNC_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,
    /// How often the consumer lag of autoscaled Subscriptions is read (one JetStream API
    /// request per autoscaled Subscription each time): bounds how fast workers follow a backlog.
    #[arg(long, env = "SWITCHYARD_AUTOSCALE_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub autoscale_interval: Duration,
    /// First delay before retrying a failed reconcile (NATS or the API server unavailable);
    /// later retries of the same object back off exponentially, with jitter.
    #[arg(long, env = "SWITCHYARD_RETRY_INITIAL_DELAY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_initial_delay: Duration,
    /// Longest delay between retries of a failing object.
    #[arg(long, env = "SWITCHYARD_RETRY_MAX_DELAY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_max_delay: Duration,
    /// How long a deletion waits for NATS before releasing the object and leaving the stream.
    #[arg(long, env = "SWITCHYARD_FINALIZER_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub finalizer_timeout: Duration,
    /// Objects of one kind reconciled at the same time.
    #[arg(long, env = "SWITCHYARD_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Name of this instance in Events (defaults to the pod name).
    #[arg(long, env = "POD_NAME", default_value = "switchyard")]
    pub instance: String,
    /// Address for /metrics, /healthz and /readyz; "off" disables the server.
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Image of the dispatcher sidecar in worker pods: the operator's own image (the Helm chart
    /// sets it).
    #[arg(long, env = "SWITCHYARD_DISPATCHER_IMAGE", default_value = concat!("switchyard:", env!("CARGO_PKG_VERSION")))]
    pub dispatcher_image: String,
    /// Secret with the dispatcher's NATS credentials (files as for --nats-credentials-dir),
    /// mounted into every worker pod's dispatcher. Read from the Subscription's namespace, so
    /// it must exist in every namespace with workers. Unset: dispatchers get only the URL.
    #[arg(long, env = "SWITCHYARD_WORKER_NATS_SECRET")]
    pub worker_nats_secret: Option<String>,
    /// Run the dead-letter relay while leading: it copies events Subscriptions give up on into
    /// their DeadLetterPolicy's target. `false` leaves the advisories waiting in their stream.
    #[arg(long, env = "SWITCHYARD_DEAD_LETTER_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub dead_letter_relay: bool,
    /// Stream in which the relay's advisories are captured (created if missing).
    #[arg(long, env = "SWITCHYARD_ADVISORY_STREAM", default_value = naming::ADVISORY_STREAM)]
    pub advisory_stream: String,
    /// Capture the advisories of these streams only (comma-separated stream names) instead of
    /// every stream's in the account. Advisory subjects belong to one stream each: a stream
    /// capturing every stream's leaves room for no other, scoped ones must name different
    /// streams. For several installations sharing one account, and for tests.
    #[arg(long, env = "SWITCHYARD_ADVISORY_SCOPE", value_delimiter = ',')]
    pub advisory_scope: Vec<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
}

/// `--crd-check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrdCheckArg {
    Enforce,
    Warn,
    Off,
}

impl From<CrdCheckArg> for CrdCheckMode {
    fn from(arg: CrdCheckArg) -> Self {
        match arg {
            CrdCheckArg::Enforce => Self::Enforce,
            CrdCheckArg::Warn => Self::Warn,
            CrdCheckArg::Off => Self::Off,
        }
    }
}

/// A namespace name as Kubernetes accepts it (an RFC 1123 label), so a typo fails at start
/// rather than as a watch that is forbidden or finds nothing.
fn parse_namespace(value: &str) -> Result<String, String> {
    let name = value.trim();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{value:?} is not a namespace name (lower-case letters, digits and '-', at most 63, \
             starting and ending with a letter or digit)"
        ))
    }
}

/// Whether to elect a leader before writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ElectionMode {
    /// On when running in a pod (KUBERNETES_SERVICE_HOST is set), off otherwise.
    Auto,
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct ElectionArgs {
    /// Leader election on a coordination.k8s.io Lease, so that of several replicas only one writes.
    #[arg(
        long,
        env = "SWITCHYARD_LEADER_ELECTION",
        value_enum,
        default_value = "auto"
    )]
    pub leader_election: ElectionMode,
    /// Name of the Lease.
    #[arg(
        long,
        env = "SWITCHYARD_LEASE_NAME",
        default_value = "switchyard-leader"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "SWITCHYARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a Lease that is not renewed keeps others waiting; a standby takes over at most
    /// this long (plus one retry period) after the leader died.
    #[arg(long, env = "SWITCHYARD_LEASE_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing (shorter than the duration, so
    /// it stops before anybody else may start).
    #[arg(long, env = "SWITCHYARD_LEASE_RENEW_DEADLINE", default_value = "7s", value_parser = humantime::parse_duration)]
    pub lease_renew_deadline: Duration,
    /// How often the Lease is renewed, or checked by a standby.
    #[arg(long, env = "SWITCHYARD_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: Duration,
}

impl ElectionArgs {
    /// The Lease settings, or `None` when election is off. The identity is unique per process,
    /// so two processes started with the same instance name never both believe they hold it.
    pub fn to_config(&self, instance: &str) -> Option<LeaseConfig> {
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let enabled = match self.leader_election {
            ElectionMode::On => true,
            ElectionMode::Off => false,
            ElectionMode::Auto => in_pod,
        };
        if !enabled {
            return None;
        }
        let namespace = self
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|ns| ns.trim().to_string())
            })
            .unwrap_or_else(|| "default".into());
        let identity = format!("{instance}-{:08x}", rand::random::<u32>());
        let mut config = LeaseConfig::new(self.lease_name.clone(), namespace, identity);
        config.lease_duration = self.lease_duration;
        config.renew_deadline = self.lease_renew_deadline;
        config.retry_period = self.lease_retry_period;
        Some(config)
    }
}

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    #[command(flatten)]
    pub credentials: NatsCredentialArgs,
}

impl NatsArgs {
    /// See [`NatsCredentialArgs::to_options`].
    pub fn to_options(&self) -> Result<BrokerOptions, String> {
        self.credentials.to_options(&self.url)
    }
}

/// How to authenticate to NATS and verify it; the URL comes separately because not every
/// command wants a default one.
#[derive(Debug, Args)]
pub struct NatsCredentialArgs {
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long = "nats-creds", env = "NATS_CREDS_FILE", group = "nats-auth")]
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(long = "nats-nkey", env = "NATS_NKEY_FILE", group = "nats-auth")]
    pub nkey_file: Option<PathBuf>,
    /// File holding a token.
    #[arg(long = "nats-token-file", env = "NATS_TOKEN_FILE", group = "nats-auth")]
    pub token_file: Option<PathBuf>,
    /// User name; the password is read from --nats-password-file.
    #[arg(
        long = "nats-user",
        env = "NATS_USER",
        group = "nats-auth",
        requires = "password_file"
    )]
    pub user: Option<String>,
    /// File holding the password for --nats-user.
    #[arg(long = "nats-password-file", env = "NATS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// CA bundle to verify the server with.
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[arg(long = "nats-tls-cert", env = "NATS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long = "nats-tls-key", env = "NATS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory (a mounted Secret) whose files are used when present: `creds`, `nkey`, `token`,
    /// `user` + `password` (one of these), `ca.crt`, `tls.crt` + `tls.key`. The flags above win
    /// over its files.
    #[arg(long = "nats-credentials-dir", env = credentials::CREDENTIALS_DIR_ENV)]
    pub credentials_dir: Option<PathBuf>,
}

impl NatsCredentialArgs {
    /// Secrets are read from files (mounted Secrets) so they never appear in the process list.
    /// Explicit flags win over the files of `--nats-credentials-dir`.
    pub fn to_options(&self, url: &str) -> Result<BrokerOptions, String> {
        let dir = self
            .credentials_dir
            .as_deref()
            .map(CredentialsDir::scan)
            .transpose()
            .map_err(|e| e.to_string())?;
        let sources = credentials::resolve(self.explicit_sources(), dir.as_ref())
            .map_err(|e| e.to_string())?;
        let (auth, tls) = credentials::load(&sources).map_err(|e| e.to_string())?;
        tracing::info!(credentials = %sources, "NATS credentials");
        let mut options = BrokerOptions::new(url);
        options.auth = auth;
        options.tls = tls;
        Ok(options)
    }

    /// The files the flags name; clap lets at most one way to authenticate through.
    fn explicit_sources(&self) -> CredentialSources {
        let auth = if let Some(path) = &self.creds_file {
            AuthSource::CredsFile(path.clone())
        } else if let Some(path) = &self.nkey_file {
            AuthSource::NkeyFile(path.clone())
        } else if let Some(path) = &self.token_file {
            AuthSource::TokenFile(path.clone())
        } else if let (Some(user), Some(path)) = (&self.user, &self.password_file) {
            AuthSource::UserPassword {
                user: UserName::Given(user.clone()),
                password_file: path.clone(),
            }
        } else {
            AuthSource::None
        };
        CredentialSources {
            auth,
            tls_ca: self.tls_ca.clone(),
            tls_client: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }
}

/// Runs the parsed command; the exit code says how it went.
pub async fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Schema {
            command: SchemaCommand::Check(args),
        } => schema_check::run(&args),
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            run_operator(*args).await
        }
        Command::Dispatch(args) => {
            telemetry::init(cli.log_format);
            dispatch::run(*args).await
        }
        Command::Dlq { command } => dlq::run(*command).await,
        Command::Validate(args) => validate::run(*args).await,
        Command::Plan(args) => gitops::plan(*args).await,
        Command::Apply(args) => gitops::apply(*args).await,
        Command::Status(args) => gitops::status(*args).await,
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> ExitCode {
    let result = match out_dir {
        None => crdgen::all_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(|e| e.to_string()),
        Some(dir) => crdgen::write_dir(&dir).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard crd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_operator(args: RunArgs) -> ExitCode {
    let broker = match args.nats.to_options() {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("invalid NATS settings: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cannot configure the Kubernetes client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http_addr = match parse_http_addr(&args.http_addr) {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let election = args.election.to_config(&args.instance);
    if let Some(lease) = &election
        && let Err(e) = lease.validate()
    {
        tracing::error!("invalid leader election settings: {e}");
        return ExitCode::from(2);
    }
    let config = OperatorConfig {
        dispatcher_image: args.dispatcher_image,
        worker_nats_secret: args.worker_nats_secret,
        election,
        http_addr,
        namespaces: args.namespace,
        crd_check: args.crd_check.into(),
        resync_interval: args.resync_interval,
        autoscale_interval: args.autoscale_interval,
        retry_initial_delay: args.retry_initial_delay,
        retry_max_delay: args.retry_max_delay,
        finalizer_timeout: args.finalizer_timeout,
        concurrency: args.concurrency,
        instance: args.instance,
        ..OperatorConfig::new(broker)
    };
    let config = OperatorConfig {
        dead_letter_relay: config
            .dead_letter_relay
            .filter(|_| args.dead_letter_relay)
            .map(|relay| RelayConfig {
                stream: advisory_stream(args.advisory_stream, args.advisory_scope),
                ..relay
            }),
        ..config
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime::run(client, config, shutdown_signal(shutdown)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("operator stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--advisory-stream` and `--advisory-scope`: no streams named means every stream.
fn advisory_stream(name: String, scope: Vec<String>) -> AdvisoryStream {
    let scope = if scope.is_empty() {
        AdvisoryScope::AllStreams
    } else {
        AdvisoryScope::Streams(scope)
    };
    AdvisoryStream {
        name,
        scope,
        ..AdvisoryStream::default()
    }
}

/// `--http-addr`: `host:port`, or `off` for no server.
fn parse_http_addr(value: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match value {
        "off" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|e| format!("invalid --http-addr {addr:?}: {e} (write host:port, or off)")),
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends to stop a pod).
async fn shutdown_signal(ctrl_c: impl std::future::Future<Output = ()>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["switchyard", "run"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn several_namespaces_are_given_comma_separated() {
        assert_eq!(
            run_args(&["--namespace", "team-a, team-b"]).namespace,
            ["team-a", "team-b"]
        );
        assert!(
            run_args(&[]).namespace.is_empty(),
            "default: all namespaces"
        );
    }

    #[test]
    fn a_malformed_namespace_is_refused_with_the_rule() {
        for bad in ["Team-A", "team_a", "-a", "a,,b", &"a".repeat(64)] {
            let err = Cli::try_parse_from(["switchyard", "run", &format!("--namespace={bad}")])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("is not a namespace name"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_crd_check_is_enforced_unless_told_otherwise() {
        assert_eq!(run_args(&[]).crd_check, CrdCheckArg::Enforce);
        assert_eq!(
            CrdCheckMode::from(run_args(&["--crd-check", "warn"]).crd_check),
            CrdCheckMode::Warn
        );
    }

    #[test]
    fn the_relay_captures_every_streams_advisories_in_the_accounts_stream_by_default() {
        let args = run_args(&[]);
        assert_eq!(
            advisory_stream(args.advisory_stream, args.advisory_scope),
            AdvisoryStream::default()
        );
    }

    #[test]
    fn an_advisory_stream_of_its_own_can_be_scoped_to_some_streams() {
        let args = run_args(&[
            "--advisory-stream",
            "team_advisories",
            "--advisory-scope",
            "a_orders,a_jobs",
        ]);
        let stream = advisory_stream(args.advisory_stream, args.advisory_scope);
        assert_eq!(stream.name, "team_advisories");
        assert_eq!(
            stream.scope,
            AdvisoryScope::Streams(vec!["a_orders".into(), "a_jobs".into()])
        );
    }
}
