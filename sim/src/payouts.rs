//! Payouts in the world: each brand's payables (files of supplier invoices
//! arriving over time, some of them fraudulent, duplicated, half-written
//! or malformed), the bank that pays them ([`BankWorld`]: Revolut's
//! semantics) with its misbehaviour (lost replies after the payment, lost
//! requests, 429s, 5xx), and the port the loop reaches them through
//! ([`SimBank`], over either driver's wire).
//!
//! Everything is drawn from two streams of the seed (`PAYABLES` for the
//! files, `BANK_FAULTS` for the bank's replies; the bank's payment fates
//! have their own): a scenario without `[bank]` draws nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use dlft_core::envelope::payout::{Counterparty, iban};
use dlft_core::ids::BrandId;
use dlft_core::money::{Currency, Money};
use dlft_core::sense::bank::{Bank, BankError, BankTransaction, Payment, PaymentReply};
use dlft_core::sense::payables::{Payable, PayablesError, PayablesFile, PayablesSource, Settled, SourceError};
use dlft_core::time::{Clock, Millis, Timestamp};

use crate::bank::{BankConfig, BankWorld};
use crate::faults::{Fate, FaultRates, vendor_fate};
use crate::hosts::{PlatformState, Wire, lock};
use crate::rpc::RpcError;
use crate::scenario::{BankSection, Scenario};
use crate::world::draw;

/// The account brand `brand` pays from (`acc-default` in a one-brand run).
pub fn from_account(brand: &BrandId) -> String {
    format!("acc-{brand}")
}

/// A valid German IBAN for number `n` (check digits by ISO 13616).
pub fn iban_for(n: u64) -> String {
    let bban = format!("{:08}{:010}", 37_040_044, n);
    // Move "DE00" to the end, letters as numbers (D = 13, E = 14).
    let numeric = format!("{bban}131400");
    let rem = numeric.bytes().fold(0u64, |r, b| (r * 10 + u64::from(b - b'0')) % 97);
    let text = format!("DE{:02}{bban}", 98 - rem);
    iban(&text).expect("a valid IBAN by construction")
}

/// Counterparty `i` (1-based): `cp-i`, account `cpa-i`.
fn counterparty(i: u64, currency: Currency) -> Counterparty {
    Counterparty {
        id: format!("cp-{i}"),
        name: format!("Supplier {i}"),
        account_id: format!("cpa-{i}"),
        iban: iban_for(i),
        currency,
    }
}

/// Every brand's allow-list: `n` counterparties.
pub fn allow_list(n: u32, currency: Currency) -> Vec<Counterparty> {
    (1..=u64::from(n)).map(|i| counterparty(i, currency)).collect()
}

/// How an invoice was made: the checker's truth about which may be paid.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    Honest,
    /// A payee off the allow-list.
    Stranger,
    /// A known payee's name, other bank details.
    ChangedDetails,
}

#[derive(Clone, Debug)]
struct File {
    name: String,
    arrives: Timestamp,
    /// Seen as half-written until then.
    complete_at: Timestamp,
    payables: Result<Vec<Payable>, PayablesError>,
    settled: Option<Settled>,
}

/// One brand's payables source.
#[derive(Clone, Debug, Default)]
pub struct Payables {
    files: Vec<File>,
    /// Every invoice made, and how.
    pub invoices: BTreeMap<String, Kind>,
}

