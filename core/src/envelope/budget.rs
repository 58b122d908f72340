//! Budgets as ledger accounts (TigerBeetle's model, money.md).
//!
//! A cap is an account that may not go below zero: for every account,
//! `pending + posted ≤ limit`, checked when a reservation is made, so that
//! posting and voiding can never break it. A brand declares caps per
//! `(purpose, currency, window)`; a window is a calendar day or month in the
//! brand's declared time zone (DST-correct: a day is 23, 24 or 25 hours), or
//! the brand's lifetime. Each period of a window is its own account
//! (`payout EUR daily 2026-12-02`).
//!
//! A transfer is the reservation of one intent (its id is the intent's key):
//! made in the same atomic write that opens the intent, against every
//! account whose cap covers its purpose and currency, in the periods that
//! hold the instant it is opened; resolved exactly once, by a post (of the
//! amount read back from the world) when the intent commits, or by a void
//! when it is abandoned. A reservation that no cap covers is refused: a
//! purpose that moves money must have a declared cap (fail closed).
//!
//! Everything here is pure; the stores apply what [`reserve`], [`post`] and
//! [`void`] decide (through `store::plan`), so they cannot disagree.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, IdempotencyKey};
use crate::money::{Currency, Money};
use crate::time::Timestamp;

/// What a reservation's money is for. Each purpose has its own caps.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Supplier invoices and creator commissions paid out of the brand's bank.
    Payout,
    /// Refunds to customers.
    Refund,
    /// Calls to model vendors.
    Model,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::Payout, Purpose::Refund, Purpose::Model];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Payout => "payout",
            Purpose::Refund => "refund",
            Purpose::Model => "model",
        }
    }

    pub fn parse(s: &str) -> Result<Purpose, BudgetError> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| BudgetError::Unknown {
            what: "purpose",
            value: s.into(),
            known: "payout, refund, model",
        })
    }
}

/// The span a cap counts over.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A calendar day in the brand's time zone, from its first instant.
    Daily,
    /// A calendar month in the brand's time zone, from the 1st's first instant.
    Monthly,
    /// Never resets.
    Lifetime,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Daily, Window::Monthly, Window::Lifetime];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Monthly => "monthly",
            Window::Lifetime => "lifetime",
        }
    }

    pub fn parse(s: &str) -> Result<Window, BudgetError> {
        Window::ALL.into_iter().find(|w| w.as_str() == s).ok_or_else(|| BudgetError::Unknown {
            what: "window",
            value: s.into(),
            known: "daily, monthly, lifetime",
        })
    }
}

/// A declared IANA time zone (`Europe/Berlin`), checked against the tz
/// database bundled into this build (never the host's: one seed is one run
/// on any machine).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone(String);

impl Zone {
    pub fn parse(name: &str) -> Result<Zone, BudgetError> {
        jiff::tz::TimeZone::get(name).map_err(|_| BudgetError::Unknown {
            what: "time zone",
            value: name.into(),
            known: "IANA names such as Europe/Berlin, America/New_York, UTC",
        })?;
        Ok(Zone(name.to_string()))
    }

