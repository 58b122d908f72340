//! AgentMail's shapes (the support inbox): thread pages, a thread with its
//! messages, a sent reply, errors. Unknown fields are ignored; a field the
//! loop needs that is missing or of the wrong type refuses the page.
//!
//! - `GET /v0/inboxes/{inbox}/threads?limit=&page_token=` → `{count, limit,
//!   next_page_token, threads: [{thread_id, updated_at, message_count, …}]}`
//! - `GET /v0/inboxes/{inbox}/threads/{thread_id}` adds `messages[]`
//!   (`message_id`, `from`, `text`, `extracted_text`, `in_reply_to`,
//!   `timestamp`)
//! - `POST /v0/inboxes/{inbox}/messages/{message_id}/reply` `{"text", "html"}`
//!   → `{message_id, thread_id}`; no idempotency key: a reply is read back by
//!   listing its thread for the reply's marker before it is sent again.
//! - Errors: `{"name": "NotFoundError", "message"}` (404),
//!   `{"name": "ValidationError", "errors": […]}` (400); 429 waits.

use serde::{Deserialize, Serialize};

use crate::time::{Millis, Timestamp};

/// One thread as a page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    pub thread_id: String,
    pub updated_at: Timestamp,
    pub message_count: u32,
}

/// One page of threads, and the token of the next (none: the last page).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPage {
    pub threads: Vec<ThreadSummary>,
    pub next_page_token: Option<String>,
}

/// One message of a thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMessage {
    pub message_id: String,
    pub from: String,
    /// `extracted_text` (the new text, without quoted history) when the
    /// vendor gives it, else `text`.
    pub text: String,
    pub in_reply_to: Option<String>,
    pub timestamp: Timestamp,
}

/// A reply the inbox accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentReply {
    pub message_id: String,
    pub thread_id: String,
}

/// The inbox's error classes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InboxError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("refused: {0}")]
    Invalid(String),
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Millis },
    /// A 5xx, a timeout or a reply that does not parse: for a send, the
    /// outcome is unknown (read the thread back before sending again).
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

fn instant(text: &str) -> Result<Timestamp, InboxError> {
    super::revolut::instant_of(text).map_err(InboxError::Unknown)
}

#[derive(Deserialize)]
struct RawThread {
    thread_id: String,
    updated_at: String,
    #[serde(default)]
    message_count: u32,
}

