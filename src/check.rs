//! `dlft check FILE`: a scenario, a runner config or a policy file checked
//! before it runs. What kind of file it is comes from its sections; every
//! problem is one line naming the file (and line and field where the file
//! is at fault), and the exit code is 2 when anything is wrong.
//!
//! A runner config is checked further than parsing: its secrets are set,
//! its store answers (a SQLite file's directory exists; PostgreSQL accepts
//! a connection), its ads platform's base URL answers HTTP, and each
//! payables folder exists or can be created. Nothing is created or written.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

/// What a file is, told by its top-level sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scenario,
    Config,
    Policy,
}

impl Kind {
    fn of(text: &str, file: &str) -> Result<Kind> {
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].lines().count().max(1));
                bail!("{file}:{line}: not TOML: {}", e.message())
            }
        };
        let has = |k: &str| table.contains_key(k);
        Ok(if has("runner") || has("meta") || has("store") {
            Kind::Config
        } else if has("world") || has("run") || has("faults") || has("assert") {
            Kind::Scenario
        } else if has("kill") || has("refund") || has("bandit") {
            Kind::Policy
        } else {
            bail!(
                "{file}: cannot tell what this file is: a scenario has [world] and [run], \
                 a runner config [runner] and [meta], a policy [kill], [refund] or [bandit]"
            )
        })
    }
}

/// Checks `path`; prints one line per check (or, with `json`, one JSON
/// document: `file`, `kind`, `ok`, `summary`, `checks` of `what`, `ok`,
/// `detail`, and `error` when it failed). Returns an error (exit 2) naming
/// every check that failed.
pub async fn check(path: &Path, json: bool) -> Result<()> {
    let file = path.display().to_string();
    let outcome = checked(path, &file).await;
    if json {
        let (kind, summary, checks, error) = match &outcome {
            Ok(r) => (Some(r.kind), r.summary.clone(), &r.checks[..], r.error()),
            Err(e) => (None, String::new(), &[][..], Some(crate::causes(e))),
        };
        let checks: Vec<_> = checks
            .iter()
            .map(|(what, r)| match r {
                Ok(d) => serde_json::json!({"what": what, "ok": true, "detail": d}),
                Err(w) => serde_json::json!({"what": what, "ok": false, "detail": w}),
            })
            .collect();
        let kind = kind.map(|k| format!("{k:?}").to_lowercase());
        let doc = serde_json::json!({"file": file, "kind": kind, "ok": error.is_none(), "summary": summary,
                                     "checks": checks, "error": error});
        println!("{doc}");
    } else if let Ok(r) = &outcome {
        println!("{file}: {}", r.summary);
        for (what, r) in &r.checks {
            match r {
                Ok(detail) => println!("  ok    {what}: {detail}"),
                Err(why) => println!("  FAIL  {what}: {why}"),
            }
        }
    }
    match outcome?.error() {
        None => Ok(()),
        Some(e) => bail!(e),
    }
}

/// What a check found: the kind of file, a summary line, and the further
/// checks of a runner config, each passed (with what it saw) or failed
/// (with why).
struct Checked {
    kind: Kind,
    summary: String,
    file: String,
    checks: Vec<(String, Result<String, String>)>,
}

impl Checked {
    fn error(&self) -> Option<String> {
        let failed: Vec<String> =
            self.checks.iter().filter_map(|(w, r)| r.as_ref().err().map(|why| format!("{w}: {why}"))).collect();
        let checks = if failed.len() == 1 { "check" } else { "checks" };
        (!failed.is_empty()).then(|| format!("{}: {} {checks} failed: {}", self.file, failed.len(), failed.join("; ")))
    }
}

async fn checked(path: &Path, file: &str) -> Result<Checked> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{file}: cannot read: {e}"))?;
    let done = |kind, summary: String| Checked { kind, summary, file: file.to_string(), checks: Vec::new() };
    match Kind::of(&text, file)? {
        Kind::Scenario => {
            let scn = dlft_sim::scenario::Scenario::parse(&text, path)?;
            Ok(done(Kind::Scenario, format!("scenario {:?}: ok ({} s simulated)", scn.name, scn.run.duration_s)))
        }
        Kind::Policy => {
            dlft_datasets::policy::parse(&text, path).map_err(anyhow::Error::msg)?;
            Ok(done(Kind::Policy, "policy: ok".into()))
        }
        Kind::Config => check_config(&text, file).await,
    }
}