impl Payables {
    /// The files of `brand` over `[start, until)`, drawn from `rng`.
    fn draw(
        cfg: &BankSection,
        brand: &BrandId,
        currency: Currency,
        start: Timestamp,
        until: Timestamp,
        rng: &mut ChaCha8Rng,
    ) -> Payables {
        let mut out = Payables::default();
        let hours = until.since(start).0.div_ceil(3_600_000);
        let per_hour = draw(rng, cfg.files_per_hour);
        let mut n = 0u64;
        for _ in 0..hours * per_hour {
            n += 1;
            let arrives = start + Millis(rng.random_range(0..until.since(start).0.max(1)));
            let count = draw(rng, cfg.invoices_per_file);
            let mut rows = Vec::new();
            for i in 0..count {
                let invoice = format!("INV-{brand}-{n:04}-{i:02}");
                let roll = rng.random_range(0..100);
                let cp = rng.random_range(1..=u64::from(cfg.counterparties));
                let amount = Money::new(draw(rng, cfg.amount_cents) as i64, currency);
                let (kind, payee, details) = if roll < cfg.stranger_pct {
                    (Kind::Stranger, format!("cp-x{cp}"), iban_for(10_000 + cp))
                } else if roll < cfg.stranger_pct + cfg.changed_details_pct {
                    (Kind::ChangedDetails, format!("cp-{cp}"), iban_for(20_000 + n))
                } else {
                    (Kind::Honest, format!("cp-{cp}"), iban_for(cp))
                };
                out.invoices.insert(invoice.clone(), kind);
                rows.push(Payable { invoice, counterparty_id: payee, iban: details, amount });
            }
            let payables = if rng.random_range(0..100) < cfg.malformed_file_pct {
                for p in &rows {
                    out.invoices.remove(&p.invoice);
                }
                Err(PayablesError::Bad { row: 2, field: "amount".into(), message: "\"12,50\" is not a decimal".into() })
            } else {
                Ok(rows)
            };
            let half = rng.random_range(0..100) < cfg.half_written_pct;
            let complete_at = arrives + Millis(if half { cfg.half_written_ms } else { 0 });
            let copy = rng.random_range(0..100) < cfg.duplicate_file_pct;
            let copy_at = arrives + Millis(rng.random_range(0..=600_000));
            let name = format!("payables-{n:04}.csv");
            if copy {
                let copy_name = format!("payables-{n:04}-copy.csv");
                out.files.push(File {
                    name: copy_name,
                    arrives: copy_at,
                    complete_at: copy_at,
                    payables: payables.clone(),
                    settled: None,
                });
            }
            out.files.push(File { name, arrives, complete_at, payables, settled: None });
        }
        out.files.sort_by(|a, b| (a.arrives, &a.name).cmp(&(b.arrives, &b.name)));
        out
    }

    fn pending(&self, now: Timestamp) -> Vec<PayablesFile> {
        self.files
            .iter()
            .filter(|f| f.arrives <= now && f.settled.is_none())
            .map(|f| PayablesFile {
                name: f.name.clone(),
                payables: if now < f.complete_at {
                    Err(PayablesError::Incomplete("still being written".into()))
                } else {
                    f.payables.clone()
                },
            })
            .collect()
    }

    fn settle(&mut self, name: &str, how: &Settled) -> Result<(), SourceError> {
        let f = self.files.iter_mut().find(|f| f.name == name).ok_or_else(|| SourceError(format!("no file {name}")))?;
        match how {
            // Rewritten in place with the rows still owed.
            Settled::Keep(rows) if f.settled.is_none() => f.payables = Ok(rows.clone()),
            Settled::Keep(_) => {}
            // Moved once; a second settle of the same file changes nothing.
            done => {
                f.settled.get_or_insert_with(|| done.clone());
            }
        }
        Ok(())
    }
}

/// The bank host: the bank, every brand's payables, and how the bank
/// misbehaves.
pub struct BankHost {
    pub bank: BankWorld,
    pub payables: BTreeMap<BrandId, Payables>,
    pub cfg: BankSection,
    /// The bank's replies' fates: its own stream.
    pub rng: ChaCha8Rng,
    pub allow: Vec<Counterparty>,
    pub hung: u64,
    pub lost_replies: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub duplicate_requests: u64,
}

impl BankHost {
    pub fn new(scn: &Scenario, start: Timestamp, seed: u64) -> Option<Self> {
        use crate::run::{rng_for, stream};
        let cfg = scn.bank.clone()?;
        let currency = scn.currency();
        let mut bank = BankWorld::new(
            BankConfig {
                to_pending: Millis(cfg.to_pending_ms),
                to_settled: Millis(cfg.to_settled_ms),
                decline_pct: cfg.decline_pct,
                revert_pct: cfg.revert_pct,
                revert_after: Millis::from_secs(cfg.revert_after_s),
                ..BankConfig::default()
            },
            // The payments' fates: the bank's own stream.
            rng_for(seed, stream::BANK),
        );
        let allow = allow_list(cfg.counterparties, currency);
        for c in &allow {
            bank.add_counterparty(&c.id, &c.account_id);
        }
        // Payees someone added at the bank outside the loop (the invoices of
        // strangers name them): the bank would pay them; the allow-list must not.
        for i in 1..=cfg.counterparties {
            bank.add_counterparty(&format!("cp-x{i}"), &format!("cpa-x{i}"));
        }
        let until = start + Millis::from_secs(scn.run.duration_s - scn.run.heal_s);
        let mut payables_rng = rng_for(seed, stream::PAYABLES);
        let payables = scn
            .brand_ids()
            .into_iter()
            .map(|b| {
                let files = Payables::draw(&cfg, &b, currency, start, until, &mut payables_rng);
                (b, files)
            })
            .collect();
        Some(BankHost {
            bank,
            payables,
            cfg,
            rng: rng_for(seed, stream::BANK_FAULTS),
            allow,
            hung: 0,
            lost_replies: 0,
            rate_limited: 0,
            server_errors: 0,
            duplicate_requests: 0,
        })
    }

