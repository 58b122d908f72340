//! # dlft-datasets
//!
//! History for backtests and off-policy evaluation, as Parquet files in a
//! catalog laid out `<kind>/<entity>/<start_ms>_<end_ms>.parquet`.
//!
//! - [`table`]: typed columns to and from Parquet (arrow), validated.
//! - [`catalog`]: the layout, overlap refusal, all-or-nothing writes.
//! - this module: the eight kinds' schemas and their typed loaders, which
//!   refuse bad rows by file and row.
//! - [`generate`]: history produced by the sim's world model.
//! - [`obd`]: the Open Bandit Dataset importer.
//! - [`policy`], [`backtest`], [`report`]: policy files, the parallel sweep
//!   runner over core's backtest engine, and its table and HTML report.
//!
//! arrow and parquet live here (and in the CLI), never in `core` or `sim`.

pub mod backtest;
pub mod catalog;
pub mod generate;
pub mod obd;
pub mod policy;
pub mod report;
pub mod table;

use std::collections::BTreeMap;
use std::path::Path;

use dlft_core::backtest::HistoryRow;
use dlft_core::estimate::ope::LoggedRound;
use dlft_core::ids::AdId;
use dlft_core::money::{Currency, Money};
use dlft_core::sense::claims::{ClaimRecord, Customer, Dispute};
use dlft_core::time::Timestamp;

use table::{Schema, Table, TableError, Ty};

/// Ad insights, one row per version of an ad's bucket. A row may be read
/// only once the backtest clock reaches `ts_available` (no look-ahead); a
/// later version of the same bucket (late conversions) supersedes it.
pub const INSIGHTS: Schema = Schema {
    kind: "insights",
    time_col: "ts_available",
    cols: &[
        ("ts_event", Ty::TimestampMs, "start of the bucket the row describes"),
        ("ts_available", Ty::TimestampMs, "when this version of the row became known"),
        ("ad_id", Ty::Utf8, "the ad"),
        ("spend_cents", Ty::Int64, "spend in minor units"),
        ("impressions", Ty::Int64, "impressions"),
        ("clicks", Ty::Int64, "clicks"),
        ("purchases", Ty::Int64, "purchases attributed so far"),
        ("revenue_cents", Ty::Int64, "revenue of those purchases in minor units"),
        ("currency", Ty::Utf8, "ISO 4217 code of the money columns"),
    ],
};

/// Bandit decision logs with the propensity of each decision. File metadata
/// `dlft.n_arms` and `dlft.n_positions` give the action space.
pub const BANDIT: Schema = Schema {
    kind: "bandit",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "decision time"),
        ("context", Ty::Utf8, "context features (JSON object)"),
        ("arm", Ty::Int64, "the chosen arm, 0-based"),
        ("position", Ty::Int64, "slot the arm was shown in, 0-based"),
        ("reward", Ty::Float64, "observed reward (click = 1)"),
        ("propensity", Ty::Float64, "probability the logging policy chose this arm here, in (0, 1]"),
        ("policy", Ty::Utf8, "the logging policy's name"),
    ],
};

pub const ORDERS: Schema = Schema {
    kind: "orders",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "order time"),
        ("order_id", Ty::Utf8, "the order"),
        ("ad_id", Ty::Utf8, "the ad it is attributed to"),
        ("amount_cents", Ty::Int64, "order value in minor units"),
        ("currency", Ty::Utf8, "ISO 4217 code"),
    ],
};

pub const REFUNDS: Schema = Schema {
    kind: "refunds",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "refund time"),
        ("order_id", Ty::Utf8, "the refunded order"),
        ("amount_cents", Ty::Int64, "refunded amount in minor units"),
        ("currency", Ty::Utf8, "ISO 4217 code"),
        ("reason", Ty::Utf8, "why"),
    ],
};

pub const SUPPORT: Schema = Schema {
    kind: "support",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "when the message arrived"),
        ("message_id", Ty::Utf8, "the message"),
        ("order_id", Ty::Utf8, "the order it is about (may be empty)"),
        ("channel", Ty::Utf8, "email | chat | instagram"),
        ("body", Ty::Utf8, "the customer's text, untrusted"),
    ],
};

