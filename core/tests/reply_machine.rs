//! A support reply through the write-ahead machine, on the MemStore,
//! against a scripted inbox with AgentMail's semantics (no idempotency key):
//! at most one reply per inbound message, whatever the inbox's answers
//! (lost after the send, 5xx before it, rate limited, a thread that lags)
//! and a crash between the send and the write of `applied`.

use std::future::Future;
use std::sync::Mutex;

use dlft_core::act::intent::{Action, IntentOp, IntentPhase};
use dlft_core::act::machine::{Effect, Step};
use dlft_core::act::reply::{ReplyEffect, marker, reply_intent};
use dlft_core::config::Sabotage;
use dlft_core::envelope::gate::gate;
use dlft_core::ids::BrandId;
use dlft_core::jobs::{Attempt, NoBank, Ports, drive};
use dlft_core::money::Currency;
use dlft_core::probe::NoProbe;
use dlft_core::propose::support::{MenuAction, SupportFacts, SupportOrder, SupportPolicy, SupportProposal, ceilings};
use dlft_core::sense::inbox::{Inbox, InboxError, Language, MailMessage, SentReply};
use dlft_core::store::{Store, WriteBatch};
use dlft_core::time::{ManualClock, Millis, Timestamp};

mod common;
use common::{NOW, block_on};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Clean,
    /// Sent, but the answer is lost (a 502 after the effect).
    LostAnswer,
    /// A 503 before anything is sent, once.
    Unavailable,
    /// Rate limited once (nothing sent).
    Limited,
    /// The thread shows a new reply only from the second read after it.
    Lagging,
    /// The message is gone: every send is refused.
    Gone,
}

struct ScriptedInbox {
    script: Script,
    thread: Mutex<Vec<MailMessage>>,
    sends: Mutex<u32>,
    reads_since_send: Mutex<u32>,
}

impl ScriptedInbox {
    fn new(script: Script) -> ScriptedInbox {
        let first = MailMessage {
            message_id: "m1".into(),
            from: "customer@example.org".into(),
            text: "My mug arrived broken, photo attached.".into(),
            in_reply_to: None,
            timestamp: Timestamp(0),
        };
        ScriptedInbox {
            script,
            thread: Mutex::new(vec![first]),
            sends: Mutex::default(),
            reads_since_send: Mutex::default(),
        }
    }

    fn replies(&self) -> usize {
        self.thread.lock().unwrap().iter().filter(|m| m.in_reply_to.as_deref() == Some("m1")).count()
    }
}

impl Inbox for ScriptedInbox {
    fn send_reply(
        &self,
        _inbox: &str,
        message_id: &str,
        text: &str,
    ) -> impl Future<Output = Result<SentReply, InboxError>> + Send {
        let n = {
            let mut s = self.sends.lock().unwrap();
            *s += 1;
            *s
        };
        let result = match self.script {
            Script::Gone => Err(InboxError::NotFound("Message not found".into())),
            Script::Unavailable if n == 1 => Err(InboxError::Unknown("HTTP 503".into())),
            Script::Limited if n == 1 => Err(InboxError::RateLimited { retry_after: Millis(1_000) }),
            _ => {
                let mut thread = self.thread.lock().unwrap();
                let id = format!("r{}", thread.len());
                thread.push(MailMessage {
                    message_id: id.clone(),
                    from: "shop@example-shop.com".into(),
                    text: text.into(),
                    in_reply_to: Some(message_id.into()),
                    timestamp: Timestamp(n.into()),
                });
                *self.reads_since_send.lock().unwrap() = 0;
                if self.script == Script::LostAnswer && n == 1 {
                    Err(InboxError::Unknown("HTTP 502".into()))
                } else {
                    Ok(SentReply { message_id: id, thread_id: "t1".into() })
                }
            }
        };
        std::future::ready(result)
    }

    fn thread(
        &self,
        _inbox: &str,
        _thread_id: &str,
    ) -> impl Future<Output = Result<Vec<MailMessage>, InboxError>> + Send {
        let reads = {
            let mut r = self.reads_since_send.lock().unwrap();
            *r += 1;
            *r
        };
        let mut thread = self.thread.lock().unwrap().clone();
        if self.script == Script::Lagging && reads == 1 {
            thread.retain(|m| m.in_reply_to.is_none());
        }
        std::future::ready(Ok(thread))
    }
}

