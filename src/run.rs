//! `dlft run --config dlft.toml`: the production runner. Wiring only: the
//! worker is core's (the same one the sim runs), the store and the Meta
//! adapter are live's.
//!
//! - The store is chosen by URL (`sqlite://…` by default, `postgres://…`);
//!   migrations run at start-up, a newer schema is refused.
//! - `runner.workers` workers per process, ids `{name}-{i}`; several
//!   processes on one PostgreSQL share the queue safely (SKIP LOCKED claims,
//!   fenced writes).
//! - SIGTERM or Ctrl-C: stop claiming, hand every claim back, exit 0.
//! - Worker identity: each worker beats its presence (host, pid) into the
//!   store. A process whose worker ids are held by a live process (another
//!   pid on this host that is still running, or a beat within one lease from
//!   another host) refuses to start and says who holds them. A worker that
//!   finds itself replaced (a newer boot of its id) stops at once, and the
//!   process logs it as an error and exits 1: never a silent stall.
//! - `GET /health`: 200 or 503 with a JSON body: store reachable, each
//!   worker's state and the age of its last claim round, claim and beat, the
//!   age of the last successful platform call, open breakers. 503 when the
//!   store does not answer, a worker stopped or was replaced, or a worker
//!   has not completed a claim round within `3 × lease_ms` (a stall).
//! - Every state transition the store records is logged through `tracing`.
//! - `GET /metrics` (Prometheus text), like `/health`, on a loopback address.
//! - Fault injection for the real crash test: `DLFT_HOLD_AT=<probe site>`
//!   (e.g. `kill_after_pause`) stops the first worker that reaches that site
//!   there, after logging `held at probe site`, so a test can SIGKILL the
//!   process between two phases of a kill. Unset in production: the probe
//!   then does nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tracing::{error, info, warn};

use dlft_core::config::PresenceConfig;
use dlft_core::ids::WorkerId;
use dlft_core::jobs::Ports;
use dlft_core::probe::{Probe, Site};
use dlft_core::store::Store;
use dlft_core::telemetry::{Block, EventKind};
use dlft_core::time::{Clock, Millis, Timestamp};
use dlft_core::worker::{Pulse, Tenant, Worker};
use dlft_live::SystemClock;
use dlft_live::config::RunConfig;
use dlft_live::meta::{MetaAds, Secret};
use dlft_live::store::{Engine, PoolOptions, Stats, open_pg, open_sqlite, redact};

/// How `dlft run` writes its log lines to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (colours on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`),
    /// for a log shipper.
    Json,
}

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Loads the config, opens the store, runs until SIGTERM.
pub async fn run(config: &Path) -> Result<()> {
    let file = config.display().to_string();
    let cfg = RunConfig::load(config)?;
    let url = cfg.store_url(&file)?;
    let meta = cfg.meta_config(&file)?;
    // Every other brand's account, each with its own token (read now: a
    // missing one stops the start, before the store is touched).
    let mut tenants = std::collections::BTreeMap::new();
    for brand in cfg.brand_ids().into_iter().filter(|b| !b.is_default()) {
        let meta = cfg.meta_config_of(&brand, &file)?;
        tenants
            .insert(brand.clone(), Arc::new(MetaAds::new(meta).context("building the HTTP client")?.for_brand(brand)));
    }
    // Every brand's bank and payables folder (secrets read now, too).
    let mut banks = std::collections::BTreeMap::new();
    for brand in cfg.brand_ids() {
        let bank = cfg.bank_of(&brand, &file)?;
        banks.insert(brand, bank);
    }
    let webhook_secret = WebhookSecrets {
        meta: cfg.webhook_secret(&file)?,
        inboxes: cfg.inbox_webhooks(&file)?,
        shops: cfg.shop_webhooks(&file)?,
        metrics: cfg.metrics_token(&file)?,
    };
    let probe = HoldProbe::from_env()?; // refuse a bad value before touching the store
    for (brand, bank) in &banks {
        if let Some(p) = &bank.payables {
            std::fs::create_dir_all(&p.dir)
                .with_context(|| format!("{file}: creating brand {brand}'s payables folder {}", p.dir.display()))?;
            info!(brand = %brand, folder = %p.dir.display(), "payouts: reading payables from this folder");
        }
    }
    // Every event row this process writes names it, so that it logs its
    // own workers' rows and not every other runner's on the same store.
    dlft_live::store::set_origin(origin_of(&cfg.runner.name));
    let opts = PoolOptions { max_connections: cfg.store.max_connections, ..PoolOptions::default() };
    let brands: Vec<String> = cfg.brand_ids().iter().map(ToString::to_string).collect();
    info!(store = %redact(&url), workers = cfg.runner.workers, name = %cfg.runner.name, brands = %brands.join(","),
          origin = %dlft_live::store::origin().unwrap_or_default(), "starting");
    let ads =
        Arc::new(MetaAds::new(meta).context("building the HTTP client")?.for_brand(dlft_core::ids::BrandId::default()));
    let accounts = Accounts { default: ads, tenants, banks };
    match Engine::of(&url)? {
        Engine::Postgres => serve(open_pg(&url, &opts).await?, &cfg, accounts, probe, webhook_secret).await,
        Engine::Sqlite => serve(open_sqlite(&url, &opts).await?, &cfg, accounts, probe, webhook_secret).await,
    }
}