    /// Every invoice that must never be paid (off the allow-list, or with
    /// changed bank details), over all brands.
    pub fn fraudulent(&self) -> BTreeSet<&str> {
        self.payables
            .values()
            .flat_map(|p| p.invoices.iter())
            .filter(|(_, k)| **k != Kind::Honest)
            .map(|(i, _)| i.as_str())
            .collect()
    }
}

/// Bank and payables calls over the sim's wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BankRequest {
    Pay {
        payment: Payment,
    },
    Transaction {
        request_id: String,
        from: Timestamp,
    },
    Transactions {
        account: String,
        from: Timestamp,
        to: Timestamp,
    },
    Pending {
        brand: BrandId,
    },
    Settle {
        brand: BrandId,
        name: String,
        how: Settled,
    },
    /// The shop and the claims desk (`crate::refunds`).
    Shop {
        req: crate::refunds::ShopRequest,
    },
    /// The support inbox and the text model vendors (`crate::inbox`).
    Support {
        req: crate::inbox::SupportRequest,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BankReply {
    Paid(PaymentReply),
    Transaction(Option<BankTransaction>),
    Transactions(Vec<BankTransaction>),
    Pending(Vec<PayablesFile>),
    Settled,
    Shop(crate::refunds::ShopResponse),
    Support(crate::inbox::SupportResponse),
}

pub type BankResponse = Result<BankReply, BankError>;

/// How long a hung bank request holds its connection.
const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(120);

fn fate(h: &mut BankHost, has_effect: bool) -> Fate {
    let c = &h.cfg;
    let rates = FaultRates {
        lost_reply: c.lost_reply_pct,
        timeout: c.timeout_pct,
        limit: c.rate_limit_pct,
        server_error: c.server_error_pct,
    };
    vendor_fate(&mut h.rng, rates, has_effect)
}

fn apply(h: &mut BankHost, req: &BankRequest, now: Timestamp) -> BankResponse {
    match req {
        BankRequest::Pay { payment } => {
            let r = h.bank.pay(payment, now);
            h.duplicate_requests += u64::from(r == Err(BankError::DuplicateRequest));
            r.map(BankReply::Paid)
        }
        BankRequest::Transaction { request_id, from } => {
            Ok(BankReply::Transaction(h.bank.by_request_id(request_id, *from, now)))
        }
        BankRequest::Transactions { account, from, to } => {
            let mut rows: Vec<BankTransaction> = h
                .bank
                .transactions(now)
                .into_iter()
                .filter(|t| t.created_at >= *from && t.created_at < *to)
                .filter(|t| h.bank.payment(&t.id).is_some_and(|p| &p.account_id == account))
                .collect();
            rows.reverse();
            rows.truncate(dlft_core::sense::bank::LIST_MAX);
            Ok(BankReply::Transactions(rows))
        }
        BankRequest::Pending { brand } => {
            Ok(BankReply::Pending(h.payables.get(brand).map(|p| p.pending(now)).unwrap_or_default()))
        }
        BankRequest::Shop { .. } | BankRequest::Support { .. } => unreachable!("served by their own hosts"),
        BankRequest::Settle { brand, name, how } => match h.payables.get_mut(brand) {
            Some(p) => p
                .settle(name, how)
                .map(|()| BankReply::Settled)
                .map_err(|e| BankError::Rejected { code: 404, message: e.to_string() }),
            None => Err(BankError::Rejected { code: 404, message: format!("no payables of brand {brand}") }),
        },
    }
}

/// What the bank host does with one request that reached it, on any
/// driver (`None`: no reply). The payables source (the brand's back
/// office) only has the network's faults; the bank has its own too.
pub async fn serve_bank_request<C: Clock>(
    platform: Arc<Mutex<PlatformState>>,
    clock: C,
    req: BankRequest,
) -> Option<BankResponse> {
    let req = match req {
        BankRequest::Shop { req } => {
            if crate::inbox::holds_order(&lock(&platform), &req) {
                return crate::inbox::serve_support_shop(platform, clock, req).await.map(|r| Ok(BankReply::Shop(r)));
            }
            return crate::refunds::serve_shop_request(platform, clock, req).await.map(|r| Ok(BankReply::Shop(r)));
        }
        BankRequest::Support { req } => {
            return crate::inbox::serve_support_request(platform, clock, req).await.map(|r| Ok(BankReply::Support(r)));
        }
        req => req,
    };
    let is_bank =
        matches!(req, BankRequest::Pay { .. } | BankRequest::Transaction { .. } | BankRequest::Transactions { .. });
    let (fate, latency) = {
        let mut p = lock(&platform);
        let h = p.bank.as_mut()?;
        let latency = Millis(draw(&mut h.rng, h.cfg.latency_ms));
        let fate = if is_bank { fate(h, matches!(req, BankRequest::Pay { .. })) } else { Fate::Serve };
        (fate, latency)
    };
    tokio::time::sleep(latency.as_std()).await;
    // Decided under the lock, waited out after it.
    let reply = {
        let mut p = lock(&platform);
        let h = p.bank.as_mut()?;
        let now = clock.now();
        match fate {
            Fate::Serve => Some(apply(h, &req, now)),
            Fate::Hang => {
                h.hung += 1;
                None
            }
            Fate::LoseReply => {
                h.lost_replies += 1;
                let _ = apply(h, &req, now);
                None
            }
            Fate::Limit => {
                h.rate_limited += 1;
                Some(Err(BankError::RateLimited { retry_after: Millis(1_000) }))
            }
            Fate::ServerError { applied } => {
                h.server_errors += 1;
                if applied {
                    let _ = apply(h, &req, now);
                }
                Some(Err(BankError::Server { status: 503 }))
            }
        }
    };
    if reply.is_none() {
        tokio::time::sleep(HANG_FOR).await;
    }
    reply
}

/// One brand's bank account and payables source over a simulated wire.
#[derive(Clone, Debug)]
pub struct SimBank<W> {
    pub wire: W,
    pub brand: BrandId,
    /// The brand's account (what its statement lists).
    pub account: String,
    /// Whether the brand has a parcel tracker (the scenario's `[shop] tracker`).
    pub tracker: bool,
    /// The stores its shop mirror reads (the scenario's `[shop] mirror`).
    pub stores: Vec<String>,
}

fn bank_error(e: RpcError) -> BankError {
    match e {
        RpcError::Timeout | RpcError::Io(_) => BankError::Timeout,
        RpcError::Frame(m) => BankError::Garbled(m),
    }
}

impl<W: Wire> SimBank<W> {
    /// `brand`'s bank and payables over `wire`.
    pub fn new(wire: W, brand: BrandId) -> SimBank<W> {
        Self::with_tracker(wire, brand, false)
    }

    /// `brand`'s bank, payables, shop, desk and (with `tracker`) parcel tracker over `wire`.
    pub fn with_tracker(wire: W, brand: BrandId, tracker: bool) -> SimBank<W> {
        let account = from_account(&brand);
        SimBank { wire, brand, account, tracker, stores: Vec::new() }
    }

    /// The same, with a shop mirror reading `stores`.
    #[must_use]
    pub fn mirroring(mut self, stores: Vec<String>) -> SimBank<W> {
        self.stores = stores;
        self
    }

    async fn call(&self, req: BankRequest) -> Result<BankReply, BankError> {
        self.wire.bank(req).await.map_err(bank_error)?
    }
}

impl<W: Wire> Bank for SimBank<W> {
    async fn pay(&self, payment: &Payment) -> Result<PaymentReply, BankError> {
        match self.call(BankRequest::Pay { payment: payment.clone() }).await? {
            BankReply::Paid(r) => Ok(r),
            other => Err(BankError::Garbled(format!("{other:?}"))),
        }
    }
    async fn transaction_by_request_id(
        &self,
        request_id: &str,
        from: Timestamp,
    ) -> Result<Option<BankTransaction>, BankError> {
        match self.call(BankRequest::Transaction { request_id: request_id.into(), from }).await? {
            BankReply::Transaction(t) => Ok(t),
            other => Err(BankError::Garbled(format!("{other:?}"))),
        }
    }
    async fn transactions(&self, from: Timestamp, to: Timestamp) -> Result<Vec<BankTransaction>, BankError> {
        match self.call(BankRequest::Transactions { account: self.account.clone(), from, to }).await? {
            BankReply::Transactions(t) => Ok(t),
            other => Err(BankError::Garbled(format!("{other:?}"))),
        }
    }
}

impl<W: Wire> PayablesSource for SimBank<W> {
    async fn pending(&self) -> Result<Vec<PayablesFile>, SourceError> {
        match self.call(BankRequest::Pending { brand: self.brand.clone() }).await {
            Ok(BankReply::Pending(files)) => Ok(files),
            Ok(other) => Err(SourceError(format!("unexpected reply {other:?}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
    async fn settle(&self, name: &str, how: &Settled) -> Result<(), SourceError> {
        let req = BankRequest::Settle { brand: self.brand.clone(), name: name.into(), how: how.clone() };
        match self.call(req).await {
            Ok(BankReply::Settled) => Ok(()),
            Ok(other) => Err(SourceError(format!("unexpected reply {other:?}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ibans_are_valid_and_distinct() {
        let a = iban_for(1);
        assert_eq!(a.len(), 22);
        assert_ne!(a, iban_for(2));
        assert!(iban(&a).is_ok());
    }
}
