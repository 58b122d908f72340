//! The refund risk tier of one customer identity (the estimator's side of
//! the cross-store fraud profile, issue 14): deterministic and explainable.
//!
//! The identity graph that gathers an identity's orders across stores (by
//! keyed hashes of email, phone, address and card) feeds [`IdentityFacts`];
//! [`tier_of`] maps them to a [`RiskTier`] and names every fact that set it,
//! so that a tier change can be one event row with its reasons. The tier
//! caps what the refund envelope may pay without a person
//! (`envelope::refund`).

use serde::{Deserialize, Serialize};

/// How far a customer's refund claims are trusted, lowest risk first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Nothing against them: refunds up to the policy's cap.
    Trusted,
    /// Some signals: a smaller automatic ceiling.
    Watch,
    /// Strong signals: evidence first, small automatic refunds only.
    High,
    /// No automatic refund at all (a chargeback open or lost, a ring).
    Blocked,
}

impl RiskTier {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Trusted => "trusted",
            RiskTier::Watch => "watch",
            RiskTier::High => "high",
            RiskTier::Blocked => "blocked",
        }
    }
}

/// What the profile knows of one identity, across every store of the brand
/// (and the brands that share the profile). Counts and minor units only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFacts {
    pub orders: u32,
    /// Refunds paid, and their value in minor units of the orders' currency.
    pub refunds: u32,
    pub refunded_minor: i64,
    /// What the orders were worth, in the same minor units.
    pub ordered_minor: i64,
    /// Chargebacks still open (needs response, under review) and lost.
    pub chargebacks_open: u32,
    pub chargebacks_lost: u32,
    /// "Did not arrive" claims on parcels whose tracking says delivered.
    pub inr_against_delivered: u32,
    /// Other identities that ship to one of this identity's addresses.
    pub identities_sharing_address: u32,
    /// The brand's stores whose order history the shop mirror has not read
    /// through once yet: the facts above may miss what is there.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stores_unread: u32,
    /// The customer gave no email, phone or card the graph can know them
    /// by (none, or only placeholders and the brand's shared values): no
    /// history can be found for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unidentified: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An identity's tier moved: one event row, naming the facts that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    /// The identity's label (a keyed hash, never raw data).
    pub identity: String,
    pub before: RiskTier,
    pub after: RiskTier,
    pub facts: Vec<String>,
}

impl RiskTier {
    /// The tier a settlement recorded (`RiskTier::as_str`).
    pub fn parse(s: &str) -> Option<RiskTier> {
        [RiskTier::Trusted, RiskTier::Watch, RiskTier::High, RiskTier::Blocked].into_iter().find(|t| t.as_str() == s)
    }
}

/// Thresholds of the tiers (a policy file may set them; these are defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRules {
    /// Refunded value over ordered value, in basis points, from which an
    /// identity is watched, and from which it is high risk.
    pub watch_refund_share_bp: u32,
    pub high_refund_share_bp: u32,
    /// Refund counts from which the share counts (one refund of one order
    /// is 100% and says little).
    pub min_refunds_for_share: u32,
    /// "Did not arrive" claims against delivered tracking: watch, high.
    pub watch_inr_delivered: u32,
    pub high_inr_delivered: u32,
    /// Identities sharing an address from which it is a ring: high.
    pub ring_sharing: u32,
}

impl Default for TierRules {
    fn default() -> Self {
        TierRules {
            watch_refund_share_bp: 2_500,
            high_refund_share_bp: 5_000,
            min_refunds_for_share: 2,
            watch_inr_delivered: 1,
            high_inr_delivered: 2,
            ring_sharing: 3,
        }
    }
}

