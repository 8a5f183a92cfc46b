//! The worker sidecar (`switchyard dispatch`): delivers a consumer's events to the user's container.

pub mod cloudevents;
