//! A payout through the write-ahead machine, on the MemStore, against a
//! scripted bank with Revolut's semantics: the money is reserved when the
//! intent opens, and the intent ends committed with the amount the bank
//! shows posted, or abandoned with the reservation voided; never a second
//! payment, whatever the bank's replies (lost after the effect, duplicate
//! request errors, pending for a while, declined).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;

use dlft_core::act::intent::{Action, Intent, IntentOp, IntentPhase};
use dlft_core::act::machine::Step;
use dlft_core::act::payout::{PayoutEffect, PayoutOrder, payout_intent, request_id};
use dlft_core::config::Sabotage;
use dlft_core::envelope::budget::{Cap, Purpose, TransferState, Window};
use dlft_core::envelope::payout::{Counterparty, Judged, Payable, iban, judge_payable, payout_key};
use dlft_core::ids::BrandId;
use dlft_core::jobs::{Attempt, NoBank, Ports, drive};
use dlft_core::money::{Currency, Money};
use dlft_core::probe::NoProbe;
use dlft_core::sense::bank::{Bank, BankError, BankTransaction, Payment, PaymentReply, TxState};
use dlft_core::store::{SharedMemStore, Store, WriteBatch};
use dlft_core::time::{ManualClock, Millis, Timestamp};

mod common;
use common::{NOW, block_on};

/// What the bank does, call by call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// Pays, completes at once, replies.
    Clean,
    /// Pays (completed), but the reply is lost; the first read-back times out too.
    LostReply,
    /// Pays (pending), stays pending for two reads, then completes.
    SlowSettle,
    /// Accepts (created), then declines.
    Declined,
}

struct ScriptedBank {
    script: Script,
    txs: Mutex<BTreeMap<String, BankTransaction>>,
    pays: Mutex<u32>,
    reads: Mutex<u32>,
}

impl ScriptedBank {
    fn new(script: Script) -> ScriptedBank {
        ScriptedBank { script, txs: Mutex::default(), pays: Mutex::default(), reads: Mutex::default() }
    }
}

impl Bank for ScriptedBank {
    fn pay(&self, p: &Payment) -> impl Future<Output = Result<PaymentReply, BankError>> + Send {
        *self.pays.lock().unwrap() += 1;
        let mut txs = self.txs.lock().unwrap();
        let result = if txs.contains_key(&p.request_id) {
            Err(BankError::DuplicateRequest)
        } else {
            let state = match self.script {
                Script::Clean | Script::LostReply => TxState::Completed,
                Script::SlowSettle => TxState::Pending,
                Script::Declined => TxState::Created,
            };
            let tx = BankTransaction {
                id: format!("tx-{}", txs.len() + 1),
                request_id: p.request_id.clone(),
                state,
                amount: p.amount,
                counterparty_id: Some(p.counterparty_id.clone()),
                created_at: NOW,
                completed_at: None,
                reason_code: None,
            };
            txs.insert(p.request_id.clone(), tx.clone());
            if self.script == Script::LostReply {
                Err(BankError::Timeout)
            } else {
                Ok(PaymentReply { id: tx.id, state })
            }
        };
        std::future::ready(result)
    }

    fn transaction_by_request_id(
        &self,
        request_id: &str,
        _from: Timestamp,
    ) -> impl Future<Output = Result<Option<BankTransaction>, BankError>> + Send {
        let mut reads = self.reads.lock().unwrap();
        *reads += 1;
        let mut txs = self.txs.lock().unwrap();
        let result = match (self.script, *reads) {
            (Script::LostReply, 1) => Err(BankError::Timeout),
            _ => {
                if let Some(tx) = txs.get_mut(request_id) {
                    tx.state = match (self.script, tx.state) {
                        (Script::SlowSettle, TxState::Pending) if *reads >= 3 => TxState::Completed,
                        (Script::Declined, TxState::Created) => TxState::Declined,
                        (_, s) => s,
                    };
                }
                Ok(txs.get(request_id).cloned())
            }
        };
        std::future::ready(result)
    }
    fn transactions(
        &self,
        _from: Timestamp,
        _to: Timestamp,
    ) -> impl Future<Output = Result<Vec<BankTransaction>, BankError>> + Send {
        std::future::ready(Ok(self.txs.lock().unwrap().values().cloned().collect()))
    }
}

