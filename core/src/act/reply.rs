//! A support reply as a write-ahead action (issue 15): the text the gate
//! let out, sent as the reply to one inbound message, at most once.
//!
//! The inbox (AgentMail) takes no idempotency key, so the reply carries a
//! marker derived from the intent's key (`Ref. dlft-…`, the same in every
//! process and retry), and the read-back lists the thread for it: found →
//! the effect; absent → send again (under the same marker). A send whose
//! reply was lost, or a crash between the send and the write of `applied`,
//! is read back before anything is sent again (the call itself lists the
//! thread first), so a customer never gets the same answer twice. One intent per inbound message
//! (`reply/{brand}/{inbox}/{message}`) makes it at most one reply per
//! message, whatever the workers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::gate::GateVerdict;
use crate::ids::{BrandId, IdempotencyKey};
use crate::probe::Site;
use crate::propose::support::SupportFacts;
use crate::sense::inbox::{Inbox, InboxError, Language, MailMessage};
use crate::time::Millis;

use super::machine::{CallError, Effect, Found, Seen, Sites};

/// What a reply sends, and to which message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyOrder {
    pub inbox: String,
    pub thread_id: String,
    pub message_id: String,
    pub language: Language,
    /// The gate's reply, without the marker.
    pub text: String,
}

/// The one key of the reply to `message_id`.
pub fn reply_key(brand: &BrandId, inbox: &str, message_id: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("reply/{brand}/{inbox}/{message_id}"))
}

/// The marker a reply carries: `dlft-` and 16 hex digits of SHA-256 of the
/// intent's key.
pub fn marker(key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(key.as_str().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("dlft-{hex}")
}

/// The text as sent: the gate's reply and the marker on a line of its own.
pub fn sent_text(text: &str, marker: &str) -> String {
    format!("{text}\n\nRef. {marker}")
}

/// The intent a gate verdict opens (replies move no money: no reservation).
pub fn reply_intent(
    brand: &BrandId,
    inbox: &str,
    thread_id: &str,
    message_id: &str,
    facts: &SupportFacts,
    verdict: &GateVerdict,
    at: crate::time::Timestamp,
) -> crate::act::intent::NewIntent {
    use crate::act::intent::{Action, Evidence, NewIntent};
    use crate::envelope::{Decision, Verdict};
    let key = reply_key(brand, inbox, message_id);
    NewIntent {
        key: key.clone(),
        action: Action::Reply {
            order: ReplyOrder {
                inbox: inbox.into(),
                thread_id: thread_id.into(),
                message_id: message_id.into(),
                language: verdict.language,
                text: verdict.reply.clone(),
            },
        },
        evidence: Evidence::Reply { facts: facts.clone(), action: verdict.action, reasons: verdict.reasons.clone() },
        verdict: Verdict {
            ad: crate::ids::AdId::new(message_id),
            key,
            decision: Decision::Approve,
            at,
            reason: format!("gate: {}", verdict.action.as_str()),
        },
        reserve: None,
    }
}

/// The reply's effect on the inbox.
pub struct ReplyEffect {
    order: ReplyOrder,
    marker: String,
}

impl ReplyEffect {
    pub fn new(key: &IdempotencyKey, order: &ReplyOrder) -> ReplyEffect {
        ReplyEffect { order: order.clone(), marker: marker(key) }
    }
}

/// What a thread shows of the reply marked `marker`.
pub fn seen(messages: &[MailMessage], marker: &str) -> Seen {
    let found = messages.iter().filter(|m| m.text.contains(marker)).count();
    match found {
        0 => Seen { found: Found::Absent, detail: format!("no reply marked {marker} in the thread"), amount: None },
        n => Seen {
            found: Found::Effected,
            detail: if n == 1 {
                format!("reply {marker} in the thread")
            } else {
                format!("{n} replies marked {marker}")
            },
            amount: None,
        },
    }
}

impl CallError for InboxError {
    fn outcome_unknown(&self) -> bool {
        matches!(self, InboxError::Unknown(_))
    }
    fn retry_after(&self) -> Option<Millis> {
        match self {
            InboxError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl<I: Inbox> Effect<I> for ReplyEffect {
    type Error = InboxError;
    const VENDOR: &'static str = "agentmail";
    const CALL: &'static str = "reply";
    const READ: &'static str = "thread";
    const SITES: Sites = Sites {
        before_call: Site::ReplyBeforeSend,
        after_call: Site::ReplyAfterSend,
        after_applied: Site::ReplyAfterApplied,
        after_read_back: Site::ReplyAfterReadBack,
    };

    fn subject(&self) -> &str {
        &self.order.message_id
    }

    /// Reads the thread first: a reply already there (sent before a crash
    /// that lost the write of `applied`) is not sent again.
    async fn call(&self, inbox: &I, _key: &IdempotencyKey) -> Result<(), InboxError> {
        let messages = inbox.thread(&self.order.inbox, &self.order.thread_id).await?;
        if seen(&messages, &self.marker).effected() {
            return Ok(());
        }
        let text = sent_text(&self.order.text, &self.marker);
        inbox.send_reply(&self.order.inbox, &self.order.message_id, &text).await.map(|_| ())
    }

    async fn read_back(&self, inbox: &I) -> Result<Seen, InboxError> {
        let messages = inbox.thread(&self.order.inbox, &self.order.thread_id).await?;
        Ok(seen(&messages, &self.marker))
    }

    fn unconfirmed() -> InboxError {
        InboxError::Unknown("the reply is not in the thread yet".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn msg(id: &str, text: &str) -> MailMessage {
        MailMessage {
            message_id: id.into(),
            from: "x".into(),
            text: text.into(),
            in_reply_to: None,
            timestamp: Timestamp(0),
        }
    }

    #[test]
    fn the_marker_is_stable_and_found_only_in_its_own_reply() {
        let key = reply_key(&BrandId::default(), "support", "m1");
        let m = marker(&key);
        assert_eq!(m, marker(&key));
        assert_ne!(m, marker(&reply_key(&BrandId::default(), "support", "m2")));
        assert_eq!(m.len(), 21);
        let thread = vec![
            msg("m1", "Help"),
            msg("r1", &sent_text("Thanks", &marker(&reply_key(&BrandId::default(), "support", "m0")))),
        ];
        assert_eq!(seen(&thread, &m).found, Found::Absent);
        let thread = [thread, vec![msg("r2", &sent_text("Thanks", &m))]].concat();
        assert_eq!(seen(&thread, &m).found, Found::Effected);
    }
}