async fn check_config(text: &str, file: &str) -> Result<Checked> {
    let cfg = dlft_live::config::RunConfig::parse(text, file)?;
    let mut checks = Vec::new();
    let mut report = |what: &str, result: Result<String, String>| checks.push((what.to_string(), result));
    for brand in cfg.brand_ids() {
        let var = &cfg.meta_of(&brand).token_env;
        let what = if brand.is_default() { "Meta token".to_string() } else { format!("Meta token of brand {brand}") };
        report(&what, cfg.meta_config_of(&brand, file).map(|_| format!("${var} is set")).map_err(|e| e.to_string()));
    }
    for brand in cfg.brand_ids() {
        let Some(p) = cfg.payouts_of(&brand) else { continue };
        let of = if brand.is_default() { String::new() } else { format!(" of brand {brand}") };
        let var = &p.token_env;
        let what = if cfg.refunds_of(&brand).is_some() || cfg.support_of(&brand).is_some() {
            "Revolut, shop, inbox and model secrets"
        } else {
            "Revolut token"
        };
        report(
            &format!("{what}{of}"),
            cfg.bank_of(&brand, file).map(|_| format!("${var} is set")).map_err(|e| e.to_string()),
        );
        let dir = Path::new(&p.payables_dir);
        let folder = if dir.is_dir() {
            Ok(format!("{} exists", dir.display()))
        } else if dir.parent().filter(|d| !d.as_os_str().is_empty()).is_none_or(Path::is_dir) {
            Ok(format!("{} will be created by `dlft run`", dir.display()))
        } else {
            Err(format!("{}: its parent directory does not exist", dir.display()))
        };
        report(&format!("payables folder{of}"), folder);
    }
    for brand in cfg.brand_ids() {
        // A brand that pays out had all its secrets read above (`bank_of`).
        if cfg.payouts_of(&brand).is_some() || (cfg.refunds_of(&brand).is_none() && cfg.support_of(&brand).is_none()) {
            continue;
        }
        let of = if brand.is_default() { String::new() } else { format!(" of brand {brand}") };
        report(
            &format!("shop, inbox and model secrets{of}"),
            cfg.bank_of(&brand, file).map(|_| "every variable named is set".to_string()).map_err(|e| e.to_string()),
        );
    }
    if let Some(var) = &cfg.meta.webhook_secret_env {
        report("webhook secret", cfg.webhook_secret(file).map(|_| format!("${var} is set")).map_err(|e| e.to_string()));
    }
    if cfg.brand_ids().iter().any(|b| cfg.support_of(b).is_some_and(|s| s.webhook_secret_env.is_some())) {
        report(
            "inbox webhook secrets",
            cfg.inbox_webhooks(file).map(|w| format!("{} set, whsec_ each", w.len())).map_err(|e| e.to_string()),
        );
    }
    if cfg.brand_ids().iter().any(|b| cfg.refunds_of(b).is_some_and(|r| r.webhook_secret_env.is_some())) {
        report(
            "shop webhook secrets",
            cfg.shop_webhooks(file).map(|w| format!("{} set", w.len())).map_err(|e| e.to_string()),
        );
    }
    if let Some(var) = &cfg.runner.metrics_token_env {
        report("metrics token", cfg.metrics_token(file).map(|_| format!("${var} is set")).map_err(|e| e.to_string()));
    }
    let store = match cfg.store_url(file) {
        Ok(url) => store_answers(&url).await,
        Err(e) => Err(e.to_string()),
    };
    report("store", store);
    report("ads platform", base_url_answers(&cfg.meta.base_url).await);
    Ok(Checked { kind: Kind::Config, summary: "runner config: parses".into(), file: file.to_string(), checks })
}

/// Whether the store would open, without creating or migrating anything.
async fn store_answers(url: &str) -> Result<String, String> {
    use dlft_live::store::{Engine, redact};
    match Engine::of(url).map_err(|e| e.to_string())? {
        Engine::Sqlite => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = Path::new(path.split('?').next().unwrap_or(path));
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!("{}: the directory {} does not exist", redact(url), dir.display()));
            }
            Ok(if path.exists() {
                format!("{} exists", redact(url))
            } else {
                format!("{} will be created by `dlft run`", redact(url))
            })
        }
        Engine::Postgres => {
            use sqlx::Connection;
            let connect = sqlx::PgConnection::connect(url);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(format!("{} accepts connections", redact(url)))
                }
                Ok(Err(e)) => Err(format!("{}: {e}", redact(url))),
                Err(_) => Err(format!("{}: no answer within 5 s", redact(url))),
            }
        }
    }
}

/// Whether anything answers HTTP at the platform's base URL (any status).
async fn base_url_answers(base: &str) -> Result<String, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
    match client.get(base).send().await {
        Ok(resp) => Ok(format!("{base} answers (HTTP {})", resp.status().as_u16())),
        Err(e) => Err(format!("{base}: {}", e.without_url())),
    }
}
