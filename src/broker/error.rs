//! What can go wrong talking to NATS, classified by what the caller can do about it, and the few
//! JetStream error codes worth reacting to. Hides how the client library reports its failures:
//! every call of the adapter returns a [`BrokerError`].

use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};

/// JetStream error codes (`err_code`) Switchyard reacts to, each checked against nats-server 2.15
/// by the adapter's integration tests.
pub mod codes {
    pub const STREAM_NOT_FOUND: u64 = 10059;
    pub const STREAM_NAME_EXISTS: u64 = 10058;
    pub const STREAM_SUBJECT_OVERLAP: u64 = 10065;
    pub const STREAM_INVALID_CONFIG: u64 = 10052;
    /// A publish expecting a last (subject) sequence found another one. On a key-value bucket:
    /// the key exists (create) or has another revision (compare-and-set update).
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
    pub const CONSUMER_NOT_FOUND: u64 = 10014;
    /// Create (action "create") of a consumer that exists with another configuration.
    pub const CONSUMER_ALREADY_EXISTS: u64 = 10148;
    /// Update (action "update") of a consumer that does not exist.
    pub const CONSUMER_DOES_NOT_EXIST: u64 = 10149;
    /// The consumer configuration was refused, including changes to fields that cannot change
    /// (deliver policy, ack policy, …); the description says which.
    pub const CONSUMER_CREATE_FAILED: u64 = 10012;
    /// `backoff` has more entries than `max_deliver` allows.
    pub const CONSUMER_MAX_DELIVER_BACKOFF: u64 = 10116;
    /// On a work-queue stream, the consumer's filter overlaps another consumer's.
    pub const CONSUMER_WORK_QUEUE_NOT_UNIQUE: u64 = 10100;
    /// On a work-queue stream, a consumer must deliver all messages.
    pub const CONSUMER_WORK_QUEUE_NOT_DELIVER_ALL: u64 = 10101;
    /// Both `filter_subject` and `filter_subjects` are set.
    pub const CONSUMER_DUPLICATE_FILTER_SUBJECTS: u64 = 10136;
}

/// What went wrong talking to the broker, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// NATS cannot be reached or JetStream did not answer in time: retry later.
    #[error("NATS is unavailable: {0}")]
    Unavailable(String),
    /// JetStream answered with an error: the request must change.
    #[error("JetStream refused the request: {description} (error {code})")]
    Rejected { code: u64, description: String },
    /// JetStream answered something that could not be understood.
    #[error("unexpected answer from JetStream: {0}")]
    Protocol(String),
    /// The settings or arguments cannot work (unreadable credentials, invalid URL, a client
    /// certificate without its key, an invalid key or bucket name): retrying will not help until
    /// they change.
    #[error("invalid NATS configuration: {0}")]
    Config(String),
}

impl BrokerError {
    /// The server's `err_code` of a rejection.
    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A low-cardinality label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Rejected { .. } => "rejected",
            Self::Protocol(_) => "protocol",
            Self::Config(_) => "config",
        }
    }

    /// Classifies an error of the client library: the server's rejection if one is in its chain
    /// of causes, `Unavailable` if the library gave up waiting, `Protocol` otherwise.
    pub(super) fn from_client<E>(error: &E, timed_out: bool) -> Self
    where
        E: std::error::Error + 'static,
    {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(api) = e.downcast_ref::<async_nats::jetstream::Error>() {
                return Self::rejected(api);
            }
            // Stream creation (under bucket creation) keeps the server's answer in its kind.
            if let Some(create) = e.downcast_ref::<CreateStreamError>()
                && let CreateStreamErrorKind::JetStream(api) = create.kind()
            {
                return Self::rejected(&api);
            }
            cause = e.source();
        }
        if timed_out {
            Self::Unavailable(format!("JetStream did not answer in time: {error}"))
        } else {
            Self::Protocol(error.to_string())
        }
    }

    fn rejected(error: &async_nats::jetstream::Error) -> Self {
        Self::Rejected {
            code: error.error_code().0,
            description: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable_labels() {
        let cases = [
            (BrokerError::Unavailable("x".into()), "unavailable"),
            (
                BrokerError::Rejected {
                    code: 1,
                    description: "x".into(),
                },
                "rejected",
            ),
            (BrokerError::Protocol("x".into()), "protocol"),
            (BrokerError::Config("x".into()), "config"),
        ];
        for (error, label) in cases {
            assert_eq!(error.category(), label);
        }
    }

    #[test]
    fn only_rejections_carry_a_code() {
        let rejected = BrokerError::Rejected {
            code: codes::CONSUMER_NOT_FOUND,
            description: "consumer not found".into(),
        };
        assert_eq!(rejected.code(), Some(10014));
        assert_eq!(BrokerError::Config("x".into()).code(), None);
    }

    #[test]
    fn library_errors_without_a_server_answer_are_classified_by_timeout() {
        let io = std::io::Error::other("boom");
        assert_eq!(
            BrokerError::from_client(&io, true).category(),
            "unavailable"
        );
        assert_eq!(BrokerError::from_client(&io, false).category(), "protocol");
    }
}
