//! What a Topic's status shows besides its conditions. Pure.

use async_nats::jetstream::stream::Info as StreamInfo;

use crate::api::TopicStatus;

/// Writes the stream name and, when the broker answered, the stream's figures; without an
/// answer the figures stay as last seen.
pub fn project(status: &mut TopicStatus, stream_name: &str, info: Option<&StreamInfo>) {
    status.stream_name = Some(stream_name.to_string());
    if let Some(info) = info {
        let state = &info.state;
        status.messages = Some(count(state.messages));
        status.bytes = Some(count(state.bytes));
        status.first_sequence = Some(count(state.first_sequence));
        status.last_sequence = Some(count(state.last_sequence));
        status.consumer_count = Some(count(state.consumer_count as u64));
    }
}

/// Kubernetes APIs carry counts as int64; JetStream's never come near its limit.
fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(messages: u64) -> StreamInfo {
        let config = async_nats::jetstream::stream::Config {
            name: "ns_t".into(),
            ..Default::default()
        };
        serde_json::from_value(serde_json::json!({
            "config": config,
            "created": "2026-11-24T00:00:00Z",
            "state": {
                "messages": messages, "bytes": 10 * messages, "first_seq": 1, "last_seq": messages,
                "first_ts": "2026-11-24T00:00:00Z", "last_ts": "2026-11-24T00:00:00Z",
                "consumer_count": 2
            }
        }))
        .expect("a stream info")
    }

    #[test]
    fn figures_come_from_the_broker() {
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&info(42)));
        assert_eq!(status.stream_name.as_deref(), Some("ns_t"));
        assert_eq!(status.messages, Some(42));
        assert_eq!(status.bytes, Some(420));
        assert_eq!(status.last_sequence, Some(42));
        assert_eq!(status.consumer_count, Some(2));
    }

    #[test]
    fn figures_survive_an_unanswered_broker() {
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&info(42)));
        project(&mut status, "ns_t", None);
        assert_eq!(status.messages, Some(42));
    }
}
