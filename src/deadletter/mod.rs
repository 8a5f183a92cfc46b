//! Dead letters: copies of the events Subscriptions give up on, kept in the stream their
//! DeadLetterPolicy names.
//!
//! - [`format`]: what a stored dead letter looks like; pure, shared with listing and replay.
//! - [`advisories`]: the stream that captures the server's consumer advisories durably (they are
//!   core-NATS messages, sent only while someone listens), and reading one.
//! - [`route`]: where a consumer's dead letters go; the operator answers from its Subscriptions
//!   and DeadLetterPolicies.
//! - [`relay`]: turns each captured advisory into exactly one stored copy, and reports what it
//!   did.
//! - [`selection`]: which dead letters a listing, replay or purge applies to; pure.
//! - [`inspect`]: listing dead letters, showing one, purging a selection.
//! - [`replay`]: publishing selected dead letters again to their original subjects, at a rate.
//!
//! What the server does to the original, checked against nats-server 2.15 (the integration
//! tests pin it):
//! - Limits streams keep max-delivered and terminated originals.
//! - WorkQueue and Interest streams keep a max-delivered original forever: the consumer never
//!   acknowledged it, so its interest never ends. The relay acknowledges it on the consumer's
//!   behalf once the copy is stored, and the server removes it as soon as no other consumer
//!   needs it (deleting it instead would take it from other Subscriptions of an Interest Topic
//!   that have not handled it yet).
//! - `+TERM` counts as an acknowledgement: in a WorkQueue stream, and in an Interest stream no
//!   other consumer still needs it in, the original is removed before the terminated advisory
//!   is even sent. Such an advisory can only be reported. To dead-letter a refusal there, a
//!   consumer must not terminate: it holds the event back (a negative acknowledgement with a
//!   long delay) and publishes a [`advisories::Rejection`] instead, which the relay treats as a
//!   terminated advisory whose original is still there, and settles by acknowledging it.

pub mod advisories;
pub mod format;
pub mod inspect;
pub mod relay;
pub mod replay;
pub mod route;
pub mod selection;

pub use advisories::{AdvisoryScope, AdvisoryStream, Failure, Rejection};
pub use format::{DeadLetter, Reason, ReasonKind, SubjectLayout};
pub use inspect::{Listed, Shown};
pub use relay::{Outcome, Relay, RelayConfig, Report, Step};
pub use replay::{Progress, ReplayOptions, ReplayReport, replay};
pub use route::{Route, Routes, Target};
pub use selection::{Selection, SelectionError};