/// The tier of `facts` and the facts that set it (empty for a trusted
/// identity), most severe first.
pub fn tier_of(facts: &IdentityFacts, rules: &TierRules) -> (RiskTier, Vec<String>) {
    let mut found: Vec<(RiskTier, String)> = Vec::new();
    if facts.chargebacks_open > 0 {
        found.push((RiskTier::Blocked, format!("{} chargeback(s) open", facts.chargebacks_open)));
    }
    if facts.chargebacks_lost > 0 {
        found.push((RiskTier::Blocked, format!("{} chargeback(s) lost", facts.chargebacks_lost)));
    }
    let share_bp = share_bp(facts.refunded_minor, facts.ordered_minor);
    if facts.refunds >= rules.min_refunds_for_share {
        let share =
            format!("{} refunds worth {}.{:02}% of what was ordered", facts.refunds, share_bp / 100, share_bp % 100);
        if share_bp >= u64::from(rules.high_refund_share_bp) {
            found.push((RiskTier::High, share));
        } else if share_bp >= u64::from(rules.watch_refund_share_bp) {
            found.push((RiskTier::Watch, share));
        }
    }
    let inr = facts.inr_against_delivered;
    if inr >= rules.high_inr_delivered {
        found.push((RiskTier::High, format!("{inr} \"did not arrive\" claims on parcels tracked as delivered")));
    } else if inr >= rules.watch_inr_delivered {
        found.push((RiskTier::Watch, format!("{inr} \"did not arrive\" claim on a parcel tracked as delivered")));
    }
    let sharing = facts.identities_sharing_address;
    if sharing >= rules.ring_sharing {
        found.push((RiskTier::High, format!("{sharing} other identities ship to one of its addresses")));
    }
    // What is not known yet is not trust: until the mirror has read every
    // store's orders once, no one is trusted beyond the watch tier.
    if facts.stores_unread > 0 {
        let n = facts.stores_unread;
        found.push((RiskTier::Watch, format!("the shop mirror has not read {n} store(s)' orders through yet")));
    }
    if facts.unidentified {
        found.push((RiskTier::Watch, "no email, phone or card to know the customer by".to_string()));
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let tier = found.first().map_or(RiskTier::Trusted, |f| f.0);
    (tier, found.into_iter().map(|(_, why)| why).collect())
}

/// `part` over `whole` in basis points (0 for an empty whole; both
/// non-negative by construction, negatives count as 0).
fn share_bp(part: i64, whole: i64) -> u64 {
    let (part, whole) = (part.max(0) as u128, whole.max(0) as u128);
    if whole == 0 {
        return 0;
    }
    u64::try_from(part * 10_000 / whole).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> IdentityFacts {
        IdentityFacts { orders: 10, ordered_minor: 100_000, ..IdentityFacts::default() }
    }

    #[test]
    fn an_honest_customer_is_trusted_and_nothing_is_named() {
        let mut f = facts();
        f.refunds = 1;
        f.refunded_minor = 90_000; // one big refund: 90%, but one refund says little
        assert_eq!(tier_of(&f, &TierRules::default()), (RiskTier::Trusted, vec![]));
    }

    #[test]
    fn each_fact_sets_its_tier_and_is_named() {
        let rules = TierRules::default();
        let mut f = facts();
        f.refunds = 3;
        f.refunded_minor = 30_000;
        assert_eq!(tier_of(&f, &rules), (RiskTier::Watch, vec!["3 refunds worth 30.00% of what was ordered".into()]));
        f.refunded_minor = 50_000;
        assert_eq!(tier_of(&f, &rules).0, RiskTier::High, "half of it back");
        let mut g = facts();
        g.inr_against_delivered = 1;
        assert_eq!(tier_of(&g, &rules).0, RiskTier::Watch);
        g.inr_against_delivered = 2;
        assert_eq!(tier_of(&g, &rules).0, RiskTier::High);
        let mut ring = facts();
        ring.identities_sharing_address = 3;
        assert!(tier_of(&ring, &rules).1[0].contains("3 other identities"));
        // A chargeback blocks, and is named first whatever else is there.
        f.chargebacks_lost = 1;
        let (tier, why) = tier_of(&f, &rules);
        assert_eq!(tier, RiskTier::Blocked);
        assert_eq!(why, vec!["1 chargeback(s) lost".to_string(), "3 refunds worth 50.00% of what was ordered".into()]);
        let mut open = facts();
        open.chargebacks_open = 2;
        assert_eq!(tier_of(&open, &rules).0, RiskTier::Blocked);
        // History not read yet: watched, never trusted; never more than that.
        let mut early = facts();
        early.stores_unread = 2;
        let why = vec!["the shop mirror has not read 2 store(s)' orders through yet".to_string()];
        assert_eq!(tier_of(&early, &rules), (RiskTier::Watch, why));
        early.identities_sharing_address = 3;
        assert_eq!(tier_of(&early, &rules).0, RiskTier::High);
        let nobody = IdentityFacts { unidentified: true, ..IdentityFacts::default() };
        assert_eq!(
            tier_of(&nobody, &rules),
            (RiskTier::Watch, vec!["no email, phone or card to know the customer by".into()])
        );
    }

    #[test]
    fn shares_are_integer_and_never_divide_by_zero() {
        assert_eq!(share_bp(1, 3), 3_333);
        assert_eq!(share_bp(5, 0), 0);
        assert_eq!(share_bp(-5, 10), 0);
        assert_eq!(share_bp(i64::MAX, 1), u64::MAX, "saturates");
        let mut f = facts();
        f.refunds = 2;
        f.ordered_minor = 0;
        f.refunded_minor = 10;
        assert_eq!(tier_of(&f, &TierRules::default()).0, RiskTier::Trusted);
    }
}
