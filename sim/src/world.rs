//! The world model: one brand's ads, their spend and their purchases, as
//! truth. The sim's ads platform serves it; the checker judges against it.
//!
//! Spend is exact and needs no stepping: an active ad spends
//! `spend_cents_per_min` per minute, so cumulative spend at `t` is
//! `rate × active_ms(t) / 60000` in integers. Purchases are random: each
//! active second draws one Bernoulli trial with probability
//! `spend_per_second / true_cpa` from the world's own ChaCha stream, and each
//! purchase is reported after an attribution delay, so past buckets keep
//! gaining purchases for a while.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::money::{Currency, Money};
use dlft_core::sense::ads::{AdNode, AdParents, AdStatus, InsightRow, Level, LibraryAd};
use dlft_core::time::{Millis, Timestamp};

use crate::scenario::{Range, Scenario};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdSpec {
    pub id: AdId,
    pub spend_cents_per_min: i64,
    pub true_cpa_cents: i64,
    pub order_value_cents: i64,
    pub loser: bool,
}

#[derive(Clone, Debug)]
struct Purchase {
    event_at: Timestamp,
    reported_at: Timestamp,
}

#[derive(Clone, Debug)]
struct AdState {
    spec: AdSpec,
    /// When the ad began to deliver: the world's start, or the instant it
    /// was launched later ([`AdsWorld::launch`]).
    launched: Timestamp,
    /// Spans `[from, until)` in which the ad did not spend (paused itself,
    /// or its ad set or campaign paused), in order; the last may be open.
    pauses: Vec<(Timestamp, Option<Timestamp>)>,
    /// Paused itself (its own `status`).
    own: bool,
    purchases: Vec<Purchase>,
}

impl AdState {
    fn open_pause(&self) -> Option<Timestamp> {
        self.pauses.last().and_then(|&(from, until)| until.is_none().then_some(from))
    }

    fn is_paused_at(&self, t: Timestamp) -> bool {
        self.pauses.iter().any(|&(from, until)| from <= t && until.is_none_or(|u| t < u))
    }
}

/// A competitor store's page in the public ad library.
#[derive(Clone, Debug)]
struct PageState {
    /// New library ads per simulated day.
    new_ads_per_day: u64,
    ads: Vec<LibraryAd>,
}

/// One call the model vendor billed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bill {
    pub call_id: String,
    pub page: String,
    pub cents: i64,
    pub at: Timestamp,
}

/// A pause that changed the world: the ad was paused itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub key: IdempotencyKey,
    pub ad: AdId,
    pub at: Timestamp,
}

/// A pause or resume of an ad set or campaign that changed the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEffect {
    pub key: IdempotencyKey,
    pub node: AdNode,
    pub paused: bool,
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct AdsWorld {
    start: Timestamp,
    currency: Currency,
    bucket: Millis,
    purchase_delay_ms: Range,
    ads: BTreeMap<AdId, AdState>,
    /// Whole seconds of purchase draws done so far.
    drawn_s: u64,
    rng: ChaCha8Rng,
    effects: Vec<Effect>,
    pages: BTreeMap<String, PageState>,
    /// Pages draw from their own stream, so adding pages does not move the ads' draws.
    page_rng: ChaCha8Rng,
    bills: Vec<Bill>,
    model_call_cents: i64,
    /// What a launched ad is drawn from (the scenario's `[world]`).
    launch_spec: crate::scenario::WorldSection,
    /// Launched ads draw from their own stream, so launches do not move
    /// the purchase draws of a world that has none.
    launch_rng: ChaCha8Rng,
    /// The brands' ad accounts: ad `ad-NNN` is account `(NNN - 1) mod n`'s.
    /// Empty: one account holds every ad.
    accounts: Vec<String>,
    /// Accounts whose access was revoked: the platform refuses their calls.
    revoked: std::collections::BTreeSet<String>,
    /// The brand whose ticks crash the worker (its breaker takes it out of
    /// the loop's reach).
    crash_loop: Option<String>,
    /// Calls refused so far because their account was revoked.
    refused: u64,
    ads_per_adset: u32,
    adsets_per_campaign: u32,
    /// Ad sets and campaigns paused now.
    paused_nodes: std::collections::BTreeSet<AdNode>,
    node_effects: Vec<NodeEffect>,
}

