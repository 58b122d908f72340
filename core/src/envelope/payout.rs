//! The envelope's interlocks for payouts: what a payable (a supplier
//! invoice, a creator commission) must satisfy before a payout intent may
//! open for it. Its money is capped by the brand's budgets (`budget.rs`,
//! checked by the store when the intent opens); here:
//!
//! - the payee is on the brand's allow-list of counterparties;
//! - the invoice's bank details are the ones on record for that payee: an
//!   invoice that names other ones is refused and flagged (the classic
//!   changed-bank-details fraud: the money would go to the fraudster's
//!   account, under a real supplier's name). The payment itself always goes
//!   to the account on record, never to what an invoice says;
//! - one payout per invoice, ever (the idempotency key names the brand and
//!   the invoice);
//! - a positive amount in the currency the payee is paid in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{AdId, BrandId, IdempotencyKey};
use crate::money::Currency;
use crate::time::Timestamp;

use super::{Decision, DenyReason, Verdict};

/// A counterparty the brand may pay, with its bank details on record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterparty {
    /// The bank's counterparty id.
    pub id: String,
    pub name: String,
    /// The bank's id of the counterparty's account (what a payment names).
    pub account_id: String,
    /// The account's IBAN, normalised ([`iban`]).
    pub iban: String,
    pub currency: Currency,
}

pub use crate::sense::payables::Payable;

/// The idempotency key of the payout of `invoice` by `brand`: one, ever.
pub fn payout_key(brand: &BrandId, invoice: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("payout/{brand}/{invoice}"))
}

/// An IBAN, checked (ISO 13616: country code, check digits, 15 to 34
/// characters, mod-97 = 1) and normalised (spaces removed, upper case).
pub fn iban(text: &str) -> Result<String, String> {
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    let bad = |why: &str| Err(format!("malformed IBAN {text:?}: {why}"));
    if !(15..=34).contains(&s.len()) {
        return bad("not 15 to 34 characters");
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
        return bad("only letters and digits");
    }
    let (head, rest) = s.split_at(4);
    if !head[..2].chars().all(|c| c.is_ascii_uppercase()) || !head[2..].chars().all(|c| c.is_ascii_digit()) {
        return bad("it starts with a country code and two check digits");
    }
    let mut rem: u32 = 0;
    for c in rest.chars().chain(head.chars()) {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    if rem != 1 {
        return bad("the check digits do not match");
    }
    Ok(s)
}

/// A payable the envelope approved: its key, its verdict, and the payee's
/// account on record (where the money goes, whatever the invoice said).
/// `act::payout::payout_intent` turns it into the intent to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    pub key: IdempotencyKey,
    pub verdict: Verdict,
    pub counterparty_id: String,
    pub counterparty_account: String,
}

/// The envelope's answer for one payable: approved, or the verdict
/// refusing it (every one is logged).
pub enum Judged {
    Open(Approved),
    Refused(Verdict),
}

