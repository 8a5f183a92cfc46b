//! Turns one JetStream message into the CloudEvents 1.0 HTTP request (binary content mode) the
//! dispatcher POSTs to the user's container. Pure: a message and the Topic's layout in, headers
//! and body out; the delivery loop owns every I/O.
//!
//! Producers publish into a Topic in one of three forms, and each becomes the same kind of request:
//! - **Binary** (the message has `ce-*` headers, the NATS binding's binary mode): the headers are
//!   the attributes, the payload is the data. Header names are case-insensitive and values are
//!   percent-decoded as the binding asks, then percent-encoded again for HTTP. The data's media
//!   type comes from `ce-datacontenttype`, else from the message's `Content-Type`.
//! - **Structured** (`Content-Type: application/cloudevents+json`, or no content type at all and a
//!   payload that is a whole JSON envelope with `specversion`, `id`, `type` and `source`): the
//!   envelope's members become headers, its `data` or `data_base64` the body, as the JSON event
//!   format describes. A payload that claims this form but cannot be read is an error.
//! - **Plain** (anything else): the payload is the body as is, the message's `Content-Type` (if
//!   any) its media type.
//!
//! Whatever the form, the required attributes a producer left out are filled from what the
//! dispatcher knows: `id` from `Nats-Msg-Id` or the stream sequence, `source` from the Topic,
//! `type` from the subject (`<namespace>.<topic>.<type>…`), `specversion` 1.0; `time` from the
//! stream's timestamp and, on partitioned Topics, `subject` from the key tokens. Two extensions
//! are always set: [`DELIVERY_COUNT`] and [`STREAM_SEQUENCE`]; a third, [`FIRST_DELIVERY_TIME`],
//! whenever the dispatcher knows it. The W3C `traceparent` and `tracestate` travel as HTTP
//! headers of their own.
//!
//! Every failure is a [`CloudEventError`] whose text is short enough to be the reason an event is
//! terminated with; nothing here panics on any input.

use std::{borrow::Cow, collections::BTreeMap};

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header::CONTENT_TYPE};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// The only `specversion` the dispatcher delivers.
pub const SPEC_VERSION: &str = "1.0";
/// Extension carrying how many times the event has been delivered (by JetStream, plus the
/// dispatcher's own retries with per-key order), 1 on the first delivery, so handlers can tell
/// redeliveries apart. CloudEvents extension names are lowercase letters and
/// digits only, hence no separator.
pub const DELIVERY_COUNT: &str = "deliverycount";
/// Extension carrying the event's sequence number in the Topic's stream: unique and increasing
/// per Topic, useful to spot gaps or reorderings.
pub const STREAM_SEQUENCE: &str = "streamsequence";
/// Extension carrying when the event first reached a handler (RFC 3339), so a handler can tell
/// how long an event has been failing. Set on every first delivery, and on redeliveries whose
/// first delivery the dispatcher remembers (see `first_delivery`); never guessed.
pub const FIRST_DELIVERY_TIME: &str = "firstdeliverytime";
/// Longest attribute value accepted, in bytes (before percent-encoding).
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;
/// Most attributes a published event may carry (`ce-*` headers or envelope members).
pub const MAX_ATTRIBUTES: usize = 64;

/// The media type of the JSON event format (structured mode).
const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// Every CloudEvents event format's media type starts so (the HTTP and NATS bindings tell
/// structured from binary mode by this prefix).
const CLOUDEVENTS_MEDIA_PREFIX: &str = "application/cloudevents";
/// The header prefix of attributes in binary mode.
const ATTRIBUTE_HEADER_PREFIX: &str = "ce-";
/// JetStream's de-duplication header: the producer's own id of the message.
const NATS_MSG_ID: &str = "Nats-Msg-Id";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// Core attributes typed String, URI, URI-reference or Timestamp: JSON strings in an envelope.
const STRING_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];
/// How many characters of an offending value an error quotes.
const EXCERPT_CHARS: usize = 40;

/// Where the events come from, known to the dispatcher from its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicLayout {
    /// Subject prefix of the Topic, `<namespace>.<topic>` without a trailing dot: events travel
    /// on `<prefix>.<type tokens…>[.<key tokens…>]`.
    pub subject_prefix: String,
    /// Partitioned Topics store events on `<prefix>.<partition>.<type>.<key>`; this is the
    /// number of type tokens (at least 1). `None`: not partitioned, every token after the prefix
    /// belongs to the type.
    pub partition_type_tokens: Option<usize>,
    /// CloudEvents `source` of events that carry none, e.g. `/shop/topics/orders`.
    pub source: String,
}

/// One JetStream message as the dispatcher received it.
#[derive(Clone, Debug)]
pub struct Received<'a> {
    /// The subject the message is stored on.
    pub subject: &'a str,
    /// The message's NATS headers, if it has any.
    pub headers: Option<&'a async_nats::HeaderMap>,
    /// The message's payload (cloned into the body without copying).
    pub payload: &'a Bytes,
    /// The message's sequence number in the stream.
    pub stream_sequence: u64,
    /// When the stream stored the message.
    pub published: OffsetDateTime,
    /// How many times the message has been delivered, 1 on the first delivery (see
    /// [`DELIVERY_COUNT`]).
    pub delivered: i64,
    /// When the event was first delivered, if known (see [`FIRST_DELIVERY_TIME`]).
    pub first_delivered: Option<OffsetDateTime>,
}

/// An event as a CloudEvents binary-mode HTTP request: `ce-*` headers, `Content-Type` when the
/// data has a media type, `traceparent`/`tracestate` when the event carries a trace, and the data
/// as body. Method, URL and `Content-Length` are the sender's business.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpEvent {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body as JSON, when translating the message already parsed it (an unlabelled JSON
    /// payload is parsed to see whether it is an envelope): schema validation then needs no
    /// second parse.
    pub parsed_body: Option<Value>,
}

/// Why a message cannot become a CloudEvents request. The text is the reason the event is
/// terminated with, so it names the attribute and the problem and stays on one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// Structured mode in a format other than JSON, or a batch.
    #[error(
        "event format {content_type} is not supported; publish application/cloudevents+json or binary mode"
    )]
    UnsupportedFormat { content_type: String },
    /// The payload claims to be a JSON envelope but does not parse.
    #[error("structured event is not valid JSON: {0}")]
    InvalidJson(String),
    /// The payload claims to be a JSON envelope but is some other JSON value.
    #[error("structured event is {found}, not a JSON object")]
    NotAnObject { found: &'static str },
    #[error("structured event has no specversion")]
    MissingSpecVersion,
    #[error("specversion {found} is not supported; only 1.0 is")]
    UnsupportedSpecVersion { found: String },
    /// An envelope member of a type its attribute cannot have.
    #[error("attribute {attribute} must be {expected}, not {found}")]
    WrongType {
        attribute: String,
        expected: &'static str,
        found: &'static str,
    },
    /// An integer extension outside the 32-bit range CloudEvents integers have.
    #[error("attribute {attribute} is an integer out of the 32-bit range CloudEvents allows")]
    IntegerOutOfRange { attribute: String },
    #[error("attribute {attribute} is {len} bytes long; at most {MAX_ATTRIBUTE_BYTES} are allowed")]
    ValueTooLong { attribute: String, len: usize },
    #[error("event has {count} attributes; at most {MAX_ATTRIBUTES} are allowed")]
    TooManyAttributes { count: usize },
    /// The same attribute or header given twice (in any letter case) with different values.
    #[error("{name} is given twice with different values")]
    ConflictingValues { name: String },
    /// A `ce-*` header whose percent-encoding decodes to bytes that are not UTF-8.
    #[error("header ce-{attribute} is not valid UTF-8 once percent-decoded")]
    InvalidPercentEncoding { attribute: String },
    /// A value that cannot be an HTTP header value, e.g. a media type with non-ASCII characters.
    #[error("{header} cannot be sent as an HTTP header value")]
    InvalidHeaderValue { header: String },
    #[error("structured event has both data and data_base64")]
    DataAndDataBase64,
    #[error("data_base64 is not valid base64: {0}")]
    InvalidBase64(String),
    /// Non-string `data` whose `datacontenttype` is not JSON: there is no faithful body for it.
    #[error(
        "data is {found} but datacontenttype {content_type} is not JSON; send it as a string or as data_base64"
    )]
    DataNotString {
        found: &'static str,
        content_type: String,
    },
}

impl CloudEventError {
    /// A low-cardinality label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Self::UnsupportedFormat { .. }
            | Self::InvalidJson(_)
            | Self::NotAnObject { .. }
            | Self::MissingSpecVersion
            | Self::UnsupportedSpecVersion { .. }
            | Self::DataAndDataBase64
            | Self::InvalidBase64(_)
            | Self::DataNotString { .. } => "malformed_event",
            Self::WrongType { .. }
            | Self::IntegerOutOfRange { .. }
            | Self::ConflictingValues { .. }
            | Self::InvalidPercentEncoding { .. }
            | Self::InvalidHeaderValue { .. } => "invalid_attribute",
            Self::ValueTooLong { .. } | Self::TooManyAttributes { .. } => "limit_exceeded",
        }
    }
}