/// Ids stay `ad-NNN`, so a launched ad sorts after every earlier one and
/// insights pages already handed out keep their offsets.
pub const MAX_ADS: usize = 999;

/// One page of `rows` after the opaque cursor `after` (`o{offset}`): the
/// page's `[start, end)` range, or `None` for a cursor this world never gave.
pub fn page_range(len: usize, after: Option<&str>, limit: u32) -> Option<(usize, usize)> {
    let start = match after {
        None => 0,
        Some(c) => c.strip_prefix('o')?.parse::<usize>().ok()?.min(len),
    };
    Some((start, (start + limit as usize).min(len)))
}

/// The name of the i-th store page.
pub fn page_name(i: u32) -> String {
    format!("page-{}", i + 1)
}

/// Draws uniformly from an inclusive range.
pub fn draw(rng: &mut impl Rng, r: Range) -> u64 {
    rng.random_range(r.lo..=r.hi)
}

impl AdsWorld {
    pub fn new(scn: &Scenario, start: Timestamp, rng: ChaCha8Rng) -> AdsWorld {
        let mut rng = rng;
        let mut page_rng = rng.clone();
        page_rng.set_stream(rng.get_stream() + 1_000);
        let mut launch_rng = rng.clone();
        launch_rng.set_stream(rng.get_stream() + 2_000);
        let mut pages = BTreeMap::new();
        if let Some(scan) = &scn.scan {
            for i in 0..scan.pages {
                let state = PageState { new_ads_per_day: draw(&mut page_rng, scan.new_ads_per_day), ads: Vec::new() };
                pages.insert(page_name(i), state);
            }
        }
        let model_call_cents = scn.scan.as_ref().map_or(0, |s| s.model_call_cents);
        let w = &scn.world;
        let losers = (u64::from(w.ads) * u64::from(w.loser_pct)).div_ceil(100);
        let mut ads = BTreeMap::new();
        for i in 0..u64::from(w.ads) {
            // Losers are spread through the id order so that they are not all first.
            let loser = (i * losers) / u64::from(w.ads) != ((i + 1) * losers) / u64::from(w.ads);
            let id = AdId::new(format!("ad-{:03}", i + 1));
            let cpa = if loser { w.loser_cpa_cents } else { w.winner_cpa_cents };
            let spec = AdSpec {
                id: id.clone(),
                spend_cents_per_min: draw(&mut rng, w.spend_cents_per_min) as i64,
                true_cpa_cents: draw(&mut rng, cpa) as i64,
                order_value_cents: draw(&mut rng, w.order_value_cents) as i64,
                loser,
            };
            ads.insert(id, AdState { spec, launched: start, pauses: Vec::new(), own: false, purchases: Vec::new() });
        }
        AdsWorld {
            start,
            currency: scn.currency(),
            bucket: Millis::from_secs(w.bucket_s),
            purchase_delay_ms: Range { lo: w.purchase_delay_s.lo * 1000, hi: w.purchase_delay_s.hi * 1000 },
            ads,
            drawn_s: 0,
            rng,
            effects: Vec::new(),
            pages,
            page_rng,
            bills: Vec::new(),
            model_call_cents,
            launch_spec: w.clone(),
            launch_rng,
            accounts: scn.brand_accounts(),
            revoked: scn.brands.as_ref().map_or_else(Default::default, |b| b.revoked.iter().cloned().collect()),
            crash_loop: scn.brands.as_ref().and_then(|b| b.crash_loop.clone()),
            refused: 0,
            ads_per_adset: w.ads_per_adset.max(1),
            adsets_per_campaign: w.adsets_per_campaign.max(1),
            paused_nodes: Default::default(),
            node_effects: Vec::new(),
        }
    }

