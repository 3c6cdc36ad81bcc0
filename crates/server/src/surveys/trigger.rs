//! Survey-trigger flags: the in-app alternative to sending personal links
//! (`docs/surveys.md`, "In-app").
//!
//! A campaign (or the trial wave it is created for) names a flag key, its
//! *trigger flag*. That key is not a flag of the flag set (both are
//! refused: a campaign naming a flag of the set, and a flag-set change
//! adding a trigger flag's key), so an OFREP evaluation of it comes here:
//! for a `targetingKey` invited to an open campaign of the flag, whose
//! response is not complete (nor declined), and whose latest consent
//! decision is not a withdrawal, the value is `{"show": true, "url", "campaign",
//! "wave", "expires_at"}` with the unit's personal link, signed at
//! evaluation ([`core::surveys::token`]: a pure function of the study key,
//! so every replica gives the same link, and the same one
//! `POST …/links` gives). Anyone else gets `{"show": false}`; the variant
//! says why ([`Why`]). Neither carries a pseudonym outside the link of the
//! very unit the caller named.
//!
//! What a replica keeps: the campaigns with a trigger flag (reloaded by the
//! poller, [`Triggers::refresh`]) and each unit's standing (invitations,
//! responses, latest consents) for `survey_trigger_ttl` (default 5 s), at
//! most [`MAX_CACHED_UNITS`] units (expired entries are evicted first, then
//! everything). The survey pages forget a unit's standing on this replica
//! when its response starts, is declined or completes; other replicas
//! see it within the TTL. The bulk ETag digests the trigger answers, so it
//! never hides a change longer than that.
//!
//! [`core::surveys::token`]: commonlab_core::surveys::token

use crate::config::Config;
use arc_swap::ArcSwap;
use chrono::{DateTime, SecondsFormat, Utc};
use commonlab_core::flags::FlagValue;
use commonlab_core::privacy::pseudonymise;
use commonlab_core::surveys::token::{sign, TokenClaims};
use commonlab_store::{
    CampaignRecord, LatestConsent, ResponseStatus, Store, StoreError, TriggerStanding,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::service::LINK_PATH;

/// Units whose standing a replica keeps at once.
pub const MAX_CACHED_UNITS: usize = 100_000;

/// Why a trigger flag answers as it does: the variant of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Invited to an open campaign, response not complete: the link.
    Show,
    /// The unit's latest consent decision is a withdrawal.
    ConsentWithdrawn,
    Completed,
    /// The unit declined the survey's consent.
    Declined,
    /// Invited, but the campaign does not open yet.
    NotOpen,
    /// Invited, but the campaign has closed (its links have expired).
    Expired,
    NotInvited,
    /// No `targetingKey` in the context.
    NoTargetingKey,
    /// The database could not be read: nothing is shown.
    Unavailable,
}

impl Why {
    /// The variant name.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Show => "show",
            Why::ConsentWithdrawn => "consent_withdrawn",
            Why::Completed => "completed",
            Why::Declined => "declined",
            Why::NotOpen => "not_open",
            Why::Expired => "expired",
            Why::NotInvited => "not_invited",
            Why::NoTargetingKey => "no_targeting_key",
            Why::Unavailable => "unavailable",
        }
    }
}

/// A trigger flag's answer for one context.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub value: FlagValue,
    pub why: Why,
}

impl Answer {
    fn off(why: Why) -> Answer {
        let mut m = Map::new();
        m.insert("show".into(), Value::Bool(false));
        Answer {
            value: FlagValue::Object(m),
            why,
        }
    }

    /// The variant (why).
    pub fn variant(&self) -> &'static str {
        self.why.as_str()
    }

    /// The OFREP reason: `TARGETING_MATCH` when the unit's standing
    /// decided, `DEFAULT` without a targeting key or a readable standing.
    pub fn reason(&self) -> &'static str {
        match self.why {
            Why::NoTargetingKey | Why::Unavailable => "DEFAULT",
            _ => "TARGETING_MATCH",
        }
    }
}

/// The campaigns with a trigger flag, by flag.
#[derive(Default)]
struct TriggerSet {
    campaigns: Vec<CampaignRecord>,
    /// Flag key → indices into `campaigns`.
    by_flag: BTreeMap<String, Vec<usize>>,
    generation: u64,
}

struct Standing {
    at: Instant,
    generation: u64,
    campaigns: Vec<TriggerStanding>,
    consents: Vec<LatestConsent>,
}

struct Inner {
    store: Store,
    config: Arc<Config>,
    set: ArcSwap<TriggerSet>,
    /// By pseudonym.
    units: Mutex<HashMap<String, Arc<Standing>>>,
}

/// The replica's survey-trigger flags (cheap to clone).
#[derive(Clone)]
pub struct Triggers(Arc<Inner>);

