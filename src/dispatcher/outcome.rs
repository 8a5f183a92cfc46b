//! What happens to an event after its handler answered (or did not). Pure.
//!
//! - 2xx: handled, acknowledged.
//! - 408, 429, 5xx, a connection failure or a timeout: the handler may succeed later, so the
//!   event is redelivered after a delay. The delay is the Subscription's backoff for this
//!   delivery (JetStream applies the consumer's backoff only to acknowledgement timeouts, so the
//!   dispatcher applies it to handler failures itself, with a delayed negative acknowledgement);
//!   without a backoff, the ackWait, as the API documents. A 429's `Retry-After` wins when given.
//! - Any other status (other 4xx, and 1xx/3xx, which a handler has no business sending): the
//!   handler refuses the event and will refuse it again, so it is terminated at once with
//!   reason `HandlerRejected` and the status, which the dead-letter relay reports.
//!
//! Per-key order retries a failed event in place instead ([`in_place`]): handing it back would
//! hold up the later events of its key until JetStream redelivers it, and JetStream only
//! counts the deliveries it made, so the dispatcher counts the attempts it adds.

use std::time::Duration;

/// The longest `Retry-After` honoured: a handler asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What the handler did with one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerResult {
    /// It answered with this status (and, for 429/503, maybe a `Retry-After`).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// It did not answer within the timeout.
    TimedOut,
    /// No connection, or the connection broke (the handler is starting, or crashed).
    Unreachable,
}

/// What to tell JetStream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    /// Redeliver after `delay`.
    Nak {
        delay: Duration,
    },
    /// Never redeliver; `reason` travels in the terminated advisory.
    Term {
        reason: String,
    },
}

/// The consumer's redelivery settings, as the dispatcher read them from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redelivery {
    pub backoff: Vec<Duration>,
    pub ack_wait: Duration,
}

impl Redelivery {
    /// The delay before the redelivery that follows delivery number `delivered` (1-based):
    /// the backoff entry for it (the last one once the list runs out), else the ackWait.
    pub fn delay_after(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(self.ack_wait)
    }

    /// The shortest time JetStream waits for word of a delivered event before redelivering it:
    /// with a backoff, its entries apply by delivery count instead of the ackWait.
    pub fn shortest_wait(&self) -> Duration {
        self.backoff
            .iter()
            .copied()
            .chain([self.ack_wait])
            .filter(|wait| !wait.is_zero())
            .min()
            .unwrap_or(self.ack_wait)
    }
}

pub fn judge(result: &HandlerResult, delivered: i64, redelivery: &Redelivery) -> Verdict {
    let retry = || Verdict::Nak {
        delay: redelivery.delay_after(delivered),
    };
    match *result {
        HandlerResult::Answered { status, .. } if (200..300).contains(&status) => Verdict::Ack,
        HandlerResult::Answered {
            status: 429,
            retry_after: Some(after),
        } => Verdict::Nak {
            delay: after.min(MAX_RETRY_AFTER),
        },
        HandlerResult::Answered { status, .. } if status == 408 || status == 429 => retry(),
        HandlerResult::Answered { status, .. } if (500..600).contains(&status) => retry(),
        HandlerResult::Answered { status, .. } => Verdict::Term {
            reason: format!("HandlerRejected: HTTP {status}"),
        },
        HandlerResult::TimedOut | HandlerResult::Unreachable => retry(),
    }
}

/// The attempt number of the next handler call for an event: one more than the last attempt
/// made here, but never less than JetStream's own count for the copy in hand (it may have been
/// redelivered meanwhile). The first attempt is the copy's delivery count.
pub fn next_attempt(last: Option<i64>, delivered: i64) -> i64 {
    last.map_or(delivered, |last| (last + 1).max(delivered))
}

/// What per-key order does after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// Call the handler again after `after`, keeping the event's place.
    Retry { after: Duration },
    /// The consumer's `max_deliver` is used up: terminate, so the dead-letter path sees it
    /// as JetStream would have reported the last delivery.
    GiveUp { reason: String },
}