pub const SHIPMENTS: Schema = Schema {
    kind: "shipments",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "when the status was reported"),
        ("order_id", Ty::Utf8, "the order"),
        ("tracking_id", Ty::Utf8, "carrier tracking number"),
        ("carrier", Ty::Utf8, "carrier"),
        ("status", Ty::Utf8, "label_created | in_transit | delivered | lost"),
    ],
};

/// Customers' refund claims, as a claims desk holds them, with the truth of
/// who made each where it is known (generated history; empty otherwise).
/// What the refund backtest replays.
pub const CLAIMS: Schema = Schema {
    kind: "claims",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "when the claim was opened"),
        ("claim_id", Ty::Utf8, "the desk's id: one refund per claim, ever"),
        ("store", Ty::Utf8, "the store the order is from"),
        ("order_id", Ty::Utf8, "the order"),
        ("claim", Ty::Utf8, "damaged | wrong_item | did_not_arrive | return_received"),
        ("claimed_cents", Ty::Int64, "what the customer asks back, in minor units"),
        ("order_total_cents", Ty::Int64, "the order's total, in minor units"),
        ("currency", Ty::Utf8, "ISO 4217 code"),
        ("tracking", Ty::Utf8, "unknown | moving | delivered | lost"),
        ("days_since_shipped", Ty::Int64, "days from shipping to the claim"),
        ("email", Ty::Utf8, "the customer's, as given"),
        ("phone", Ty::Utf8, "the customer's, as given (may be empty)"),
        ("address", Ty::Utf8, "the shipping address (may be empty)"),
        ("card", Ty::Utf8, "card BIN-last4-expiry (may be empty)"),
        ("label", Ty::Utf8, "who made it, in truth: honest | abuser | ring, or empty when unknown"),
    ],
};

/// Chargebacks on the brand's orders.
pub const DISPUTES: Schema = Schema {
    kind: "disputes",
    time_col: "ts",
    cols: &[
        ("ts", Ty::TimestampMs, "when the chargeback was initiated"),
        ("dispute_id", Ty::Utf8, "the dispute"),
        ("store", Ty::Utf8, "the store"),
        ("order_id", Ty::Utf8, "the charged-back order"),
        ("status", Ty::Utf8, "open | won | lost"),
        ("reason", Ty::Utf8, "the network's reason"),
        ("amount_cents", Ty::Int64, "disputed amount in minor units"),
        ("currency", Ty::Utf8, "ISO 4217 code"),
        ("email", Ty::Utf8, "the customer's, as given"),
        ("phone", Ty::Utf8, "the customer's (may be empty)"),
        ("address", Ty::Utf8, "the shipping address (may be empty)"),
        ("card", Ty::Utf8, "card BIN-last4-expiry (may be empty)"),
    ],
};

pub const ALL: [&Schema; 8] = [&INSIGHTS, &BANDIT, &ORDERS, &REFUNDS, &SUPPORT, &SHIPMENTS, &CLAIMS, &DISPUTES];

/// A snake_case name of one of core's enums (`wrong_item`, `delivered`).
fn enum_of<T: serde::de::DeserializeOwned>(t: &Table, row: usize, col: &str) -> Result<T, TableError> {
    let v = &t.strs(col)[row];
    serde_json::from_value(serde_json::Value::String(v.clone()))
        .map_err(|_| TableError::row(&t.path, row, format!("`{col}` = {v:?} is not one of the names it takes")))
}

fn customer_of(t: &Table, row: usize) -> Customer {
    Customer {
        email: t.strs("email")[row].clone(),
        phone: t.strs("phone")[row].clone(),
        address: t.strs("address")[row].clone(),
        card: t.strs("card")[row].clone(),
    }
}

