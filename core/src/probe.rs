//! Probe sites: named points in the loop where a simulation may stop the
//! process (container loss between the phases of a kill, mid-paging, …).
//!
//! In production the probe is [`NoProbe`], which does nothing; the sites are
//! the same code paths either way, so the sim tests the code that runs.

use std::future::{Future, ready};

use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// An insights page was written to the ledger; more may follow.
    TickAfterPage,
    /// Verdicts and intents are written; jobs not yet finished.
    TickAfterDecide,
    /// The tick's batch pause of new kills returned; its outcomes are not yet written.
    TickAfterBatchPause,
    /// The intent is read; the pause call is next.
    KillBeforePause,
    /// The pause call returned; its phase is not yet written.
    KillAfterPause,
    /// `applied` is written; the read-back is next.
    KillAfterApplied,
    /// The read-back returned; the commit is not yet written.
    KillAfterReadBack,
    /// The job's work is done and written; `finish` is next.
    BeforeFinish,
    /// A store scan fetched the library and wrote its checkpoint.
    ScanAfterFetch,
    /// A store scan's paid model call returned; its checkpoint is not yet written.
    ScanAfterSummary,
    /// The payout's intent is read; the payment call is next.
    PayoutBeforePay,
    /// The payment call returned; its phase is not yet written.
    PayoutAfterPay,
    /// `applied` is written; the read-back is next.
    PayoutAfterApplied,
    /// The read-back returned; the commit (and the post) is not yet written.
    PayoutAfterReadBack,
    /// The payables job opened a file's intents; their payout jobs are not yet written.
    PayablesAfterOpen,
    /// A payables file's rows are all written; the source does not know yet.
    PayablesBeforeSettle,
    /// The refund's intent is read; `refundCreate` is next.
    RefundBeforeCall,
    /// `refundCreate` returned; its phase is not yet written.
    RefundAfterCall,
    /// `applied` is written; the read-back is next.
    RefundAfterApplied,
    /// The read-back returned; the commit (and the post) is not yet written.
    RefundAfterReadBack,
    /// The refund job opened a claim's intent; its act job is not yet written.
    RefundsAfterOpen,
    /// A claim is judged and written; the desk does not know yet.
    RefundsBeforeSettle,
    /// The reply's intent is read; sending it is next.
    ReplyBeforeSend,
    /// The send returned; its phase is not yet written.
    ReplyAfterSend,
    /// `applied` is written; the thread's read-back is next.
    ReplyAfterApplied,
    /// The read-back returned; the commit is not yet written.
    ReplyAfterReadBack,
}

impl Site {
    pub const ALL: [Site; 26] = [
        Site::TickAfterPage,
        Site::TickAfterDecide,
        Site::TickAfterBatchPause,
        Site::KillBeforePause,
        Site::KillAfterPause,
        Site::KillAfterApplied,
        Site::KillAfterReadBack,
        Site::BeforeFinish,
        Site::ScanAfterFetch,
        Site::ScanAfterSummary,
        Site::PayoutBeforePay,
        Site::PayoutAfterPay,
        Site::PayoutAfterApplied,
        Site::PayoutAfterReadBack,
        Site::PayablesAfterOpen,
        Site::PayablesBeforeSettle,
        Site::RefundBeforeCall,
        Site::RefundAfterCall,
        Site::RefundAfterApplied,
        Site::RefundAfterReadBack,
        Site::RefundsAfterOpen,
        Site::RefundsBeforeSettle,
        Site::ReplyBeforeSend,
        Site::ReplyAfterSend,
        Site::ReplyAfterApplied,
        Site::ReplyAfterReadBack,
    ];