#[derive(Deserialize)]
struct RawPage {
    threads: Vec<RawThread>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Decodes a thread page (status 200) or classifies the error.
pub fn decode_threads(status: u16, body: &serde_json::Value) -> Result<ThreadPage, InboxError> {
    if status != 200 {
        return Err(classify_error(status, body, None));
    }
    let raw: RawPage =
        serde_json::from_value(body.clone()).map_err(|e| InboxError::Unknown(format!("threads page: {e}")))?;
    let threads = raw
        .threads
        .into_iter()
        .map(|t| {
            if t.thread_id.is_empty() {
                return Err(InboxError::Unknown("a thread without an id".into()));
            }
            Ok(ThreadSummary {
                updated_at: instant(&t.updated_at)?,
                thread_id: t.thread_id,
                message_count: t.message_count,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ThreadPage { threads, next_page_token: raw.next_page_token.filter(|t| !t.is_empty()) })
}

#[derive(Deserialize)]
struct RawMessage {
    message_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    extracted_text: Option<String>,
    #[serde(default)]
    in_reply_to: Option<String>,
    timestamp: String,
}

#[derive(Deserialize)]
struct RawFullThread {
    messages: Vec<RawMessage>,
}

/// Decodes a thread's messages, oldest first.
pub fn decode_thread(status: u16, body: &serde_json::Value) -> Result<Vec<MailMessage>, InboxError> {
    if status != 200 {
        return Err(classify_error(status, body, None));
    }
    let raw: RawFullThread =
        serde_json::from_value(body.clone()).map_err(|e| InboxError::Unknown(format!("thread: {e}")))?;
    let mut out = raw
        .messages
        .into_iter()
        .map(|m| {
            if m.message_id.is_empty() {
                return Err(InboxError::Unknown("a message without an id".into()));
            }
            Ok(MailMessage {
                timestamp: instant(&m.timestamp)?,
                text: m.extracted_text.filter(|t| !t.trim().is_empty()).or(m.text).unwrap_or_default(),
                message_id: m.message_id,
                from: m.from,
                in_reply_to: m.in_reply_to,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.message_id.cmp(&b.message_id)));
    Ok(out)
}

/// Decodes a reply's answer.
pub fn decode_sent(status: u16, body: &serde_json::Value) -> Result<SentReply, InboxError> {
    if status != 200 {
        return Err(classify_error(status, body, None));
    }
    let id = body.get("message_id").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let thread = body.get("thread_id").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    match (id, thread) {
        (Some(i), Some(t)) => Ok(SentReply { message_id: i.into(), thread_id: t.into() }),
        _ => Err(InboxError::Unknown(format!("a reply's answer without message_id and thread_id: {body}"))),
    }
}

/// Classifies an error reply; `retry_after_s` is the `Retry-After` header.
pub fn classify_error(status: u16, body: &serde_json::Value, retry_after_s: Option<u64>) -> InboxError {
    let name = body.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let message = body.get("message").and_then(|v| v.as_str()).map_or_else(|| body.to_string(), str::to_string);
    match (status, name) {
        (429, _) => InboxError::RateLimited { retry_after: Millis(retry_after_s.unwrap_or(1).min(3_600) * 1_000) },
        (404, _) | (_, "NotFoundError") => InboxError::NotFound(message),
        (400, _) | (422, _) | (_, "ValidationError") => {
            let errors = body.get("errors").map_or_else(String::new, |e| format!(" {e}"));
            InboxError::Invalid(format!("{message}{errors}"))
        }
        (401, _) | (403, _) => InboxError::Invalid(format!("HTTP {status}: {message}")),
        _ => InboxError::Unknown(format!("HTTP {status}: {message}")),
    }
}

/// What an AgentMail webhook says, once its Svix signature was checked: a
/// hint to read an inbox again, never what the inbox holds (the support
/// job reads the threads itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailHint {
    /// `message.received` in `inbox`: read it now. `event_id` is the same
    /// on every delivery of one event (de-duplicate on it).
    Received { event_id: String, inbox: String },
    /// Any other event type: nothing to do.
    Other { event_type: String },
}

/// Decodes a webhook body (`{"type": "event", "event_type", "event_id",
/// "message": {"inbox_id", …}}`). Errors name what is missing.
pub fn decode_webhook(body: &[u8]) -> Result<MailHint, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    fn text<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
        v.get(k).and_then(|x| x.as_str()).filter(|s| !s.trim().is_empty())
    }
    let event_type = text(&v, "event_type").ok_or("no event_type")?;
    if event_type != "message.received" {
        return Ok(MailHint::Other { event_type: event_type.into() });
    }
    let event_id = text(&v, "event_id").ok_or("message.received without event_id")?;
    let inbox =
        v.get("message").and_then(|m| text(m, "inbox_id")).ok_or("message.received without message.inbox_id")?;
    Ok(MailHint::Received { event_id: event_id.into(), inbox: inbox.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhooks_are_hints_with_their_event_and_inbox() {
        let body = json!({"type": "event", "event_type": "message.received", "event_id": "evt_1",
            "message": {"inbox_id": "support", "thread_id": "t1", "message_id": "m1", "text": "refund me 500"}});
        let hint = decode_webhook(body.to_string().as_bytes()).unwrap();
        assert_eq!(hint, MailHint::Received { event_id: "evt_1".into(), inbox: "support".into() });
        let sent = json!({"type": "event", "event_type": "message.sent", "event_id": "evt_2"});
        assert_eq!(
            decode_webhook(sent.to_string().as_bytes()).unwrap(),
            MailHint::Other { event_type: "message.sent".into() }
        );
        for (bad, why) in [
            (b"\x00\xff".to_vec(), "not JSON"),
            (b"{}".to_vec(), "no event_type"),
            (br#"{"event_type":"message.received","message":{"inbox_id":"s"}}"#.to_vec(), "without event_id"),
            (br#"{"event_type":"message.received","event_id":"e"}"#.to_vec(), "without message.inbox_id"),
        ] {
            let e = decode_webhook(&bad).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn pages_threads_and_replies_decode() {
        let page = json!({"count": 2, "limit": 2, "next_page_token": "tok2", "threads": [
            {"thread_id": "t1", "subject": "Broken mug", "senders": ["a@b.c"], "preview": "…",
             "message_count": 2, "updated_at": "2026-12-05T10:00:00Z", "labels": ["received"]},
            {"thread_id": "t2", "message_count": 1, "updated_at": "2026-12-05T10:01:00.5Z"}]});
        let p = decode_threads(200, &page).unwrap();
        assert_eq!(p.next_page_token.as_deref(), Some("tok2"));
        assert_eq!(p.threads[1].updated_at, Timestamp(1_796_464_860_500));
        let last = decode_threads(200, &json!({"count": 0, "limit": 10, "threads": []})).unwrap();
        assert_eq!(last.next_page_token, None);
        let thread = json!({"thread_id": "t1", "messages": [
            {"message_id": "m2", "from": "shop@x.y", "text": "Reply", "in_reply_to": "m1",
             "timestamp": "2026-12-05T10:05:00Z"},
            {"message_id": "m1", "from": "a@b.c", "text": "Hi\n> quoted", "extracted_text": "Hi",
             "timestamp": "2026-12-05T10:00:00Z"}]});
        let m = decode_thread(200, &thread).unwrap();
        assert_eq!((m[0].message_id.as_str(), m[0].text.as_str()), ("m1", "Hi"));
        assert_eq!(m[1].in_reply_to.as_deref(), Some("m1"));
        assert_eq!(decode_sent(200, &json!({"message_id": "m3", "thread_id": "t1"})).unwrap().message_id, "m3");
    }

    #[test]
    fn errors_and_garbage_are_classified() {
        let nf = json!({"name": "NotFoundError", "message": "Thread not found"});
        assert_eq!(decode_thread(404, &nf), Err(InboxError::NotFound("Thread not found".into())));
        let bad = json!({"name": "ValidationError", "errors": [{"path": ["text"], "message": "Required"}]});
        assert!(matches!(decode_sent(400, &bad), Err(InboxError::Invalid(m)) if m.contains("Required")));
        assert_eq!(classify_error(429, &json!({}), Some(7)), InboxError::RateLimited { retry_after: Millis(7_000) });
        assert!(matches!(decode_sent(502, &json!("<html>")), Err(InboxError::Unknown(_))));
        assert!(
            matches!(decode_sent(200, &json!({"ok": true})), Err(InboxError::Unknown(_))),
            "a sent reply needs its id"
        );
        assert!(matches!(
            decode_threads(200, &json!({"threads": [{"thread_id": "t", "updated_at": "yesterday"}]})),
            Err(InboxError::Unknown(_))
        ));
        assert!(
            decode_thread(200, &json!({"messages": [{"message_id": "", "timestamp": "2026-12-05T10:00:00Z"}]}))
                .is_err()
        );
    }
}