fn cfg() -> dlft_core::config::LoopConfig {
    common::loop_cfg()
}

fn order(minor: i64) -> PayoutOrder {
    PayoutOrder {
        from_account: "acc-brand".into(),
        counterparty_id: "cp-supplier".into(),
        counterparty_account: "cpa-iban".into(),
        amount: Money::new(minor, Currency::EUR),
        invoice: "INV-0042".into(),
    }
}

const IBAN: &str = "DE89 3704 0044 0532 0130 00";

/// The payout intent of invoice `invoice` for `minor`, through the envelope
/// (allow-list, bank details on record) as a payout policy would open it.
fn open(invoice: &str, minor: i64) -> IntentOp {
    let supplier = Counterparty {
        id: "cp-supplier".into(),
        name: "Fabrik GmbH".into(),
        account_id: "cpa-iban".into(),
        iban: iban(IBAN).unwrap(),
        currency: Currency::EUR,
    };
    let allow = BTreeMap::from([(supplier.id.clone(), supplier)]);
    let payable = Payable {
        invoice: invoice.into(),
        counterparty_id: "cp-supplier".into(),
        iban: IBAN.into(),
        amount: Money::new(minor, Currency::EUR),
    };
    let Judged::Open(approved) = judge_payable(&BrandId::default(), &payable, &allow, &BTreeSet::new(), NOW) else {
        panic!("the envelope refused a payable on record");
    };
    let new = payout_intent(&approved, &payable, "acc-brand");
    let paid_to_record = PayoutOrder { invoice: invoice.into(), ..order(minor) };
    assert_eq!(new.action, Action::Payout { order: paid_to_record }, "paid to the account on record");
    IntentOp::Open(new)
}

struct Run {
    store: SharedMemStore,
    intent: Intent,
    errors: Vec<String>,
    bank: ScriptedBank,
}

/// A store whose default brand has a daily payout cap of 1,000.00 EUR in
/// Berlin, and a claimed job to write with.
fn setup() -> (SharedMemStore, dlft_core::store::Claim) {
    common::claimed_store(vec![Cap::brand(Purpose::Payout, Window::Daily, Money::new(100_000, Currency::EUR))])
}

/// Opens a payout of `minor` under a daily cap of 1,000.00 EUR and drives it
/// step by step, as act jobs would (an error ends an attempt; the next one
/// goes on from the stored phase), until it is final.
fn drive_payout(script: Script, minor: i64) -> Run {
    drive_payout_after(script, minor, |_, _, _| {})
}

/// [`drive_payout`], with `before` run once the intent is open (to set up
/// what an earlier life of the worker left behind).
fn drive_payout_after(
    script: Script,
    minor: i64,
    before: impl FnOnce(&SharedMemStore, &dlft_core::store::Lease, &ScriptedBank),
) -> Run {
    let (store, claim) = setup();
    let key = payout_key(&BrandId::default(), "INV-0042");
    let r = block_on(store.write(
        &claim.lease,
        WriteBatch { intents: vec![open("INV-0042", minor)], ..Default::default() },
        NOW,
    ))
    .unwrap();
    let bank = ScriptedBank::new(script);
    before(&store, &claim.lease, &bank);
    let clock = ManualClock::new(NOW);
    let mut errors = Vec::new();
    if r.refused.is_empty() {
        let ports = Ports { store: &store, ads: (), clock: &clock, probe: NoProbe, bank: NoBank };
        let cfg = cfg();
        let mut attempt = Attempt::new(claim.lease.clone(), BrandId::default(), Currency::EUR);
        for _ in 0..20 {
            let intent = block_on(store.intent(&key)).unwrap().unwrap();
            let effect = PayoutEffect::new(&key, &order(minor), intent.opened_at);
            match block_on(drive::step(&ports, &bank, &cfg, Sabotage::None, &mut attempt, &intent, &effect)) {
                Ok(Step::Done) => break,
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
            clock.advance(Millis(1_000));
        }
    }
    let intent = block_on(store.intent(&key)).unwrap().unwrap_or_else(|| panic!("refused: {:?}", r.refused));
    Run { store, intent, errors, bank }
}

fn one_transfer(run: &Run) -> (TransferState, i64, i64, i64) {
    let t = block_on(run.store.transfers()).unwrap();
    assert_eq!(t.len(), 1);
    let a = block_on(run.store.accounts(None)).unwrap();
    (t[0].state, t[0].posted, a[0].pending, a[0].posted)
}

#[test]
fn a_clean_payout_commits_and_posts_what_the_bank_shows() {
    let run = drive_payout(Script::Clean, 25_000);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Posted, 25_000, 0, 25_000));
    assert_eq!(*run.bank.pays.lock().unwrap(), 1);
    let tx = run.bank.txs.lock().unwrap();
    assert_eq!(tx.keys().collect::<Vec<_>>(), vec![&request_id(&run.intent.key)], "paid under the intent's request_id");
}