    pub fn utc() -> Zone {
        Zone("UTC".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.0).expect("checked when parsed")
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl TryFrom<String> for Zone {
    type Error = BudgetError;
    fn try_from(s: String) -> Result<Zone, BudgetError> {
        Zone::parse(&s)
    }
}

impl From<Zone> for String {
    fn from(z: Zone) -> String {
        z.0
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One cap: at most `limit` of `purpose` (in the limit's currency) per
/// period of `window`, paid to anyone (`counterparty: None`) or to one
/// counterparty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cap {
    pub purpose: Purpose,
    pub window: Window,
    pub limit: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
}

impl Cap {
    /// A cap on all of the brand's money of `purpose`.
    pub fn brand(purpose: Purpose, window: Window, limit: Money) -> Cap {
        Cap { purpose, window, limit, counterparty: None }
    }

    /// Whether money of `purpose` in `currency` paid to `counterparty`
    /// counts against this cap.
    pub fn covers(&self, purpose: Purpose, currency: Currency, counterparty: Option<&str>) -> bool {
        self.purpose == purpose
            && self.limit.currency == currency
            && self.counterparty.as_deref().is_none_or(|c| Some(c) == counterparty)
    }

    /// `payout daily` or `payout daily cp-1`.
    pub fn name(&self) -> String {
        cap_name(self.purpose, self.window, self.counterparty.as_deref())
    }
}

/// A brand's budgets: its time zone and its caps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    pub zone: Zone,
    pub caps: Vec<Cap>,
}

impl Budgets {
    /// Checks that no two caps share `(purpose, currency, window,
    /// counterparty)` (two limits on one account), that no limit is negative
    /// and that no counterparty is named empty. Returns the caps in account
    /// order.
    pub fn new(zone: Zone, mut caps: Vec<Cap>) -> Result<Budgets, BudgetError> {
        caps.sort_by(|a, b| {
            (a.purpose, a.limit.currency, a.window, &a.counterparty).cmp(&(
                b.purpose,
                b.limit.currency,
                b.window,
                &b.counterparty,
            ))
        });
        for c in &caps {
            if c.limit.minor < 0 {
                return Err(BudgetError::Invalid(format!(
                    "the {} {} cap's limit {} is negative",
                    c.purpose.as_str(),
                    c.window.as_str(),
                    c.limit
                )));
            }
            if c.counterparty.as_deref().is_some_and(|cp| cp.trim().is_empty()) {
                return Err(BudgetError::Invalid(format!(
                    "the {} {} cap names an empty counterparty",
                    c.purpose.as_str(),
                    c.window.as_str()
                )));
            }
        }
        for w in caps.windows(2) {
            let key = |c: &Cap| (c.purpose, c.limit.currency, c.window, c.counterparty.clone());
            if key(&w[0]) == key(&w[1]) {
                let whom = w[0].counterparty.as_deref().map_or(String::new(), |c| format!(" for {c}"));
                return Err(BudgetError::Invalid(format!(
                    "two {} {} caps{whom} in {} ({} and {}): one window, one cap",
                    w[0].window.as_str(),
                    w[0].purpose.as_str(),
                    w[0].limit.currency,
                    w[0].limit,
                    w[1].limit
                )));
            }
        }
        Ok(Budgets { zone, caps })
    }

    /// One line for event rows and operators:
    /// `Europe/Berlin: payout daily 1500.00 EUR, payout monthly 20000.00 EUR`.
    pub fn describe(&self) -> String {
        let caps: Vec<String> = self.caps.iter().map(|c| format!("{} {}", c.name(), c.limit)).collect();
        format!("{}: {}", self.zone, if caps.is_empty() { "no caps".into() } else { caps.join(", ") })
    }

    /// The caps that cover money of `purpose` in `currency` paid to
    /// `counterparty`: the brand's, and that counterparty's own.
    pub fn caps_for<'a>(
        &'a self,
        purpose: Purpose,
        currency: Currency,
        counterparty: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Cap> {
        self.caps.iter().filter(move |c| c.covers(purpose, currency, counterparty))
    }
}

/// One period of a window: its label and its instants `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// `2026-12-02` (daily), `2026-12` (monthly), `lifetime`.
    pub label: String,
    pub start: Timestamp,
    /// `None` for the lifetime.
    pub end: Option<Timestamp>,
}

/// The period of `window` that holds the instant `at`, in `zone`.
pub fn period_of(window: Window, zone: &Zone, at: Timestamp) -> Period {
    let tz = zone.tz();
    let ms = i64::try_from(at.0).expect("timestamps fit i64 milliseconds");
    let zoned = jiff::Timestamp::from_millisecond(ms).expect("timestamps are in jiff's range").to_zoned_datetime(tz);
    let instant = |z: &jiff::ZonedDateTime| Timestamp(u64::try_from(z.timestamp().as_millisecond()).unwrap_or(0));
    match window {
        Window::Lifetime => Period { label: "lifetime".into(), start: Timestamp(0), end: None },
        Window::Daily => {
            let start = zoned.start_of_day().expect("a day has a first instant");
            let end = zoned.tomorrow().and_then(|z| z.start_of_day()).expect("a day has a next day");
            Period { label: zoned.date().to_string(), start: instant(&start), end: Some(instant(&end)) }
        }
        Window::Monthly => {
            let start = zoned.first_of_month().and_then(|z| z.start_of_day()).expect("a month has a first instant");
            let end = zoned
                .last_of_month()
                .and_then(|z| z.tomorrow())
                .and_then(|z| z.start_of_day())
                .expect("a month has a next month");
            let d = zoned.date();
            Period {
                label: format!("{:04}-{:02}", d.year(), d.month()),
                start: instant(&start),
                end: Some(instant(&end)),
            }
        }
    }
}

/// Where one cap stands at an instant: its period then, and that period's
/// account (zero when nothing was reserved in it yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub brand: BrandId,
    pub zone: Zone,
    pub purpose: Purpose,
    pub window: Window,
    /// The payee a counterparty cap bounds; `None`: the brand's cap.
    pub counterparty: Option<String>,
    pub period: String,
    /// The cap's declared limit (it may differ from the account's, if the
    /// cap changed after the period's last reservation).
    pub limit: Money,
    pub pending: Money,
    pub posted: Money,
    /// What a new reservation may still take (never below zero).
    pub left: Money,
}

/// Every cap of `brand` as it stands at `now`, in cap order.
pub fn standing(brand: &BrandId, budgets: &Budgets, accounts: &[Account], now: Timestamp) -> Vec<Standing> {
    budgets
        .caps
        .iter()
        .map(|cap| {
            let period = period_of(cap.window, &budgets.zone, now).label;
            let c = cap.limit.currency;
            let acc = accounts.iter().find(|a| {
                a.key.brand == *brand
                    && a.key.purpose == cap.purpose
                    && a.key.currency == c
                    && a.key.window == cap.window
                    && a.key.counterparty == cap.counterparty
                    && a.key.period == period
            });
            let (pending, posted) = acc.map_or((0, 0), |a| (a.pending, a.posted));
            Standing {
                brand: brand.clone(),
                zone: budgets.zone.clone(),
                purpose: cap.purpose,
                window: cap.window,
                counterparty: cap.counterparty.clone(),
                period,
                limit: cap.limit,
                pending: Money::new(pending, c),
                posted: Money::new(posted, c),
                left: Money::new((cap.limit.minor - pending - posted).max(0), c),
            }
        })
        .collect()
}

/// One account: a cap in one period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountKey {
    pub brand: BrandId,
    pub purpose: Purpose,
    pub currency: Currency,
    pub window: Window,
    /// A counterparty cap's payee; `None`: the brand's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    /// [`Period::label`].
    pub period: String,
}