/// Translates a received message into the HTTP request that delivers it (binary content mode).
pub fn to_http(
    received: &Received<'_>,
    layout: &TopicLayout,
) -> Result<HttpEvent, CloudEventError> {
    let content_type = single_header(received.headers, "content-type")?;
    let mut event = match publish_form(received, content_type)? {
        PublishForm::Structured(envelope) => from_envelope(envelope)?,
        PublishForm::Binary => from_ce_headers(received, content_type)?,
        PublishForm::Plain(parsed_body) => Event {
            attributes: BTreeMap::new(),
            content_type: content_type.map(str::to_owned),
            body: received.payload.clone(),
            parsed_body,
        },
    };
    fill_missing_attributes(&mut event.attributes, received, layout)?;
    check_spec_version(&event.attributes)?;
    add_delivery_extensions(&mut event.attributes, received);
    let trace = trace_context(received.headers, &event.attributes);
    render(event, trace)
}

/// An event on its way from NATS to HTTP, values not yet encoded.
struct Event {
    /// Context attributes and extensions by name, except `datacontenttype`.
    attributes: BTreeMap<String, String>,
    /// `datacontenttype`: becomes `Content-Type`.
    content_type: Option<String>,
    body: Bytes,
    /// See [`HttpEvent::parsed_body`].
    parsed_body: Option<Value>,
}

enum PublishForm {
    Structured(Map<String, Value>),
    Binary,
    /// The payload as it is; parsed already if it was sniffed and is a JSON object.
    Plain(Option<Value>),
}

/// Which of the three forms a message uses. A CloudEvents content type decides first, as in the
/// NATS binding; `ce-*` headers mean binary mode; only a message without any content type is
/// sniffed for an envelope, so a payload its producer labelled (say `application/json`) is
/// always delivered untouched.
fn publish_form(
    received: &Received<'_>,
    content_type: Option<&str>,
) -> Result<PublishForm, CloudEventError> {
    if let Some(content_type) = content_type
        && media_type(content_type).starts_with(CLOUDEVENTS_MEDIA_PREFIX)
    {
        return claimed_envelope(content_type, received.payload).map(PublishForm::Structured);
    }
    if nats_headers(received.headers).any(|(name, _)| is_attribute_header(name)) {
        return Ok(PublishForm::Binary);
    }
    match content_type {
        None => Ok(sniff(received.payload)),
        Some(_) => Ok(PublishForm::Plain(None)),
    }
}

/// The envelope of a message whose content type says it is structured.
fn claimed_envelope(
    content_type: &str,
    payload: &[u8],
) -> Result<Map<String, Value>, CloudEventError> {
    let media_type = media_type(content_type);
    if media_type != STRUCTURED_JSON {
        return Err(CloudEventError::UnsupportedFormat {
            content_type: excerpt(&media_type),
        });
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(envelope)) => Ok(envelope),
        Ok(other) => Err(CloudEventError::NotAnObject {
            found: json_kind(&other),
        }),
        Err(e) => Err(CloudEventError::InvalidJson(e.to_string())),
    }
}

/// An unlabelled payload is an envelope if it is a JSON object with all four required
/// attributes. Requiring all four keeps ordinary JSON payloads that happen to have an `id` or a
/// `type` field plain.
fn sniff(payload: &[u8]) -> PublishForm {
    // Checked first so that binary payloads are not handed to the JSON parser at all.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return PublishForm::Plain(None);
    }
    match serde_json::from_slice::<Map<String, Value>>(payload) {
        Ok(object)
            if ["specversion", "id", "type", "source"]
                .iter()
                .all(|key| object.contains_key(*key)) =>
        {
            PublishForm::Structured(object)
        }
        Ok(object) => PublishForm::Plain(Some(Value::Object(object))),
        Err(_) => PublishForm::Plain(None),
    }
}

/// Reads a JSON envelope (the JSON event format): members become attributes, `data` or
/// `data_base64` the body.
fn from_envelope(mut envelope: Map<String, Value>) -> Result<Event, CloudEventError> {
    let data = envelope.remove("data");
    let data_base64 = envelope.remove("data_base64").filter(|v| !v.is_null());
    if envelope.len() > MAX_ATTRIBUTES {
        return Err(CloudEventError::TooManyAttributes {
            count: envelope.len(),
        });
    }
    let mut attributes = BTreeMap::new();
    for (name, value) in envelope {
        if !is_attribute_name(&name) {
            continue;
        }
        if let Some(text) = attribute_text(&name, &value)? {
            attributes.insert(name, text);
        }
    }
    if !attributes.contains_key("specversion") {
        return Err(CloudEventError::MissingSpecVersion);
    }
    let content_type = attributes.remove("datacontenttype");
    let (body, content_type) = envelope_data(data, data_base64, content_type)?;
    Ok(Event {
        attributes,
        content_type,
        body,
        parsed_body: None,
    })
}

/// The canonical string of an envelope member, `None` for `null` (unset, says the JSON format).
/// Core attributes are strings; extensions may also be booleans and 32-bit integers.
fn attribute_text(name: &str, value: &Value) -> Result<Option<String>, CloudEventError> {
    let wrong_type = |expected| CloudEventError::WrongType {
        attribute: name.to_owned(),
        expected,
        found: json_kind(value),
    };
    if STRING_ATTRIBUTES.contains(&name) {
        return match value {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            _ => Err(wrong_type("a string")),
        };
    }
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        Value::Number(number) if number.is_i64() || number.is_u64() => number
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| CloudEventError::IntegerOutOfRange {
                attribute: name.to_owned(),
            }),
        _ => Err(wrong_type("a string, an integer or a boolean")),
    }
}

/// The body and content type an envelope's data becomes, by the JSON event format's rules.
fn envelope_data(
    data: Option<Value>,
    data_base64: Option<Value>,
    content_type: Option<String>,
) -> Result<(Bytes, Option<String>), CloudEventError> {
    match (data, data_base64) {
        (Some(_), Some(_)) => Err(CloudEventError::DataAndDataBase64),
        (None, Some(Value::String(encoded))) => Ok((decode_base64(&encoded)?, content_type)),
        (None, Some(other)) => Err(CloudEventError::WrongType {
            attribute: "data_base64".into(),
            expected: "a base64 string",
            found: json_kind(&other),
        }),
        (Some(data), None) => json_data_body(data, content_type),
        (None, None) => Ok((Bytes::new(), content_type)),
    }
}

/// `data` as a body: JSON text when the content type is JSON (an absent one implies
/// `application/json`, which is then stated), otherwise the string as is.
fn json_data_body(
    data: Value,
    content_type: Option<String>,
) -> Result<(Bytes, Option<String>), CloudEventError> {
    let content_type = content_type.unwrap_or_else(|| "application/json".to_owned());
    if is_json_media_type(&content_type) {
        return Ok((Bytes::from(data.to_string()), Some(content_type)));
    }
    match data {
        Value::String(text) => Ok((Bytes::from(text), Some(content_type))),
        other => Err(CloudEventError::DataNotString {
            found: json_kind(&other),
            content_type: excerpt(&content_type),
        }),
    }
}

/// Decodes `data_base64`, accepting it with or without padding.
fn decode_base64(encoded: &str) -> Result<Bytes, CloudEventError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT
        .decode(encoded)
        .map(Bytes::from)
        .map_err(|e| CloudEventError::InvalidBase64(e.to_string()))
}

/// Reads a binary-mode message: one attribute per `ce-*` header, the payload as body.
fn from_ce_headers(
    received: &Received<'_>,
    content_type: Option<&str>,
) -> Result<Event, CloudEventError> {
    let mut attributes = ce_header_attributes(received.headers)?;
    // The NATS binding carries the media type as ce-datacontenttype; producers used to HTTP set
    // Content-Type instead. The attribute is the event's own statement, so it wins.
    let content_type = attributes
        .remove("datacontenttype")
        .or_else(|| content_type.map(str::to_owned));
    Ok(Event {
        attributes,
        content_type,
        body: received.payload.clone(),
        parsed_body: None,
    })
}

/// The attributes of a binary-mode message. Headers that name no valid attribute (say
/// `ce-trace_id`) are skipped; repeating an attribute is fine as long as the values agree.
fn ce_header_attributes(
    headers: Option<&async_nats::HeaderMap>,
) -> Result<BTreeMap<String, String>, CloudEventError> {
    let count = nats_headers(headers)
        .filter(|(name, _)| is_attribute_header(name))
        .count();
    if count > MAX_ATTRIBUTES {
        return Err(CloudEventError::TooManyAttributes { count });
    }
    let mut attributes = BTreeMap::new();
    for (name, raw) in nats_headers(headers) {
        let Some(attribute) = attribute_of_header(name) else {
            continue;
        };
        if !is_attribute_name(&attribute) {
            continue;
        }
        let value = decode_header_value(&attribute, raw)?;
        insert_agreeing(&mut attributes, attribute, value)?;
    }
    Ok(attributes)
}

