//! The simulation team's feedback: `wp2-parameters.json` (JSON Schema:
//! `reports/schemas/wp2-parameters.schema.json`).
//!
//! Per community, the activity measured over the trial (from
//! `Store::community_activity`): members seen, the share of them inactive
//! in the trial, a lognormal fitted to the active members' event counts
//! (maximum likelihood on the logs: μ, σ, and the Kolmogorov–Smirnov
//! distance of the logs from N(μ, σ) as goodness of fit), the Gini
//! coefficient and the top-1% share over all members seen (inactive ones
//! count as 0), and each event type's rate per member per day. Per metric
//! and treatment arm, the estimated effect with its interval and 400 draws
//! from its normal sampling distribution N(estimate, SE²) (seeded by the
//! trial's seed: the same report gives the same draws).
//!
//! `simulation` is the same measurement as `commonlab simulate --params`
//! reads (`crates/sim/src/params.rs`, `docs/simulator.md`): extract it
//! with `jq .simulation wp2-parameters.json`.

use crate::document::Report;
use commonlab_store::CommunityActivity;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const FORMAT: &str = "commonlab-wp2-report/1";
/// Draws per effect.
pub const DRAWS: usize = 400;

#[derive(Debug, Clone, Serialize)]
pub struct Wp2 {
    pub format: &'static str,
    pub trial: String,
    pub wp2_parameter: String,
    pub spec_hash: String,
    pub window: Window,
    pub communities: Vec<CommunityFit>,
    pub effects: Vec<EffectDraws>,
    /// The document `commonlab simulate --params` reads.
    pub simulation: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub days: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommunityFit {
    pub name: String,
    pub members_seen: i64,
    pub active_members: i64,
    pub inactive_share: Option<f64>,
    pub events_per_member: LognormalFit,
    pub gini: Option<f64>,
    pub top_1pct_share: Option<f64>,
    /// Events per member (seen) per day, by event type.
    pub rates_per_member_day: BTreeMap<String, f64>,
    /// Events per active member per day, by event type.
    pub rates_per_active_member_day: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LognormalFit {
    pub family: &'static str,
    /// Active members' events: mean of the logs.
    pub mu: Option<f64>,
    /// Standard deviation of the logs (maximum likelihood, divisor n).
    pub sigma: Option<f64>,
    /// Kolmogorov–Smirnov distance between the logs and N(μ, σ) (counts
    /// are discrete: read it as a description, not a test).
    pub ks_distance: Option<f64>,
    pub n: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EffectDraws {
    pub metric: String,
    pub role: crate::analysis::Role,
    pub arm: String,
    pub control: String,
    pub estimate: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub relative: Option<f64>,
    pub se: Option<f64>,
    /// Draws from N(estimate, SE²); empty without a standard error.
    pub draws: Vec<f64>,
}

/// Fits a lognormal to positive counts (ascending or not).
pub fn lognormal(counts: &[i64]) -> LognormalFit {
    let logs: Vec<f64> = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| (c as f64).ln())
        .collect();
    let n = logs.len();
    if n < 2 {
        return LognormalFit {
            family: "lognormal",
            mu: None,
            sigma: None,
            ks_distance: None,
            n,
        };
    }
    let mu = logs.iter().sum::<f64>() / n as f64;
    let sigma = (logs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / n as f64).sqrt();
    let ks = (sigma > 0.0).then(|| {
        let mut sorted = logs.clone();
        sorted.sort_by(f64::total_cmp);
        let mut d: f64 = 0.0;
        let mut i = 0;
        while i < n {
            // Ties: the empirical CDF jumps once per distinct value.
            let x = sorted[i];
            let mut j = i;
            while j < n && sorted[j] == x {
                j += 1;
            }
            let f = commonlab_stats::dist::norm_cdf((x - mu) / sigma);
            d = d
                .max((f - i as f64 / n as f64).abs())
                .max((j as f64 / n as f64 - f).abs());
            i = j;
        }
        d
    });
    LognormalFit {
        family: "lognormal",
        mu: Some(mu),
        sigma: Some(sigma),
        ks_distance: ks,
        n,
    }
}

/// Gini coefficient of `values` (all members; zeros included).
pub fn gini(values: &[f64]) -> Option<f64> {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total <= 0.0 {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64 + 1.0) * x)
        .sum();
    Some((2.0 * weighted) / (n as f64 * total) - (n as f64 + 1.0) / n as f64)
}

/// Share of all events made by the most active 1% of members (at least one member).
pub fn top_share(values: &[f64], share: f64) -> Option<f64> {
    let total: f64 = values.iter().sum();
    if values.is_empty() || total <= 0.0 {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    let k = ((values.len() as f64 * share).ceil() as usize).max(1);
    Some(v.iter().take(k).sum::<f64>() / total)
}

fn community_fit(a: &CommunityActivity, days: f64) -> CommunityFit {
    let active = a.events_per_active_member.len() as i64;
    let seen = a.members_seen.max(active);
    let mut all: Vec<f64> = a
        .events_per_active_member
        .iter()
        .map(|&c| c as f64)
        .collect();
    all.extend(std::iter::repeat_n(0.0, (seen - active).max(0) as usize));
    let rate = |events: i64, members: i64| {
        if members > 0 && days > 0.0 {
            events as f64 / members as f64 / days
        } else {
            0.0
        }
    };
    CommunityFit {
        name: a.community.clone(),
        members_seen: seen,
        active_members: active,
        inactive_share: (seen > 0).then(|| (seen - active) as f64 / seen as f64),
        events_per_member: lognormal(&a.events_per_active_member),
        gini: gini(&all),
        top_1pct_share: top_share(&all, 0.01),
        rates_per_member_day: a
            .event_types
            .iter()
            .map(|t| (t.name.clone(), rate(t.events, seen)))
            .collect(),
        rates_per_active_member_day: a
            .event_types
            .iter()
            .map(|t| (t.name.clone(), rate(t.events, active)))
            .collect(),
    }
}

/// Standard normal draws from a seed (splitmix64 and Box–Muller: no
/// dependency for 400 numbers).
fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1 = next().max(f64::MIN_POSITIVE);
        let u2 = next();
        let r = (-2.0 * u1.ln()).sqrt();
        out.push(r * (std::f64::consts::TAU * u2).cos());
        out.push(r * (std::f64::consts::TAU * u2).sin());
    }
    out.truncate(n);
    out
}