    /// A site of the support replies (reached only where replies run).
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            Site::ReplyBeforeSend | Site::ReplyAfterSend | Site::ReplyAfterApplied | Site::ReplyAfterReadBack
        )
    }

    /// A site of the refunds (reached only where refunds run).
    pub fn is_refund(self) -> bool {
        matches!(
            self,
            Site::RefundBeforeCall
                | Site::RefundAfterCall
                | Site::RefundAfterApplied
                | Site::RefundAfterReadBack
                | Site::RefundsAfterOpen
                | Site::RefundsBeforeSettle
        )
    }

    /// A site of the payouts (reached only where payouts run).
    pub fn is_payout(self) -> bool {
        matches!(
            self,
            Site::PayoutBeforePay
                | Site::PayoutAfterPay
                | Site::PayoutAfterApplied
                | Site::PayoutAfterReadBack
                | Site::PayablesAfterOpen
                | Site::PayablesBeforeSettle
        )
    }
}

pub trait Probe: Send + Sync {
    /// Called when the loop reaches `site` while working on `entity` (a job,
    /// an ad, a store). A sim probe may never return (the process is about
    /// to be killed).
    fn reached(&self, site: Site, entity: &str) -> impl Future<Output = ()> + Send;
}

impl<T: Probe> Probe for &T {
    fn reached(&self, site: Site, entity: &str) -> impl Future<Output = ()> + Send {
        (**self).reached(site, entity)
    }
}

/// The production probe: does nothing.
#[derive(Copy, Clone, Debug, Default)]
pub struct NoProbe;

impl Probe for NoProbe {
    fn reached(&self, _site: Site, _entity: &str) -> impl Future<Output = ()> + Send {
        ready(())
    }
}

/// A deliberately broken actuator, for proving that the invariant checker
/// can fail. Never set in production; the live config has no field for it.
#[doc(hidden)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sabotage {
    #[default]
    None,
    /// Pause without writing the intent first (write it only at the end).
    SkipIntent,
    /// Commit on the pause call's word, without reading the status back.
    SkipReadBack,
    /// Reconcile on a webhook's word, without reading the status back.
    TrustWebhooks,
    /// Run every brand's jobs on the worker's one account, not the brand's own.
    SharedAccount,
    /// Open payout intents without their reservation (no budget is held).
    SkipReservation,
    /// Send each payment attempt under a fresh request id (the bank cannot
    /// deduplicate a retry after a lost reply).
    FreshRequestId,
    /// Approve every payable, whoever it names (no allow-list, no bank
    /// details check).
    SkipPayeeCheck,
    /// Payout jobs finish without driving their intent (reservations are
    /// never resolved).
    DropPayoutJobs,
    /// Never read the bank's statement (reversals go unbooked).
    IgnoreReversals,
    /// Reserve payouts without naming their payee (only the brand's caps
    /// hold; a counterparty's own cap is never charged).
    BrandCapsOnly,
    /// Send each refund attempt under a fresh idempotency key and note (the
    /// shop cannot deduplicate a retry, the read-back cannot find the
    /// earlier attempt).
    FreshRefundKey,
    /// Judge refunds without the risk tier's cap.
    SkipTierCap,
    /// Build the fraud profile without its chargebacks.
    IgnoreChargebacks,
    /// Judge claims on the desk's word for the tracking, never asking the
    /// brand's tracker.
    IgnoreTracker,
    /// Start the shop mirror's next pass at our clock's now, not at the
    /// newest change the shop showed (a change the pass read too early is
    /// never read again).
    MirrorClockBound,
    /// Build the identity graph without the brand's shared values (the
    /// call centre's phone joins every customer it was entered for).
    IgnoreSharedValues,
    /// Never escalate a kill whose ad's own pause does not take effect.
    NoEscalation,
    /// Never resume an ad set or campaign paused by escalation.
    KeepCollateral,
    /// Let every support proposal through the gate unjudged.
    OpenGate,
    /// Drop the manipulation signals (the gate must hold without them:
    /// detection raises scrutiny, it is never the boundary).
    NoDetection,
    /// Call the support models without booking their cost rows first.
    UnbookedModelCalls,
    /// On an accepted support offer, refund what the order still allows
    /// instead of what was offered (the envelope's other bounds still hold).
    RefundWholeOrder,
    /// Book the support models' cost rows without charging them to the
    /// brand's model caps (the budget never says no).
    UncappedModelCalls,
    /// Mark each reply attempt with a fresh marker (the thread read finds
    /// no earlier attempt: a retry after a lost reply sends it again).
    FreshReplyMarker,
}