    /// The ad set and campaign of an ad: consecutive ads of one account
    /// share an ad set (`adset-{account}-{n}`), consecutive ad sets a
    /// campaign (`campaign-{account}-{n}`).
    pub fn parents(&self, ad: &AdId) -> Option<AdParents> {
        if !self.ads.contains_key(ad) {
            return None;
        }
        let n: u64 = ad.as_str().strip_prefix("ad-")?.parse().ok()?;
        let accounts = self.accounts.len().max(1) as u64;
        let idx = n.max(1) - 1;
        let (account, pos) = (idx % accounts, idx / accounts);
        let set = pos / u64::from(self.ads_per_adset);
        let campaign = set / u64::from(self.adsets_per_campaign);
        Some(AdParents { adset: format!("adset-{account}-{set}"), campaign: format!("campaign-{account}-{campaign}") })
    }

    fn exists(&self, node: &AdNode) -> bool {
        self.ads.keys().any(|ad| self.parents(ad).is_some_and(|p| p.node(node.level) == *node))
    }

    /// Whether an ad spends nothing now: paused itself or from above.
    fn stopped(&self, ad: &AdId) -> bool {
        let Some(state) = self.ads.get(ad) else { return false };
        state.own
            || !self.paused_nodes.is_empty()
                && self.parents(ad).is_some_and(|p| {
                    self.paused_nodes.contains(&p.node(Level::AdSet))
                        || self.paused_nodes.contains(&p.node(Level::Campaign))
                })
    }

    /// Opens or closes the ad's span of not spending to match its state now.
    fn refresh(&mut self, ad: &AdId, now: Timestamp) {
        let stopped = self.stopped(ad);
        let Some(state) = self.ads.get_mut(ad) else { return };
        match (stopped, state.open_pause().is_some()) {
            (true, false) => state.pauses.push((now, None)),
            (false, true) => {
                if let Some(last) = state.pauses.last_mut() {
                    last.1 = Some(now);
                }
            }
            _ => {}
        }
    }

    /// Pauses (`paused`) or resumes an ad set or campaign at `now`: its ads
    /// stop or spend again (unless paused themselves or from elsewhere).
    /// Returns whether the node exists.
    pub fn set_node(&mut self, node: &AdNode, paused: bool, key: &IdempotencyKey, now: Timestamp) -> bool {
        if !self.exists(node) {
            return false;
        }
        self.advance_to(now);
        let changed = if paused { self.paused_nodes.insert(node.clone()) } else { self.paused_nodes.remove(node) };
        if changed {
            self.node_effects.push(NodeEffect { key: key.clone(), node: node.clone(), paused, at: now });
            let under: Vec<AdId> = self
                .ads
                .keys()
                .filter(|ad| self.parents(ad).is_some_and(|p| p.node(node.level) == *node))
                .cloned()
                .collect();
            for ad in under {
                self.refresh(&ad, now);
            }
        }
        true
    }

    /// A node's own status and its effective one (`CAMPAIGN_PAUSED` for an
    /// active ad set in a paused campaign); `None` if there is no such node.
    pub fn node_status(&self, node: &AdNode) -> Option<(bool, &'static str)> {
        if !self.exists(node) {
            return None;
        }
        let own = self.paused_nodes.contains(node);
        let campaign_paused = node.level == Level::AdSet
            && self
                .ads
                .keys()
                .find_map(|ad| self.parents(ad).filter(|p| p.adset == node.id))
                .is_some_and(|p| self.paused_nodes.contains(&p.node(Level::Campaign)));
        let effective = match (own, campaign_paused) {
            (true, _) => "PAUSED",
            (false, true) => "CAMPAIGN_PAUSED",
            (false, false) => "ACTIVE",
        };
        Some((own, effective))
    }

