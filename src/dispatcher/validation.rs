//! Schema enforcement (`--schema-key`): every event's data is validated against the record the
//! schema registry holds under one key before the handler sees it; an event that fails is
//! refused with reason `SchemaViolation: <first error>`, through the same path as a handler's
//! refusal, so the dead-letter relay keeps it.
//!
//! The key is followed ([`Registry::follow`]): a Subscription bound to the latest version
//! follows `<namespace>.<eventType>.latest` and picks up each new version as it registers,
//! without a restart; a pinned one follows that version's key. Each record's document is
//! compiled once into a validator, in the dialect the schema engine reads it in
//! ([`validator_draft`]); no reference is ever fetched (the validator crate's retrieval
//! features are off, and registered documents resolve every `$ref` inside themselves). Until
//! the first record is in force nothing is delivered; after that, a registry that cannot be
//! read, a record that cannot be compiled or a key that is emptied leaves the last record in
//! force.
//!
//! What is validated is the event's data as the handler receives it: the body, which must be
//! JSON (a declared media type that is not JSON is a violation, as is an event without data).
//! A body is read into a [`Document`], which costs far less than a `serde_json::Value`; a body
//! the dispatcher parsed already (an unlabelled payload it looked into) is validated as that.

pub mod document;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use self::document::{Document, DocumentJson};
use super::cloudevents::{HttpEvent, is_json_media_type};
use crate::{
    broker::Broker,
    deadletter::Reason,
    registry::{Registry, SchemaRecord},
    runtime::shutdown::Shutdown,
    schema::{Draft, Schema},
};

/// Longest violation text an event is refused with: it travels in a `+TERM` and becomes the
/// dead letter's detail header.
pub const MAX_VIOLATION_CHARS: usize = 400;
/// Delays between attempts at reading the registry.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The validator dialect for a document the schema engine reads in `draft`. The one place the
/// two crates' dialects meet: no wildcard, so a dialect the engine learns fails to compile here
/// until it is mapped.
pub fn validator_draft(draft: Draft) -> jsonschema::Draft {
    match draft {
        Draft::Draft04 => jsonschema::Draft::Draft4,
        Draft::Draft06 => jsonschema::Draft::Draft6,
        Draft::Draft07 => jsonschema::Draft::Draft7,
        Draft::Draft201909 => jsonschema::Draft::Draft201909,
        Draft::Draft202012 => jsonschema::Draft::Draft202012,
    }
}

