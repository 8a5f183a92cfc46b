//! Field types shared by several kinds. Each parses once into a checked value; the raw form stays
//! what the user wrote so status and errors can quote it back.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A duration in Go syntax (`90s`, `1h30m`, `500ms`), as Kubernetes APIs write durations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

/// Go duration syntax: one or more `<number><unit>` groups.
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a duration: {reason} (write it like 30s, 5m, 1h30m or 500ms)")]
pub struct GoDurationError {
    pub value: String,
    pub reason: String,
}

impl GoDuration {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Parses the Go syntax; negative durations are refused because no Switchyard field wants one.
    pub fn parse(&self) -> Result<Duration, GoDurationError> {
        // Go accepts a bare "0" (and kube's parser an empty string); the schema pattern does not.
        if !self.0.ends_with(|c: char| c.is_alphabetic()) {
            return Err(GoDurationError {
                value: self.0.clone(),
                reason: "it has no unit".into(),
            });
        }
        let parsed = kube::core::Duration::from_str(&self.0).map_err(|e| GoDurationError {
            value: self.0.clone(),
            reason: e.to_string(),
        })?;
        if parsed.is_negative() {
            return Err(GoDurationError {
                value: self.0.clone(),
                reason: "it is negative".into(),
            });
        }
        Ok(parsed.into())
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": GO_DURATION_PATTERN,
            "maxLength": 64,
        })
    }
}

/// A size in bytes: an integer, or a string with a decimal (`K`, `M`, `G`, `T`) or binary
/// (`Ki`, `Mi`, `Gi`, `Ti`) suffix, as Kubernetes quantities are written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(i64),
    Text(String),
}

pub const BYTE_SIZE_PATTERN: &str = r"^[0-9]+(K|M|G|T|Ki|Mi|Gi|Ti)?$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value} is not a size: {reason} (write bytes as a number, or with a suffix like 512Ki, 10Mi, 1G)"
)]
pub struct ByteSizeError {
    pub value: String,
    pub reason: &'static str,
}

impl ByteSize {
    pub fn parse(&self) -> Result<u64, ByteSizeError> {
        let text = match self {
            Self::Bytes(n) => {
                return u64::try_from(*n).map_err(|_| ByteSizeError {
                    value: n.to_string(),
                    reason: "it is negative",
                });
            }
            Self::Text(t) => t.trim(),
        };
        let invalid = |reason| ByteSizeError {
            value: text.to_string(),
            reason,
        };
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(invalid("it does not start with a number"));
        }
        let multiplier: u64 = match suffix {
            "" => 1,
            "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(invalid("unknown suffix")),
        };
        let number: u64 = digits
            .parse()
            .map_err(|_| invalid("the number is too large"))?;
        number
            .checked_mul(multiplier)
            .ok_or_else(|| invalid("the number is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // An int-or-string field; the apiserver applies the pattern to the string form only.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": BYTE_SIZE_PATTERN,
        })
    }
}

/// A reference to another Switchyard object in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the referenced object, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// A reference to an EventSchema in the same namespace, optionally pinned to one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRefWithVersion {
    /// Name of the EventSchema, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Pin to this registered version; unset follows the latest registered version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<i64>,
}

/// How long to wait before each redelivery of an event that was not acknowledged.
/// Give either an explicit list of delays or an exponential rule, not both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBackoff {
    /// Explicit delays, one per redelivery (the last repeats), e.g. [1s, 5s, 30s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub delays: Option<Vec<GoDuration>>,
    /// First delay of an exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<GoDuration>,
    /// Upper bound of an exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<GoDuration>,
    /// Growth factor of an exponential backoff, as a decimal string between 1 and 10 (default "2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([1-9](\.[0-9]+)?|10)$"))]
    pub multiplier: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_syntax() {
        assert_eq!(
            GoDuration::new("90s").parse().unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            GoDuration::new("1h30m").parse().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            GoDuration::new("250ms").parse().unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn invalid_durations_name_the_value() {
        for bad in ["", "10", "ten seconds", "5d", "-5s"] {
            let err = GoDuration::new(bad).parse().unwrap_err();
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains("30s"), "{err}");
        }
    }

    #[test]
    fn sizes_accept_plain_and_suffixed_forms() {
        assert_eq!(ByteSize::Bytes(1024).parse().unwrap(), 1024);
        assert_eq!(ByteSize::Text("1024".into()).parse().unwrap(), 1024);
        assert_eq!(ByteSize::Text("10Mi".into()).parse().unwrap(), 10 << 20);
        assert_eq!(ByteSize::Text("2G".into()).parse().unwrap(), 2_000_000_000);
    }

    #[test]
    fn invalid_sizes_are_refused() {
        for bad in ["", "Mi", "10MB", "1.5Gi", "-1", "99999999999999999999"] {
            assert!(ByteSize::Text(bad.into()).parse().is_err(), "{bad}");
        }
        assert!(ByteSize::Bytes(-1).parse().is_err());
        assert!(ByteSize::Text("99999999Ti".into()).parse().is_err());
    }
}
