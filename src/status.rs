//! `dlft status`: one screen of where a durable store stands, per brand:
//! intents per action and phase, live jobs per kind and the wait of the
//! oldest due one, schedules (last slot, breaker and why), the workers with
//! their host, pid and last heartbeat, the newest insights bucket read,
//! each sensor's last completed read, the shop mirror per store (orders
//! held, the newest change read), budgets where they stand, and the leak
//! counter. Read-only: it never
//! creates or migrates a store.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use dlft_core::envelope::budget::standing;
use dlft_core::ids::BrandId;
use dlft_core::store::Store;
use dlft_core::time::{Clock, Timestamp};
use dlft_live::SystemClock;
use dlft_live::store::{Engine, PoolOptions, Stats, open_pg, open_sqlite, redact};

/// `dlft status --store URL [--brand B] [--json]`.
pub async fn status(url: &str, brand: Option<&str>, as_json: bool) -> Result<()> {
    let brand = brand.map(BrandId::parse).transpose().map_err(anyhow::Error::msg)?;
    let opts = PoolOptions { max_connections: 1, existing_only: true, ..PoolOptions::default() };
    let now = SystemClock.now();
    let (workers, brands) = match Engine::of(url)? {
        Engine::Postgres => gather(open_pg(url, &opts).await?, brand.as_ref(), now).await?,
        Engine::Sqlite => gather(open_sqlite(url, &opts).await?, brand.as_ref(), now).await?,
    };
    let report = json!({ "store": redact(url), "at": iso(now), "workers": workers, "brands": brands });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// An instant as ISO-8601 UTC with milliseconds (the CLI's one format).
fn iso(t: Timestamp) -> String {
    super::iso(t.0)
}

/// Seconds from `t` to now, never negative.
fn age_s(now: Timestamp, t: i64) -> f64 {
    (now.0 as i64 - t).max(0) as f64 / 1000.0
}

async fn gather<S: Store + Stats>(s: S, only: Option<&BrandId>, now: Timestamp) -> Result<(Value, Value)> {
    let stats = s.stats().await?;
    let fresh = s.freshness().await?;
    let schedules = s.schedules().await?;
    let declared = s.budgets().await?;
    let accounts = s.accounts(only).await?;
    let workers: Vec<Value> = s
        .workers()
        .await?
        .into_iter()
        .map(|w| {
            json!({ "worker": w.worker.as_str(), "host": w.host, "pid": w.pid,
                    "incarnation": w.incarnation.0,
                    "beat_at": w.beat_at.map(iso),
                    "beat_age_s": w.beat_at.map(|b| age_s(now, b.0 as i64)) })
        })
        .collect();
    // Every brand any table names.
    let mut brands: BTreeSet<String> = BTreeSet::new();
    brands.extend(stats.depth.iter().map(|r| r.0.clone()));
    brands.extend(stats.intents.iter().map(|r| r.0.clone()));
    brands.extend(schedules.iter().map(|r| r.brand.to_string()));
    brands.extend(declared.iter().map(|(b, _)| b.to_string()));
    brands.extend(fresh.last_bucket.iter().map(|r| r.0.clone()));
    brands.extend(fresh.last_read.iter().map(|r| r.0.clone()));
    if let Some(b) = only {
        if !brands.contains(b.as_str()) {
            let known: Vec<&str> = brands.iter().map(String::as_str).collect();
            bail!("brand {b} has nothing in this store (brands: {})", known.join(", "));
        }
        brands.retain(|x| x == b.as_str());
    }
    let mut out = serde_json::Map::new();
    for b in &brands {
        let mut intents: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for (_, action, phase, n) in stats.intents.iter().filter(|r| &r.0 == b) {
            intents.entry(action.clone()).or_default().insert(phase.clone(), *n);
        }
        let mut queue: BTreeMap<String, Value> = BTreeMap::new();
        for (_, kind, state, n) in stats.depth.iter().filter(|r| &r.0 == b) {
            let e = queue.entry(kind.clone()).or_insert_with(|| json!({}));
            e[state] = json!(n);
        }
        for (_, kind, run_at) in fresh.oldest_available.iter().filter(|r| &r.0 == b) {
            let e = queue.entry(kind.clone()).or_insert_with(|| json!({}));
            // Due: its run_at has passed; how long it has waited since.
            e["oldest_due_wait_s"] = if *run_at <= now.0 as i64 { json!(age_s(now, *run_at)) } else { json!(0.0) };
        }
        let scheds: Vec<Value> = schedules
            .iter()
            .filter(|r| r.brand.as_str() == b)
            .map(|r| {
                json!({ "name": r.name, "enabled": r.enabled, "reason": r.reason,
                        "changed_at": iso(r.changed_at), "last_slot": r.last_slot.map(iso) })
            })
            .collect();
        let budgets: Vec<Value> = declared
            .iter()
            .filter(|(d, _)| d.as_str() == b)
            .flat_map(|(d, bud)| standing(d, bud, &accounts, now))
            .map(|r| {
                json!({ "purpose": r.purpose.as_str(), "window": r.window.as_str(), "counterparty": r.counterparty,
                        "period": r.period, "limit": r.limit.to_string(), "reserved": r.pending.to_string(),
                        "posted": r.posted.to_string(), "left": r.left.to_string() })
            })
            .collect();
        let leak: Vec<Value> = stats
            .spend_after_kill
            .iter()
            .filter(|r| &r.0 == b)
            .map(|(_, c, n)| json!({ "currency": c, "minor": n }))
            .collect();
        let last_bucket = fresh.last_bucket.iter().find(|r| &r.0 == b).map(|r| r.1);
        let last_read: BTreeMap<&str, Value> = fresh
            .last_read
            .iter()
            .filter(|r| &r.0 == b)
            .map(|(_, kind, t)| (kind.as_str(), json!({ "at": iso(Timestamp(*t as u64)), "age_s": age_s(now, *t) })))
            .collect();
        let mirror = shop_mirror(&s, &BrandId::parse(b).map_err(anyhow::Error::msg)?).await?;
        out.insert(
            b.clone(),
            json!({ "intents": intents, "queue": queue, "schedules": scheds, "budgets": budgets,
                    "shop_mirror": mirror,
                    "last_insights_bucket": last_bucket.map(|t| iso(Timestamp(t as u64))),
                    "last_read": last_read,
                    "spend_after_kill": leak }),
        );
    }
    Ok((Value::Array(workers), Value::Object(out)))
}

/// Per store of the brand's shop mirror: the orders it holds, the newest
/// change it has read, whether a pass is part way through its pages, and
/// the orders the shop sent that could not be read (how many, the latest).
async fn shop_mirror<S: Store>(s: &S, brand: &BrandId) -> Result<Value> {
    use dlft_core::jobs::mirror::{CURSOR_SCOPE, Cursor};
    let orders = dlft_core::jobs::mirror::orders(s, brand).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let rejected = dlft_core::jobs::mirror::rejected(s, brand).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = serde_json::Map::new();
    for (store, body) in s.state(brand, CURSOR_SCOPE).await? {
        let held = orders.iter().filter(|o| o.store == store).count();
        let cursor: Option<Cursor> = serde_json::from_str(&body).ok();
        let prefix = format!("{store}/");
        let bad: Vec<_> = rejected.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        let latest = bad
            .iter()
            .max_by_key(|(k, r)| (r.at, k.clone()))
            .map(|(k, r)| json!({ "order": &k[prefix.len()..], "why": r.why, "at": iso(r.at) }));
        out.insert(
            store,
            json!({ "orders": held,
                    "newest_change_read": cursor.as_ref().filter(|c| c.high.0 > 0).map(|c| iso(c.high)),
                    "mid_pass": cursor.as_ref().is_some_and(|c| c.after.is_some()),
                    "unreadable_orders": bad.len(),
                    "latest_unreadable": latest }),
        );
    }
    Ok(Value::Object(out))
}

/// The report for people.
fn text(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "{} at {}", r["store"].as_str().unwrap_or(""), r["at"].as_str().unwrap_or(""));
    let workers = r["workers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(o, "workers ({})", workers.len());
    for w in &workers {
        let beat = match w["beat_age_s"].as_f64() {
            Some(a) => format!("last beat {a:.1} s ago"),
            None => "no beat yet".into(),
        };
        let _ = writeln!(
            o,
            "  {:<24} {} pid {}  {beat}",
            w["worker"].as_str().unwrap_or(""),
            w["host"].as_str().unwrap_or(""),
            w["pid"]
        );
    }
    for (brand, b) in r["brands"].as_object().into_iter().flatten() {
        let _ = writeln!(o, "brand {brand}");
        let intents = b["intents"].as_object().cloned().unwrap_or_default();
        if intents.is_empty() {
            let _ = writeln!(o, "  intents    none");
        }
        for (action, phases) in &intents {
            let n = |p: &str| phases[p].as_i64().unwrap_or(0);
            let open = n("intended") + n("applied");
            let _ = writeln!(
                o,
                "  intents    {action:<8} committed {}, open {open}, abandoned {}{}",
                n("committed"),
                n("abandoned"),
                if n("abandoned") > 0 { "  (abandoned ones need an operator)" } else { "" }
            );
        }
        for (kind, q) in b["queue"].as_object().into_iter().flatten() {
            let states: Vec<String> =
                ["available", "running"].iter().filter_map(|s| q[*s].as_i64().map(|n| format!("{s} {n}"))).collect();
            let wait = q["oldest_due_wait_s"]
                .as_f64()
                .filter(|w| *w > 0.0)
                .map_or(String::new(), |w| format!(", oldest due waiting {w:.1} s"));
            let _ = writeln!(o, "  queue      {kind:<14} {}{wait}", states.join(", "));
        }
        for s in b["schedules"].as_array().into_iter().flatten() {
            let state = if s["enabled"] == true { "enabled" } else { "DISABLED" };
            let last = s["last_slot"].as_str().unwrap_or("never");
            let _ = writeln!(
                o,
                "  schedule   {:<16} {state:<8} last slot {last}; since {}: {}",
                s["name"].as_str().unwrap_or(""),
                s["changed_at"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or("")
            );
        }
        if let Some(t) = b["last_insights_bucket"].as_str() {
            let _ = writeln!(o, "  insights   newest bucket read {t}");
        }
        for (kind, r) in b["last_read"].as_object().into_iter().flatten() {
            let (at, age) = (r["at"].as_str().unwrap_or(""), r["age_s"].as_f64().unwrap_or(0.0));
            let _ = writeln!(o, "  sensor     {kind:<16} last read completed {at} ({age:.0} s ago)");
        }
        for (store, m) in b["shop_mirror"].as_object().into_iter().flatten() {
            let _ = writeln!(
                o,
                "  mirror     store {store}: {} orders, changes read through {}{}",
                m["orders"],
                m["newest_change_read"].as_str().unwrap_or("(none yet)"),
                if m["mid_pass"] == true { ", a pass part way" } else { "" }
            );
            if let Some(l) = m["latest_unreadable"].as_object() {
                let _ = writeln!(
                    o,
                    "  mirror     store {store}: {} orders unreadable, latest {} at {}: {}",
                    m["unreadable_orders"],
                    l["order"].as_str().unwrap_or(""),
                    l["at"].as_str().unwrap_or(""),
                    l["why"].as_str().unwrap_or("")
                );
            }
        }
        for c in b["budgets"].as_array().into_iter().flatten() {
            let whom = c["counterparty"].as_str().map_or(String::new(), |p| format!(" {p}"));
            let _ = writeln!(
                o,
                "  budget     {} {}{whom} {}: cap {}, reserved {}, posted {}, left {}",
                c["purpose"].as_str().unwrap_or(""),
                c["window"].as_str().unwrap_or(""),
                c["period"].as_str().unwrap_or(""),
                c["limit"].as_str().unwrap_or(""),
                c["reserved"].as_str().unwrap_or(""),
                c["posted"].as_str().unwrap_or(""),
                c["left"].as_str().unwrap_or("")
            );
        }
        let leak: Vec<String> = b["spend_after_kill"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{} minor units of {}", l["minor"], l["currency"].as_str().unwrap_or("")))
            .collect();
        let _ = writeln!(o, "  leak       {}", if leak.is_empty() { "0".to_string() } else { leak.join(", ") });
    }
    o
}
