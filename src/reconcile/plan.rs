//! The plan every kind makes for the broker object it owns (a stream, a consumer), decided the
//! same way: missing → create; owned by someone else → leave alone unless adopting; a change the
//! server refuses → refused; differences → update, caused by a spec change, drift or adoption.
//! Pure. A kind supplies only what is its own: the refused changes and the differences.

use std::collections::{BTreeMap, HashMap};

use crate::naming::metadata;

/// Why a broker object that exists gets rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateCause {
    /// The spec changed since the broker object was last written.
    SpecChanged,
    /// Someone changed the broker object behind Switchyard's back.
    Drift,
    /// The broker object belonged to nobody we know and the resource asked to adopt it.
    Adoption,
}

/// What the planner is told besides the two configurations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanInputs {
    /// The adopt annotation is set: a broker object owned by nobody we know may be taken over.
    pub adopt: bool,
    /// The status says the broker object was in sync when last looked at; missing now, it was
    /// deleted by hand and its re-creation is drift to report.
    pub synced_before: bool,
}

/// The next step for the broker object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Create,
    /// Create again what was deleted behind Switchyard's back.
    Recreate,
    InSync,
    Update {
        cause: UpdateCause,
        changed: Vec<&'static str>,
    },
    /// It exists but records another owner (or none); `owner` is what it records.
    NotOwned {
        owner: Option<String>,
    },
    /// The change cannot be applied in place.
    Refused {
        field: &'static str,
        message: String,
    },
}

/// What a kind knows about its broker object's configuration.
pub trait BrokerConfig {
    fn metadata(&self) -> &HashMap<String, String>;
    /// The first change the server would refuse, as (spec field, message for the user).
    fn refused_change(&self, actual: &Self) -> Option<(&'static str, String)>;
    /// Names of the managed settings that differ, after the server's normalising is undone.
    fn differences(&self, actual: &Self) -> Vec<&'static str>;
}

pub fn plan<C: BrokerConfig>(desired: &C, actual: Option<&C>, inputs: PlanInputs) -> Plan {
    let Some(actual) = actual else {
        return if inputs.synced_before {
            Plan::Recreate
        } else {
            Plan::Create
        };
    };
    let owner = actual.metadata().get(metadata::OWNER);
    let ours = owner == desired.metadata().get(metadata::OWNER);
    if !ours && !inputs.adopt {
        return Plan::NotOwned {
            owner: owner.cloned(),
        };
    }
    if let Some((field, message)) = desired.refused_change(actual) {
        return Plan::Refused { field, message };
    }
    let changed = desired.differences(actual);
    if changed.is_empty() {
        return Plan::InSync;
    }
    let cause = if !ours {
        UpdateCause::Adoption
    } else if metadata::WRITTEN_FROM
        .iter()
        .all(|key| actual.metadata().get(*key) == desired.metadata().get(*key))
    {
        UpdateCause::Drift
    } else {
        UpdateCause::SpecChanged
    };
    Plan::Update { cause, changed }
}

/// The metadata Switchyard compares: everything but the keys the server adds by itself.
pub fn owned_metadata(metadata: &HashMap<String, String>) -> BTreeMap<&str, &str> {
    metadata
        .iter()
        .filter(|(k, _)| !k.starts_with(metadata::SERVER_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