/// Judges one payable of `brand` against the allow-list and the intents
/// already opened.
pub fn judge_payable(
    brand: &BrandId,
    payable: &Payable,
    allow: &BTreeMap<String, Counterparty>,
    opened: &BTreeSet<IdempotencyKey>,
    now: Timestamp,
) -> Judged {
    let key = payout_key(brand, &payable.invoice);
    let verdict = |decision: Decision, reason: String| Verdict {
        ad: AdId::new(payable.counterparty_id.clone()),
        key: key.clone(),
        decision,
        at: now,
        reason,
    };
    let deny = |reason: DenyReason, why: String| Judged::Refused(verdict(Decision::Deny(reason), why));
    if opened.contains(&key) {
        return deny(DenyReason::Duplicate, format!("invoice {} is already paid or being paid", payable.invoice));
    }
    let Some(payee) = allow.get(&payable.counterparty_id) else {
        return deny(
            DenyReason::UnknownPayee,
            format!("counterparty {} is not on the brand's allow-list", payable.counterparty_id),
        );
    };
    match iban(&payable.iban) {
        Ok(on_invoice) if on_invoice == payee.iban => {}
        Ok(on_invoice) => {
            return deny(
                DenyReason::BankDetailsChanged,
                format!(
                    "invoice {} asks for {} to be paid to {on_invoice}; {}'s account on record is {}: flagged, not paid",
                    payable.invoice, payee.name, payee.name, payee.iban
                ),
            );
        }
        Err(e) => return deny(DenyReason::BankDetailsChanged, format!("invoice {}: {e}", payable.invoice)),
    }
    if payable.amount.minor <= 0 || payable.amount.currency != payee.currency {
        return deny(
            DenyReason::BelowThreshold,
            format!("invoice {}: {} is not a positive amount in {}", payable.invoice, payable.amount, payee.currency),
        );
    }
    let reason = format!("invoice {} for {} to {} ({})", payable.invoice, payable.amount, payee.name, payee.iban);
    Judged::Open(Approved {
        key: key.clone(),
        verdict: verdict(Decision::Approve, reason),
        counterparty_id: payee.id.clone(),
        // The account on record, never what the invoice says.
        counterparty_account: payee.account_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    const DE: &str = "DE89 3704 0044 0532 0130 00";
    const GB: &str = "GB82WEST12345698765432";

    fn allow() -> BTreeMap<String, Counterparty> {
        let cp = Counterparty {
            id: "cp-1".into(),
            name: "Fabrik GmbH".into(),
            account_id: "cpa-1".into(),
            iban: iban(DE).unwrap(),
            currency: Currency::EUR,
        };
        BTreeMap::from([(cp.id.clone(), cp)])
    }

    fn payable(cp: &str, iban: &str, minor: i64) -> Payable {
        Payable {
            invoice: "INV-7".into(),
            counterparty_id: cp.into(),
            iban: iban.into(),
            amount: Money::new(minor, Currency::EUR),
        }
    }

    fn refusal(j: Judged) -> (DenyReason, String) {
        match j {
            Judged::Refused(Verdict { decision: Decision::Deny(r), reason, .. }) => (r, reason),
            Judged::Refused(v) => panic!("refused without a denial: {v:?}"),
            Judged::Open(ok) => panic!("opened {:?}", ok.key),
        }
    }

    #[test]
    fn ibans_are_checked() {
        assert_eq!(iban(DE).unwrap(), "DE89370400440532013000");
        assert_eq!(iban(GB).unwrap(), GB);
        for bad in ["DE88 3704 0044 0532 0130 00", "DE89", "1234370400440532013000", "DE89-3704-0044-0532-0130-00"] {
            assert!(iban(bad).unwrap_err().starts_with("malformed IBAN"), "{bad}");
        }
    }

    #[test]
    fn verdict_table() {
        let brand = BrandId::new("north");
        let none = BTreeSet::new();
        let now = Timestamp(0);
        let open = judge_payable(&brand, &payable("cp-1", DE, 12_500), &allow(), &none, now);
        let Judged::Open(ok) = open else { panic!("refused") };
        assert_eq!(ok.key.as_str(), "payout/north/INV-7");
        assert_eq!(ok.counterparty_account, "cpa-1", "paid to the account on record");

        let (r, why) = refusal(judge_payable(&brand, &payable("cp-1", GB, 12_500), &allow(), &none, now));
        assert_eq!(r, DenyReason::BankDetailsChanged);
        assert!(why.contains("GB82WEST12345698765432") && why.contains("flagged"), "{why}");
        let (r, _) = refusal(judge_payable(&brand, &payable("cp-9", DE, 12_500), &allow(), &none, now));
        assert_eq!(r, DenyReason::UnknownPayee);
        let (r, why) = refusal(judge_payable(&brand, &payable("cp-1", "DE00 1234", 12_500), &allow(), &none, now));
        assert!(r == DenyReason::BankDetailsChanged && why.contains("malformed IBAN"), "{why}");
        let (r, _) = refusal(judge_payable(&brand, &payable("cp-1", DE, 0), &allow(), &none, now));
        assert_eq!(r, DenyReason::BelowThreshold);
        let paid = BTreeSet::from([payout_key(&brand, "INV-7")]);
        let (r, _) = refusal(judge_payable(&brand, &payable("cp-1", DE, 12_500), &allow(), &paid, now));
        assert_eq!(r, DenyReason::Duplicate, "one payout per invoice, ever");
    }
}