/// Whether a header name starts with `ce-`, in any letter case.
fn is_attribute_header(name: &str) -> bool {
    name.get(..ATTRIBUTE_HEADER_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(ATTRIBUTE_HEADER_PREFIX))
}

/// The lowercased attribute part of a `ce-*` header name.
fn attribute_of_header(name: &str) -> Option<String> {
    is_attribute_header(name).then(|| name[ATTRIBUTE_HEADER_PREFIX.len()..].to_ascii_lowercase())
}

/// Adds an attribute unless an equal value is there already; a different one is an error, as the
/// map's iteration order would otherwise pick the winner at random.
fn insert_agreeing(
    attributes: &mut BTreeMap<String, String>,
    name: String,
    value: String,
) -> Result<(), CloudEventError> {
    match attributes.get(&name) {
        Some(existing) if *existing != value => Err(CloudEventError::ConflictingValues {
            name: format!("attribute {name}"),
        }),
        Some(_) => Ok(()),
        None => {
            attributes.insert(name, value);
            Ok(())
        }
    }
}

/// An attribute value as the NATS (and HTTP) binding transmit it: surrounding whitespace is not
/// part of it, a double-quoted string is unescaped, then one round of percent-decoding. A `%`
/// not followed by two hex digits stays as it is, since producers that do not encode at all are
/// common; decoded bytes that are not UTF-8 are refused, as the binding requires.
fn decode_header_value(attribute: &str, raw: &str) -> Result<String, CloudEventError> {
    let unquoted = unquote(raw.trim_matches([' ', '\t']));
    percent_decode(&unquoted).ok_or_else(|| CloudEventError::InvalidPercentEncoding {
        attribute: attribute.to_owned(),
    })
}

/// The content of a value that is one RFC 7230 quoted-string, else the value itself.
fn unquote(value: &str) -> Cow<'_, str> {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return Cow::Borrowed(value);
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => unquoted.push(escaped),
                None => return Cow::Borrowed(value),
            },
            // An unescaped quote inside means this is not a single quoted-string.
            '"' => return Cow::Borrowed(value),
            c => unquoted.push(c),
        }
    }
    Cow::Owned(unquoted)
}

/// One round of percent-decoding; `None` when the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match escaped_byte(bytes, i) {
            Some(escaped) => {
                decoded.push(escaped);
                i += 3;
            }
            None => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// The byte a `%xy` escape at `i` stands for, if there is a complete one.
fn escaped_byte(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    let high = hex_digit(*bytes.get(i + 1)?)?;
    let low = hex_digit(*bytes.get(i + 2)?)?;
    Some((high << 4) | low)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes an attribute value for an HTTP header, as the CloudEvents HTTP binding says:
/// every byte outside printable ASCII (so every byte of a non-ASCII character's UTF-8 form, and
/// every control character), space, `"` and `%`, in upper-case hex.
fn percent_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

/// Fills the attributes a producer left out (or, for the required ones, left empty) from what
/// the dispatcher knows, so that every handler sees the same attributes whichever form the event
/// was published in.
fn fill_missing_attributes(
    attributes: &mut BTreeMap<String, String>,
    received: &Received<'_>,
    layout: &TopicLayout,
) -> Result<(), CloudEventError> {
    let (event_type, key) = type_and_key(received.subject, layout);
    if lacks(attributes, "id") {
        let id = match single_header(received.headers, NATS_MSG_ID)? {
            Some(message_id) => message_id.to_owned(),
            // Unique within the Topic's stream, and the Topic is the source: unique as the spec
            // asks of source + id, and stable across redeliveries.
            None => received.stream_sequence.to_string(),
        };
        attributes.insert("id".into(), id);
    }
    if lacks(attributes, "source") {
        attributes.insert("source".into(), layout.source.clone());
    }
    if lacks(attributes, "type") {
        attributes.insert("type".into(), event_type.to_owned());
    }
    attributes
        .entry("specversion".into())
        .or_insert_with(|| SPEC_VERSION.into());
    if !attributes.contains_key("time") {
        // Only a date outside years 0–9999 fails to format; such an event simply has no time.
        if let Ok(time) = received.published.format(&Rfc3339) {
            attributes.insert("time".into(), time);
        }
    }
    if let Some(key) = key {
        attributes
            .entry("subject".into())
            .or_insert_with(|| key.to_owned());
    }
    Ok(())
}

/// Required attributes must be non-empty strings; an empty one is as good as missing.
fn lacks(attributes: &BTreeMap<String, String>, name: &str) -> bool {
    attributes.get(name).is_none_or(String::is_empty)
}

/// The event type and key a subject carries under the Topic's convention. A subject outside the
/// prefix (or with nothing after it) is its own type: the best name there is for it.
fn type_and_key<'s>(subject: &'s str, layout: &TopicLayout) -> (&'s str, Option<&'s str>) {
    let Some(rest) = subject
        .strip_prefix(layout.subject_prefix.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return (subject, None);
    };
    let (event_type, key) = match layout.partition_type_tokens {
        None => (rest, None),
        Some(type_tokens) => match rest.split_once('.') {
            Some((_partition, typed)) => split_after_tokens(typed, type_tokens),
            None => ("", None),
        },
    };
    if event_type.is_empty() {
        (subject, None)
    } else {
        (event_type, key)
    }
}

/// Splits `a.b.c.d` after `tokens` tokens (at least one): `("a.b", Some("c.d"))` for 2.
fn split_after_tokens(subject: &str, tokens: usize) -> (&str, Option<&str>) {
    match subject.match_indices('.').nth(tokens.max(1) - 1) {
        Some((dot, _)) => {
            let key = &subject[dot + 1..];
            (&subject[..dot], (!key.is_empty()).then_some(key))
        }
        None => (subject, None),
    }
}

fn check_spec_version(attributes: &BTreeMap<String, String>) -> Result<(), CloudEventError> {
    match attributes.get("specversion") {
        Some(version) if version != SPEC_VERSION => Err(CloudEventError::UnsupportedSpecVersion {
            found: excerpt(version),
        }),
        _ => Ok(()),
    }
}

/// Switchyard's own extensions; they replace any a producer set, which could only mislead (a
/// producer's first-delivery time is dropped even when the dispatcher has none to give).
fn add_delivery_extensions(attributes: &mut BTreeMap<String, String>, received: &Received<'_>) {
    attributes.insert(DELIVERY_COUNT.into(), received.delivered.to_string());
    attributes.insert(STREAM_SEQUENCE.into(), received.stream_sequence.to_string());
    match received
        .first_delivered
        .and_then(|at| at.format(&Rfc3339).ok())
    {
        Some(at) => attributes.insert(FIRST_DELIVERY_TIME.into(), at),
        None => attributes.remove(FIRST_DELIVERY_TIME),
    };
}

/// The W3C trace context to send along.
struct TraceContext {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

/// The trace the request continues: the message's own `traceparent`/`tracestate` headers (the
/// hop that published it), else the event's distributed-tracing extension. The pair always comes
/// from one place, as a `tracestate` belongs to its `traceparent`. Tracing is best effort: an
/// unusable value (conflicting, too long, not printable ASCII) is dropped, never an error.
fn trace_context(
    headers: Option<&async_nats::HeaderMap>,
    attributes: &BTreeMap<String, String>,
) -> TraceContext {
    let header = |name| single_header(headers, name).ok().flatten();
    let (traceparent, tracestate) = match header(TRACEPARENT) {
        Some(traceparent) => (Some(traceparent), header(TRACESTATE)),
        None => (
            attributes.get(TRACEPARENT).map(String::as_str),
            attributes.get(TRACESTATE).map(String::as_str),
        ),
    };
    TraceContext {
        traceparent: traceparent.and_then(trace_header_value),
        tracestate: tracestate.and_then(trace_header_value),
    }
}

fn trace_header_value(value: &str) -> Option<HeaderValue> {
    if value.len() > MAX_ATTRIBUTE_BYTES || !is_printable_ascii(value) {
        return None;
    }
    HeaderValue::from_str(value).ok()
}

/// Builds the request: attributes as percent-encoded `ce-*` headers, the content type as
/// `Content-Type` (never as `ce-datacontenttype`, which the binding forbids), the trace headers.
fn render(event: Event, trace: TraceContext) -> Result<HttpEvent, CloudEventError> {
    let mut headers = HeaderMap::with_capacity(event.attributes.len() + 3);
    for (name, value) in &event.attributes {
        check_length(name, value)?;
        // Names were admitted by is_attribute_name, which only lets through valid header names;
        // anything else is skipped like any invalid name.
        let Some(header) = attribute_header(name) else {
            continue;
        };
        let encoded = HeaderValue::try_from(percent_encode(value)).map_err(|_| {
            CloudEventError::InvalidHeaderValue {
                header: header.to_string(),
            }
        })?;
        headers.insert(header, encoded);
    }
    if let Some(content_type) = &event.content_type {
        headers.insert(CONTENT_TYPE, content_type_value(content_type)?);
    }
    if let Some(traceparent) = trace.traceparent {
        headers.insert(TRACEPARENT, traceparent);
    }
    if let Some(tracestate) = trace.tracestate {
        headers.insert(TRACESTATE, tracestate);
    }
    Ok(HttpEvent {
        headers,
        body: event.body,
        parsed_body: event.parsed_body,
    })
}

/// The `ce-*` header of an attribute. The ones every event has are built without allocating:
/// this runs for every attribute of every event.
fn attribute_header(name: &str) -> Option<HeaderName> {
    Some(match name {
        "id" => HeaderName::from_static("ce-id"),
        "source" => HeaderName::from_static("ce-source"),
        "type" => HeaderName::from_static("ce-type"),
        "specversion" => HeaderName::from_static("ce-specversion"),
        "time" => HeaderName::from_static("ce-time"),
        "subject" => HeaderName::from_static("ce-subject"),
        DELIVERY_COUNT => HeaderName::from_static("ce-deliverycount"),
        STREAM_SEQUENCE => HeaderName::from_static("ce-streamsequence"),
        FIRST_DELIVERY_TIME => HeaderName::from_static("ce-firstdeliverytime"),
        _ => return HeaderName::try_from(format!("{ATTRIBUTE_HEADER_PREFIX}{name}")).ok(),
    })
}

/// `Content-Type` maps the attribute directly, without percent-encoding, so it must already be
/// a valid header value: media types are printable ASCII.
fn content_type_value(content_type: &str) -> Result<HeaderValue, CloudEventError> {
    check_length("datacontenttype", content_type)?;
    let invalid = || CloudEventError::InvalidHeaderValue {
        header: "datacontenttype (Content-Type)".into(),
    };
    if !is_printable_ascii(content_type) {
        return Err(invalid());
    }
    HeaderValue::from_str(content_type).map_err(|_| invalid())
}

fn check_length(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    if value.len() > MAX_ATTRIBUTE_BYTES {
        return Err(CloudEventError::ValueTooLong {
            attribute: attribute.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

/// CloudEvents attribute names: lowercase ASCII letters and digits, and never `data`, which
/// event formats reserve.
fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name != "data"
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Visible ASCII, spaces and tabs: what an HTTP header value may hold without encoding.
fn is_printable_ascii(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) || b == b'\t')
}

/// Every (name, value) pair of the message's headers.
fn nats_headers(headers: Option<&async_nats::HeaderMap>) -> impl Iterator<Item = (&str, &str)> {
    headers.into_iter().flat_map(|headers| {
        headers.iter().flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |value| (name, value.as_str()))
        })
    })
}