/// One registered version, compiled.
pub struct CompiledSchema {
    pub event_type: String,
    pub version: i64,
    pub fingerprint: String,
    /// For bodies parsed already.
    validator: jsonschema::Validator,
    /// For bodies as they arrive.
    body_validator: jsonschema::Validator<DocumentJson>,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("event_type", &self.event_type)
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Compiles a record's document in the dialect the schema engine reads it in.
    pub fn compile(record: &SchemaRecord) -> Result<Self, String> {
        let schema = Schema::parse(record.schema.clone()).map_err(|e| e.to_string())?;
        let draft = validator_draft(schema.draft());
        let validator = jsonschema::options()
            .with_draft(draft)
            .build(schema.document())
            .map_err(|e| e.to_string())?;
        let body_validator = jsonschema::options_for::<DocumentJson>()
            .with_draft(draft)
            .build(schema.document())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            event_type: record.event_type.clone(),
            version: record.version,
            fingerprint: record.fingerprint.clone(),
            validator,
            body_validator,
        })
    }

    /// Checks an event's data: its media type (`None`: undeclared) and body. The violation,
    /// as the text to refuse the event with, when it fails.
    pub fn check(&self, content_type: Option<&str>, data: &[u8]) -> Result<(), String> {
        self.check_parsed(content_type, data, None)
    }

    /// [`Self::check`], with the body already parsed when the caller has it (`parsed` must be
    /// `data` as JSON).
    pub fn check_parsed(
        &self,
        content_type: Option<&str>,
        data: &[u8],
        parsed: Option<&Value>,
    ) -> Result<(), String> {
        if let Some(content_type) = content_type
            && !is_json_media_type(content_type)
        {
            return Err(self.violation(
                None,
                &format!("data is declared as {content_type}, not JSON"),
            ));
        }
        if data.is_empty() {
            return Err(self.violation(None, "the event has no data"));
        }
        if let Some(value) = parsed {
            return self.judge(&self.validator, value);
        }
        let document = Document::parse(data)
            .map_err(|e| self.violation(None, &format!("data is not JSON: {e}")))?;
        self.judge(&self.body_validator, document.root())
    }

    /// Walks `instance` with `validator`, in whichever representation it is.
    fn judge<F: jsonschema::json::Json>(
        &self,
        validator: &jsonschema::Validator<F>,
        instance: F::Node<'_>,
    ) -> Result<(), String> {
        // The plain yes/no is the cheaper walk; the error with its place only when it is no.
        if validator.is_valid(instance.clone()) {
            return Ok(());
        }
        validator
            .validate(instance)
            .map_err(|e| self.violation(Some(e.instance_path().as_str()), &e.to_string()))
    }

    /// `<where>: <what> (<event type> v<version>)`, where is a JSON pointer into the data
    /// (`#` the whole of it, as the schema engine writes places); one line, at most
    /// [`MAX_VIOLATION_CHARS`].
    fn violation(&self, at: Option<&str>, what: &str) -> String {
        violation_text(at, what, &self.event_type, self.version)
    }
}

/// See [`CompiledSchema::violation`].
pub fn violation_text(at: Option<&str>, what: &str, event_type: &str, version: i64) -> String {
    let place = match at {
        Some(pointer) => format!("#{pointer}: "),
        None => String::new(),
    };
    let suffix = format!(" ({event_type} v{version})");
    let room = MAX_VIOLATION_CHARS.saturating_sub(place.chars().count() + suffix.chars().count());
    let what: String = what
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let what = if what.chars().count() > room {
        let kept: String = what.chars().take(room.saturating_sub(1)).collect();
        format!("{kept}…")
    } else {
        what
    };
    format!("{place}{what}{suffix}")
}

/// The `+TERM` reason of a violation, as the dead-letter relay reads it back.
pub fn refusal_reason(violation: String) -> String {
    Reason::SchemaViolation { error: violation }.term_reason()
}

/// Whether `key` can be a bound key: `<namespace>.<eventType>.latest` or
/// `<namespace>.<eventType>.v<version>` (see [`crate::registry::keys::bound_key`]).
pub fn is_bound_key(key: &str) -> bool {
    let tokens: Vec<&str> = key.split('.').collect();
    let valid_token = |t: &&str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last = tokens.last().copied().unwrap_or_default();
    let version = last
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    tokens.len() >= 4 && tokens.iter().all(valid_token) && (last == "latest" || version)
}

/// The schema in force, shared by every delivery.
#[derive(Clone, Debug)]
pub struct Enforced(watch::Receiver<Arc<CompiledSchema>>);

impl Enforced {
    /// Checks the request an event became: its `Content-Type` and body.
    pub fn check(&self, request: &HttpEvent) -> Result<(), String> {
        let schema = self.0.borrow().clone();
        let content_type = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        schema.check_parsed(content_type, &request.body, request.parsed_body.as_ref())
    }
}

/// How the binding stands, for `/readyz`: `None` without `--schema-key`, else whether a record
/// is in force and a line saying which (or why not).
#[derive(Default)]
pub struct SchemaState(Mutex<Option<(bool, String)>>);

impl SchemaState {
    fn set(&self, in_force: bool, line: String) {
        *self.0.lock().expect("schema state") = Some((in_force, line));
    }

    pub fn get(&self) -> Option<(bool, String)> {
        self.0.lock().expect("schema state").clone()
    }
}