/// A cap's name for people: `payout daily`, `payout daily cp-1`.
pub fn cap_name(purpose: Purpose, window: Window, counterparty: Option<&str>) -> String {
    match counterparty {
        None => format!("{} {}", purpose.as_str(), window.as_str()),
        Some(c) => format!("{} {} {c}", purpose.as_str(), window.as_str()),
    }
}

impl AccountKey {
    /// The name of the cap this account is a period of.
    pub fn cap_name(&self) -> String {
        cap_name(self.purpose, self.window, self.counterparty.as_deref())
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}:", self.brand, self.purpose.as_str(), self.currency, self.window.as_str())?;
        if let Some(c) = &self.counterparty {
            write!(f, "{c}:")?;
        }
        f.write_str(&self.period)
    }
}

/// An account's balances, in minor units of its currency. The invariant
/// `pending + posted ≤ limit` holds whenever a reservation was accepted
/// (a post of more than was reserved is booked as truth and flagged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub key: AccountKey,
    /// The cap's limit as of the account's last reservation.
    pub limit: i64,
    pub pending: i64,
    pub posted: i64,
}

impl Account {
    pub fn empty(key: AccountKey, limit: i64) -> Account {
        Account { key, limit, pending: 0, posted: 0 }
    }
    /// What a new reservation may still take.
    pub fn left(&self) -> i64 {
        self.limit - self.pending - self.posted
    }
}