fn facts() -> SupportFacts {
    let o = SupportOrder::standard();
    let (refund_ceiling, credit_ceiling) = ceilings(&o, &SupportPolicy::default());
    SupportFacts {
        order_id: o.id,
        order_total: o.total,
        shipment: o.shipment,
        language: Language::En,
        refund_ceiling,
        credit_ceiling,
    }
}

struct Run {
    phase: IntentPhase,
    errors: Vec<String>,
    inbox: ScriptedInbox,
}

/// Opens the reply the gate let out for message m1 and drives it as act
/// jobs would until it is final. `crash_after_send`: the first send happens
/// before the driving starts, its `applied` never written (a crash).
fn drive_reply(script: Script, crash_after_send: bool) -> Run {
    let (store, claim) = common::claimed_store(vec![]);
    let f = facts();
    let policy = SupportPolicy::default();
    let proposal =
        SupportProposal { action: MenuAction::OfferRefund, amount_cents: Some(4_990), reply: "Full refund!".into() };
    let verdict = gate(&f, &policy, Some(&proposal), &[], false);
    assert_eq!(verdict.amount.map(|m| m.minor), Some(998), "clamped to the ceiling");
    let new = reply_intent(&BrandId::default(), "support", "t1", "m1", &f, &verdict, NOW);
    let key = new.key.clone();
    let Action::Reply { order } = new.action.clone() else { panic!("not a reply") };
    let open = WriteBatch { intents: vec![IntentOp::Open(new.clone())], ..Default::default() };
    assert!(block_on(store.write(&claim.lease, open, NOW)).unwrap().refused.is_empty());
    // A second opening of the same message's reply is a no-op: one intent.
    let again = WriteBatch { intents: vec![IntentOp::Open(new)], ..Default::default() };
    block_on(store.write(&claim.lease, again, NOW)).unwrap();
    let inbox = ScriptedInbox::new(script);
    let effect = ReplyEffect::new(&key, &order);
    if crash_after_send {
        block_on(<ReplyEffect as Effect<ScriptedInbox>>::call(&effect, &inbox, &key)).unwrap();
    }
    let clock = ManualClock::new(NOW);
    let ports = Ports { store: &store, ads: (), clock: &clock, probe: NoProbe, bank: NoBank };
    let cfg = common::loop_cfg();
    let mut attempt = Attempt::new(claim.lease.clone(), BrandId::default(), Currency::EUR);
    let mut errors = Vec::new();
    for _ in 0..20 {
        let intent = block_on(store.intent(&key)).unwrap().unwrap();
        match block_on(drive::step(&ports, &inbox, &cfg, Sabotage::None, &mut attempt, &intent, &effect)) {
            Ok(Step::Done) => break,
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
        clock.advance(Millis(1_000));
    }
    let intent = block_on(store.intent(&key)).unwrap().unwrap();
    assert_eq!(block_on(store.brand_intents(&BrandId::default(), &Default::default())).unwrap().len(), 1);
    Run { phase: intent.phase, errors, inbox }
}

#[test]
fn a_clean_reply_is_sent_once_with_its_marker_and_the_gates_text() {
    let run = drive_reply(Script::Clean, false);
    assert_eq!(run.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(run.inbox.replies(), 1);
    let thread = run.inbox.thread.lock().unwrap();
    let sent = &thread[1].text;
    assert!(sent.contains("9.98 EUR") && !sent.contains("Full refund"), "the gate's text went out: {sent}");
    let key = dlft_core::act::reply::reply_key(&BrandId::default(), "support", "m1");
    assert!(sent.ends_with(&marker(&key)), "{sent}");
}

#[test]
fn no_answer_of_the_inbox_makes_a_second_reply() {
    for script in [Script::LostAnswer, Script::Unavailable, Script::Limited, Script::Lagging] {
        let run = drive_reply(script, false);
        assert_eq!(run.phase, IntentPhase::Committed, "{script:?}: {:?}", run.errors);
        assert_eq!(run.inbox.replies(), 1, "{script:?}: one reply");
    }
}

#[test]
fn a_reply_sent_before_a_crash_is_found_not_sent_again() {
    let run = drive_reply(Script::Clean, true);
    assert_eq!(run.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(run.inbox.replies(), 1);
    assert_eq!(*run.inbox.sends.lock().unwrap(), 1, "the call read the thread first");
}

#[test]
fn a_message_that_is_gone_is_abandoned_at_the_cap_without_a_reply() {
    let run = drive_reply(Script::Gone, false);
    assert_eq!(run.phase, IntentPhase::Abandoned, "{:?}", run.errors);
    assert_eq!(run.inbox.replies(), 0);
}
