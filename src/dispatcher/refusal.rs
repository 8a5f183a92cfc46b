//! Settling an event the dispatcher gives up on (the handler refused it, it is no valid
//! CloudEvent, or per-key retries used up its deliveries), so that the dead-letter relay can
//! keep it.
//!
//! Where the Topic keeps its events (Limits retention), the event is terminated with its
//! reason: the stream still holds it, and the relay copies it from the terminated advisory.
//! Where it does not (WorkQueue, and Interest when no other Subscription still needs the event),
//! terminating counts as an acknowledgement and the server removes the event before the advisory
//! is even sent. There the dispatcher holds the event instead: it publishes a
//! [`Rejection`] (the facts of a terminated advisory) into the advisory stream and asks for a
//! redelivery only after [`HOLD_FOR`]; the relay copies the event and then acknowledges it on
//! the consumer's behalf (see `deadletter`). If the rejection cannot be stored (no advisory
//! stream, NATS away), the event comes back after the retry delay and is judged again: it is
//! never acknowledged without a copy.

use std::time::Duration;

use async_nats::HeaderMap;
use tracing::warn;

use crate::{
    broker::{Broker, BrokerError, delivery::Delivered},
    deadletter::Rejection,
};

/// How long a held event waits for the relay before JetStream hands it out again. The relay
/// settles it within moments; this bounds how long an event waits when no relay runs, and
/// spaces out the repeated refusals (and rejections) it then gets.
pub const HOLD_FOR: Duration = Duration::from_secs(600);

/// JetStream's de-duplication header: one stored rejection per event within the advisory
/// stream's duplicate window, however often it is refused.
const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// How refused events are settled.
pub enum Refusals {
    /// `+TERM <reason>`: the Topic keeps the event for the relay.
    Terminate,
    /// Hold the event back and publish a [`Rejection`] through this connection.
    Hold(Box<Broker>),
}

/// What became of a refused event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Terminated,
    /// Held back for the relay.
    Held,
    /// The rejection could not be stored: the event comes back after the retry delay.
    Retried,
}

impl Refused {
    /// The outcome label of the dispatcher's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Terminated => "terminated",
            Self::Held => "held",
            Self::Retried => "naked",
        }
    }
}

impl Refusals {
    /// Settles `event`, refused after `deliveries` deliveries (as the handler saw them) for
    /// `reason`; `retry_in` is the delay before it comes back if it cannot be held.
    pub async fn refuse(
        &self,
        event: &Delivered,
        deliveries: i64,
        reason: &str,
        retry_in: Duration,
    ) -> Result<Refused, BrokerError> {
        if let Some(refused) = self.refuse_in_line(event, deliveries, reason).await? {
            return Ok(refused);
        }
        event.nak(retry_in).await.map(|()| Refused::Retried)
    }

    /// As [`Self::refuse`], but an event whose rejection cannot be stored is left as it is,
    /// unanswered (`None`), for the caller to try again while the event keeps its place: with
    /// per-key order, an event that came back later would be handled after newer events of its
    /// key.
    pub async fn refuse_in_line(
        &self,
        event: &Delivered,
        deliveries: i64,
        reason: &str,
    ) -> Result<Option<Refused>, BrokerError> {
        let broker = match self {
            Self::Terminate => return event.term(reason).await.map(|()| Some(Refused::Terminated)),
            Self::Hold(broker) => broker,
        };
        let rejection = rejection(event, deliveries, reason)?;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, message_id(&rejection).as_str());
        match broker
            .store(rejection.subject(), headers, rejection.payload())
            .await
        {
            Ok(_) => event.nak(HOLD_FOR).await.map(|()| Some(Refused::Held)),
            Err(e) => {
                warn!(
                    error = %e,
                    stream = rejection.stream,
                    sequence = rejection.stream_seq,
                    "cannot store the rejection of an event; it is judged again later"
                );
                Ok(None)
            }
        }
    }
}

fn rejection(event: &Delivered, deliveries: i64, reason: &str) -> Result<Rejection, BrokerError> {
    let info = event.info()?;
    let (stream, consumer) = event.stream_and_consumer()?;
    Ok(Rejection {
        stream: stream.to_string(),
        consumer: consumer.to_string(),
        stream_seq: info.stream_sequence,
        deliveries: u64::try_from(deliveries).unwrap_or(1).max(1),
        // One line, as a `+TERM` reason would be.
        reason: reason.chars().filter(|c| !c.is_control()).collect(),
    })
}

/// The rejection's de-duplication id: the event's stream, consumer and sequence.
fn message_id(rejection: &Rejection) -> String {
    format!(
        "rejected.{}.{}.{}",
        rejection.stream, rejection.consumer, rejection.stream_seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rejection_per_event_whatever_the_delivery() {
        let rejection = |deliveries| Rejection {
            stream: "shop_jobs".into(),
            consumer: "sub_shop_worker".into(),
            stream_seq: 12,
            deliveries,
            reason: "HandlerRejected: HTTP 400".into(),
        };
        assert_eq!(
            message_id(&rejection(1)),
            "rejected.shop_jobs.sub_shop_worker.12"
        );
        assert_eq!(message_id(&rejection(1)), message_id(&rejection(3)));
    }

    #[test]
    fn outcomes_are_labelled_as_the_metrics_count_them() {
        assert_eq!(Refused::Terminated.label(), "terminated");
        assert_eq!(Refused::Held.label(), "held");
        assert_eq!(Refused::Retried.label(), "naked");
    }
}
