//! The ad kill as a write-ahead action: the pause call (Meta's
//! `POST /{ad-id}` with `status=PAUSED`) and its read-back (the ad's
//! `effective_status`). The machine (`act::machine`, driven by
//! `jobs::drive`) does the rest.

use crate::ids::{AdId, IdempotencyKey};
use crate::probe::Site;
use crate::sense::ads::{AdStatus, AdsError, AdsPlatform};
use crate::time::Millis;

use super::machine::{CallError, Effect, Found, Seen, Sites};

/// Stops one ad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillEffect {
    pub ad: AdId,
}

/// What a status read back means for a kill: done when the ad is stopped
/// itself; an ad stopped only by a paused ad set or campaign (an
/// escalation's, or an operator's) is paused again, so that resuming the
/// level above cannot start it.
pub fn seen(status: &AdStatus) -> Seen {
    let found = if status.is_stopped_itself() { Found::Effected } else { Found::Absent };
    Seen { found, detail: format!("{status:?}"), amount: None }
}

impl CallError for AdsError {
    fn outcome_unknown(&self) -> bool {
        AdsError::outcome_unknown(self)
    }
    fn retry_after(&self) -> Option<Millis> {
        match self {
            AdsError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl<A: AdsPlatform> Effect<A> for KillEffect {
    type Error = AdsError;
    const VENDOR: &'static str = "meta";
    const CALL: &'static str = "pause";
    const READ: &'static str = "status";
    const SITES: Sites = Sites {
        before_call: Site::KillBeforePause,
        after_call: Site::KillAfterPause,
        after_applied: Site::KillAfterApplied,
        after_read_back: Site::KillAfterReadBack,
    };

    fn subject(&self) -> &str {
        self.ad.as_str()
    }

    async fn call(&self, ads: &A, key: &IdempotencyKey) -> Result<(), AdsError> {
        ads.pause(&self.ad, key).await
    }

    async fn read_back(&self, ads: &A) -> Result<Seen, AdsError> {
        ads.status(&self.ad).await.map(|s| seen(&s))
    }

    fn unconfirmed() -> AdsError {
        AdsError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::intent::IntentPhase;
    use crate::act::machine::{CallOutcome, after_call, after_read_back};

    #[test]
    fn pause_outcome_table() {
        assert_eq!(after_call(Ok::<(), AdsError>(())), CallOutcome::Applied);
        assert_eq!(after_call(Err(AdsError::Timeout)), CallOutcome::Unknown(AdsError::Timeout));
        assert!(matches!(
            after_call(Err(AdsError::RateLimited { code: 17, retry_after: Millis(5) })),
            CallOutcome::Throttled(_)
        ));
        assert!(matches!(
            after_call(Err(AdsError::Permanent { code: 190, message: "token".into() })),
            CallOutcome::Failed(_)
        ));
    }

    #[test]
    fn read_back_table() {
        assert_eq!(after_read_back(&seen(&AdStatus::Paused)), Some(IntentPhase::Committed));
        assert_eq!(after_read_back(&seen(&AdStatus::Other("ARCHIVED".into()))), Some(IntentPhase::Committed));
        let above = after_read_back(&seen(&AdStatus::Other("CAMPAIGN_PAUSED".into())));
        assert_eq!(above, Some(IntentPhase::Intended), "stopped only by its campaign: pause the ad itself");
        let again = after_read_back(&seen(&AdStatus::Active));
        assert_eq!(again, Some(IntentPhase::Intended), "ack without effect: pause again");
    }
}
