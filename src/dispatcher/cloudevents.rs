//! TEMPORARY placeholder until the real translation lands (not to be committed).
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

#[derive(Clone, Debug)]
pub struct TopicLayout {
    pub subject_prefix: String,
    pub partition_type_tokens: Option<usize>,
    pub source: String,
}
pub struct Received<'a> {
    pub subject: &'a str,
    pub headers: Option<&'a async_nats::HeaderMap>,
    pub payload: &'a [u8],
    pub stream_sequence: u64,
    pub published: time::OffsetDateTime,
    pub delivered: i64,
}
pub struct HttpEvent {
    pub headers: HeaderMap,
    pub body: Bytes,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloudEventError(String);
pub fn to_http(
    received: &Received<'_>,
    layout: &TopicLayout,
) -> Result<HttpEvent, CloudEventError> {
    let mut headers = HeaderMap::new();
    let ty = received
        .subject
        .strip_prefix(&format!("{}.", layout.subject_prefix))
        .unwrap_or(received.subject);
    headers.insert(
        "ce-id",
        HeaderValue::from_str(&received.stream_sequence.to_string()).unwrap(),
    );
    headers.insert(
        "ce-type",
        HeaderValue::from_str(ty).map_err(|e| CloudEventError(e.to_string()))?,
    );
    headers.insert(
        "ce-source",
        HeaderValue::from_str(&layout.source).map_err(|e| CloudEventError(e.to_string()))?,
    );
    headers.insert("ce-specversion", HeaderValue::from_static("1.0"));
    headers.insert(
        "ce-deliverycount",
        HeaderValue::from_str(&received.delivered.to_string()).unwrap(),
    );
    let _ = received.headers;
    let _ = received.published;
    Ok(HttpEvent {
        headers,
        body: Bytes::copy_from_slice(received.payload),
    })
}