impl Triggers {
    pub fn new(store: Store, config: Arc<Config>) -> Triggers {
        Triggers(Arc::new(Inner {
            store,
            config,
            set: ArcSwap::from_pointee(TriggerSet::default()),
            units: Mutex::default(),
        }))
    }

    fn units(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Standing>>> {
        self.0.units.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads the campaigns with a trigger flag; when they changed, every
    /// cached standing is dropped.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let campaigns = store.trigger_campaigns().await?;
        let current = self.0.set.load();
        if current.campaigns == campaigns {
            return Ok(());
        }
        let mut by_flag: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in campaigns.iter().enumerate() {
            if let Some(f) = &c.trigger_flag {
                by_flag.entry(f.clone()).or_default().push(i);
            }
        }
        self.0.set.store(Arc::new(TriggerSet {
            campaigns,
            by_flag,
            generation: current.generation + 1,
        }));
        self.units().clear();
        Ok(())
    }

    /// Whether `key` is a trigger flag of some campaign.
    pub fn is_trigger(&self, key: &str) -> bool {
        self.0.set.load().by_flag.contains_key(key)
    }

    /// Whether no campaign has a trigger flag (the bulk evaluation's fast
    /// path).
    pub fn is_empty(&self) -> bool {
        self.0.set.load().by_flag.is_empty()
    }

    /// The trigger flags' keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.0.set.load().by_flag.keys().cloned().collect()
    }

    /// The next instant (Unix seconds) after `now` at which a campaign
    /// with a trigger flag opens or closes: trigger answers computed at
    /// `now` hold no longer (for the bulk ETag).
    pub fn next_change(&self, now: i64) -> Option<i64> {
        let set = self.0.set.load();
        set.campaigns
            .iter()
            .flat_map(|c| [c.opens_at.timestamp(), c.closes_at.timestamp()])
            .filter(|t| *t > now)
            .min()
    }

    /// Forgets the standing of `unit` (a pseudonym) on this replica: its
    /// response just changed.
    pub fn forget(&self, unit: &str) {
        self.units().remove(unit);
    }

    /// The answer of trigger flag `key` for `targeting_key` at `now`;
    /// `None` when `key` is no trigger flag.
    pub async fn evaluate(
        &self,
        key: &str,
        targeting_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Answer> {
        let set = self.0.set.load_full();
        let indices = set.by_flag.get(key)?;
        let Some(tk) = targeting_key.filter(|k| !k.is_empty()) else {
            return Some(Answer::off(Why::NoTargetingKey));
        };
        let unit = pseudonymise(&self.0.config.study_key, tk).to_string();
        let standing = match self.standing(&unit, set.generation).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(flag = key, error = %e, "survey-trigger standing unreadable; not showing the survey");
                return Some(Answer::off(Why::Unavailable));
            }
        };
        Some(self.decide(&set, indices, &unit, &standing, now))
    }

    /// Every trigger flag's answer for `targeting_key` (bulk evaluation),
    /// sorted by key; empty when no campaign has a trigger flag.
    pub async fn evaluate_all(
        &self,
        targeting_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(String, Answer)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for key in self.keys() {
            if let Some(a) = self.evaluate(&key, targeting_key, now).await {
                out.push((key, a));
            }
        }
        out
    }

    /// The unit's standing, from the cache when younger than the TTL.
    async fn standing(&self, unit: &str, generation: u64) -> Result<Arc<Standing>, StoreError> {
        let ttl = self.0.config.survey_trigger_ttl;
        if let Some(s) = self.units().get(unit) {
            if s.generation == generation && s.at.elapsed() < ttl {
                return Ok(s.clone());
            }
        }
        let (campaigns, consents) = self.0.store.trigger_standing(unit).await?;
        let s = Arc::new(Standing {
            at: Instant::now(),
            generation,
            campaigns,
            consents,
        });
        if !ttl.is_zero() {
            insert_bounded(&mut self.units(), unit, s.clone(), ttl, MAX_CACHED_UNITS);
        }
        Ok(s)
    }

    fn consent_withdrawn(&self, consents: &[LatestConsent]) -> bool {
        match &self.0.config.consent_scope {
            Some(scope) => consents.iter().any(|c| &c.scope == scope && c.withdrawn()),
            // No scope configured: a withdrawal in any scope counts.
            None => consents.iter().any(LatestConsent::withdrawn),
        }
    }

    fn decide(
        &self,
        set: &TriggerSet,
        indices: &[usize],
        unit: &str,
        standing: &Standing,
        now: DateTime<Utc>,
    ) -> Answer {
        if self.consent_withdrawn(&standing.consents) {
            return Answer::off(Why::ConsentWithdrawn);
        }
        let mut best: Option<(Why, &CampaignRecord)> = None;
        for c in indices.iter().map(|&i| &set.campaigns[i]) {
            let st = standing.campaigns.iter().find(|s| s.campaign_id == c.id);
            let why = match st {
                None | Some(TriggerStanding { invited: false, .. }) => Why::NotInvited,
                Some(s) if s.status == Some(ResponseStatus::Completed) => Why::Completed,
                Some(s) if s.status == Some(ResponseStatus::Declined) => Why::Declined,
                Some(_) if now < c.opens_at => Why::NotOpen,
                Some(_) if now >= c.closes_at => Why::Expired,
                Some(_) => Why::Show,
            };
            // The most telling reason; of two open campaigns, the one
            // closing first.
            let better = match best {
                None => true,
                Some((w, b)) => (why, c.closes_at, &c.key) < (w, b.closes_at, &b.key),
            };
            if better {
                best = Some((why, c));
            }
        }
        match best {
            Some((Why::Show, c)) => self.show(c, unit),
            Some((why, _)) => Answer::off(why),
            None => Answer::off(Why::NotInvited),
        }
    }

    fn show(&self, c: &CampaignRecord, unit: &str) -> Answer {
        let Ok(claims) = TokenClaims::new(&c.key, unit, &c.wave, c.closes_at) else {
            // Campaign keys and waves are checked when created; a stored
            // one that cannot be put in a token shows nothing.
            return Answer::off(Why::Unavailable);
        };
        let token = sign(self.0.config.survey_keys.token(), &claims);
        let base = self.0.config.public_url.as_deref().unwrap_or("");
        let mut m = Map::new();
        m.insert("show".into(), Value::Bool(true));
        m.insert("url".into(), format!("{base}{LINK_PATH}{token}").into());
        m.insert("campaign".into(), c.key.clone().into());
        m.insert("wave".into(), c.wave.clone().into());
        m.insert(
            "expires_at".into(),
            c.closes_at
                .to_rfc3339_opts(SecondsFormat::Secs, true)
                .into(),
        );
        Answer {
            value: FlagValue::Object(m),
            why: Why::Show,
        }
    }
}

