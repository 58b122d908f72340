//! The simulated network protocol: one JSON request line, one JSON reply
//! line, one TCP connection per call over `turmoil::net`. A partition drops
//! the segments, so every call has a timeout.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use turmoil::net::{TcpListener, TcpStream};

use dlft_core::act::intent::Intent;
use dlft_core::envelope::budget::{Account, Budgets, Transfer};
use dlft_core::ids::{AdId, BrandId, IdempotencyKey, JobId, WorkerId};
use dlft_core::sense::ads::{InsightRow, InsightsQuery, LibraryAd};
use dlft_core::store::{
    BatchResult, Boot, Claim, ClaimRequest, Enqueued, Job, Lease, NewJob, Outcome, PageActivity, Presence, ScheduleRow,
    SlotOutcome, StoreError, WorkerRow, WriteBatch,
};
use dlft_core::telemetry::{CostRow, Event};
use dlft_core::time::Timestamp;

pub const DB_PORT: u16 = 5432;
pub const ADS_PORT: u16 = 443;
/// The bank and the payables source, on the platform's host.
pub const BANK_PORT: u16 = 444;
/// Each worker's webhook endpoint.
pub const WEBHOOK_PORT: u16 = 8443;
/// How long a server waits for a connection's request line.
pub const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// Longest request or reply line accepted.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("timed out")]
    Timeout,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(String),
}

/// Store calls. The database applies them with its own clock, as SQL's `now()`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant, reason = "a message on the wire, made and dropped per call")]
pub enum StoreRequest {
    Boot {
        worker: WorkerId,
    },
    Enqueue {
        job: NewJob,
    },
    FireSlot {
        schedule: String,
        slot: Timestamp,
        job: NewJob,
    },
    Claim {
        req: ClaimRequest,
    },
    Write {
        lease: Lease,
        batch: WriteBatch,
    },
    Finish {
        lease: Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
    },
    Release {
        lease: Lease,
    },
    DiscardUnknownKinds {
        known: Vec<String>,
    },
    Schedules,
    SetSchedule {
        brand: BrandId,
        name: String,
        enabled: bool,
        reason: String,
    },
    SpendSummary {
        brand: BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    },
    SpendLedger {
        brand: BrandId,
        since: Timestamp,
    },
    Job {
        id: JobId,
    },
    FinishedOfSchedule {
        brand: BrandId,
        schedule: String,
        n: usize,
    },
    Events {
        after: u64,
    },
    Intents,
    /// One brand's intents (a tick reads its brand's, not every brand's).
    BrandIntents {
        brand: BrandId,
        filter: dlft_core::store::IntentFilter,
    },
    Intent {
        key: IdempotencyKey,
    },
    Activities,
    State {
        brand: BrandId,
        scope: String,
    },
    Allocation {
        brand: BrandId,
    },
    Beat {
        presence: Presence,
    },
    Workers,
    SetBudgets {
        brand: BrandId,
        budgets: Budgets,
    },
    Budgets,
    Accounts {
        brand: Option<BrandId>,
    },
    Transfers,
}

// A reply lives only between the socket and the caller: boxing its large
// variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreReply {
    Boot(Boot),
    Enqueued(Enqueued),
    Slot(SlotOutcome),
    Schedules(Vec<ScheduleRow>),
    Discarded(Vec<JobId>),
    Claims(Vec<Claim>),
    Batch(BatchResult),
    Done,
    Rows(Vec<InsightRow>),
    Job(Option<Job>),
    Jobs(Vec<Job>),
    Events(Vec<Event>),
    Intents(Vec<Intent>),
    Intent(Option<Intent>),
    Activities(Vec<PageActivity>),
    State(Vec<(String, String)>),
    Allocation(Option<dlft_core::propose::allocation::Allocation>),
    Workers(Vec<WorkerRow>),
    Budgets(Vec<(BrandId, Budgets)>),
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
}

pub type StoreResponse = Result<StoreReply, StoreError>;

/// Ads platform calls; replies carry Meta's HTTP status, headers and body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdsRequest {
    Insights {
        /// The ad account (`/act_{id}/insights`); `None`: the world's one account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        query: InsightsQuery,
    },
    Pause {
        ad: AdId,
        key: IdempotencyKey,
    },
    Status {
        ad: AdId,
    },
    /// Meta's batch API: several pauses in one call (`POST /` with `batch=[…]`).
    PauseBatch {
        items: Vec<(AdId, IdempotencyKey)>,
    },
    /// An ad's ad set and campaign (`GET /{ad-id}?fields=adset_id,campaign_id`).
    Parents {
        ad: AdId,
    },
    /// Pauses or resumes an ad set or campaign (`POST /{id}` with `status=`).
    SetNode {
        node: dlft_core::sense::ads::AdNode,
        paused: bool,
        key: IdempotencyKey,
    },
    /// An ad set's or campaign's status (`fields=status,effective_status`).
    NodeStatus {
        node: dlft_core::sense::ads::AdNode,
    },
    /// Meta's `/ads_archive` for one page.
    Library {
        page: String,
    },
    /// The model vendor (Anthropic Messages), billed per call id.
    Summarize {
        call_id: String,
        page: String,
        ads: Vec<LibraryAd>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpReply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

/// One call: connect, send a line, read a line, all within `timeout`.
pub async fn call<Q: Serialize, R: DeserializeOwned>(
    host: &str,
    port: u16,
    req: &Q,
    timeout: Duration,
) -> Result<R, RpcError> {
    let exchange = async {
        let mut stream = TcpStream::connect((host, port)).await?;
        let mut line = serde_json::to_vec(req).map_err(|e| RpcError::Frame(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reader = BufReader::new(stream.take(MAX_FRAME_BYTES as u64));
        let mut reply = String::new();
        reader.read_line(&mut reply).await?;
        if !reply.ends_with('\n') {
            return Err(RpcError::Frame("reply closed early or over the frame limit".into()));
        }
        serde_json::from_str(&reply).map_err(|e| RpcError::Frame(e.to_string()))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| RpcError::Timeout)?
}

/// Accepts connections forever; each gets one request and, if the handler
/// returns `Some`, one reply (`None` = the reply is lost).
pub async fn serve<Q, R, H, F>(port: u16, handler: H) -> turmoil::Result
where
    Q: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    H: Fn(Q) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Option<R>> + Send + 'static,
{
    let listener = TcpListener::bind((IpAddr::from(Ipv4Addr::UNSPECIFIED), port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            // Reads stop at the frame limit: a line without its newline is refused.
            let mut reader = BufReader::new(stream.take(MAX_FRAME_BYTES as u64));
            let mut line = String::new();
            // A request lost to a partition (or a dead client) would hold the
            // connection forever, and once ephemeral ports wrap around a new
            // connection could reuse its pair: give up on it in bounded time.
            match tokio::time::timeout(REQUEST_WAIT, reader.read_line(&mut line)).await {
                Ok(Ok(_)) if line.ends_with('\n') => {}
                _ => return,
            }
            // A request that does not parse gets no reply: the caller times out.
            let Ok(req) = serde_json::from_str::<Q>(&line) else {
                return;
            };
            let Some(reply) = handler(req).await else {
                return;
            };
            let Ok(mut out) = serde_json::to_vec(&reply) else {
                return;
            };
            out.push(b'\n');
            let mut stream = reader.into_inner().into_inner();
            let _ = stream.write_all(&out).await;
        });
    }
}
