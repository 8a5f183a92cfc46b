//! `switchyard dispatch`: the worker sidecar, also usable on a laptop against any NATS.

use std::{process::ExitCode, time::Duration};

use clap::Args;

use super::{NatsArgs, parse_http_addr, shutdown_signal};
use crate::dispatcher::{self, DispatchConfig, cloudevents::TopicLayout};

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// The JetStream stream holding the events (a Topic's stream: `<namespace>_<topic>`).
    #[arg(long)]
    pub stream: String,
    /// The durable consumer to read (a Subscription's: `sub_<namespace>_<name>`); repeat it to
    /// read several (one per partition with `--ordering per-key`).
    #[arg(long = "consumer", required = true)]
    pub consumers: Vec<String>,
    /// `per-key`: events of one partition key one at a time, in stream order, keys in
    /// parallel (partitioned Topics only; needs --partition-type-tokens).
    #[arg(long, value_enum, default_value = "none")]
    pub ordering: Ordering,
    /// The handler's URL; each event is POSTed to it as a CloudEvents 1.0 HTTP request.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    pub endpoint: String,
    /// Events handled at the same time.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// How long the handler may take per event (default: the consumer's ackWait).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// The Topic's subject prefix (`<namespace>.<topic>`): the CloudEvents type of a plain
    /// payload is its subject after this prefix.
    #[arg(long, default_value = "")]
    pub subject_prefix: String,
    /// For partitioned Topics: how many subject tokens after the partition form the type.
    #[arg(long)]
    pub partition_type_tokens: Option<usize>,
    /// CloudEvents source of events that carry none (default: `/streams/<stream>`).
    #[arg(long)]
    pub source: Option<String>,
    /// The Topic keeps no copy of events its consumers are done with (WorkQueue or Interest
    /// retention): hold refused events back and report them on `$SWITCHYARD.REJECTED.…` for
    /// the dead-letter relay, instead of terminating them (which would remove them).
    #[arg(long)]
    pub hold_rejections: bool,
    /// Validate each event's data against the schema registry record under this key (bucket
    /// SWITCHYARD_SCHEMAS): `<namespace>.<eventType>.latest` follows the latest registered
    /// version (a new one takes effect at once), `<namespace>.<eventType>.v<N>` pins one. An
    /// event that fails is refused with reason `SchemaViolation: …`; nothing is delivered
    /// until the record has been read.
    #[arg(long, value_name = "KEY")]
    pub schema_key: Option<String>,
    /// Threads running the dispatcher. One costs the least CPU per event (fewer wake-ups
    /// between threads), but at full load that thread becomes the bottleneck and the added
    /// latency grows (p99 5.8 ms against 2.4 ms with two, `make bench-dispatch`); two is the
    /// default.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Address for /metrics, /healthz and /readyz; "off" disables the server.
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Ordering {
    None,
    PerKey,
}

pub async fn run(args: DispatchArgs) -> ExitCode {
    let broker = match args.nats.to_options() {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("invalid NATS settings: {e}");
            return ExitCode::from(2);
        }
    };
    let http_addr = match parse_http_addr(&args.http_addr) {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = DispatchConfig {
        broker,
        layout: TopicLayout {
            subject_prefix: args.subject_prefix,
            partition_type_tokens: args.partition_type_tokens,
            source: args
                .source
                .unwrap_or_else(|| format!("/streams/{}", args.stream)),
        },
        stream: args.stream,
        consumers: args.consumers,
        per_key: args.ordering == Ordering::PerKey,
        endpoint: args.endpoint,
        concurrency: args.concurrency,
        timeout: args.timeout,
        http_addr,
        hold_rejections: args.hold_rejections,
        schema_key: args.schema_key,
    };
    let dispatched = match on_own_runtime(args.threads, async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        dispatcher::run(config, shutdown_signal(ctrl_c)).await
    })
    .await
    {
        Ok(dispatched) => dispatched,
        Err(e) => {
            tracing::error!("cannot start the dispatcher's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match dispatched {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (dispatcher::DispatchError::Endpoint(_) | dispatcher::DispatchError::Concurrency),
        ) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("dispatcher stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` on a runtime of `threads` threads of its own (the process's runtime has one
/// thread per core), on a thread of its own, and waits for its result.
async fn on_own_runtime<T: Send + 'static>(
    threads: usize,
    work: impl Future<Output = T> + Send + 'static,
) -> std::io::Result<T> {
    let runtime = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?,
    };
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || {
            let _ = done.send(runtime.block_on(work));
        })?;
    result
        .await
        .map_err(|_| std::io::Error::other("the dispatcher's thread stopped without a result"))
}