/// What an intent asks to reserve when it opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    pub purpose: Purpose,
    pub amount: Money,
    /// Whom the money goes to, when the caps may name them (a payout's
    /// counterparty); its own caps count it beside the brand's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    Pending,
    Posted,
    Voided,
    /// Posted, then the money came back (a payment the bank reverted after
    /// it completed). The caps keep counting it: they bound what left.
    Reversed,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Posted => "posted",
            TransferState::Voided => "voided",
            TransferState::Reversed => "reversed",
        }
    }
}

/// A two-phase transfer: one intent's reservation and how it was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The intent's key.
    pub id: IdempotencyKey,
    pub brand: BrandId,
    pub purpose: Purpose,
    /// What was reserved.
    pub amount: Money,
    pub state: TransferState,
    /// What was posted (0 unless posted), in `amount`'s currency.
    pub posted: i64,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// The accounts it holds against (fixed when it is made: a cap changed
    /// later does not move money between periods).
    pub accounts: Vec<AccountKey>,
    /// When the reversal of a posted transfer was booked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversed_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BudgetError {
    #[error("unknown {what} {value:?} (known: {known})")]
    Unknown { what: &'static str, value: String, known: &'static str },
    #[error("{0}")]
    Invalid(String),
}

/// The accounts a reservation of `reserve` by `brand` at `at` holds
/// against, with each cap's limit; empty when no cap covers it.
pub fn accounts_for(brand: &BrandId, reserve: &Reserve, budgets: &Budgets, at: Timestamp) -> Vec<(AccountKey, i64)> {
    let mut out: Vec<(AccountKey, i64)> = budgets
        .caps_for(reserve.purpose, reserve.amount.currency, reserve.counterparty.as_deref())
        .map(|cap| {
            let key = AccountKey {
                brand: brand.clone(),
                purpose: cap.purpose,
                currency: cap.limit.currency,
                window: cap.window,
                counterparty: cap.counterparty.clone(),
                period: period_of(cap.window, &budgets.zone, at).label,
            };
            (key, cap.limit.minor)
        })
        .collect();
    out.sort();
    out
}

/// Makes the reservation `id` of `reserve` at `at` against `accounts`
/// (which must hold every key [`accounts_for`] names, loaded or empty), or
/// says which cap refuses it. Nothing changes on a refusal.
pub fn reserve(
    accounts: &mut BTreeMap<AccountKey, Account>,
    id: &IdempotencyKey,
    brand: &BrandId,
    reserve: &Reserve,
    budgets: &Budgets,
    at: Timestamp,
) -> Result<Transfer, String> {
    let amount = reserve.amount;
    if amount.minor <= 0 {
        return Err(format!("a reservation of {amount} is not positive"));
    }
    let keys = accounts_for(brand, reserve, budgets, at);
    if keys.is_empty() {
        return Err(format!(
            "no cap covers {} in {}: money of a purpose without a declared cap never moves",
            reserve.purpose.as_str(),
            amount.currency
        ));
    }
    for (key, limit) in &keys {
        let acc = accounts.get(key).cloned().unwrap_or_else(|| Account::empty(key.clone(), *limit));
        let held = acc.pending + acc.posted;
        if held.checked_add(amount.minor).is_none_or(|total| total > *limit) {
            let whom = key.counterparty.as_deref().map_or(String::new(), |c| format!(" {c}"));
            return Err(format!(
                "{} {}{whom} cap {} for {}: {} held ({} pending, {} posted) + {} > {}",
                key.window.as_str(),
                key.purpose.as_str(),
                Money::new(*limit, key.currency),
                key.period,
                Money::new(held, key.currency),
                Money::new(acc.pending, key.currency),
                Money::new(acc.posted, key.currency),
                amount,
                Money::new(*limit, key.currency),
            ));
        }
    }
    for (key, limit) in &keys {
        let acc = accounts.entry(key.clone()).or_insert_with(|| Account::empty(key.clone(), *limit));
        acc.limit = *limit;
        acc.pending += amount.minor;
        assert!(acc.pending > 0 && acc.posted >= 0 && acc.pending + acc.posted <= acc.limit, "{acc:?} after {id}");
    }
    Ok(Transfer {
        id: id.clone(),
        brand: brand.clone(),
        purpose: reserve.purpose,
        amount,
        state: TransferState::Pending,
        posted: 0,
        opened_at: at,
        resolved_at: None,
        accounts: keys.into_iter().map(|(k, _)| k).collect(),
        reversed_at: None,
    })
}