    /// Ad sets and campaigns paused now.
    pub fn paused_nodes(&self) -> &std::collections::BTreeSet<AdNode> {
        &self.paused_nodes
    }

    pub fn node_effects(&self) -> &[NodeEffect] {
        &self.node_effects
    }

    /// Whether the ad is paused itself (its own status).
    pub fn paused_itself(&self, ad: &AdId) -> bool {
        self.ads.get(ad).is_some_and(|s| s.own)
    }

    /// The account (brand) an ad belongs to; `None` in a one-account world.
    pub fn account_of(&self, ad: &AdId) -> Option<&str> {
        if self.accounts.is_empty() {
            return None;
        }
        let n: usize = ad.as_str().strip_prefix("ad-")?.parse().ok()?;
        Some(self.accounts[(n.max(1) - 1) % self.accounts.len()].as_str())
    }

    /// Refuses a call of `account` if its access was revoked (and counts it).
    pub fn refuses(&mut self, account: Option<&str>) -> bool {
        let refused = account.is_some_and(|a| self.revoked.contains(a));
        self.refused += u64::from(refused);
        refused
    }

    /// Calls refused so far because their account was revoked.
    pub fn refused_calls(&self) -> u64 {
        self.refused
    }

    /// Whether an ad is out of the loop's reach: its account was revoked,
    /// or its brand's ticks crash the worker (until the breaker stops them).
    pub fn is_unreachable(&self, ad: &AdId) -> bool {
        self.account_of(ad).is_some_and(|a| self.revoked.contains(a) || self.crash_loop.as_deref() == Some(a))
    }

    /// One account's insights, as [`AdsWorld::insights`]: its ads only (every
    /// ad with `None`, or in a one-account world).
    pub fn insights_of(
        &self,
        account: Option<&str>,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Vec<InsightRow> {
        let account = account.filter(|_| !self.accounts.is_empty());
        let until = until.min(now);
        let first = since.max(self.start).floor_to(self.bucket);
        let mut rows = Vec::new();
        for ad in self.ads.values().filter(|a| account.is_none() || self.account_of(&a.spec.id) == account) {
            let mut b = first;
            while b < until {
                let end = b + self.bucket;
                let spend = self.cumulative_spend(ad, end.min(now)) - self.cumulative_spend(ad, b);
                let purchases =
                    ad.purchases.iter().filter(|p| p.event_at >= b && p.event_at < end && p.reported_at <= now).count()
                        as u32;
                if spend > 0 || purchases > 0 {
                    rows.push(InsightRow {
                        ad: ad.spec.id.clone(),
                        bucket_start: b,
                        spend: Money::new(spend, self.currency),
                        purchases,
                        revenue: Money::new(i64::from(purchases) * ad.spec.order_value_cents, self.currency),
                    });
                }
                b = end;
            }
        }
        rows
    }

    /// Launches `losers` losing and `winners` winning ads at `now` (drawn
    /// like the scenario's own), after every existing ad in id order.
    /// Returns their ids; refuses to go past [`MAX_ADS`].
    pub fn launch(&mut self, losers: u32, winners: u32, now: Timestamp) -> Result<Vec<AdId>, String> {
        let n = losers as usize + winners as usize;
        if self.ads.len() + n > MAX_ADS {
            return Err(format!(
                "the world holds at most {MAX_ADS} ads; it has {} and {n} more were asked",
                self.ads.len()
            ));
        }
        self.advance_to(now);
        // Whole seconds only, so the purchase draws of `advance_to` see the
        // ad from its first full second.
        let launched = self.start + Millis::from_secs(now.since(self.start).0.div_ceil(1000));
        let w = &self.launch_spec;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let loser = i < losers as usize;
            let id = AdId::new(format!("ad-{:03}", self.ads.len() + 1));
            let cpa = if loser { w.loser_cpa_cents } else { w.winner_cpa_cents };
            let spec = AdSpec {
                id: id.clone(),
                spend_cents_per_min: draw(&mut self.launch_rng, w.spend_cents_per_min) as i64,
                true_cpa_cents: draw(&mut self.launch_rng, cpa) as i64,
                order_value_cents: draw(&mut self.launch_rng, w.order_value_cents) as i64,
                loser,
            };
            self.ads
                .insert(id.clone(), AdState { spec, launched, pauses: Vec::new(), own: false, purchases: Vec::new() });
            out.push(id);
        }
        Ok(out)
    }