/// Claims by entity (brand), each with its label (empty when unknown), in
/// file order. A claim asking back more than its order, or with an empty
/// id, store or order, is refused by file and row.
pub fn load_claims(root: &Path) -> Result<BTreeMap<String, Vec<(ClaimRecord, String)>>, TableError> {
    let mut out: BTreeMap<String, Vec<(ClaimRecord, String)>> = BTreeMap::new();
    for (entity, t) in load(root, &CLAIMS)? {
        let rows = out.entry(entity).or_default();
        for row in 0..t.len {
            let cur = Currency::parse(&t.strs("currency")[row]).expect("checked");
            let (claimed, total) = (t.ints("claimed_cents")[row], t.ints("order_total_cents")[row]);
            if claimed > total {
                return Err(TableError::row(&t.path, row, "`claimed_cents` is more than `order_total_cents`"));
            }
            for col in ["claim_id", "store", "order_id"] {
                if t.strs(col)[row].trim().is_empty() {
                    return Err(TableError::row(&t.path, row, format!("`{col}` is empty")));
                }
            }
            let days = u32::try_from(t.ints("days_since_shipped")[row])
                .map_err(|_| TableError::row(&t.path, row, "`days_since_shipped` does not fit in 32 bits"))?;
            let record = ClaimRecord {
                id: t.strs("claim_id")[row].clone(),
                store: t.strs("store")[row].clone(),
                order_id: t.strs("order_id")[row].clone(),
                claim: enum_of(&t, row, "claim")?,
                claimed: Money::new(claimed, cur),
                order_total: Money::new(total, cur),
                tracking: enum_of(&t, row, "tracking")?,
                days_since_shipped: days,
                customer: customer_of(&t, row),
                opened_at: Timestamp(t.ints("ts")[row] as u64),
                settled: None,
            };
            rows.push((record, t.strs("label")[row].clone()));
        }
    }
    Ok(out)
}

/// Disputes by entity (brand); a catalog without a `disputes` kind has none.
pub fn load_disputes(root: &Path) -> Result<BTreeMap<String, Vec<Dispute>>, TableError> {
    if !root.join(DISPUTES.kind).is_dir() {
        return Ok(BTreeMap::new());
    }
    let mut out: BTreeMap<String, Vec<Dispute>> = BTreeMap::new();
    for (entity, t) in load(root, &DISPUTES)? {
        let rows = out.entry(entity).or_default();
        for row in 0..t.len {
            let cur = Currency::parse(&t.strs("currency")[row]).expect("checked");
            rows.push(Dispute {
                id: t.strs("dispute_id")[row].clone(),
                store: t.strs("store")[row].clone(),
                order_id: t.strs("order_id")[row].clone(),
                status: enum_of(&t, row, "status")?,
                reason: t.strs("reason")[row].clone(),
                amount: Money::new(t.ints("amount_cents")[row], cur),
                customer: customer_of(&t, row),
                initiated_at: Timestamp(t.ints("ts")[row] as u64),
            });
        }
    }
    Ok(out)
}