/// `dlft migrate --store URL`: applies the embedded migrations and exits.
pub async fn migrate(url: &str, json: bool) -> Result<()> {
    let opts = PoolOptions { max_connections: 1, ..PoolOptions::default() };
    match Engine::of(url)? {
        Engine::Postgres => drop(open_pg(url, &opts).await?),
        Engine::Sqlite => drop(open_sqlite(url, &opts).await?),
    }
    if json {
        println!("{}", serde_json::json!({"store": redact(url), "schema_version": dlft_live::store::SCHEMA_VERSION}));
    } else {
        println!("{}: schema at version {}", redact(url), dlft_live::store::SCHEMA_VERSION);
    }
    Ok(())
}

/// The variable that names a probe site to hold at (fault injection).
pub const HOLD_AT_VAR: &str = "DLFT_HOLD_AT";

/// The production probe, which can be told to hold at one site (see the
/// module docs). The first worker to reach the site stays there forever.
#[derive(Clone)]
struct HoldProbe {
    site: Option<Site>,
    taken: Arc<AtomicBool>,
}

impl HoldProbe {
    #[allow(clippy::disallowed_methods, reason = "fault injection is configured from the environment")]
    fn from_env() -> Result<HoldProbe> {
        let site = match std::env::var(HOLD_AT_VAR) {
            Ok(v) if !v.is_empty() => {
                let site: Site = serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                    let names: Vec<String> = Site::ALL
                        .iter()
                        .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
                        .collect();
                    anyhow::anyhow!("{HOLD_AT_VAR}={v:?} is not a probe site; one of: {}", names.join(", "))
                })?;
                warn!(?site, "fault injection: the first worker to reach this probe site will hold there");
                Some(site)
            }
            _ => None,
        };
        Ok(HoldProbe { site, taken: Arc::new(AtomicBool::new(false)) })
    }
}