/// Puts `s` in `units` under `unit`, keeping at most `max` entries: when
/// full, the entries older than `ttl` go first, then all of them.
fn insert_bounded(
    units: &mut HashMap<String, Arc<Standing>>,
    unit: &str,
    s: Arc<Standing>,
    ttl: std::time::Duration,
    max: usize,
) {
    if units.len() >= max && !units.contains_key(unit) {
        units.retain(|_, s| s.at.elapsed() < ttl);
        if units.len() >= max {
            units.clear();
        }
    }
    units.insert(unit.to_string(), s);
}

/// The keys among `keys` that a campaign names as its trigger flag (a
/// flag set must not define them).
pub async fn trigger_keys_among<'a>(
    store: &Store,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, StoreError> {
    let campaigns = store.trigger_campaigns().await?;
    let mut taken: Vec<String> = keys
        .into_iter()
        .filter(|k| {
            campaigns
                .iter()
                .any(|c| c.trigger_flag.as_deref() == Some(*k))
        })
        .map(str::to_string)
        .collect();
    taken.sort();
    taken.dedup();
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn standing(age: Duration) -> Arc<Standing> {
        Arc::new(Standing {
            at: Instant::now() - age,
            generation: 0,
            campaigns: Vec::new(),
            consents: Vec::new(),
        })
    }

    #[test]
    fn the_standing_cache_is_bounded_evicting_expired_entries_first() {
        let ttl = Duration::from_secs(5);
        let mut units = HashMap::new();
        insert_bounded(&mut units, "old", standing(Duration::from_secs(60)), ttl, 3);
        insert_bounded(&mut units, "a", standing(Duration::ZERO), ttl, 3);
        insert_bounded(&mut units, "b", standing(Duration::ZERO), ttl, 3);
        assert_eq!(units.len(), 3);
        // Full: the expired entry makes room.
        insert_bounded(&mut units, "c", standing(Duration::ZERO), ttl, 3);
        let mut keys: Vec<&str> = units.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b", "c"]);
        // Replacing a present unit evicts nothing.
        insert_bounded(&mut units, "a", standing(Duration::ZERO), ttl, 3);
        assert_eq!(units.len(), 3);
        // Full of fresh entries: everything goes.
        insert_bounded(&mut units, "d", standing(Duration::ZERO), ttl, 3);
        assert_eq!(units.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn off_answers_carry_nothing_but_show_false() {
        for why in [Why::NotInvited, Why::Completed, Why::ConsentWithdrawn] {
            let a = Answer::off(why);
            assert_eq!(
                serde_json::to_value(&a.value).unwrap(),
                serde_json::json!({"show": false})
            );
            assert_eq!(a.reason(), "TARGETING_MATCH");
        }
        assert_eq!(Answer::off(Why::NoTargetingKey).reason(), "DEFAULT");
        // The order of precedence among campaigns.
        assert!(Why::Show < Why::Completed && Why::Completed < Why::NotOpen);
        assert!(Why::Expired < Why::NotInvited);
    }
}