/// Checks what every kind shares: non-negative timestamps and money, known
/// currencies. Row numbers are 0-based within the file.
fn check_common(t: &Table, schema: &Schema) -> Result<(), TableError> {
    for (name, ty, _) in schema.cols {
        match ty {
            Ty::TimestampMs => {
                if let Some(row) = t.ints(name).iter().position(|v| *v < 0) {
                    return Err(TableError::row(&t.path, row, format!("`{name}` is before 1970")));
                }
            }
            Ty::Int64 => {
                if let Some(row) = t.ints(name).iter().position(|v| *v < 0) {
                    let what = if name.ends_with("_cents") { "negative money" } else { "negative count" };
                    return Err(TableError::row(&t.path, row, format!("{what}: `{name}` = {}", t.ints(name)[row])));
                }
            }
            Ty::Utf8 if *name == "currency" => {
                for (row, c) in t.strs(name).iter().enumerate() {
                    Currency::parse(c).map_err(|e| TableError::row(&t.path, row, format!("`currency`: {e}")))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Loads and validates a whole kind.
pub fn load(root: &Path, schema: &Schema) -> Result<Vec<(String, Table)>, TableError> {
    let tables = catalog::load(root, schema)?;
    for (_, t) in &tables {
        check_common(t, schema)?;
    }
    Ok(tables)
}

/// Insights history by entity (brand), every version, in file order.
pub fn load_insights(root: &Path) -> Result<BTreeMap<String, Vec<HistoryRow>>, TableError> {
    let mut out: BTreeMap<String, Vec<HistoryRow>> = BTreeMap::new();
    for (entity, t) in load(root, &INSIGHTS)? {
        let rows = out.entry(entity).or_default();
        let (ev, av) = (t.ints("ts_event"), t.ints("ts_available"));
        for row in 0..t.len {
            let cur = Currency::parse(&t.strs("currency")[row]).expect("checked");
            if av[row] < ev[row] {
                return Err(TableError::row(&t.path, row, "`ts_available` is before `ts_event`"));
            }
            let purchases = u32::try_from(t.ints("purchases")[row])
                .map_err(|_| TableError::row(&t.path, row, "`purchases` does not fit in 32 bits"))?;
            let r = HistoryRow {
                ad: AdId::new(t.strs("ad_id")[row].clone()),
                ts_event: Timestamp(ev[row] as u64),
                ts_available: Timestamp(av[row] as u64),
                spend: Money::new(t.ints("spend_cents")[row], cur),
                impressions: t.ints("impressions")[row] as u64,
                clicks: t.ints("clicks")[row] as u64,
                purchases,
                revenue: Money::new(t.ints("revenue_cents")[row], cur),
            };
            if let Some(first) = rows.first()
                && first.spend.currency != cur
            {
                return Err(TableError::row(
                    &t.path,
                    row,
                    format!("currency {cur} differs from {}", first.spend.currency),
                ));
            }
            rows.push(r);
        }
    }
    Ok(out)
}

/// One entity's bandit log.
#[derive(Clone, Debug)]
pub struct BanditLog {
    pub entity: String,
    pub n_arms: usize,
    pub n_positions: usize,
    pub rounds: Vec<LoggedRound>,
    pub policies: Vec<String>,
}

fn meta_usize(t: &Table, key: &str) -> Result<usize, TableError> {
    let v = t.metadata.get(key).ok_or_else(|| TableError::file(&t.path, format!("missing file metadata `{key}`")))?;
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| TableError::file(&t.path, format!("file metadata `{key}` = {v:?} is not a positive integer")))
}

/// Bandit logs by entity, checked: propensities in (0, 1], arms and
/// positions inside the action space, finite rewards.
pub fn load_bandit(root: &Path) -> Result<Vec<BanditLog>, TableError> {
    let mut out: BTreeMap<String, BanditLog> = BTreeMap::new();
    for (entity, t) in load(root, &BANDIT)? {
        let (n_arms, n_positions) = (meta_usize(&t, "dlft.n_arms")?, meta_usize(&t, "dlft.n_positions")?);
        let log = out.entry(entity.clone()).or_insert_with(|| BanditLog {
            entity,
            n_arms,
            n_positions,
            rounds: Vec::new(),
            policies: Vec::new(),
        });
        if (log.n_arms, log.n_positions) != (n_arms, n_positions) {
            return Err(TableError::file(&t.path, "action space differs from the entity's other files"));
        }
        for row in 0..t.len {
            let bad = |what: String| Err(TableError::row(&t.path, row, what));
            let p = t.floats("propensity")[row];
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("propensity {p} is not in (0, 1]"));
            }
            let (arm, pos, reward) = (t.ints("arm")[row], t.ints("position")[row], t.floats("reward")[row]);
            if arm as usize >= n_arms {
                return bad(format!("arm {arm} is outside 0..{n_arms}"));
            }
            if pos as usize >= n_positions {
                return bad(format!("position {pos} is outside 0..{n_positions}"));
            }
            if !reward.is_finite() {
                return bad("reward is not finite".into());
            }
            log.rounds.push(LoggedRound {
                ts: Timestamp(t.ints("ts")[row] as u64),
                arm: arm as usize,
                position: pos as usize,
                reward,
                pscore: p,
            });
            log.policies.push(t.strs("policy")[row].clone());
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests;