/// After attempt number `attempt` (1-based, counted as [`next_attempt`] does) failed and
/// [`judge`] asked for a redelivery after `delay`.
pub fn in_place(
    result: &HandlerResult,
    attempt: i64,
    delay: Duration,
    max_deliveries: i64,
) -> InPlace {
    if max_deliveries > 0 && attempt >= max_deliveries {
        let last = match result {
            HandlerResult::Answered { status, .. } => format!("HTTP {status}"),
            HandlerResult::TimedOut => "no answer in time".into(),
            HandlerResult::Unreachable => "handler unreachable".into(),
        };
        return InPlace::GiveUp {
            reason: format!("MaxDeliveries: {attempt} deliveries, the last: {last}"),
        };
    }
    InPlace::Retry { after: delay }
}

/// A `Retry-After` header value: delay-seconds only (an HTTP date would need the handler's
/// clock to agree with ours; treated as absent).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redelivery(backoff: &[u64]) -> Redelivery {
        Redelivery {
            backoff: backoff.iter().copied().map(Duration::from_secs).collect(),
            ack_wait: Duration::from_secs(30),
        }
    }

    fn answered(status: u16) -> HandlerResult {
        HandlerResult::Answered {
            status,
            retry_after: None,
        }
    }

    fn nak(secs: u64) -> Verdict {
        Verdict::Nak {
            delay: Duration::from_secs(secs),
        }
    }

    #[test]
    fn success_acks() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(judge(&answered(status), 1, &redelivery(&[])), Verdict::Ack);
        }
    }

    #[test]
    fn transient_failures_follow_the_backoff_by_delivery() {
        let r = redelivery(&[1, 5, 30]);
        for failure in [
            answered(500),
            answered(503),
            answered(408),
            answered(429),
            HandlerResult::TimedOut,
            HandlerResult::Unreachable,
        ] {
            assert_eq!(judge(&failure, 1, &r), nak(1), "{failure:?}");
            assert_eq!(judge(&failure, 2, &r), nak(5), "{failure:?}");
            assert_eq!(judge(&failure, 3, &r), nak(30), "{failure:?}");
            assert_eq!(judge(&failure, 9, &r), nak(30), "the last entry repeats");
        }
        assert_eq!(
            judge(&answered(500), 1, &redelivery(&[])),
            nak(30),
            "no backoff: the ackWait"
        );
    }

    #[test]
    fn retry_after_wins_for_429_and_is_capped() {
        let r = redelivery(&[1]);
        let limited = |secs| HandlerResult::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(judge(&limited(2), 1, &r), nak(2));
        assert_eq!(judge(&limited(86_400), 1, &r), nak(3600));
    }

    #[test]
    fn refusals_terminate_with_the_status() {
        for status in [400, 401, 403, 404, 409, 410, 422, 302, 101] {
            assert_eq!(
                judge(&answered(status), 1, &redelivery(&[1])),
                Verdict::Term {
                    reason: format!("HandlerRejected: HTTP {status}")
                }
            );
        }
    }

    #[test]
    fn the_shortest_wait_covers_every_backoff_entry() {
        assert_eq!(redelivery(&[]).shortest_wait(), Duration::from_secs(30));
        assert_eq!(
            redelivery(&[5, 1, 10]).shortest_wait(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn attempts_count_local_retries_on_top_of_the_servers_deliveries() {
        assert_eq!(next_attempt(None, 1), 1);
        assert_eq!(
            next_attempt(None, 3),
            3,
            "a redelivered copy starts at its count"
        );
        assert_eq!(next_attempt(Some(1), 1), 2);
        assert_eq!(next_attempt(Some(4), 1), 5);
        assert_eq!(
            next_attempt(Some(2), 6),
            6,
            "a copy JetStream redelivered meanwhile counts what it knows"
        );
    }

    #[test]
    fn retries_in_place_until_max_deliveries_then_gives_up() {
        let failed = answered(503);
        let delay = Duration::from_millis(200);
        for attempt in 1..5 {
            assert_eq!(
                in_place(&failed, attempt, delay, 5),
                InPlace::Retry { after: delay }
            );
        }
        assert_eq!(
            in_place(&failed, 5, delay, 5),
            InPlace::GiveUp {
                reason: "MaxDeliveries: 5 deliveries, the last: HTTP 503".into()
            }
        );
        assert_eq!(
            in_place(&HandlerResult::TimedOut, 7, delay, 5),
            InPlace::GiveUp {
                reason: "MaxDeliveries: 7 deliveries, the last: no answer in time".into()
            },
            "a copy redelivered beyond the limit gives up at once"
        );
        assert_eq!(
            in_place(&failed, 1_000, delay, -1),
            InPlace::Retry { after: delay },
            "unlimited deliveries"
        );
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