/// Posts a pending transfer with the amount read back from the world (the
/// rest of the reservation returns). A post of more than was reserved is
/// booked all the same (it is what happened) and the returned note says
/// so. Errors: not pending, or a currency other than the reservation's.
pub fn post(
    accounts: &mut BTreeMap<AccountKey, Account>,
    transfer: &mut Transfer,
    amount: Money,
    now: Timestamp,
) -> Result<Option<String>, String> {
    if transfer.state != TransferState::Pending {
        return Err(format!(
            "transfer {} is {}, not pending: resolved once only",
            transfer.id,
            transfer.state.as_str()
        ));
    }
    if amount.currency != transfer.amount.currency || amount.minor < 0 {
        return Err(format!("transfer {} reserved {}; cannot post {amount}", transfer.id, transfer.amount));
    }
    for key in &transfer.accounts {
        let acc =
            accounts.get_mut(key).ok_or_else(|| format!("account {key} of transfer {} is missing", transfer.id))?;
        acc.pending -= transfer.amount.minor;
        acc.posted += amount.minor;
        assert!(acc.pending >= 0 && acc.posted >= 0, "a reservation went negative: {acc:?} after {}", transfer.id);
    }
    transfer.state = TransferState::Posted;
    transfer.posted = amount.minor;
    transfer.resolved_at = Some(now);
    Ok((amount.minor > transfer.amount.minor)
        .then(|| format!("posted {amount}, more than the {} reserved", transfer.amount)))
}

/// Books the reversal of a posted transfer: the money came back. The
/// accounts do not change (the caps bound what left, gross). `Ok(false)`:
/// already reversed (a replayed write). Errors: not posted.
pub fn reverse(transfer: &mut Transfer, now: Timestamp) -> Result<bool, String> {
    match transfer.state {
        TransferState::Reversed => Ok(false),
        TransferState::Posted => {
            transfer.state = TransferState::Reversed;
            transfer.reversed_at = Some(now);
            Ok(true)
        }
        other => Err(format!("transfer {} is {}: only a posted transfer is reversed", transfer.id, other.as_str())),
    }
}

/// Charges `reserve` at once, as a reservation posted in full in the same
/// step: a cost known when it is incurred (a model call booked at the most
/// it can cost, before the call). Refused, with nothing changed, as
/// [`reserve`] refuses.
pub fn charge(
    accounts: &mut BTreeMap<AccountKey, Account>,
    id: &IdempotencyKey,
    brand: &BrandId,
    charged: &Reserve,
    budgets: &Budgets,
    at: Timestamp,
) -> Result<Transfer, String> {
    let mut t = reserve(accounts, id, brand, charged, budgets, at)?;
    post(accounts, &mut t, charged.amount, at).expect("a transfer just reserved posts its own amount");
    Ok(t)
}