impl Probe for HoldProbe {
    fn reached(&self, site: Site, entity: &str) -> impl std::future::Future<Output = ()> + Send {
        let hold = self.site == Some(site) && !self.taken.swap(true, Ordering::SeqCst);
        if hold {
            warn!(?site, entity, "held at probe site ({HOLD_AT_VAR})");
        }
        async move {
            if hold {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Worker RNGs (retry jitter) are seeded from the worker id: reproducible,
/// and different per worker.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The loop ran and stopped on its own (a worker was replaced): exit 1,
/// where a refusal to start (bad input, ids in use) exits 2.
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stopped {}

/// This process's name on the event rows it writes: `runner.name/pid`.
fn origin_of(name: &str) -> String {
    format!("{name}/{}", std::process::id())
}

/// This machine's name, as the store records it beside the pid.
#[allow(clippy::disallowed_methods, reason = "identity comes from the operating system")]
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether `pid` on this host is a running `dlft` process (not a zombie,
/// not a reused pid of another program).
#[allow(clippy::disallowed_methods, reason = "liveness comes from the operating system")]
fn dlft_alive(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else { return false };
    // Field 3, after the parenthesised command name, is the state.
    let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    !zombie && String::from_utf8_lossy(argv0).contains("dlft")
}

/// Who holds `ids` right now, if a live process does: refuses to start
/// rather than replace a running worker (two processes with the same
/// `runner.name`: a deploy overlap, a debug run).
async fn check_ids_free<S: Store>(store: &S, ids: &[WorkerId], host: &str, live_for: Millis) -> Result<()> {
    let rows = store.workers().await.context("reading the store's workers")?;
    let now = SystemClock.now();
    let me = std::process::id();
    for row in rows.iter().filter(|r| ids.contains(&r.worker)) {
        let Some(beat) = row.beat_at else { continue };
        let age = now.since(beat);
        let live = if row.host == host { row.pid != me && dlft_alive(row.pid) } else { age < live_for };
        if live {
            error!(worker = %row.worker, holder_host = %row.host, holder_pid = row.pid, last_beat_ms_ago = age.0,
                   "worker id in use by a live process; refusing to start");
            anyhow::bail!(
                "worker id {} is in use by a live process: pid {} on {}, last beat {} ms ago. Stop that process, \
                 or give this one another [runner] name",
                row.worker,
                row.pid,
                row.host,
                age.0
            );
        }
    }
    Ok(())
}

/// What `/health` reads.
#[derive(Clone)]
struct Health<S> {
    store: S,
    ads: Arc<MetaAds>,
    workers: Vec<(String, Arc<Pulse>)>,
    stall_after: Millis,
}

async fn health<S: Store>(State(h): State<Health<S>>) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    use serde_json::json;
    let now = SystemClock.now();
    let ago = |t: Option<Timestamp>| t.map(|t| now.since(t).0);
    let mut problems: Vec<String> = Vec::new();
    let schedules = tokio::time::timeout(Duration::from_secs(2), h.store.schedules()).await;
    let (store, breakers) = match schedules {
        Ok(Ok(rows)) => {
            let open: Vec<String> = rows.into_iter().filter(|r| !r.enabled).map(|r| r.name).collect();
            (json!({"reachable": true}), open)
        }
        Ok(Err(e)) => {
            problems.push(format!("store: {e}"));
            (json!({"reachable": false, "error": e.to_string()}), Vec::new())
        }
        Err(_) => {
            problems.push("store: no answer within 2 s".into());
            (json!({"reachable": false, "error": "no answer within 2 s"}), Vec::new())
        }
    };
    let workers: Vec<serde_json::Value> = h
        .workers
        .iter()
        .map(|(id, p)| {
            let state = match p.state.load(Ordering::SeqCst) {
                Pulse::RUNNING => "running",
                Pulse::STOPPED => "stopped",
                _ => "replaced",
            };
            let round = ago(p.claim_round_at.get());
            if state != "running" {
                problems.push(format!("worker {id} {state}"));
            } else if round.is_none_or(|ms| ms > h.stall_after.0) {
                problems.push(format!("worker {id}: no claim round for over {} ms", h.stall_after.0));
            }
            json!({
                "id": id,
                "state": state,
                "last_claim_round_ms_ago": round,
                "last_claim_ms_ago": ago(p.claimed_at.get()),
                "last_beat_ms_ago": ago(p.beat_at.get()),
            })
        })
        .collect();
    let status = if problems.is_empty() { "ok" } else { "unhealthy" };
    let body = json!({
        "status": status,
        "problems": problems,
        "store": store,
        "workers": workers,
        "platform": {"last_ok_ms_ago": ago(h.ads.last_ok())},
        "breakers_open": breakers,
    });
    let code =
        if problems.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body))
}

/// Every brand's ads adapter: the default brand's, and each other brand's.
struct Accounts {
    default: Arc<MetaAds>,
    tenants: std::collections::BTreeMap<dlft_core::ids::BrandId, Arc<MetaAds>>,
    /// Every brand's bank and payables (one that pays nobody where none is configured).
    banks: std::collections::BTreeMap<dlft_core::ids::BrandId, dlft_live::payouts::LiveBank>,
}

async fn serve<S>(
    store: S,
    cfg: &RunConfig,
    accounts: Accounts,
    probe: HoldProbe,
    webhook_secret: WebhookSecrets,
) -> Result<()>
where
    S: Store + Stats + Clone + Send + Sync + 'static,
{
    let ads = accounts.default.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let host = host_name();
    let wcfgs: Vec<_> = (0..cfg.runner.workers).map(|i| cfg.worker_config(i)).collect();
    let lease_for = wcfgs.first().map_or(Millis(0), |w| w.lease_for);
    let ids: Vec<WorkerId> = wcfgs.iter().map(|w| w.worker.clone()).collect();
    // A worker silent for a whole lease is as dead as its leases.
    check_ids_free(&store, &ids, &host, lease_for).await?;
    // The file is the truth of each brand's budgets: declare them (a brand
    // without a [budgets] section declares no caps, and moves no money).
    for brand in cfg.brand_ids() {
        let budgets = cfg.budgets_of(&brand);
        store.set_budgets(&brand, &budgets, SystemClock.now()).await.context("declaring budgets")?;
        info!(brand = %brand, budgets = %budgets.describe(), "budgets");
    }
    // One line saying what this start resumes: the store's open work.
    match store.stats().await {
        Ok(s) => info!(resuming = %resuming(&s), "resuming"),
        Err(e) => warn!(error = %e, "resuming: the store's open work could not be read"),
    }
    let pulses: Vec<Arc<Pulse>> = ids.iter().map(|_| Arc::new(Pulse::default())).collect();
    let listener = tokio::net::TcpListener::bind(cfg.runner.http)
        .await
        .with_context(|| format!("binding the health/metrics address {}", cfg.runner.http))?;
    info!(addr = %listener.local_addr()?, "health and metrics");
    let health_state = Health {
        store: store.clone(),
        ads: ads.clone(),
        workers: ids.iter().map(ToString::to_string).zip(pulses.iter().cloned()).collect(),
        stall_after: Millis(lease_for.0 * 3),
    };
    let own_events = OwnEvents::default();
    let mut app = Router::new().route("/health", get(health::<S>)).with_state(health_state).merge(
        Router::new().route("/metrics", get(metrics::<S>)).with_state(Scrape {
            store: store.clone(),
            token: webhook_secret.metrics.clone().map(Arc::new),
            own: own_events.clone(),
        }),
    );
    if !webhook_secret.inboxes.is_empty() {
        let mut brands = std::collections::BTreeMap::new();
        for (brand, secret, inbox) in webhook_secret.inboxes {
            info!(brand = %brand, inbox = %inbox, "webhooks: POST /webhooks/agentmail/{brand} (Svix-signed)");
            brands.insert(brand, (secret, inbox));
        }
        let hooks = Router::new()
            .route("/webhooks/agentmail/{brand}", post(agentmail_webhook::<S>))
            .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_MAX))
            .with_state(MailHooks { store: store.clone(), brands: Arc::new(brands) });
        app = app.merge(hooks);
    }
    if !webhook_secret.shops.is_empty() {
        let mut brands = std::collections::BTreeMap::new();
        for (brand, secret) in webhook_secret.shops {
            info!(brand = %brand, "webhooks: POST /webhooks/shopify/{brand} (X-Shopify-Hmac-Sha256)");
            brands.insert(brand, secret);
        }
        let hooks = Router::new()
            .route("/webhooks/shopify/{brand}", post(shopify_webhook::<S>))
            .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_MAX))
            .with_state(ShopHooks { store: store.clone(), brands: Arc::new(brands) });
        app = app.merge(hooks);
    }
    if let Some(secret) = webhook_secret.meta {
        info!("webhooks: POST /webhooks/meta (signed with the app secret)");
        let hooks = Router::new()
            .route("/webhooks/meta", post(webhook::<S>))
            .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_MAX))
            .with_state(Hooks { store: store.clone(), secret: Arc::new(secret) });
        app = app.merge(hooks);
    }
    let http = tokio::spawn(async move { axum::serve(listener, app).await });
    let log = tokio::spawn(log_events(store.clone(), stop.clone(), dlft_live::store::origin(), own_events));

    let mut workers = tokio::task::JoinSet::new();
    for (mut wcfg, pulse) in wcfgs.into_iter().zip(pulses) {
        let id = wcfg.worker.to_string();
        wcfg.presence = Some(PresenceConfig {
            host: host.clone(),
            pid: std::process::id(),
            every: Millis((lease_for.0 / 3).max(100)),
        });
        let mut worker = Worker {
            ports: Ports {
                store: store.clone(),
                ads: ads.clone(),
                clock: SystemClock,
                probe: probe.clone(),
                bank: accounts.banks.get(&dlft_core::ids::BrandId::default()).cloned().unwrap_or_default(),
            },
            cfg: wcfg,
            loop_cfg: cfg.loop_config(),
            tenants: accounts
                .tenants
                .iter()
                .map(|(b, a)| {
                    (
                        b.clone(),
                        Tenant {
                            ads: a.clone(),
                            bank: accounts.banks.get(b).cloned().unwrap_or_default(),
                            loop_cfg: cfg.loop_config_of(b),
                        },
                    )
                })
                .collect(),
            rng: ChaCha8Rng::seed_from_u64(seed_of(&id)),
            stop: stop.clone(),
            pulse,
        };
        info!(worker = %id, host = %host, pid = std::process::id(), "worker starting");
        workers.spawn(async move {
            let out = worker.run(None).await;
            (id, out)
        });
    }

    // Until a signal, or until a worker stops on its own (replaced by a
    // newer boot of its id): then every worker stops and the process fails.
    let failed = tokio::select! {
        () = wait_for_signal() => {
            info!("stopping: no new claims; handing claims back");
            None
        }
        Some(done) = workers.join_next() => {
            let why = match done {
                Ok((id, Err(e))) => format!(
                    "worker {id} stopped: {e}. Another process booted the same worker id \
                     (same [runner] name?); this process stops rather than run half its loop"
                ),
                Ok((id, Ok(()))) => format!("worker {id} stopped on its own"),
                Err(e) => format!("a worker task failed: {e}"),
            };
            error!(why = %why, "stopping");
            Some(why)
        }
    };
    stop.store(true, Ordering::SeqCst);
    let grace = Duration::from_millis(cfg.runner.shutdown_grace_ms);
    let stopped = tokio::time::timeout(grace, async {
        while let Some(done) = workers.join_next().await {
            match done {
                Ok((id, Ok(()))) => info!(worker = %id, "worker stopped"),
                Ok((id, Err(e))) => error!(worker = %id, error = %e, "worker stopped with an error"),
                Err(e) => error!(error = %e, "worker task failed"),
            }
        }
    })
    .await;
    if stopped.is_err() {
        warn!("a worker did not stop within the grace period; its leases will expire");
        workers.abort_all();
    }
    http.abort();
    let _ = log.await;
    match failed {
        Some(why) => Err(Stopped(why).into()),
        None => Ok(()),
    }
}