#[test]
fn a_reply_lost_after_the_effect_is_read_back_never_paid_twice() {
    let run = drive_payout(Script::LostReply, 25_000);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Posted, 25_000, 0, 25_000));
    assert_eq!(run.bank.txs.lock().unwrap().len(), 1, "one payment");
    // The second call met the duplicate-request error and read back.
    assert_eq!(*run.bank.pays.lock().unwrap(), 2);
    assert!(run.errors.iter().any(|e| e.contains("timeout")), "{:?}", run.errors);
}

#[test]
fn a_pending_payment_is_waited_for_not_paid_again() {
    let run = drive_payout(Script::SlowSettle, 25_000);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(*run.bank.pays.lock().unwrap(), 1, "pending is on its way: never a second call");
    assert!(run.errors.iter().any(|e| e.contains("in flight")), "{:?}", run.errors);
    assert_eq!(run.intent.attempts, 1, "waiting spends no attempt");
    assert_eq!(one_transfer(&run).0, TransferState::Posted);
}

#[test]
fn a_declined_payment_is_abandoned_and_its_reservation_voided() {
    let run = drive_payout(Script::Declined, 25_000);
    assert_eq!(run.intent.phase, IntentPhase::Abandoned, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Voided, 0, 0, 0), "the money is free again");
    assert_eq!(*run.bank.pays.lock().unwrap(), 1);
}

#[test]
fn a_payment_made_before_the_attempt_cap_ran_out_is_committed_not_abandoned() {
    // An earlier life paid, then died before writing `applied`; crashes
    // spent the rest of the attempts. The cap is reached, but the bank
    // shows the payment: the machine looks before it gives up.
    let run = drive_payout_after(Script::Clean, 25_000, |store, lease, bank| {
        let key = payout_key(&BrandId::default(), "INV-0042");
        let intent = block_on(store.intent(&key)).unwrap().unwrap();
        let effect = PayoutEffect::new(&key, &order(25_000), intent.opened_at);
        block_on(bank.pay(&effect.payment)).unwrap();
        let spent: Vec<IntentOp> =
            (0..4).map(|_| IntentOp::CountAttempt { key: key.clone(), cause: "crashed".into() }).collect();
        block_on(store.write(lease, WriteBatch { intents: spent, ..Default::default() }, NOW)).unwrap();
    });
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Posted, 25_000, 0, 25_000), "ledger = bank");
    assert_eq!(*run.bank.pays.lock().unwrap(), 1, "never paid again");
    // With nothing at the bank, the cap abandons it and the money is free.
    let run = drive_payout_after(Script::Clean, 25_000, |store, lease, _| {
        let key = payout_key(&BrandId::default(), "INV-0042");
        let spent: Vec<IntentOp> =
            (0..4).map(|_| IntentOp::CountAttempt { key: key.clone(), cause: "crashed".into() }).collect();
        block_on(store.write(lease, WriteBatch { intents: spent, ..Default::default() }, NOW)).unwrap();
    });
    assert_eq!(run.intent.phase, IntentPhase::Abandoned, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Voided, 0, 0, 0));
    assert_eq!(*run.bank.pays.lock().unwrap(), 0);
}

#[test]
fn a_payout_over_the_cap_never_opens() {
    let (store, claim) = setup();
    let key = payout_key(&BrandId::default(), "INV-0043");
    let r = block_on(store.write(
        &claim.lease,
        WriteBatch { intents: vec![open("INV-0043", 100_001)], ..Default::default() },
        NOW,
    ))
    .unwrap();
    assert_eq!(r.refused.len(), 1);
    assert!(block_on(store.intent(&key)).unwrap().is_none(), "refused: nothing to pay");
    assert!(r.refused[0].1.starts_with("daily payout cap 1000.00 EUR"), "{}", r.refused[0].1);
}