/// Voids a pending transfer: its whole reservation returns.
pub fn void(
    accounts: &mut BTreeMap<AccountKey, Account>,
    transfer: &mut Transfer,
    now: Timestamp,
) -> Result<(), String> {
    if transfer.state != TransferState::Pending {
        return Err(format!(
            "transfer {} is {}, not pending: resolved once only",
            transfer.id,
            transfer.state.as_str()
        ));
    }
    for key in &transfer.accounts {
        let acc =
            accounts.get_mut(key).ok_or_else(|| format!("account {key} of transfer {} is missing", transfer.id))?;
        acc.pending -= transfer.amount.minor;
        assert!(acc.pending >= 0, "a reservation went negative: {acc:?} after voiding {}", transfer.id);
    }
    transfer.state = TransferState::Voided;
    transfer.resolved_at = Some(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUR: Currency = Currency::EUR;

    fn eur(minor: i64) -> Money {
        Money::new(minor, EUR)
    }

    fn ms(rfc3339: &str) -> Timestamp {
        let t: jiff::Timestamp = rfc3339.parse().unwrap();
        Timestamp(t.as_millisecond() as u64)
    }

    fn berlin(caps: Vec<Cap>) -> Budgets {
        Budgets::new(Zone::parse("Europe/Berlin").unwrap(), caps).unwrap()
    }

    fn cap(window: Window, limit: i64) -> Cap {
        Cap::brand(Purpose::Payout, window, eur(limit))
    }

    fn payout(minor: i64) -> Reserve {
        Reserve { purpose: Purpose::Payout, amount: eur(minor), counterparty: None }
    }

    #[test]
    fn days_follow_the_brands_zone_across_dst() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-29: clocks go 02:00 → 03:00 in Berlin; the day is 23 h long.
        let p = period_of(Window::Daily, &z, ms("2026-03-29T12:00:00Z"));
        assert_eq!(p.label, "2026-03-29");
        assert_eq!(p.start, ms("2026-03-28T23:00:00Z"), "midnight CET");
        assert_eq!(p.end, Some(ms("2026-03-29T22:00:00Z")), "next midnight is CEST");
        // 2026-10-25: 03:00 → 02:00; 25 h long.
        let p = period_of(Window::Daily, &z, ms("2026-10-25T12:00:00Z"));
        assert_eq!(p.end.unwrap().0 - p.start.0, 25 * 3_600_000);
        // 23:30 UTC on Dec 1 is already Dec 2 in Berlin.
        assert_eq!(period_of(Window::Daily, &z, ms("2026-12-01T23:30:00Z")).label, "2026-12-02");
        assert_eq!(period_of(Window::Daily, &Zone::utc(), ms("2026-12-01T23:30:00Z")).label, "2026-12-01");
        let m = period_of(Window::Monthly, &z, ms("2026-03-31T22:30:00Z"));
        assert_eq!(m.label, "2026-04", "00:30 CEST on April 1st");
        assert_eq!(m.start, ms("2026-03-31T22:00:00Z"));
        assert_eq!(m.end, Some(ms("2026-04-30T22:00:00Z")));
        assert_eq!(period_of(Window::Lifetime, &z, ms("2026-03-31T22:30:00Z")).end, None);
    }

    #[test]
    fn a_zone_must_be_known() {
        assert!(Zone::parse("Mars/Olympus").unwrap_err().to_string().contains("unknown time zone \"Mars/Olympus\""));
        assert!(serde_json::from_str::<Zone>("\"Europe/Nowhere\"").is_err());
        assert_eq!(serde_json::from_str::<Zone>("\"America/New_York\"").unwrap().as_str(), "America/New_York");
    }

    #[test]
    fn one_window_one_cap() {
        let z = Zone::utc();
        let e = Budgets::new(z.clone(), vec![cap(Window::Daily, 10), cap(Window::Daily, 20)]).unwrap_err();
        assert!(e.to_string().contains("two daily payout caps in EUR"), "{e}");
        assert!(Budgets::new(z.clone(), vec![cap(Window::Daily, -1)]).is_err());
        let usd = Cap::brand(Purpose::Payout, Window::Daily, Money::new(10, Currency::USD));
        assert!(Budgets::new(z, vec![cap(Window::Daily, 10), usd]).is_ok(), "one cap per currency");
    }

    #[test]
    fn no_cap_is_exceeded_and_every_resolution_is_once() {
        let b = berlin(vec![cap(Window::Daily, 1_000), cap(Window::Monthly, 2_500), cap(Window::Lifetime, 100_000)]);
        let brand = BrandId::default();
        let mut accs = BTreeMap::new();
        let day1 = ms("2026-12-02T10:00:00Z");
        let mut a = reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &payout(600), &b, day1).unwrap();
        assert_eq!(a.accounts.len(), 3, "daily, monthly and lifetime");
        let e = reserve(&mut accs, &IdempotencyKey::new("b"), &brand, &payout(500), &b, day1).unwrap_err();
        assert!(e.starts_with("daily payout cap 10.00 EUR for 2026-12-02: 6.00 EUR held"), "{e}");
        let before = accs.clone();
        assert!(reserve(&mut accs, &IdempotencyKey::new("b"), &brand, &payout(500), &b, day1).is_err());
        assert_eq!(accs, before, "a refusal changes nothing");
        // The last cent of the day fits exactly.
        let mut c = reserve(&mut accs, &IdempotencyKey::new("c"), &brand, &payout(400), &b, day1).unwrap();
        // Posting less than reserved returns the rest; voiding returns all.
        assert_eq!(post(&mut accs, &mut a, eur(550), day1), Ok(None));
        void(&mut accs, &mut c, day1).unwrap();
        assert!(post(&mut accs, &mut a, eur(550), day1).is_err(), "a second resolution fails");
        assert!(void(&mut accs, &mut c, day1).is_err());
        let daily = accs.values().find(|a| a.key.window == Window::Daily).unwrap();
        assert_eq!((daily.pending, daily.posted, daily.left()), (0, 550, 450));
        // The next day in Berlin starts at 23:00 UTC: a new daily account, the same month.
        let day2 = ms("2026-12-02T23:00:00Z");
        reserve(&mut accs, &IdempotencyKey::new("d"), &brand, &payout(1_000), &b, day2).unwrap();
        let e = reserve(&mut accs, &IdempotencyKey::new("e"), &brand, &payout(1), &b, day2);
        assert!(e.unwrap_err().starts_with("daily"), "the day is full");
        let f = reserve(&mut accs, &IdempotencyKey::new("f"), &brand, &payout(951), &b, ms("2026-12-03T23:00:00Z"));
        assert!(f.unwrap_err().starts_with("monthly payout cap 25.00 EUR for 2026-12"), "550 + 1000 + 951 > 2500");
    }

    #[test]
    fn uncovered_money_never_moves() {
        let b = berlin(vec![cap(Window::Daily, 1_000)]);
        let mut accs = BTreeMap::new();
        let brand = BrandId::default();
        let usd = Reserve { purpose: Purpose::Payout, amount: Money::new(1, Currency::USD), counterparty: None };
        let e = reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &usd, &b, Timestamp(0)).unwrap_err();
        assert!(e.contains("no cap covers payout in USD"), "{e}");
        let refund = Reserve { purpose: Purpose::Refund, amount: eur(1), counterparty: None };
        assert!(reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &refund, &b, Timestamp(0)).is_err());
        assert!(reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &payout(0), &b, Timestamp(0)).is_err());
        assert!(accs.is_empty());
    }

    #[test]
    fn a_cap_stands_in_its_current_period() {
        let b = berlin(vec![cap(Window::Daily, 1_000), cap(Window::Monthly, 5_000)]);
        let brand = BrandId::default();
        let mut accs = BTreeMap::new();
        let day1 = ms("2026-12-02T10:00:00Z");
        let mut t = reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &payout(300), &b, day1).unwrap();
        reserve(&mut accs, &IdempotencyKey::new("b"), &brand, &payout(200), &b, day1).unwrap();
        post(&mut accs, &mut t, eur(300), day1).unwrap();
        let all: Vec<Account> = accs.values().cloned().collect();
        let now: Vec<_> =
            standing(&brand, &b, &all, day1).into_iter().map(|s| (s.period, s.pending, s.posted, s.left)).collect();
        assert_eq!(
            now,
            vec![
                ("2026-12-02".into(), eur(200), eur(300), eur(500)),
                ("2026-12".into(), eur(200), eur(300), eur(4_500))
            ]
        );
        // The next Berlin day: a fresh daily account, the same month.
        let next = standing(&brand, &b, &all, ms("2026-12-02T23:00:00Z"));
        assert_eq!((next[0].period.as_str(), next[0].left), ("2026-12-03", eur(1_000)));
        assert_eq!(next[1].left, eur(4_500));
    }

    #[test]
    fn a_counterparty_cap_bounds_its_payee_beside_the_brands() {
        let only_cp1 = Cap { counterparty: Some("cp-1".into()), ..cap(Window::Daily, 300) };
        let b = berlin(vec![cap(Window::Daily, 1_000), only_cp1.clone()]);
        assert_eq!(b.describe(), "Europe/Berlin: payout daily 10.00 EUR, payout daily cp-1 3.00 EUR");
        let brand = BrandId::default();
        let mut accs = BTreeMap::new();
        let day = ms("2026-12-02T10:00:00Z");
        let to = |minor, cp: &str| Reserve { counterparty: Some(cp.into()), ..payout(minor) };
        let a = reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &to(200, "cp-1"), &b, day).unwrap();
        assert_eq!(a.accounts.len(), 2);
        assert_eq!(a.accounts[1].to_string(), "default:payout:EUR:daily:cp-1:2026-12-02");
        let e = reserve(&mut accs, &IdempotencyKey::new("b"), &brand, &to(101, "cp-1"), &b, day).unwrap_err();
        assert!(e.starts_with("daily payout cp-1 cap 3.00 EUR for 2026-12-02: 2.00 EUR held"), "{e}");
        // Another payee is bounded by the brand's cap alone.
        let c = reserve(&mut accs, &IdempotencyKey::new("c"), &brand, &to(800, "cp-2"), &b, day).unwrap();
        assert_eq!(c.accounts.len(), 1);
        let e = reserve(&mut accs, &IdempotencyKey::new("d"), &brand, &to(1, "cp-2"), &b, day).unwrap_err();
        assert!(e.starts_with("daily payout cap 10.00 EUR"), "{e}");
        // A cap on a payee alone covers that payee only: fail closed for the rest.
        let alone = berlin(vec![only_cp1.clone()]);
        assert!(reserve(&mut BTreeMap::new(), &IdempotencyKey::new("e"), &brand, &to(1, "cp-2"), &alone, day).is_err());
        assert!(reserve(&mut BTreeMap::new(), &IdempotencyKey::new("e"), &brand, &to(1, "cp-1"), &alone, day).is_ok());
        // Standing names the payee; two caps on one payee's window are refused.
        let all: Vec<Account> = accs.values().cloned().collect();
        let s = standing(&brand, &b, &all, day);
        assert_eq!((s[1].counterparty.as_deref(), s[1].left), (Some("cp-1"), eur(100)));
        let e = Budgets::new(Zone::utc(), vec![only_cp1.clone(), only_cp1]).unwrap_err();
        assert!(e.to_string().contains("two daily payout caps for cp-1"), "{e}");
        let empty = Cap { counterparty: Some(" ".into()), ..cap(Window::Daily, 1) };
        assert!(Budgets::new(Zone::utc(), vec![empty]).is_err());
        // Old rows (no payee field) still read.
        let old: AccountKey = serde_json::from_str(
            r#"{"brand":"default","purpose":"payout","currency":"EUR","window":"daily","period":"2026-12-02"}"#,
        )
        .unwrap();
        assert_eq!(old.counterparty, None);
    }

    #[test]
    fn an_over_post_is_booked_and_flagged() {
        let b = berlin(vec![cap(Window::Lifetime, 1_000)]);
        let mut accs = BTreeMap::new();
        let brand = BrandId::default();
        let mut t = reserve(&mut accs, &IdempotencyKey::new("a"), &brand, &payout(900), &b, Timestamp(0)).unwrap();
        let note = post(&mut accs, &mut t, eur(950), Timestamp(1)).unwrap();
        assert!(note.unwrap().contains("more than the 9.00 EUR reserved"));
        assert_eq!(accs.values().next().unwrap().posted, 950, "the truth is booked");
        let mut u = reserve(&mut accs, &IdempotencyKey::new("b"), &brand, &payout(40), &b, Timestamp(0)).unwrap();
        assert!(post(&mut accs, &mut u, Money::new(40, Currency::USD), Timestamp(1)).is_err());
    }
}
