//! Looking at dead letters and removing them: list or count a selection, show one, purge a
//! selection. Shared by `switchyard dlq` and anything else that reads a dead-letter stream.

use time::OffsetDateTime;

use super::{DeadLetter, Selection, format::FormatError};
use crate::broker::{Broker, BrokerError, MAX_BATCH, StoredMessage};

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// The dead letter's own subject in the dead-letter stream.
    pub subject: String,
    /// When the dead-letter stream stored it.
    pub stored_at: OffsetDateTime,
    /// What it records, or why it cannot be read as a dead letter.
    pub dead_letter: Result<DeadLetter, FormatError>,
}

/// One dead letter in full.
#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    /// The stored message: every header and the payload.
    pub message: StoredMessage,
    /// What it records, or why it cannot be read as a dead letter.
    pub dead_letter: Result<DeadLetter, FormatError>,
}

/// The first `limit` dead letters of `stream` the selection takes, oldest first. Fails with
/// [`crate::broker::codes::STREAM_NOT_FOUND`] if the stream does not exist.
pub async fn list(
    broker: &Broker,
    stream: &str,
    selection: &Selection,
    limit: usize,
) -> Result<Vec<Listed>, BrokerError> {
    let mut listed = Vec::new();
    if limit == 0 {
        return Ok(listed);
    }
    visit(broker, stream, selection, |message, dead_letter| {
        listed.push(Listed {
            sequence: message.sequence,
            subject: message.subject,
            stored_at: message.time,
            dead_letter,
        });
        listed.len() < limit
    })
    .await?;
    Ok(listed)
}

/// How many dead letters of `stream` the selection takes. Fails with
/// [`crate::broker::codes::STREAM_NOT_FOUND`] if the stream does not exist.
pub async fn count(
    broker: &Broker,
    stream: &str,
    selection: &Selection,
) -> Result<u64, BrokerError> {
    let mut count = 0;
    visit(broker, stream, selection, |_, _| {
        count += 1;
        true
    })
    .await?;
    Ok(count)
}

/// The message `sequence` of `stream`, or `None` if it holds no such message. Fails with
/// [`crate::broker::codes::STREAM_NOT_FOUND`] if the stream does not exist.
pub async fn show(
    broker: &Broker,
    stream: &str,
    sequence: u64,
) -> Result<Option<Shown>, BrokerError> {
    let bounds = broker.stream_bounds(stream).await?;
    if bounds.messages == 0 || sequence < bounds.first || sequence > bounds.last {
        return Ok(None);
    }
    // Read as a consumer receives it rather than fetched by sequence: a fetch keeps only the
    // last value of a header given several times.
    let mut reader = broker
        .read_stream(stream, sequence..=sequence, false)
        .await?;
    let batch = reader.next_batch(1).await;
    let _ = reader.close().await;
    Ok(batch?
        .into_iter()
        .find(|message| message.sequence == sequence)
        .map(|message| Shown {
            dead_letter: DeadLetter::from_headers(&message.headers),
            message,
        }))
}

/// Removes the dead letters of `stream` the selection takes, as the stream held them when the
/// purge started; returns how many were removed. A selection of a sequence range from the
/// stream's start (or of everything) is one request; any other is read and deleted one by
/// one. Fails with [`crate::broker::codes::STREAM_NOT_FOUND`] if the stream does not exist.
pub async fn purge(
    broker: &Broker,
    stream: &str,
    selection: &Selection,
) -> Result<u64, BrokerError> {
    let bounds = broker.stream_bounds(stream).await?;
    let Some(range) = selection.sequences_to_read(bounds.first, bounds.last) else {
        return Ok(0);
    };
    if selection.sequences_only() && *range.start() <= bounds.first {
        return broker.purge_stream(stream, Some(range.end() + 1)).await;
    }
    let mut doomed = Vec::new();
    visit(broker, stream, selection, |message, _| {
        doomed.push(message.sequence);
        true
    })
    .await?;
    let mut purged = 0;
    for sequence in doomed {
        if broker.delete_message(stream, sequence).await? {
            purged += 1;
        }
    }
    Ok(purged)
}

/// Hands every message of `stream` the selection takes to `take`, oldest first, reading the
/// headers only, until `take` answers `false`.
async fn visit(
    broker: &Broker,
    stream: &str,
    selection: &Selection,
    mut take: impl FnMut(StoredMessage, Result<DeadLetter, FormatError>) -> bool,
) -> Result<(), BrokerError> {
    let bounds = broker.stream_bounds(stream).await?;
    let Some(range) = selection
        .sequences_to_read(bounds.first, bounds.last)
        .filter(|_| bounds.messages > 0)
    else {
        return Ok(());
    };
    let mut reader = broker.read_stream(stream, range, true).await?;
    let visited = async {
        loop {
            let batch = reader.next_batch(MAX_BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for message in batch {
                let dead_letter = DeadLetter::from_headers(&message.headers);
                let selected = match &dead_letter {
                    Ok(letter) => selection.matches(letter, message.sequence),
                    Err(_) => selection.matches_unreadable(message.sequence),
                };
                if selected && !take(message, dead_letter) {
                    return Ok(());
                }
            }
        }
    }
    .await;
    // The reader's consumer goes in every case; failing to delete it only leaves it to expire.
    let _ = reader.close().await;
    visited
}