/// Webhook bodies larger than this are refused (413) unread.
const WEBHOOK_BODY_MAX: usize = 256 * 1024;

/// The HTTP server's secrets: Meta's app secret, each brand's AgentMail
/// (Svix) secret with its inbox, and the scrape's bearer token.
struct WebhookSecrets {
    meta: Option<Secret>,
    inboxes: Vec<(dlft_core::ids::BrandId, Secret, String)>,
    /// Each brand's Shopify app secret, for brands whose shop sends webhooks.
    shops: Vec<(dlft_core::ids::BrandId, Secret)>,
    /// The bearer token `/metrics` asks of a scrape (`runner.metrics_token_env`).
    metrics: Option<Secret>,
}

/// What a start resumes, in words: open intents by action, live jobs by
/// state, schedules a breaker or an operator turned off.
fn resuming(s: &dlft_live::store::StoreStats) -> String {
    let mut open: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (_, action, phase, n) in &s.intents {
        if phase != "committed" && phase != "abandoned" {
            *open.entry(action.as_str()).or_default() += n;
        }
    }
    let mut jobs: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (_, _, state, n) in &s.depth {
        *jobs.entry(state.as_str()).or_default() += n;
    }
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let list = |m: &std::collections::BTreeMap<&str, i64>| {
        m.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
    };
    let open_n: i64 = open.values().sum();
    let jobs_n: i64 = jobs.values().sum();
    let off = s.schedules.iter().filter(|r| !r.enabled).count() as i64;
    format!(
        "{}{}; {}{}; {} of {}",
        plural(open_n, "open intent", "open intents"),
        if open.is_empty() { String::new() } else { format!(" ({})", list(&open)) },
        plural(jobs_n, "live job", "live jobs"),
        if jobs.is_empty() { String::new() } else { format!(" ({})", list(&jobs)) },
        plural(off, "schedule off", "schedules off"),
        s.schedules.len()
    )
}