    /// When the ad began to deliver.
    pub fn launched_at(&self, ad: &AdId) -> Option<Timestamp> {
        self.ads.get(ad).map(|a| a.launched)
    }

    pub fn specs(&self) -> impl Iterator<Item = &AdSpec> {
        self.ads.values().map(|a| &a.spec)
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Draws purchases for every whole second before `now`.
    pub fn advance_to(&mut self, now: Timestamp) {
        let target_s = now.since(self.start).0 / 1000;
        while self.drawn_s < target_s {
            let second = self.start + Millis::from_secs(self.drawn_s);
            for ad in self.ads.values_mut() {
                if second < ad.launched || ad.is_paused_at(second) {
                    continue;
                }
                // P(purchase in this second) = (rate/60) / cpa = rate / (60 cpa).
                let denominator = 60 * ad.spec.true_cpa_cents as u64;
                if self.rng.random_range(0..denominator) < ad.spec.spend_cents_per_min as u64 {
                    let delay = draw(&mut self.rng, self.purchase_delay_ms);
                    ad.purchases.push(Purchase { event_at: second, reported_at: second + Millis(delay) });
                }
            }
            for (name, page) in &mut self.pages {
                if self.page_rng.random_range(0..86_400) < page.new_ads_per_day {
                    let id = format!("{name}-ad-{}", page.ads.len() + 1);
                    page.ads.push(LibraryAd { id, started_at: second });
                }
            }
            self.drawn_s += 1;
        }
    }

    /// The page's library ads at `now` (call `advance_to` first).
    pub fn library(&self, page: &str) -> Option<Vec<LibraryAd>> {
        self.pages.get(page).map(|p| p.ads.clone())
    }

    /// The model vendor bills one call.
    pub fn bill(&mut self, call_id: &str, page: &str, now: Timestamp) {
        self.bills.push(Bill { call_id: call_id.into(), page: page.into(), cents: self.model_call_cents, at: now });
    }

    pub fn bills(&self) -> &[Bill] {
        &self.bills
    }

    fn cumulative_spend(&self, ad: &AdState, t: Timestamp) -> i64 {
        if t <= ad.launched {
            return 0;
        }
        let paused_ms: u64 =
            ad.pauses.iter().map(|&(from, until)| until.map_or(t, |u| u.min(t)).since(from.min(t)).0).sum();
        let active_ms = t.since(ad.launched).0 - paused_ms;
        ad.spec.spend_cents_per_min * active_ms as i64 / 60_000
    }

    /// World spend of `ad` in `[from, to)`.
    pub fn spend_between(&self, ad: &AdId, from: Timestamp, to: Timestamp) -> i64 {
        let Some(state) = self.ads.get(ad) else {
            return 0;
        };
        if to <= from {
            return 0;
        }
        self.cumulative_spend(state, to) - self.cumulative_spend(state, from)
    }

    /// Insights rows as the platform reports them at `now` (call `advance_to`
    /// first): one row per ad and bucket with delivery, in (ad, bucket) order.
    pub fn insights(&self, since: Timestamp, until: Timestamp, now: Timestamp) -> Vec<InsightRow> {
        self.insights_of(None, since, until, now)
    }

    /// Applies a pause at `now`. Returns whether the ad exists. A pause of a
    /// paused ad changes nothing and is no effect.
    pub fn pause(&mut self, ad: &AdId, key: &IdempotencyKey, now: Timestamp) -> bool {
        self.advance_to(now);
        let Some(state) = self.ads.get_mut(ad) else {
            return false;
        };
        if !state.own {
            state.own = true;
            self.effects.push(Effect { key: key.clone(), ad: ad.clone(), at: now });
            self.refresh(ad, now);
        }
        true
    }

    /// Someone re-activates a paused ad (an operator in Ads Manager): it
    /// spends again from `now` (unless paused from above). Spend while
    /// paused stays unspent.
    pub fn resume(&mut self, ad: &AdId, now: Timestamp) {
        self.advance_to(now);
        if let Some(state) = self.ads.get_mut(ad) {
            state.own = false;
            self.refresh(ad, now);
        }
    }

    /// The status as it was at `t` (a stale read): stopped then is told as
    /// it is told now, or as paused.
    pub fn status_at(&self, ad: &AdId, t: Timestamp) -> Option<AdStatus> {
        let s = self.ads.get(ad)?;
        if !s.is_paused_at(t) {
            return Some(AdStatus::Active);
        }
        Some(self.status(ad).filter(|now| *now != AdStatus::Active).unwrap_or(AdStatus::Paused))
    }

    /// The effective status: `Paused` when paused itself, `ADSET_PAUSED` or
    /// `CAMPAIGN_PAUSED` when stopped only from above.
    pub fn status(&self, ad: &AdId) -> Option<AdStatus> {
        let s = self.ads.get(ad)?;
        if s.own {
            return Some(AdStatus::Paused);
        }
        if self.paused_nodes.is_empty() {
            return Some(AdStatus::Active);
        }
        let p = self.parents(ad)?;
        Some(if self.paused_nodes.contains(&p.node(Level::AdSet)) {
            AdStatus::Other("ADSET_PAUSED".into())
        } else if self.paused_nodes.contains(&p.node(Level::Campaign)) {
            AdStatus::Other("CAMPAIGN_PAUSED".into())
        } else {
            AdStatus::Active
        })
    }

    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// When the ad's current pause began, if it is paused now.
    pub fn paused_at(&self, ad: &AdId) -> Option<Timestamp> {
        self.ads.get(ad).and_then(AdState::open_pause)
    }

    pub fn is_loser(&self, ad: &AdId) -> bool {
        self.ads.get(ad).is_some_and(|a| a.spec.loser)
    }

    pub fn bucket(&self) -> Millis {
        self.bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{EPOCH, rng_for};

    fn world() -> AdsWorld {
        let scn = crate::scenario::Scenario::parse(
            include_str!("../../scenarios/ad-kill-container-loss.toml"),
            std::path::Path::new("s.toml"),
        )
        .unwrap();
        AdsWorld::new(&scn, EPOCH, rng_for(1, 1))
    }

    #[test]
    fn spend_is_exact_across_pause_and_resume() {
        let mut w = world();
        let ad = w.specs().next().unwrap().clone();
        let min = |m: u64| EPOCH + Millis::from_secs(60 * m);
        let per_min = ad.spend_cents_per_min;
        assert_eq!(w.spend_between(&ad.id, min(0), min(2)), 2 * per_min);
        w.pause(&ad.id, &IdempotencyKey::new("k"), min(2));
        assert_eq!(w.spend_between(&ad.id, min(2), min(5)), 0, "paused ads do not spend");
        w.resume(&ad.id, min(5));
        assert_eq!(w.spend_between(&ad.id, min(0), min(7)), 4 * per_min, "history is unchanged by a resume");
        assert_eq!(w.spend_between(&ad.id, min(1), min(3)), per_min);
        assert_eq!(w.status(&ad.id), Some(AdStatus::Active));
    }

    #[test]
    fn an_ad_set_or_campaign_stops_its_ads_and_a_resume_restarts_only_those_not_paused_themselves() {
        let mut w = world();
        let min = |m: u64| EPOCH + Millis::from_secs(60 * m);
        let a = AdId::new("ad-001");
        let b = AdId::new("ad-002");
        let p = w.parents(&a).unwrap();
        assert_eq!(w.parents(&b).unwrap(), p, "neighbours share an ad set");
        let set = p.node(Level::AdSet);
        let k = IdempotencyKey::new("k");
        assert!(w.set_node(&set, true, &k, min(1)));
        assert_eq!(w.status(&a), Some(AdStatus::Other("ADSET_PAUSED".into())));
        assert_eq!(w.spend_between(&a, min(1), min(3)), 0, "stopped from above");
        w.pause(&a, &k, min(2));
        assert_eq!(w.status(&a), Some(AdStatus::Paused));
        assert!(w.set_node(&set, false, &k, min(3)));
        assert_eq!(w.spend_between(&a, min(3), min(5)), 0, "paused itself: stays stopped");
        let per_min = w.specs().find(|s| s.id == b).unwrap().spend_cents_per_min;
        assert_eq!(w.spend_between(&b, min(0), min(5)), 3 * per_min, "the sibling spent before and after");
        assert_eq!(w.node_effects().len(), 2);
        let campaign = p.node(Level::Campaign);
        assert!(w.set_node(&campaign, true, &k, min(5)));
        assert_eq!(w.node_status(&set), Some((false, "CAMPAIGN_PAUSED")));
        assert_eq!(w.status(&b), Some(AdStatus::Other("CAMPAIGN_PAUSED".into())));
        assert!(!w.set_node(&AdNode { level: Level::AdSet, id: "adset-9-9".into() }, true, &k, min(6)));
    }

    #[test]
    fn past_buckets_gain_late_purchases_but_not_spend() {
        let mut w = world();
        let at = |m: u64| EPOCH + Millis::from_secs(60 * m);
        w.advance_to(at(10));
        let early: i64 = w.insights(at(0), at(5), at(5)).iter().map(|r| i64::from(r.purchases)).sum();
        let late: i64 = w.insights(at(0), at(5), at(10)).iter().map(|r| i64::from(r.purchases)).sum();
        assert!(late > early, "late attribution: {early} then {late}");
        let spend = |now| w.insights(at(0), at(4), now).iter().map(|r| r.spend.minor).sum::<i64>();
        assert_eq!(spend(at(5)), spend(at(10)), "closed buckets' spend is final");
    }

    #[test]
    fn a_launched_ad_spends_from_its_launch_and_sorts_last() {
        let mut w = world();
        let at = |s: u64| EPOCH + Millis::from_secs(s);
        let before: Vec<AdId> = w.specs().map(|s| s.id.clone()).collect();
        let ids = w.launch(2, 1, at(90) + Millis(400)).unwrap();
        assert_eq!(ids.len(), 3);
        let all: Vec<AdId> = w.specs().map(|s| s.id.clone()).collect();
        assert_eq!(&all[..before.len()], &before[..], "launched ads sort after every earlier one");
        assert_eq!(&all[before.len()..], &ids[..]);
        assert!(w.is_loser(&ids[0]) && w.is_loser(&ids[1]) && !w.is_loser(&ids[2]));
        let ad = &ids[0];
        assert_eq!(w.launched_at(ad), Some(at(91)), "launched at the next whole second");
        let per_min = w.specs().find(|s| &s.id == ad).unwrap().spend_cents_per_min;
        assert_eq!(w.spend_between(ad, at(0), at(91)), 0, "nothing before its launch");
        assert_eq!(w.spend_between(ad, at(0), at(151)), per_min);
        w.advance_to(at(600));
        let rows = w.insights(at(0), at(600), at(600));
        assert!(rows.iter().filter(|r| ids.contains(&r.ad)).all(|r| r.bucket_start >= at(60)), "no rows before launch");
        assert!(w.launch(1000, 0, at(600)).is_err(), "ids are bounded");
    }
}
