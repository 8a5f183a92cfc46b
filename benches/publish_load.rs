//! The traffic phase of `make bench-topics`: publishes events round-robin to the Topics
//! `<namespace>.t0000.> … ` for a fixed time, keeping a window of unacknowledged publishes in
//! flight, then prints how many were stored. A load generator, not a test.
//!
//! Usage: `cargo bench --bench publish_load -- NATS_URL NAMESPACE TOPICS SECONDS`

use std::time::{Duration, Instant};

use futures::{StreamExt, stream::FuturesUnordered};

const IN_FLIGHT: usize = 256;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, namespace, topics, seconds] = args.as_slice() else {
        eprintln!("usage: publish_load NATS_URL NAMESPACE TOPICS SECONDS");
        std::process::exit(2);
    };
    let topics: usize = topics.parse().expect("TOPICS is a number");
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS is a number"));
    let client = async_nats::connect(url.as_str())
        .await
        .expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    let subjects: Vec<String> = (0..topics)
        .map(|i| format!("{namespace}.t{i:04}.page.viewed"))
        .collect();
    let payload = bytes::Bytes::from(vec![b'x'; 256]);
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    let (mut sent, mut stored, mut failed) = (0u64, 0u64, 0u64);
    while started.elapsed() < duration {
        while acks.len() < IN_FLIGHT {
            let subject = subjects[(sent as usize) % subjects.len()].clone();
            match jetstream.publish(subject, payload.clone()).await {
                Ok(ack) => acks.push(ack.into_future()),
                Err(_) => failed += 1,
            }
            sent += 1;
        }
        match acks.next().await {
            Some(Ok(_)) => stored += 1,
            Some(Err(_)) => failed += 1,
            None => {}
        }
    }
    while let Some(ack) = acks.next().await {
        if ack.is_ok() {
            stored += 1;
        } else {
            failed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{stored} {failed} {:.0}",
        stored as f64 / elapsed.max(f64::EPSILON)
    );
}