#[derive(Clone)]
struct MailHooks<S> {
    store: S,
    brands: Arc<std::collections::BTreeMap<dlft_core::ids::BrandId, (Secret, String)>>,
}

/// `POST /webhooks/agentmail/{brand}`: an AgentMail webhook is a hint.
/// Checked (the brand's Svix secret, a timestamp within five minutes, the
/// shape); a `message.received` in the brand's inbox enqueues one support
/// run now, keyed by the event's id (a redelivery enqueues nothing more);
/// the run reads the inbox itself, never the webhook's text. 404 a brand
/// without an inbox webhook, 401 unsigned, forged or stale, 400 not an
/// AgentMail event, 200 otherwise (another event type or inbox: ignored),
/// 503 the store did not answer (Svix retries).
async fn agentmail_webhook<S: Store + Clone>(
    State(h): State<MailHooks<S>>,
    axum::extract::Path(brand): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    use dlft_core::sense::wire::agentmail::{MailHint, decode_webhook};
    let brand = dlft_core::ids::BrandId::new(brand);
    let Some((secret, inbox)) = h.brands.get(&brand) else {
        warn!(brand = %brand, "agentmail webhook for a brand without one: refused");
        return (StatusCode::NOT_FOUND, format!("brand {brand} takes no AgentMail webhooks\n"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = dlft_core::time::Clock::now(&SystemClock);
    let now_s = i64::try_from(now.0 / 1_000).unwrap_or(i64::MAX);
    let signed = dlft_live::svix::verify(
        secret.expose(),
        header("svix-id"),
        header("svix-timestamp"),
        header("svix-signature"),
        &body,
        now_s,
    );
    if let Err(why) = signed {
        warn!(brand = %brand, why = %why, "agentmail webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let event_id = match decode_webhook(&body) {
        Ok(MailHint::Received { event_id, inbox: to }) if &to == inbox => event_id,
        Ok(MailHint::Received { inbox: to, .. }) => {
            info!(brand = %brand, inbox = %to, "agentmail webhook for another inbox: ignored");
            return (StatusCode::OK, format!("inbox {to} is not brand {brand}'s: ignored\n"));
        }
        Ok(MailHint::Other { event_type }) => return (StatusCode::OK, format!("{event_type}: ignored\n")),
        Err(why) => {
            warn!(brand = %brand, why = %why, "agentmail webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
    let task = dlft_core::schedule::task::Task::AnswerInbox { slot: now };
    let key = format!("inbox-hint/{brand}/{event_id}");
    enqueue_hint(&h.store, &brand, &task, &key, ("agentmail", "support run"), now).await
}

/// Enqueues the run a verified webhook of `vendor` asks for (`what`), once per hint `key` (a
/// redelivery while it waits adds nothing): 200, or 503 when the store
/// did not take it (the sender retries).
async fn enqueue_hint<S: Store>(
    store: &S,
    brand: &dlft_core::ids::BrandId,
    task: &dlft_core::schedule::task::Task,
    key: &str,
    (vendor, what): (&str, &str),
    now: Timestamp,
) -> (axum::http::StatusCode, String) {
    let job =
        dlft_core::store::NewJob::new(task, 1, now, Some(dlft_core::ids::IdempotencyKey::new(key))).for_brand(brand);
    match store.enqueue(job, now).await {
        Ok(e) => {
            info!(brand = %brand, hint = %key, enqueued = ?e, "{vendor} webhook accepted: {what} enqueued");
            (axum::http::StatusCode::OK, format!("{what} enqueued\n"))
        }
        Err(e) => {
            error!(error = %e, "{vendor} webhook: the store did not take the {what}");
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n"))
        }
    }
}

#[derive(Clone)]
struct ShopHooks<S> {
    store: S,
    brands: Arc<std::collections::BTreeMap<dlft_core::ids::BrandId, Secret>>,
}

/// `POST /webhooks/shopify/<brand>`: a Shopify webhook is a hint, never
/// the truth: 401 unless `X-Shopify-Hmac-Sha256` is the body's HMAC under
/// the brand's app secret (constant time); 400 without a webhook id or
/// topic, or with a body that is not a JSON object; 200 and one claims
/// review enqueued per `X-Shopify-Webhook-Id` for an order, refund,
/// fulfillment or dispute topic (a redelivery enqueues nothing more; other
/// topics are ignored); 404 a brand without webhooks; 503 the store did not
/// answer (Shopify retries).
async fn shopify_webhook<S: Store + Clone>(
    State(h): State<ShopHooks<S>>,
    axum::extract::Path(brand): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    use dlft_core::sense::wire::shopify::{ShopHint, decode_webhook};
    use dlft_live::webhook::{SHOPIFY_HMAC_HEADER, SHOPIFY_TOPIC_HEADER, SHOPIFY_WEBHOOK_ID_HEADER, verify_shopify};
    let brand = dlft_core::ids::BrandId::new(brand);
    let Some(secret) = h.brands.get(&brand) else {
        warn!(brand = %brand, "shopify webhook for a brand without one: refused");
        return (StatusCode::NOT_FOUND, format!("brand {brand} takes no Shopify webhooks\n"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = verify_shopify(secret, &body, header(SHOPIFY_HMAC_HEADER)) {
        warn!(brand = %brand, why, "shopify webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let Some(id) = header(SHOPIFY_WEBHOOK_ID_HEADER).filter(|i| !i.is_empty() && i.len() <= 200) else {
        warn!(brand = %brand, "shopify webhook without X-Shopify-Webhook-Id: refused");
        return (StatusCode::BAD_REQUEST, "no X-Shopify-Webhook-Id header\n".into());
    };
    match decode_webhook(header(SHOPIFY_TOPIC_HEADER), &body) {
        Ok(ShopHint::Reread { topic }) => {
            let now = dlft_core::time::Clock::now(&SystemClock);
            info!(brand = %brand, topic = %topic, webhook = %id, "shopify webhook verified");
            let task = dlft_core::schedule::task::Task::ReviewClaims { slot: now };
            let key = format!("shop-hint/{brand}/{id}");
            enqueue_hint(&h.store, &brand, &task, &key, ("shopify", "claims review"), now).await
        }
        Ok(ShopHint::Ignored { topic }) => (StatusCode::OK, format!("{topic}: ignored\n")),
        Err(why) => {
            warn!(brand = %brand, why = %why, "shopify webhook refused");
            (StatusCode::BAD_REQUEST, format!("{why}\n"))
        }
    }
}

#[derive(Clone)]
struct Hooks<S> {
    store: S,
    secret: Arc<Secret>,
}

/// `POST /webhooks/meta`: a webhook is a hint. Checked (signature, shape),
/// then each status claim becomes a reconcile job that reads the ad back;
/// nothing else changes. 401 unsigned or wrongly signed, 400 not a webhook
/// (nothing enqueued), 503 the store did not answer (Meta retries).
async fn webhook<S: Store + Clone>(
    State(h): State<Hooks<S>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let signature = headers.get(dlft_live::webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(why) = dlft_live::webhook::verify(&h.secret, &body, signature) {
        warn!(why, "webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let hints = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| dlft_core::sense::wire::meta::decode_status_webhook(&v));
    let hints = match hints {
        Ok(h) => h,
        Err(why) => {
            warn!(why = %why, "webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
    for hint in &hints {
        let now = dlft_core::time::Clock::now(&SystemClock);
        if let Err(e) = dlft_core::jobs::reconcile::accept(&h.store, hint, now).await {
            error!(error = %e, "webhook: the store did not take the reconcile job");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n"));
        }
    }
    info!(hints = hints.len(), "webhook accepted: reconcile jobs enqueued");
    (StatusCode::OK, format!("{} reconcile jobs\n", hints.len()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// This process's event rows counted by (brand, block, kind), for
/// `/metrics` (its retries among them).
#[derive(Clone, Default)]
struct OwnEvents(Arc<std::sync::Mutex<EventCounts>>);

/// (brand, block, kind) → rows; named only when scraped.
type EventCounts = std::collections::BTreeMap<(Option<dlft_core::ids::BrandId>, Block, EventKind), u64>;

impl OwnEvents {
    fn count(&self, e: &dlft_core::telemetry::Event) {
        let key = (e.brand.clone(), e.block, e.kind);
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key).or_default() += 1;
    }

    fn snapshot(&self) -> EventCounts {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Logs this process's event rows (those whose origin is `mine`) as
/// structured lines, from the newest on start-up (without reading the
/// log), and counts them for `/metrics`; other runners' rows on the same
/// store are theirs to log. Each block logs under its own target
/// (`dlft::events::sensor`, `…::estimator`, `…::policy`, `…::envelope`,
/// `…::actuator`, `…::scheduler`), so `RUST_LOG` can keep the kills and
/// drop the claims; spend-ledger rows are at debug.
async fn log_events<S: Store>(store: S, stop: Arc<AtomicBool>, mine: Option<String>, own: OwnEvents) {
    let mut after = store.last_event_seq().await.unwrap_or(0);
    while !stop.load(Ordering::SeqCst) {
        match store.events(after).await {
            Ok(events) => {
                for e in events {
                    after = e.seq;
                    if e.origin != mine {
                        continue;
                    }
                    own.count(&e);
                    log_event(&e);
                }
            }
            Err(e) => warn!(error = %e, "store unavailable; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn log_event(e: &dlft_core::telemetry::Event) {
    let kind = crate::name_of(&e.kind);
    macro_rules! line {
        ($level:ident, $target:literal) => {
            tracing::$level!(target: $target, seq = e.seq, kind = %kind, entity = %e.entity,
                             before = %e.before, after = %e.after, cause = %e.cause, "event")
        };
    }
    match e.block {
        Block::Sensor if e.kind == EventKind::LedgerSpend => line!(debug, "dlft::events::sensor"),
        Block::Sensor => line!(info, "dlft::events::sensor"),
        Block::Estimator => line!(info, "dlft::events::estimator"),
        Block::Policy => line!(info, "dlft::events::policy"),
        Block::Envelope => line!(info, "dlft::events::envelope"),
        Block::Actuator => line!(info, "dlft::events::actuator"),
        Block::Scheduler => line!(info, "dlft::events::scheduler"),
    }
}

#[derive(Clone)]
struct Scrape<S> {
    store: S,
    /// The bearer token a scrape must send, when the runner has one.
    token: Option<Arc<Secret>>,
    /// This process's event rows, counted.
    own: OwnEvents,
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in
/// constant time).
fn bearer_ok(headers: &axum::http::HeaderMap, token: &Secret) -> bool {
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = given.strip_prefix("Bearer ").unwrap_or("").as_bytes();
    let want = token.expose().as_bytes();
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn metrics<S: Stats + Store>(
    State(Scrape { store, token, own }): State<Scrape<S>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(t) = &token
        && !bearer_ok(&headers, t)
    {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            "a scrape needs Authorization: Bearer <runner.metrics_token_env>\n".into(),
        );
    }
    let budgets =
        async { Ok::<_, dlft_core::store::StoreError>((store.budgets().await?, store.accounts(None).await?)) };
    match (store.stats().await, budgets.await) {
        (Ok(s), Ok((budgets, accounts))) => {
            let mut out = String::new();
            out.push_str(
                "# HELP dlft_queue_depth Live jobs by brand, kind and state.\n# TYPE dlft_queue_depth gauge\n",
            );
            for (brand, kind, state, n) in &s.depth {
                let _ = writeln!(out, "dlft_queue_depth{{brand=\"{brand}\",kind=\"{kind}\",state=\"{state}\"}} {n}");
            }
            out.push_str("# HELP dlft_claims_total Claims made.\n# TYPE dlft_claims_total counter\n");
            let _ = writeln!(out, "dlft_claims_total {}", s.claims_total);
            out.push_str("# HELP dlft_intents Intents by brand, action and phase (abandoned ones need an operator).\n");
            out.push_str("# TYPE dlft_intents gauge\n");
            for (brand, action, phase, n) in &s.intents {
                let _ = writeln!(out, "dlft_intents{{brand=\"{brand}\",action=\"{action}\",phase=\"{phase}\"}} {n}");
            }
            out.push_str("# HELP dlft_breaker_open 1 if the brand's schedule is disabled (breaker or operator).\n");
            out.push_str("# TYPE dlft_breaker_open gauge\n");
            for r in &s.schedules {
                let _ = writeln!(
                    out,
                    "dlft_breaker_open{{brand=\"{}\",schedule=\"{}\"}} {}",
                    r.brand,
                    r.name,
                    u8::from(!r.enabled)
                );
            }
            out.push_str(
                "# HELP dlft_spend_after_kill_minor Leak: spend booked in buckets after an ad's kill committed.\n\
                 # TYPE dlft_spend_after_kill_minor gauge\n",
            );
            if s.spend_after_kill.is_empty() {
                out.push_str("dlft_spend_after_kill_minor 0\n");
            }
            for (brand, currency, n) in &s.spend_after_kill {
                let _ = writeln!(out, "dlft_spend_after_kill_minor{{brand=\"{brand}\",currency=\"{currency}\"}} {n}");
            }
            budget_metrics(&mut out, &budgets, &accounts, SystemClock.now());
            vendor_metrics(&mut out);
            event_metrics(&mut out, &own);
            (axum::http::StatusCode::OK, out)
        }
        (Err(e), _) | (_, Err(e)) => {
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("# store unavailable: {e}\n"))
        }
    }
}

/// What this process's adapters heard from each vendor: responses by HTTP
/// status (or `timeout`, `transport`), and the seconds since each vendor's
/// last 2xx.
fn vendor_metrics(out: &mut String) {
    let heard = dlft_live::calls::snapshot();
    let now = SystemClock.now();
    out.push_str(
        "# HELP dlft_vendor_responses_total This process's exchanges with each vendor, by HTTP status (timeout, transport: none came back).\n\
         # TYPE dlft_vendor_responses_total counter\n",
    );
    for ((vendor, brand, code), n) in heard.responses {
        let _ =
            writeln!(out, "dlft_vendor_responses_total{{vendor=\"{vendor}\",brand=\"{brand}\",code=\"{code}\"}} {n}");
    }
    out.push_str(
        "# HELP dlft_vendor_last_success_age_seconds Seconds since this process last had a 2xx from the vendor.\n\
         # TYPE dlft_vendor_last_success_age_seconds gauge\n",
    );
    for ((vendor, brand), at) in heard.last_ok {
        let age = now.0.saturating_sub(at.0);
        let _ = writeln!(
            out,
            "dlft_vendor_last_success_age_seconds{{vendor=\"{vendor}\",brand=\"{brand}\"}} {}.{:03}",
            age / 1_000,
            age % 1_000
        );
    }
}

/// This process's event rows by brand, block and kind, and its retries:
/// jobs handed back for another attempt (`job_retried`) and actions whose
/// call failed cleanly and will be tried again (`intent_attempt`).
fn event_metrics(out: &mut String, own: &OwnEvents) {
    let rows = own.snapshot();
    out.push_str(
        "# HELP dlft_events_total This process's event rows (one per state transition), by brand, block and kind.\n\
         # TYPE dlft_events_total counter\n",
    );
    let brand_of = |b: &Option<dlft_core::ids::BrandId>| b.as_ref().map_or("-", |b| b.as_str()).to_string();
    for ((brand, block, kind), n) in &rows {
        let (brand, block, kind) = (brand_of(brand), crate::name_of(block), crate::name_of(kind));
        let _ = writeln!(out, "dlft_events_total{{brand=\"{brand}\",block=\"{block}\",kind=\"{kind}\"}} {n}");
    }
    out.push_str(
        "# HELP dlft_retries_total This process's retries, by brand: jobs tried again (job) and actions whose call failed cleanly (action).\n\
         # TYPE dlft_retries_total counter\n",
    );
    let mut retries: std::collections::BTreeMap<(String, &str), u64> = std::collections::BTreeMap::new();
    for ((brand, _, kind), n) in &rows {
        let what = match kind {
            EventKind::JobRetried => "job",
            EventKind::IntentAttempt => "action",
            _ => continue,
        };
        *retries.entry((brand_of(brand), what)).or_default() += n;
    }
    for ((brand, what), n) in retries {
        let _ = writeln!(out, "dlft_retries_total{{brand=\"{brand}\",what=\"{what}\"}} {n}");
    }
}

/// Each cap's current period (in its brand's time zone): limit, reserved
/// (pending), posted and left, in minor units.
fn budget_metrics(
    out: &mut String,
    budgets: &[(dlft_core::ids::BrandId, dlft_core::envelope::budget::Budgets)],
    accounts: &[dlft_core::envelope::budget::Account],
    now: Timestamp,
) {
    let rows: Vec<_> =
        budgets.iter().flat_map(|(brand, b)| dlft_core::envelope::budget::standing(brand, b, accounts, now)).collect();
    for (name, help) in [
        ("limit", "The cap of the current period."),
        ("pending", "Reserved by open intents, not yet posted or voided."),
        ("posted", "Posted: moved, as read back from the world."),
        ("left", "What a new reservation may still take."),
    ] {
        let _ = writeln!(out, "# HELP dlft_budget_{name}_minor {help}\n# TYPE dlft_budget_{name}_minor gauge");
        for r in &rows {
            let v = match name {
                "limit" => r.limit.minor,
                "pending" => r.pending.minor,
                "posted" => r.posted.minor,
                _ => r.left.minor,
            };
            // A counterparty cap carries its payee as one more label.
            let whom = r.counterparty.as_deref().map_or(String::new(), |c| format!(",counterparty=\"{c}\""));
            let _ = writeln!(
                out,
                "dlft_budget_{name}_minor{{brand=\"{}\",purpose=\"{}\",currency=\"{}\",window=\"{}\",period=\"{}\"{whom}}} {v}",
                r.brand,
                r.purpose.as_str(),
                r.limit.currency,
                r.window.as_str(),
                r.period
            );
        }
    }
}