/// Follows `key` until shutdown: compiles each record the registry holds under it, hands the
/// first one in force to `first`, and replaces it with each later one. `version` is told the
/// version in force.
///
/// The key is watched; every [`RECHECK`] its value is also read once, and the watch started
/// anew if that shows a record other than the one in force: a watch resumes where it was
/// after a reconnection, which misses what a re-created bucket holds.
pub async fn follow(
    broker: Broker,
    key: String,
    state: Arc<SchemaState>,
    version: prometheus_client::metrics::gauge::Gauge,
    first: oneshot::Sender<Enforced>,
    shutdown: Shutdown,
) {
    let mut follower = Follower {
        key,
        state,
        version,
        first: Some(first),
        in_force: None,
    };
    follower
        .state
        .set(false, format!("{}: not read yet", follower.key));
    let key = follower.key.clone();
    let mut delay = RETRY_FIRST;
    loop {
        let followed = match Registry::open(&broker).await {
            Ok(registry) => registry
                .follow(&key)
                .await
                .map(|records| (registry, records)),
            Err(e) => Err(e),
        };
        match followed {
            Err(e) => {
                warn!(key, error = %e, retry_in = ?delay, "cannot read the schema registry");
                follower.not_in_force(format!("cannot read the schema registry ({e})"));
            }
            Ok((registry, records)) => {
                if let Ok(None) = registry.kv().get(&key).await {
                    follower.not_in_force("nothing is registered under this key yet".into());
                }
                let mut records = std::pin::pin!(records);
                let mut recheck =
                    tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
                loop {
                    tokio::select! {
                        () = shutdown.triggered() => return,
                        _ = recheck.tick() => {
                            if follower.missed(&registry).await {
                                warn!(key, "the registry holds another record than the one in force; following the key again");
                                break;
                            }
                        }
                        next = records.next() => match next {
                            None => {
                                warn!(key, retry_in = ?delay, "the schema registry watch ended; following the key again");
                                break;
                            }
                            Some(next) => {
                                delay = RETRY_FIRST;
                                follower.take(next);
                            }
                        },
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// How often the followed key's value is read besides the watch.
pub const RECHECK: Duration = Duration::from_secs(30);

/// What [`follow`] keeps between records.
struct Follower {
    key: String,
    state: Arc<SchemaState>,
    version: prometheus_client::metrics::gauge::Gauge,
    /// Told the first record in force.
    first: Option<oneshot::Sender<Enforced>>,
    /// The channel the record in force goes out on, and its fingerprint.
    in_force: Option<(watch::Sender<Arc<CompiledSchema>>, String)>,
}

impl Follower {
    /// Says why nothing is in force, unless something is.
    fn not_in_force(&self, why: String) {
        if self.in_force.is_none() {
            self.state.set(false, format!("{}: {why}", self.key));
        }
    }

    /// Whether the key holds a readable record other than the one in force.
    async fn missed(&self, registry: &Registry) -> bool {
        let Ok(Some(entry)) = registry.kv().get(&self.key).await else {
            return false;
        };
        let Ok(record) = serde_json::from_slice::<SchemaRecord>(&entry.value) else {
            return false;
        };
        self.in_force
            .as_ref()
            .is_none_or(|(_, fingerprint)| *fingerprint != record.fingerprint)
    }

    /// Takes up what the watch delivered.
    fn take(&mut self, next: Result<Option<SchemaRecord>, crate::broker::BrokerError>) {
        let key = &self.key;
        let record = match next {
            Ok(Some(record)) => record,
            Ok(None) if self.in_force.is_none() => {
                self.not_in_force("nothing is registered under this key yet".into());
                return;
            }
            Ok(None) => {
                warn!(
                    key,
                    "the schema registry key was emptied; the schema in force stays"
                );
                return;
            }
            Err(e) => {
                warn!(key, error = %e, "cannot read a schema registry record; the schema in force stays");
                return;
            }
        };
        if self
            .in_force
            .as_ref()
            .is_some_and(|(_, fingerprint)| *fingerprint == record.fingerprint)
        {
            return;
        }
        let compiled = match CompiledSchema::compile(&record) {
            Ok(compiled) => compiled,
            Err(e) => {
                error!(key, version = record.version, error = %e, "a registered schema cannot be compiled; the one in force stays");
                self.not_in_force(format!("v{} cannot be compiled ({e})", record.version));
                return;
            }
        };
        info!(
            key,
            event_type = compiled.event_type,
            version = compiled.version,
            fingerprint = compiled.fingerprint,
            "schema in force"
        );
        self.state.set(
            true,
            format!(
                "{key}: {} v{} in force ({})",
                compiled.event_type, compiled.version, compiled.fingerprint
            ),
        );
        self.version.set(compiled.version);
        let fingerprint = compiled.fingerprint.clone();
        let compiled = Arc::new(compiled);
        let sender = match self.in_force.take() {
            Some((sender, _)) => {
                sender.send_replace(compiled);
                sender
            }
            None => {
                let (sender, receiver) = watch::channel(compiled);
                if let Some(first) = self.first.take() {
                    let _ = first.send(Enforced(receiver));
                }
                sender
            }
        };
        self.in_force = Some((sender, fingerprint));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{api::event_schema::Compatibility, registry::fingerprint};

    fn record(version: i64, schema: Value) -> SchemaRecord {
        SchemaRecord {
            event_type: "order.placed".into(),
            version,
            compatibility: Compatibility::Backward,
            fingerprint: fingerprint(&schema).1,
            schema,
            defaults: None,
            registered_at: "2026-12-05T00:00:00Z".into(),
            registered_by: "shop/order-placed".into(),
        }
    }

    fn order() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "orderId": {"type": "string"},
                "total": {"type": "number", "minimum": 0},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
            },
            "required": ["orderId", "total"],
            "$defs": {"item": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}}}
        })
    }

    fn compiled(schema: Value) -> CompiledSchema {
        CompiledSchema::compile(&record(2, schema)).expect("compiles")
    }

    #[test]
    fn every_dialect_the_engine_reads_has_a_validator_dialect() {
        for (uri, expected) in [
            (
                "https://json-schema.org/draft/2020-12/schema",
                jsonschema::Draft::Draft202012,
            ),
            (
                "https://json-schema.org/draft/2019-09/schema",
                jsonschema::Draft::Draft201909,
            ),
            (
                "http://json-schema.org/draft-07/schema#",
                jsonschema::Draft::Draft7,
            ),
            (
                "http://json-schema.org/draft-06/schema#",
                jsonschema::Draft::Draft6,
            ),
            (
                "http://json-schema.org/draft-04/schema#",
                jsonschema::Draft::Draft4,
            ),
        ] {
            let schema = Schema::parse(json!({"$schema": uri, "type": "object"})).unwrap();
            assert_eq!(validator_draft(schema.draft()), expected, "{uri}");
        }
        // Without $schema the dialect is the engine's choice, whatever it is: the validator
        // follows it rather than guessing on its own.
        let bare = Schema::parse(json!({"type": "object"})).unwrap();
        let expected = validator_draft(bare.draft());
        assert!(
            jsonschema::options()
                .with_draft(expected)
                .build(bare.document())
                .is_ok()
        );
    }

    #[test]
    fn a_draft_07_document_is_validated_by_draft_07_rules() {
        // `prefixItems` arrived with 2020-12; draft-07 knows no such keyword and ignores it.
        let tuple = |uri: &str| {
            compiled(json!({"$schema": uri, "type": "array", "prefixItems": [{"type": "string"}]}))
        };
        let draft07 = tuple("http://json-schema.org/draft-07/schema#");
        let draft2020 = tuple("https://json-schema.org/draft/2020-12/schema");
        assert!(draft07.check(None, b"[1]").is_ok());
        assert!(draft2020.check(None, b"[1]").is_err());
        assert!(draft2020.check(None, br#"["a"]"#).is_ok());
    }

    #[test]
    fn a_body_parsed_already_is_judged_as_the_body_itself_would_be() {
        let schema = compiled(order());
        for body in [
            &br#"{"orderId": "o-1", "total": 5}"#[..],
            br#"{"orderId": "o-1", "total": -5}"#,
            br#"{"total": 5}"#,
        ] {
            let parsed: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                schema.check_parsed(None, body, Some(&parsed)),
                schema.check(None, body)
            );
        }
        // A declared media type is still checked first.
        let parsed = json!({"orderId": "o-1", "total": 5});
        assert!(
            schema
                .check_parsed(Some("text/plain"), b"{}", Some(&parsed))
                .is_err()
        );
    }

    /// Rules of most kinds, for properties and arrays the generated bodies often hit.
    fn every_kind_of_rule() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"leaf": {"anyOf": [
                {"type": "string", "maxLength": 3, "pattern": "^[a-c]*$"},
                {"type": "integer", "minimum": -5, "exclusiveMaximum": 50, "multipleOf": 2},
                {"type": "null"}
            ]}},
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/leaf"},
                "b": {"type": "array", "items": {"$ref": "#/$defs/leaf"}, "maxItems": 3, "uniqueItems": true},
                "c": {"enum": ["a", 1, null, [1], {"a": 1}]},
                "d": {"type": "object", "propertyNames": {"pattern": "^[a-c]$"}, "minProperties": 1,
                      "additionalProperties": {"type": "boolean"}},
                "e": {"oneOf": [{"type": "number"}, {"type": "integer"}], "not": {"const": 2.5}}
            },
            "patternProperties": {"^x": {"type": "string"}},
            "dependentRequired": {"a": ["b"]},
            "if": {"required": ["c"]},
            "then": {"maxProperties": 3},
            "else": {"contains": true},
            "unevaluatedProperties": {"type": ["object", "array", "string"]}
        })
    }

    fn generated_body() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-8i64..60).prop_map(Value::from),
            prop_oneof![Just(2.5), Just(2.0), Just(-0.5), Just(1e20)].prop_map(Value::from),
            "[a-d]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-e]|x[a-c]?", inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// A body validated as it arrives (the [`Document`] path) is judged exactly as the
        /// `Value` of the same body: the same violations, every one of them, at the same places.
        #[test]
        fn a_body_is_judged_as_its_value_would_be(value in generated_body()) {
            let schema = compiled(every_kind_of_rule());
            let body = serde_json::to_vec(&value).unwrap();
            let document = Document::parse(&body).unwrap();
            let violations = |errors: jsonschema::ErrorIterator<'_>| {
                let mut all: Vec<(String, String)> = errors
                    .map(|e| (e.instance_path().to_string(), e.to_string()))
                    .collect();
                all.sort();
                all
            };
            proptest::prop_assert_eq!(
                violations(schema.body_validator.iter_errors(document.root())),
                violations(schema.validator.iter_errors(&value))
            );
            proptest::prop_assert_eq!(
                schema.check(None, &body),
                schema.check_parsed(None, &body, Some(&value))
            );
        }
    }

    #[test]
    fn format_is_an_annotation_in_2020_12_as_the_draft_says() {
        let schema = compiled(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}}
        }));
        assert!(
            schema
                .check(None, br#"{"email": "not an address"}"#)
                .is_ok()
        );
    }

    #[test]
    fn valid_data_passes_in_any_json_media_type() {
        let schema = compiled(order());
        let data = br#"{"orderId": "o-1", "total": 42.5, "items": [{"qty": 2}]}"#;
        assert_eq!(schema.check(None, data), Ok(()));
        assert_eq!(schema.check(Some("application/json"), data), Ok(()));
        assert_eq!(
            schema.check(Some("application/vnd.shop.order+json; charset=utf-8"), data),
            Ok(())
        );
    }

    #[test]
    fn a_violation_names_the_first_place_and_the_version() {
        let schema = compiled(order());
        let error = schema
            .check(
                None,
                br#"{"orderId": "o-1", "total": 1, "items": [{"qty": 0}]}"#,
            )
            .unwrap_err();
        assert!(error.starts_with("#/items/0/qty: "), "{error}");
        assert!(error.contains("minimum of 1"), "{error}");
        assert!(error.ends_with(" (order.placed v2)"), "{error}");
        let missing = schema.check(None, br#"{"total": 1}"#).unwrap_err();
        assert!(
            missing.starts_with("#: ") && missing.contains("orderId"),
            "{missing}"
        );
    }

    #[test]
    fn data_that_is_not_json_is_a_violation() {
        let schema = compiled(order());
        let declared = schema
            .check(Some("text/plain"), br#"{"orderId": "o-1", "total": 1}"#)
            .unwrap_err();
        assert_eq!(
            declared,
            "data is declared as text/plain, not JSON (order.placed v2)"
        );
        assert_eq!(
            schema.check(None, b"").unwrap_err(),
            "the event has no data (order.placed v2)"
        );
        let garbled = schema.check(None, b"{\"orderId\":").unwrap_err();
        assert!(garbled.starts_with("data is not JSON: "), "{garbled}");
    }

    #[test]
    fn violations_stay_one_bounded_line() {
        let long = "x".repeat(5_000);
        let text = violation_text(Some("/note"), &format!("line\n{long}"), "order.placed", 7);
        assert!(
            text.chars().count() <= MAX_VIOLATION_CHARS,
            "{}",
            text.len()
        );
        assert!(!text.contains('\n'));
        assert!(text.starts_with("#/note: line x"), "{text}");
        assert!(text.ends_with("… (order.placed v7)"), "{text}");
        // A huge value quoted by the validator is cut the same way.
        let schema =
            compiled(json!({"type": "object", "properties": {"note": {"type": "integer"}}}));
        let data = format!("{{\"note\": \"{long}\"}}");
        let error = schema.check(None, data.as_bytes()).unwrap_err();
        assert!(error.chars().count() <= MAX_VIOLATION_CHARS, "{error}");
        assert!(error.starts_with("#/note: "), "{error}");
    }

    #[test]
    fn the_refusal_reason_reads_back_as_a_schema_violation() {
        let reason =
            refusal_reason("#/total: -1 is less than the minimum of 0 (order.placed v2)".into());
        assert_eq!(
            reason,
            "SchemaViolation: #/total: -1 is less than the minimum of 0 (order.placed v2)"
        );
        assert_eq!(
            Reason::from_term(Some(&reason)),
            Reason::SchemaViolation {
                error: "#/total: -1 is less than the minimum of 0 (order.placed v2)".into()
            }
        );
    }

    #[test]
    fn a_document_with_a_reference_outside_itself_is_not_compiled() {
        let remote = record(1, json!({"$ref": "https://example.com/schemas/order.json"}));
        assert!(CompiledSchema::compile(&remote).is_err());
    }

    #[test]
    fn only_bound_keys_are_followed() {
        for key in [
            "shop.order.placed.latest",
            "shop.order.placed.v12",
            "team-a.billing.invoice.paid.latest",
        ] {
            assert!(is_bound_key(key), "{key}");
        }
        for key in [
            "",
            "shop.latest",
            "order.placed",
            "shop.order.placed.v",
            "shop.order.placed.vX",
            "shop.order.*.latest",
            "shop.order placed.latest",
            "shop..placed.latest",
        ] {
            assert!(!is_bound_key(key), "{key}");
        }
    }
}
