//! The NATS side of `make bench-subscriptions`: publishes a backlog to a Topic's subject, drains
//! it through a Subscription's durable consumer, and removes the streams the bench left behind.
//! A plain NATS client standing in for publishers and workers, not a test.
//!
//! Usage (`cargo bench --bench backlog -- …`):
//! - `publish NATS_URL SUBJECT COUNT`: publishes COUNT events and waits for every ack; prints
//!   `<stored> <failed> <unix time of the last ack in µs>`.
//! - `drain NATS_URL STREAM CONSUMER COUNT`: pulls from the existing durable consumer and acks
//!   (waiting for the server to confirm each ack) until COUNT are acked or nothing arrives for
//!   10 s; prints `<acked> <unix time of the last confirmed ack in µs>`.
//! - `delete-streams NATS_URL PREFIX`: deletes every stream whose name starts with PREFIX (their
//!   consumers go with them); prints how many.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::{StreamExt, TryStreamExt, stream::FuturesUnordered};

/// Publishes kept unacknowledged at once: enough to hide the round trip, small next to COUNT.
const IN_FLIGHT: usize = 64;
/// Messages asked for per pull request while draining.
const PULL_BATCH: usize = 100;
/// A drain gives up after this long without a message.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, async_nats::Error>;

/// Wall-clock microseconds since the Unix epoch, the unit of bash's `$EPOCHREALTIME` without
/// its dot, so the bench script can subtract without floating point.
fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}

async fn publish(js: &jetstream::Context, subject: &str, count: u64) -> Result<()> {
    let payload = bytes::Bytes::from_static(br#"{"order":"bench"}"#);
    let mut acks = FuturesUnordered::new();
    let (mut stored, mut failed) = (0u64, 0u64);
    for _ in 0..count {
        if acks.len() >= IN_FLIGHT {
            match acks.next().await {
                Some(Ok(_)) => stored += 1,
                Some(Err(_)) => failed += 1,
                None => {}
            }
        }
        match js.publish(subject.to_string(), payload.clone()).await {
            Ok(ack) => acks.push(ack.into_future()),
            Err(_) => failed += 1,
        }
    }
    while let Some(ack) = acks.next().await {
        if ack.is_ok() {
            stored += 1;
        } else {
            failed += 1;
        }
    }
    println!("{stored} {failed} {}", unix_micros());
    Ok(())
}

async fn drain(js: &jetstream::Context, stream: &str, consumer: &str, count: u64) -> Result<()> {
    let consumer: PullConsumer = js.get_stream(stream).await?.get_consumer(consumer).await?;
    let mut acked = 0u64;
    let mut last_ack = unix_micros();
    while acked < count {
        // Never more than is left, so the last request does not wait out its expiry.
        let want = usize::try_from(count - acked).map_or(PULL_BATCH, |left| left.min(PULL_BATCH));
        let mut batch = consumer
            .batch()
            .max_messages(want)
            .expires(IDLE_LIMIT)
            .messages()
            .await?;
        let mut got = 0;
        while let Some(message) = batch.try_next().await? {
            // Confirmed acks, so that the consumer's figures are final when this returns.
            message.double_ack().await?;
            acked += 1;
            got += 1;
            last_ack = unix_micros();
        }
        if got == 0 {
            break;
        }
    }
    println!("{acked} {last_ack}");
    Ok(())
}

async fn delete_streams(js: &jetstream::Context, prefix: &str) -> Result<()> {
    let names: Vec<String> = js.stream_names().try_collect().await?;
    let mut deleted = 0;
    for name in names.iter().filter(|n| n.starts_with(prefix)) {
        js.delete_stream(name).await?;
        deleted += 1;
    }
    println!("{deleted}");
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: backlog publish NATS_URL SUBJECT COUNT\n       backlog drain NATS_URL STREAM CONSUMER COUNT\n       backlog delete-streams NATS_URL PREFIX"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((command, rest)) = args.split_first() else {
        usage()
    };
    let Some((url, rest)) = rest.split_first() else {
        usage()
    };
    let js = jetstream::new(async_nats::connect(url.as_str()).await?);
    match (command.as_str(), rest) {
        ("publish", [subject, count]) => {
            publish(&js, subject, count.parse().unwrap_or_else(|_| usage())).await
        }
        ("drain", [stream, consumer, count]) => {
            drain(
                &js,
                stream,
                consumer,
                count.parse().unwrap_or_else(|_| usage()),
            )
            .await
        }
        ("delete-streams", [prefix]) if !prefix.is_empty() => delete_streams(&js, prefix).await,
        _ => usage(),
    }
}