/// The document (pure): `activity` from the store, per community of the
/// trial.
pub fn build(r: &Report, activity: &[CommunityActivity], seed: u64) -> Wp2 {
    let (from, to) = activity
        .first()
        .map_or((r.footer.as_of, r.footer.as_of), |a| (a.from, a.to));
    let days = ((to - from).num_seconds() as f64 / 86_400.0).max(0.0);
    let communities: Vec<CommunityFit> = activity.iter().map(|a| community_fit(a, days)).collect();
    let mut effects = Vec::new();
    for (k, m) in r.results.iter().enumerate() {
        for (j, e) in m.effects.iter().enumerate() {
            let z = normals(seed ^ ((k as u64) << 32 | j as u64), DRAWS);
            effects.push(EffectDraws {
                metric: m.name.clone(),
                role: m.role,
                arm: e.arm.clone(),
                control: e.control.clone(),
                estimate: e.absolute,
                ci_low: e.ci_low,
                ci_high: e.ci_high,
                relative: e.relative,
                se: e.se,
                draws: e.se.map_or(Vec::new(), |se| {
                    z.iter().map(|z| e.absolute + se * z).collect()
                }),
            });
        }
    }
    // What the simulator reads: communities with their measured activity,
    // and each arm's relative effect on the primary metric as a multiplier
    // of every contribution event's rate.
    let sim_communities: Vec<Value> = communities
        .iter()
        .filter(|c| c.members_seen > 0)
        .map(|c| {
            let mut v = json!({
                "name": c.name,
                "members": c.members_seen,
                "inactive_share": c.inactive_share,
                "event_rates": c.rates_per_active_member_day,
            });
            if let Some(sigma) = c.events_per_member.sigma {
                v["activity"] = json!({"family": "lognormal", "sigma": sigma});
            }
            v
        })
        .collect();
    let sim_effects: BTreeMap<String, Value> = r
        .results
        .first()
        .map(|m| {
            m.effects
                .iter()
                .filter_map(|e| {
                    let rel = e.relative?;
                    Some((
                        e.arm.clone(),
                        json!({"rate_multipliers": {"*": (1.0 + rel).max(0.0)}}),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Wp2 {
        format: FORMAT,
        trial: r.trial.key.clone(),
        wp2_parameter: r.trial.wp2_parameter.clone(),
        spec_hash: r.footer.spec_hash.clone(),
        window: Window { from, to, days },
        communities,
        effects,
        simulation: json!({
            "format": "commonlab-wp2-parameters/1",
            "communities": sim_communities,
            "effects": sim_effects,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_and_top_share() {
        assert_eq!(gini(&[1.0, 1.0, 1.0, 1.0]), Some(0.0));
        // One member holds everything: (n − 1)/n.
        assert!((gini(&[0.0, 0.0, 0.0, 4.0]).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(gini(&[0.0, 0.0]), None);
        assert_eq!(top_share(&[1.0, 1.0, 2.0], 0.01), Some(0.5));
    }

    #[test]
    fn lognormal_fit_recovers_its_parameters() {
        // exp of a standard normal sample scaled: logs N(1, 0.5²).
        let z = normals(7, 4000);
        let counts: Vec<i64> = z
            .iter()
            .map(|z| (100.0 * (1.0 + 0.5 * z).exp()).round() as i64)
            .collect();
        let f = lognormal(&counts);
        let mu = f.mu.unwrap() - 100f64.ln();
        assert!((mu - 1.0).abs() < 0.05, "{mu}");
        assert!((f.sigma.unwrap() - 0.5).abs() < 0.05, "{:?}", f.sigma);
        assert!(f.ks_distance.unwrap() < 0.05);
        assert_eq!(lognormal(&[0, 3]).mu, None);
    }

    #[test]
    fn draws_are_standard_normal_and_seeded() {
        let z = normals(1, 10_000);
        assert_eq!(z, normals(1, 10_000));
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