/// The value of a header looked up case-insensitively (NATS header names are), trimmed; `None`
/// when absent or empty. Values that disagree are an error rather than a random pick.
fn single_header<'h>(
    headers: Option<&'h async_nats::HeaderMap>,
    name: &str,
) -> Result<Option<&'h str>, CloudEventError> {
    let mut found: Option<&str> = None;
    for (_, value) in nats_headers(headers).filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        let value = value.trim_matches([' ', '\t']);
        if value.is_empty() {
            continue;
        }
        match found {
            Some(existing) if existing != value => {
                return Err(CloudEventError::ConflictingValues {
                    name: format!("header {name}"),
                });
            }
            _ => found = Some(value),
        }
    }
    Ok(found)
}

/// The media type of a content type: lowercase, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a content type declares JSON: subtype `json` or a `+json` suffix (JSON event format).
pub(crate) fn is_json_media_type(content_type: &str) -> bool {
    let media_type = media_type(content_type);
    media_type
        .split_once('/')
        .is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

/// What a JSON value is, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a non-integer number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A producer's value quoted in an error: shortened, and with control characters escaped so the
/// reason stays one line.
fn excerpt(value: &str) -> String {
    let short: String = value.chars().take(EXCERPT_CHARS).collect();
    if short.len() < value.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const SEQUENCE: u64 = 42;
    /// 2024-05-01T12:00:00.5Z
    const PUBLISHED_NANOS: i128 = 1_714_564_800_500_000_000;

    fn layout() -> TopicLayout {
        TopicLayout {
            subject_prefix: "shop.orders".into(),
            partition_type_tokens: None,
            source: "/shop/topics/orders".into(),
        }
    }

    fn partitioned(type_tokens: usize) -> TopicLayout {
        TopicLayout {
            partition_type_tokens: Some(type_tokens),
            ..layout()
        }
    }

    fn nats(pairs: &[(&str, &str)]) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, *value);
        }
        headers
    }

    fn translate(
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        layout: &TopicLayout,
    ) -> Result<HttpEvent, CloudEventError> {
        let headers = nats(headers);
        let payload = Bytes::copy_from_slice(payload);
        to_http(
            &Received {
                subject,
                headers: Some(&headers),
                payload: &payload,
                stream_sequence: SEQUENCE,
                published: OffsetDateTime::from_unix_timestamp_nanos(PUBLISHED_NANOS).unwrap(),
                delivered: 1,
                first_delivered: None,
            },
            layout,
        )
    }

    fn deliver(subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> HttpEvent {
        translate(subject, headers, payload, &layout()).expect("translates")
    }

    fn structured(envelope: &Value) -> Result<HttpEvent, CloudEventError> {
        translate(
            "shop.orders.order.placed",
            &[("Content-Type", STRUCTURED_JSON)],
            envelope.to_string().as_bytes(),
            &layout(),
        )
    }

    fn header<'e>(event: &'e HttpEvent, name: &str) -> Option<&'e str> {
        event.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }

    fn header_names(event: &HttpEvent) -> Vec<&str> {
        let mut names: Vec<&str> = event.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    fn envelope() -> Value {
        json!({
            "specversion": "1.0",
            "id": "A-1",
            "source": "/billing",
            "type": "order.placed",
        })
    }

    fn with(mut base: Value, extra: Value) -> Value {
        let (Value::Object(base_members), Value::Object(extra)) = (&mut base, extra) else {
            panic!("objects expected");
        };
        base_members.extend(extra);
        base
    }

    // Binary mode

    #[test]
    fn binary_publish_keeps_its_attributes_and_payload() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "evt-1"),
                ("ce-source", "/checkout"),
                ("ce-type", "order.placed"),
                ("ce-time", "2024-04-30T10:00:00Z"),
                ("ce-subject", "cart-7"),
                ("ce-dataschema", "https://example.com/order.json"),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            br#"{"total":12}"#,
        );
        assert_eq!(header(&event, "ce-id"), Some("evt-1"));
        assert_eq!(header(&event, "ce-source"), Some("/checkout"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&event, "ce-time"), Some("2024-04-30T10:00:00Z"));
        assert_eq!(header(&event, "ce-subject"), Some("cart-7"));
        assert_eq!(
            header(&event, "ce-dataschema"),
            Some("https://example.com/order.json")
        );
        assert_eq!(
            header(&event, "content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(event.body, Bytes::from_static(br#"{"total":12}"#));
    }

    #[test]
    fn binary_header_names_match_in_any_case_and_extensions_pass_through() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("Ce-Id", "evt-2"),
                ("CE-TYPE", "order.shipped"),
                ("ce-Source", "/warehouse"),
                ("Ce-ComExampleExtension", "value"),
                ("ce-priority", "5"),
            ],
            b"x",
        );
        assert_eq!(header(&event, "ce-id"), Some("evt-2"));
        assert_eq!(header(&event, "ce-type"), Some("order.shipped"));
        assert_eq!(header(&event, "ce-source"), Some("/warehouse"));
        assert_eq!(header(&event, "ce-comexampleextension"), Some("value"));
        assert_eq!(header(&event, "ce-priority"), Some("5"));
    }

    #[test]
    fn binary_publish_missing_required_attributes_gets_them_filled() {
        let event = deliver(
            "shop.orders.order.placed",
            &[("ce-region", "eu"), ("Nats-Msg-Id", "msg-9")],
            b"x",
        );
        assert_eq!(header(&event, "ce-id"), Some("msg-9"));
        assert_eq!(header(&event, "ce-source"), Some("/shop/topics/orders"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&event, "ce-time"), Some("2024-05-01T12:00:00.5Z"));
        assert_eq!(header(&event, "ce-region"), Some("eu"));
    }

    #[test]
    fn empty_required_attributes_count_as_missing() {
        let event = deliver(
            "shop.orders.order.placed",
            &[("ce-id", ""), ("ce-type", " "), ("ce-source", "\"\"")],
            b"x",
        );
        assert_eq!(header(&event, "ce-id"), Some("42"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-source"), Some("/shop/topics/orders"));
    }

    #[test]
    fn binary_datacontenttype_attribute_becomes_content_type_and_wins() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("ce-id", "1"),
                ("ce-datacontenttype", "text/plain"),
                ("Content-Type", "application/json"),
            ],
            b"hello",
        );
        assert_eq!(header(&event, "content-type"), Some("text/plain"));
        assert_eq!(header(&event, "ce-datacontenttype"), None);

        let event = deliver(
            "shop.orders.order.placed",
            &[("ce-id", "1"), ("content-type", "application/xml")],
            b"<a/>",
        );
        assert_eq!(header(&event, "content-type"), Some("application/xml"));
    }

    #[test]
    fn binary_values_are_decoded_as_the_binding_says_then_encoded_for_http() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("ce-id", "1"),
                ("ce-encoded", "Euro%20%e2%82%ac"),
                ("ce-raw", "a b"),
                ("ce-percent", "100%"),
                ("ce-lonepercent", "50%off"),
                ("ce-quoted", r#""say \"hi\" there""#),
                ("ce-padded", "  spaced  "),
            ],
            b"x",
        );
        assert_eq!(header(&event, "ce-encoded"), Some("Euro%20%E2%82%AC"));
        assert_eq!(header(&event, "ce-raw"), Some("a%20b"));
        assert_eq!(header(&event, "ce-percent"), Some("100%25"));
        assert_eq!(header(&event, "ce-lonepercent"), Some("50%25off"));
        assert_eq!(header(&event, "ce-quoted"), Some("say%20%22hi%22%20there"));
        assert_eq!(header(&event, "ce-padded"), Some("spaced"));
    }

    #[test]
    fn binary_escape_decoding_to_invalid_utf8_is_rejected() {
        let error = translate(
            "shop.orders.order.placed",
            &[("ce-id", "1"), ("ce-note", "%C0%A0")],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::InvalidPercentEncoding {
                attribute: "note".into()
            }
        );
    }

    #[test]
    fn binary_attribute_given_twice_must_agree() {
        let error = translate(
            "shop.orders.order.placed",
            &[("ce-id", "a"), ("Ce-Id", "b")],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::ConflictingValues {
                name: "attribute id".into()
            }
        );
        // Equal after decoding: one attribute.
        let event = deliver(
            "shop.orders.order.placed",
            &[("ce-id", "a b"), ("CE-ID", "a%20b")],
            b"x",
        );
        assert_eq!(header(&event, "ce-id"), Some("a%20b"));
    }

    #[test]
    fn binary_headers_naming_no_valid_attribute_are_skipped() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("ce-id", "1"),
                ("ce-trace_id", "x"),
                ("ce-a(b)", "x"),
                ("ce-", "x"),
                ("ce-data", "x"),
                ("ce-my-ext", "x"),
            ],
            b"x",
        );
        let extras: Vec<&str> = header_names(&event)
            .into_iter()
            .filter(|name| name.starts_with("ce-"))
            .collect();
        assert_eq!(
            extras,
            [
                "ce-deliverycount",
                "ce-id",
                "ce-source",
                "ce-specversion",
                "ce-streamsequence",
                "ce-time",
                "ce-type"
            ]
        );
    }

    #[test]
    fn binary_specversion_other_than_1_0_is_rejected() {
        let error = translate(
            "shop.orders.order.placed",
            &[("ce-specversion", "0.3"), ("ce-id", "1")],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::UnsupportedSpecVersion {
                found: "\"0.3\"".into()
            }
        );
    }

    #[test]
    fn nats_and_other_headers_are_never_copied() {
        let event = deliver(
            "shop.orders.order.placed",
            &[
                ("ce-id", "1"),
                ("Nats-Msg-Id", "m-1"),
                ("Nats-Expected-Stream", "shop_orders"),
                ("Nats-Expected-Last-Sequence", "41"),
                ("X-Tenant", "acme"),
                ("Authorization", "secret"),
            ],
            b"x",
        );
        assert_eq!(
            header_names(&event),
            [
                "ce-deliverycount",
                "ce-id",
                "ce-source",
                "ce-specversion",
                "ce-streamsequence",
                "ce-time",
                "ce-type"
            ]
        );
    }

    // Structured mode

    #[test]
    fn structured_envelope_becomes_a_binary_request() {
        let event = translate(
            "shop.orders.order.placed",
            &[(
                "Content-Type",
                "application/CloudEvents+JSON; charset=utf-8",
            )],
            with(
                envelope(),
                json!({
                    "time": "2024-04-30T10:00:00Z",
                    "subject": "cart-7",
                    "datacontenttype": "application/json",
                    "data": {"total": 12, "items": ["a"]},
                }),
            )
            .to_string()
            .as_bytes(),
            &layout(),
        )
        .unwrap();
        assert_eq!(header(&event, "ce-id"), Some("A-1"));
        assert_eq!(header(&event, "ce-source"), Some("/billing"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&event, "ce-time"), Some("2024-04-30T10:00:00Z"));
        assert_eq!(header(&event, "ce-subject"), Some("cart-7"));
        assert_eq!(header(&event, "content-type"), Some("application/json"));
        assert_eq!(header(&event, "ce-datacontenttype"), None);
        let body: Value = serde_json::from_slice(&event.body).unwrap();
        assert_eq!(body, json!({"total": 12, "items": ["a"]}));
    }

    #[test]
    fn structured_extensions_get_their_canonical_strings() {
        let event = structured(&with(
            envelope(),
            json!({
                "text": "plain",
                "count": 5,
                "negative": -2147483648i64,
                "largest": 2147483647,
                "flag": true,
                "off": false,
                "unset": null,
            }),
        ))
        .unwrap();
        assert_eq!(header(&event, "ce-text"), Some("plain"));
        assert_eq!(header(&event, "ce-count"), Some("5"));
        assert_eq!(header(&event, "ce-negative"), Some("-2147483648"));
        assert_eq!(header(&event, "ce-largest"), Some("2147483647"));
        assert_eq!(header(&event, "ce-flag"), Some("true"));
        assert_eq!(header(&event, "ce-off"), Some("false"));
        assert_eq!(header(&event, "ce-unset"), None);
    }

    #[test]
    fn structured_extensions_of_other_types_are_rejected() {
        for (value, found) in [
            (json!({"a": 1}), "an object"),
            (json!([1]), "an array"),
            (json!(1.5), "a non-integer number"),
        ] {
            let error = structured(&with(envelope(), json!({ "ext": value }))).unwrap_err();
            assert_eq!(
                error,
                CloudEventError::WrongType {
                    attribute: "ext".into(),
                    expected: "a string, an integer or a boolean",
                    found,
                }
            );
        }
        for too_big in [json!(2147483648i64), json!(-2147483649i64), json!(u64::MAX)] {
            let error = structured(&with(envelope(), json!({ "ext": too_big }))).unwrap_err();
            assert_eq!(
                error,
                CloudEventError::IntegerOutOfRange {
                    attribute: "ext".into()
                }
            );
        }
    }

    #[test]
    fn structured_core_attributes_must_be_strings() {
        let error = structured(&with(envelope(), json!({"id": 5}))).unwrap_err();
        assert_eq!(
            error,
            CloudEventError::WrongType {
                attribute: "id".into(),
                expected: "a string",
                found: "a number",
            }
        );
        let error = structured(&with(envelope(), json!({"time": true}))).unwrap_err();
        assert!(
            matches!(error, CloudEventError::WrongType { attribute, .. } if attribute == "time")
        );
    }

    #[test]
    fn structured_string_data_with_a_text_type_is_the_raw_string() {
        let event = structured(&with(
            envelope(),
            json!({"datacontenttype": "text/plain", "data": "héllo \"world\""}),
        ))
        .unwrap();
        assert_eq!(header(&event, "content-type"), Some("text/plain"));
        assert_eq!(event.body, Bytes::from("héllo \"world\""));
    }

    #[test]
    fn structured_data_without_content_type_is_json_and_says_so() {
        let event = structured(&with(envelope(), json!({"data": "I'm just a string"}))).unwrap();
        assert_eq!(header(&event, "content-type"), Some("application/json"));
        assert_eq!(event.body, Bytes::from_static(br#""I'm just a string""#));
        // An explicit null is a payload of its own, distinct from no data.
        let event = structured(&with(envelope(), json!({"data": null}))).unwrap();
        assert_eq!(event.body, Bytes::from_static(b"null"));
        assert_eq!(header(&event, "content-type"), Some("application/json"));
    }

    #[test]
    fn structured_data_with_a_json_suffix_type_is_json() {
        let event = structured(&with(
            envelope(),
            json!({"datacontenttype": "application/vnd.shop.order+json", "data": {"a": [1, 2]}}),
        ))
        .unwrap();
        assert_eq!(event.body, Bytes::from_static(br#"{"a":[1,2]}"#));
        assert_eq!(
            header(&event, "content-type"),
            Some("application/vnd.shop.order+json")
        );
    }

    #[test]
    fn structured_non_string_data_with_a_non_json_type_is_rejected() {
        let error = structured(&with(
            envelope(),
            json!({"datacontenttype": "application/xml", "data": {"a": 1}}),
        ))
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::DataNotString {
                found: "an object",
                content_type: "\"application/xml\"".into()
            }
        );
    }

    #[test]
    fn structured_data_base64_is_decoded_into_the_body() {
        let event = structured(&with(
            envelope(),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "AAEC/w=="}),
        ))
        .unwrap();
        assert_eq!(event.body, Bytes::from_static(&[0, 1, 2, 255]));
        assert_eq!(
            header(&event, "content-type"),
            Some("application/octet-stream")
        );
        // Unpadded is accepted; without a datacontenttype the body has no media type.
        let event = structured(&with(envelope(), json!({"data_base64": "AAEC/w"}))).unwrap();
        assert_eq!(event.body, Bytes::from_static(&[0, 1, 2, 255]));
        assert_eq!(header(&event, "content-type"), None);
        assert_eq!(header(&event, "ce-data_base64"), None);
    }

    #[test]
    fn structured_data_base64_must_be_valid_and_alone() {
        let error = structured(&with(
            envelope(),
            json!({"data": "x", "data_base64": "eA=="}),
        ))
        .unwrap_err();
        assert_eq!(error, CloudEventError::DataAndDataBase64);
        let error =
            structured(&with(envelope(), json!({"data_base64": "not base64!"}))).unwrap_err();
        assert!(
            matches!(error, CloudEventError::InvalidBase64(_)),
            "{error}"
        );
        let error = structured(&with(envelope(), json!({"data_base64": 12}))).unwrap_err();
        assert_eq!(
            error,
            CloudEventError::WrongType {
                attribute: "data_base64".into(),
                expected: "a base64 string",
                found: "a number"
            }
        );
        // A null data_base64 is unset, so data alone counts.
        let event = structured(&with(envelope(), json!({"data": 1, "data_base64": null}))).unwrap();
        assert_eq!(event.body, Bytes::from_static(b"1"));
    }

    #[test]
    fn structured_envelope_missing_required_attributes_gets_them_filled() {
        let event = translate(
            "shop.orders.order.placed",
            &[("Content-Type", STRUCTURED_JSON), ("Nats-Msg-Id", "m-7")],
            json!({"specversion": "1.0", "id": "", "data": 1})
                .to_string()
                .as_bytes(),
            &layout(),
        )
        .unwrap();
        assert_eq!(header(&event, "ce-id"), Some("m-7"));
        assert_eq!(header(&event, "ce-source"), Some("/shop/topics/orders"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-time"), Some("2024-05-01T12:00:00.5Z"));
    }

    #[test]
    fn structured_members_that_are_no_attribute_names_are_skipped() {
        let event = structured(&with(
            envelope(),
            json!({"Region": "eu", "my-ext": "x", "$schema": "y", "ok1": "z"}),
        ))
        .unwrap();
        assert_eq!(header(&event, "ce-ok1"), Some("z"));
        assert_eq!(header(&event, "ce-region"), None);
        assert_eq!(header(&event, "ce-my-ext"), None);
    }

    #[test]
    fn structured_envelope_overrides_ce_headers_on_the_message() {
        let event = translate(
            "shop.orders.order.placed",
            &[("Content-Type", STRUCTURED_JSON), ("ce-id", "from-header")],
            envelope().to_string().as_bytes(),
            &layout(),
        )
        .unwrap();
        assert_eq!(header(&event, "ce-id"), Some("A-1"));
    }

    #[test]
    fn malformed_structured_payloads_are_rejected() {
        let cases: [(&[u8], CloudEventError); 6] = [
            (b"{not json", CloudEventError::InvalidJson(String::new())),
            (
                b"[1, 2]",
                CloudEventError::NotAnObject { found: "an array" },
            ),
            (
                br#"{"id": "1", "type": "t", "source": "/s"}"#,
                CloudEventError::MissingSpecVersion,
            ),
            (
                br#"{"specversion": null, "id": "1"}"#,
                CloudEventError::MissingSpecVersion,
            ),
            (
                br#"{"specversion": 1.0, "id": "1"}"#,
                CloudEventError::WrongType {
                    attribute: "specversion".into(),
                    expected: "a string",
                    found: "a non-integer number",
                },
            ),
            (
                br#"{"specversion": "0.3", "id": "1"}"#,
                CloudEventError::UnsupportedSpecVersion {
                    found: "\"0.3\"".into(),
                },
            ),
        ];
        for (payload, expected) in cases {
            let error = translate(
                "shop.orders.order.placed",
                &[("Content-Type", STRUCTURED_JSON)],
                payload,
                &layout(),
            )
            .unwrap_err();
            match (&error, &expected) {
                (CloudEventError::InvalidJson(message), CloudEventError::InvalidJson(_)) => {
                    assert!(message.contains("line 1"), "{message}");
                }
                _ => assert_eq!(error, expected),
            }
        }
    }

    #[test]
    fn other_cloudevents_formats_and_batches_are_rejected() {
        for content_type in [
            "application/cloudevents-batch+json",
            "application/cloudevents+avro",
            "application/cloudevents",
        ] {
            let error = translate(
                "shop.orders.order.placed",
                &[("Content-Type", content_type)],
                envelope().to_string().as_bytes(),
                &layout(),
            )
            .unwrap_err();
            assert_eq!(
                error,
                CloudEventError::UnsupportedFormat {
                    content_type: format!("{content_type:?}")
                }
            );
        }
    }

    #[test]
    fn unlabelled_envelope_is_read_as_structured() {
        let payload = with(envelope(), json!({"data": {"n": 1}})).to_string();
        let event = deliver("shop.orders.order.placed", &[], payload.as_bytes());
        assert_eq!(header(&event, "ce-id"), Some("A-1"));
        assert_eq!(event.body, Bytes::from_static(br#"{"n":1}"#));
        // A sniffed envelope is held to the same rules as a labelled one.
        let payload = with(envelope(), json!({"specversion": 1})).to_string();
        let error = translate("shop.orders.x", &[], payload.as_bytes(), &layout()).unwrap_err();
        assert!(
            matches!(error, CloudEventError::WrongType { attribute, .. } if attribute == "specversion")
        );
    }

    #[test]
    fn json_that_is_no_complete_envelope_stays_a_plain_payload() {
        for payload in [
            &br#"{"id": 1, "type": "order", "source": "web"}"#[..],
            br#"{"specversion": "1.0", "id": "1", "type": "t"}"#,
            br#"  [{"specversion": "1.0"}]"#,
        ] {
            let event = deliver("shop.orders.order.placed", &[], payload);
            assert_eq!(event.body, Bytes::copy_from_slice(payload));
            assert_eq!(header(&event, "ce-id"), Some("42"));
            assert_eq!(header(&event, "content-type"), None);
        }
    }

    #[test]
    fn a_sniffed_json_object_comes_with_its_parse_and_nothing_else_does() {
        let object = br#"{"id": 1, "type": "order"}"#;
        let event = deliver("shop.orders.order.placed", &[], object);
        assert_eq!(
            event.parsed_body,
            Some(serde_json::from_slice::<Value>(object).unwrap())
        );
        for (headers, payload) in [
            (&[][..], &br#"  [{"specversion": "1.0"}]"#[..]),
            (&[][..], br#"{"not json"#),
            (&[("Content-Type", "application/json")][..], object),
            (&[("ce-id", "bin-1")][..], object),
        ] {
            let event = deliver("shop.orders.order.placed", headers, payload);
            assert_eq!(event.parsed_body, None, "{headers:?}");
        }
        assert_eq!(structured(&envelope()).unwrap().parsed_body, None);
    }

    #[test]
    fn labelled_or_binary_payloads_are_never_sniffed() {
        let payload = envelope().to_string();
        let event = deliver(
            "shop.orders.order.placed",
            &[("Content-Type", "application/json")],
            payload.as_bytes(),
        );
        assert_eq!(event.body, Bytes::from(payload.clone()));
        assert_eq!(header(&event, "ce-id"), Some("42"));
        let event = deliver(
            "shop.orders.order.placed",
            &[("ce-id", "bin-1")],
            payload.as_bytes(),
        );
        assert_eq!(event.body, Bytes::from(payload));
        assert_eq!(header(&event, "ce-id"), Some("bin-1"));
        assert_eq!(header(&event, "ce-source"), Some("/shop/topics/orders"));
    }

    // Plain payloads

    #[test]
    fn plain_payload_takes_its_id_from_nats_msg_id() {
        let event = deliver(
            "shop.orders.order.placed",
            &[("Nats-Msg-Id", "order-1001")],
            b"\x00\x01binary",
        );
        assert_eq!(header(&event, "ce-id"), Some("order-1001"));
        assert_eq!(event.body, Bytes::from_static(b"\x00\x01binary"));
        let event = deliver(
            "shop.orders.order.placed",
            &[("nats-msg-id", "order-1002")],
            b"x",
        );
        assert_eq!(header(&event, "ce-id"), Some("order-1002"));
    }

    #[test]
    fn plain_payload_without_message_id_takes_the_stream_sequence() {
        for headers in [&[][..], &[("Nats-Msg-Id", "")]] {
            let event = deliver("shop.orders.order.placed", headers, b"x");
            assert_eq!(header(&event, "ce-id"), Some("42"));
        }
    }

    #[test]
    fn plain_payload_gets_every_required_attribute() {
        let event = deliver("shop.orders.order.placed", &[], b"hello");
        assert_eq!(header(&event, "ce-source"), Some("/shop/topics/orders"));
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&event, "ce-time"), Some("2024-05-01T12:00:00.5Z"));
        assert_eq!(header(&event, "ce-subject"), None);
        assert_eq!(header(&event, "content-type"), None);
        assert_eq!(event.body, Bytes::from_static(b"hello"));
    }

    #[test]
    fn plain_payload_keeps_its_content_type() {
        let event = deliver(
            "shop.orders.order.placed",
            &[("Content-Type", "text/csv")],
            b"a,b",
        );
        assert_eq!(header(&event, "content-type"), Some("text/csv"));
    }

    #[test]
    fn partitioned_subject_gives_type_and_key() {
        let subject = "shop.orders.7.order.placed.cust-42";
        let event = translate(subject, &[], b"x", &partitioned(2)).unwrap();
        assert_eq!(header(&event, "ce-type"), Some("order.placed"));
        assert_eq!(header(&event, "ce-subject"), Some("cust-42"));
        let event = translate(subject, &[], b"x", &partitioned(1)).unwrap();
        assert_eq!(header(&event, "ce-type"), Some("order"));
        assert_eq!(header(&event, "ce-subject"), Some("placed.cust-42"));
        // The producer's own subject is kept.
        let event = translate(subject, &[("ce-subject", "mine")], b"x", &partitioned(2)).unwrap();
        assert_eq!(header(&event, "ce-subject"), Some("mine"));
    }

    #[test]
    fn partitioned_subject_with_missing_tokens_degrades_gracefully() {
        let cases = [
            ("shop.orders.3.order", "order", None),
            ("shop.orders.3.order.placed", "order.placed", None),
            ("shop.orders.3", "shop.orders.3", None),
            ("shop.orders", "shop.orders", None),
        ];
        for (subject, event_type, key) in cases {
            let event = translate(subject, &[], b"x", &partitioned(2)).unwrap();
            assert_eq!(header(&event, "ce-type"), Some(event_type), "{subject}");
            assert_eq!(header(&event, "ce-subject"), key, "{subject}");
        }
    }

    #[test]
    fn subject_outside_the_prefix_is_its_own_type() {
        for subject in ["billing.invoices.paid", "shop.ordersx.paid", "shop.orders"] {
            let event = deliver(subject, &[], b"x");
            assert_eq!(header(&event, "ce-type"), Some(subject));
        }
    }

    #[test]
    fn non_ascii_subject_becomes_an_encoded_type() {
        let event = deliver("shop.orders.bestellung.größe", &[], b"x");
        assert_eq!(
            header(&event, "ce-type"),
            Some("bestellung.gr%C3%B6%C3%9Fe")
        );
    }

    #[test]
    fn message_without_headers_is_a_plain_payload() {
        let payload = Bytes::from_static(b"x");
        let event = to_http(
            &Received {
                subject: "shop.orders.a",
                headers: None,
                payload: &payload,
                stream_sequence: 7,
                published: OffsetDateTime::UNIX_EPOCH,
                delivered: 3,
                first_delivered: None,
            },
            &layout(),
        )
        .unwrap();
        assert_eq!(header(&event, "ce-id"), Some("7"));
        assert_eq!(header(&event, "ce-time"), Some("1970-01-01T00:00:00Z"));
        assert_eq!(header(&event, "ce-deliverycount"), Some("3"));
    }

    // Switchyard's extensions and tracing

    #[test]
    fn attribute_headers_are_the_prefixed_names() {
        for name in [
            "id",
            "source",
            "type",
            "specversion",
            "time",
            "subject",
            DELIVERY_COUNT,
            STREAM_SEQUENCE,
            FIRST_DELIVERY_TIME,
            "comexampleextension",
        ] {
            assert_eq!(
                attribute_header(name).map(|h| h.to_string()),
                Some(format!("ce-{name}"))
            );
        }
    }

    #[test]
    fn delivery_extensions_are_always_set_and_replace_the_producers() {
        let headers = nats(&[("ce-deliverycount", "99"), ("ce-streamsequence", "1")]);
        let payload = Bytes::from_static(b"x");
        let event = to_http(
            &Received {
                subject: "shop.orders.a",
                headers: Some(&headers),
                payload: &payload,
                stream_sequence: 1234,
                published: OffsetDateTime::UNIX_EPOCH,
                delivered: 5,
                first_delivered: None,
            },
            &layout(),
        )
        .unwrap();
        assert_eq!(header(&event, "ce-deliverycount"), Some("5"));
        assert_eq!(header(&event, "ce-streamsequence"), Some("1234"));
    }

    #[test]
    fn first_delivery_time_is_set_when_known_and_never_taken_from_the_producer() {
        let headers = nats(&[("ce-firstdeliverytime", "2000-01-01T00:00:00Z")]);
        let payload = Bytes::from_static(b"x");
        let received = |first_delivered| Received {
            subject: "shop.orders.a",
            headers: Some(&headers),
            payload: &payload,
            stream_sequence: 8,
            published: OffsetDateTime::UNIX_EPOCH,
            delivered: 2,
            first_delivered,
        };
        let first = OffsetDateTime::from_unix_timestamp_nanos(PUBLISHED_NANOS).unwrap();
        let known = to_http(&received(Some(first)), &layout()).unwrap();
        assert_eq!(
            header(&known, "ce-firstdeliverytime"),
            Some("2024-05-01T12:00:00.5Z")
        );
        let unknown = to_http(&received(None), &layout()).unwrap();
        assert_eq!(header(&unknown, "ce-firstdeliverytime"), None);
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const ORIGIN: &str = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01";

    #[test]
    fn trace_headers_of_the_message_are_propagated() {
        let event = deliver(
            "shop.orders.a",
            &[
                ("Traceparent", PARENT),
                ("tracestate", "rojo=00f067aa0ba902b7"),
            ],
            b"x",
        );
        assert_eq!(header(&event, "traceparent"), Some(PARENT));
        assert_eq!(header(&event, "tracestate"), Some("rojo=00f067aa0ba902b7"));
        assert_eq!(header(&event, "ce-traceparent"), None);
    }

    #[test]
    fn structured_trace_extension_becomes_the_trace_headers() {
        let event = structured(&with(
            envelope(),
            json!({"traceparent": ORIGIN, "tracestate": "congo=t61rcWkgMzE"}),
        ))
        .unwrap();
        assert_eq!(header(&event, "traceparent"), Some(ORIGIN));
        assert_eq!(header(&event, "tracestate"), Some("congo=t61rcWkgMzE"));
        assert_eq!(header(&event, "ce-traceparent"), Some(ORIGIN));
    }

    #[test]
    fn message_trace_wins_over_the_extension_and_keeps_its_own_state() {
        let event = deliver(
            "shop.orders.a",
            &[
                ("traceparent", PARENT),
                ("ce-traceparent", ORIGIN),
                ("ce-tracestate", "congo=t61rcWkgMzE"),
            ],
            b"x",
        );
        assert_eq!(header(&event, "traceparent"), Some(PARENT));
        assert_eq!(header(&event, "tracestate"), None);
        assert_eq!(header(&event, "ce-traceparent"), Some(ORIGIN));
    }

    #[test]
    fn unusable_trace_headers_are_dropped_without_failing_the_event() {
        let event = deliver("shop.orders.a", &[("traceparent", "00-ü-01")], b"x");
        assert_eq!(header(&event, "traceparent"), None);
        let event = deliver(
            "shop.orders.a",
            &[("traceparent", PARENT), ("TRACEPARENT", ORIGIN)],
            b"x",
        );
        assert_eq!(header(&event, "traceparent"), None);
        let long = "a".repeat(MAX_ATTRIBUTE_BYTES + 1);
        let event = deliver(
            "shop.orders.a",
            &[("traceparent", PARENT), ("tracestate", &long)],
            b"x",
        );
        assert_eq!(header(&event, "traceparent"), Some(PARENT));
        assert_eq!(header(&event, "tracestate"), None);
    }

    // Percent-encoding

    #[test]
    fn percent_encoding_follows_the_http_binding() {
        assert_eq!(
            percent_encode("Euro € 😀"),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(percent_encode(r#"say "100%""#), "say%20%22100%25%22");
        assert_eq!(percent_encode("a\r\nb\tc\u{7f}"), "a%0D%0Ab%09c%7F");
        assert_eq!(percent_encode("\u{85}"), "%C2%85");
        assert_eq!(
            percent_encode("/shop/orders?x=1&y=[2]"),
            "/shop/orders?x=1&y=[2]"
        );
    }

    #[test]
    fn odd_structured_values_arrive_as_valid_encoded_headers() {
        let event = structured(&with(
            envelope(),
            json!({
                "subject": "line1\r\nline2",
                "note": "naïve \"quoted\" 50%",
                "emoji": "🚚",
            }),
        ))
        .unwrap();
        assert_eq!(header(&event, "ce-subject"), Some("line1%0D%0Aline2"));
        assert_eq!(
            header(&event, "ce-note"),
            Some("na%C3%AFve%20%22quoted%22%2050%25")
        );
        assert_eq!(header(&event, "ce-emoji"), Some("%F0%9F%9A%9A"));
    }

    #[test]
    fn percent_decoding_is_lenient_about_malformed_escapes_only() {
        assert_eq!(percent_decode("%41%4a%4A"), Some("AJJ".into()));
        assert_eq!(percent_decode("%"), Some("%".into()));
        assert_eq!(percent_decode("%4"), Some("%4".into()));
        assert_eq!(percent_decode("%zz%41"), Some("%zzA".into()));
        assert_eq!(percent_decode("%E2%82%AC"), Some("€".into()));
        assert_eq!(percent_decode("%E2%82"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn only_whole_quoted_strings_are_unquoted() {
        assert_eq!(unquote(r#""a \"b\" \\ c""#), r#"a "b" \ c"#);
        assert_eq!(unquote(r#""""#), "");
        assert_eq!(unquote(r#"""#), r#"""#);
        assert_eq!(unquote(r#""a"b""#), r#""a"b""#);
        assert_eq!(unquote(r#""a\""#), r#""a\""#);
        assert_eq!(unquote(r#"a "b""#), r#"a "b""#);
    }

    // Limits and invalid values

    #[test]
    fn attribute_values_are_limited_to_4_kib() {
        let longest = "a".repeat(MAX_ATTRIBUTE_BYTES);
        let event = deliver("shop.orders.a", &[("ce-note", &longest)], b"x");
        assert_eq!(header(&event, "ce-note"), Some(longest.as_str()));

        let too_long = "a".repeat(MAX_ATTRIBUTE_BYTES + 1);
        let error =
            translate("shop.orders.a", &[("ce-note", &too_long)], b"x", &layout()).unwrap_err();
        assert_eq!(
            error,
            CloudEventError::ValueTooLong {
                attribute: "note".into(),
                len: MAX_ATTRIBUTE_BYTES + 1
            }
        );
        let error = structured(&with(envelope(), json!({ "id": too_long }))).unwrap_err();
        assert!(
            matches!(error, CloudEventError::ValueTooLong { attribute, .. } if attribute == "id")
        );
        let error = translate(
            "shop.orders.a",
            &[("Content-Type", &format!("text/plain; x={too_long}"))],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert!(
            matches!(error, CloudEventError::ValueTooLong { attribute, .. } if attribute == "datacontenttype")
        );
    }

    #[test]
    fn a_long_subject_makes_a_too_long_type() {
        let subject = format!("shop.orders.{}", "t".repeat(MAX_ATTRIBUTE_BYTES + 1));
        let error = translate(&subject, &[], b"x", &layout()).unwrap_err();
        assert!(
            matches!(error, CloudEventError::ValueTooLong { attribute, .. } if attribute == "type")
        );
    }

    #[test]
    fn events_are_limited_to_64_attributes() {
        let names: Vec<String> = (0..=MAX_ATTRIBUTES).map(|i| format!("ce-ext{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let event = deliver("shop.orders.a", &pairs[..MAX_ATTRIBUTES], b"x");
        assert_eq!(header(&event, "ce-ext63"), Some("v"));

        let error = translate("shop.orders.a", &pairs, b"x", &layout()).unwrap_err();
        assert_eq!(error, CloudEventError::TooManyAttributes { count: 65 });

        let mut members = envelope();
        for i in 0..MAX_ATTRIBUTES {
            members = with(members, json!({ format!("ext{i}"): i }));
        }
        let error = structured(&members).unwrap_err();
        assert_eq!(error, CloudEventError::TooManyAttributes { count: 68 });
    }

    #[test]
    fn content_type_that_is_no_header_value_is_rejected() {
        let error = translate(
            "shop.orders.a",
            &[("Content-Type", "text/plain; charset=ütf-8")],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::InvalidHeaderValue {
                header: "datacontenttype (Content-Type)".into()
            }
        );
        let error = structured(&with(
            envelope(),
            json!({"datacontenttype": "text/plain\u{0}"}),
        ))
        .unwrap_err();
        assert!(matches!(error, CloudEventError::InvalidHeaderValue { .. }));
    }

    #[test]
    fn conflicting_content_types_are_rejected() {
        let error = translate(
            "shop.orders.a",
            &[("Content-Type", "text/plain"), ("content-type", "text/csv")],
            b"x",
            &layout(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            CloudEventError::ConflictingValues {
                name: "header content-type".into()
            }
        );
    }

    #[test]
    fn errors_are_one_line_and_name_what_is_wrong() {
        let error = CloudEventError::UnsupportedSpecVersion {
            found: excerpt(&format!("0.3\r\n{}", "x".repeat(100))),
        };
        let text = error.to_string();
        assert!(!text.contains(['\r', '\n']), "{text}");
        assert!(text.starts_with(r#"specversion "0.3\r\nxxx"#), "{text}");
        assert!(text.contains('…'), "{text}");
        assert_eq!(
            CloudEventError::ValueTooLong {
                attribute: "subject".into(),
                len: 5000
            }
            .to_string(),
            "attribute subject is 5000 bytes long; at most 4096 are allowed"
        );
        assert_eq!(error.category(), "malformed_event");
        assert_eq!(
            CloudEventError::TooManyAttributes { count: 65 }.category(),
            "limit_exceeded"
        );
    }

    #[test]
    fn attribute_names_are_lowercase_letters_and_digits() {
        assert!(is_attribute_name("comexampleext1"));
        assert!(is_attribute_name("1a"));
        for name in ["", "data", "Id", "my-ext", "my_ext", "é"] {
            assert!(!is_attribute_name(name), "{name}");
        }
    }

    // Properties

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[cC][eE]-[a-zA-Z0-9_]{0,8}",
            Just("Content-Type".to_owned()),
            Just("Nats-Msg-Id".to_owned()),
            Just("traceparent".to_owned()),
            Just("tracestate".to_owned()),
            "\\PC{1,8}",
        ]
    }

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("application/cloudevents+json".to_owned()),
            "[ -~]{0,12}",
            "\\PC{0,12}",
            ".{0,12}",
        ]
    }

    fn nats_headers_from(pairs: &[(String, String)]) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                name.parse::<async_nats::HeaderName>(),
                value.parse::<async_nats::HeaderValue>(),
            ) {
                headers.append(name, value);
            }
        }
        headers
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("specversion".to_owned()),
                    Just("id".to_owned()),
                    Just("type".to_owned()),
                    Just("source".to_owned()),
                    Just("data".to_owned()),
                    Just("data_base64".to_owned()),
                    Just("datacontenttype".to_owned()),
                    Just("traceparent".to_owned()),
                    "[a-zA-Z0-9_]{1,8}",
                ],
                prop_oneof![Just(json!("1.0")), json_value()],
                0..10,
            )
            .prop_map(|members| Value::Object(members.into_iter().collect())
                .to_string()
                .into_bytes()),
        ]
    }

    fn check_request(event: &HttpEvent) -> Result<(), TestCaseError> {
        for required in ["ce-id", "ce-source", "ce-type", "ce-specversion"] {
            prop_assert!(event.headers.contains_key(required), "{required} missing");
        }
        prop_assert_eq!(header(event, "ce-specversion"), Some(SPEC_VERSION));
        prop_assert!(!event.headers.contains_key("ce-datacontenttype"));
        for (name, value) in &event.headers {
            if name.as_str().starts_with(ATTRIBUTE_HEADER_PREFIX) {
                prop_assert!(
                    value
                        .as_bytes()
                        .iter()
                        .all(|b| (0x21..=0x7e).contains(b) && *b != b'"'),
                    "{name}: {value:?}"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_message_translates_or_fails_with_a_one_line_reason(
            subject in "\\PC{0,40}",
            pairs in proptest::collection::vec((header_name(), header_value()), 0..8),
            payload in payload(),
            partition_type_tokens in proptest::option::of(0usize..4),
            stream_sequence in any::<u64>(),
            delivered in any::<i64>(),
            published in -377_705_116_800i64..253_402_300_799i64,
        ) {
            let headers = nats_headers_from(&pairs);
            let payload = Bytes::from(payload);
            let layout = TopicLayout { partition_type_tokens, ..layout() };
            let received = Received {
                subject: &subject,
                headers: Some(&headers),
                payload: &payload,
                stream_sequence,
                published: OffsetDateTime::from_unix_timestamp(published).unwrap(),
                delivered,
                first_delivered: None,
            };
            match to_http(&received, &layout) {
                Ok(event) => {
                    check_request(&event)?;
                    let count = delivered.to_string();
                    prop_assert_eq!(header(&event, "ce-deliverycount"), Some(count.as_str()));
                }
                Err(error) => {
                    let text = error.to_string();
                    prop_assert!(!text.contains(['\r', '\n']), "{}", text);
                }
            }
        }

        #[test]
        fn structured_envelopes_translate_or_fail_with_a_one_line_reason(payload in payload()) {
            match translate("shop.orders.a.b", &[("Content-Type", STRUCTURED_JSON)], &payload, &layout()) {
                Ok(event) => check_request(&event)?,
                Err(error) => {
                    let text = error.to_string();
                    prop_assert!(!text.contains(['\r', '\n']), "{}", text);
                }
            }
        }

        #[test]
        fn percent_encoding_round_trips_through_printable_ascii(value in "\\PC{0,40}|.{0,40}") {
            let encoded = percent_encode(&value);
            prop_assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"'));
            prop_assert!(HeaderValue::from_str(&encoded).is_ok());
            prop_assert_eq!(percent_decode(&encoded), Some(value));
        }
    }
}
