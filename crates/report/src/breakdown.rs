//! Descriptive numbers read off a design's rows: each arm's value of a
//! metric, and each community's effect (the forest plot).
//!
//! Per-community effects are descriptive: a difference of means with a
//! normal 95% interval from the community's own members (member designs),
//! or the mean of the community's treated periods minus the mean of its
//! control periods (community designs, no interval: a community is one
//! unit). The design's analysis, not these, gives the trial's result.

use crate::analysis::{community_rows, MetricData, MetricRows, StoredTrial};
use commonlab_core::experiments::MetricKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// One community's effect of one treatment arm.
#[derive(Debug, Clone, Serialize)]
pub struct CommunityEffect {
    pub community: String,
    pub arm: String,
    pub control: String,
    /// Units (members or periods) in the arm and in control.
    pub n_arm: i64,
    pub n_control: i64,
    pub estimate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// Sums of one group: n, Σy, Σy², Σd.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    sum: f64,
    sum_squares: f64,
    d_sum: f64,
}

impl Sums {
    fn mean(&self, kind: MetricKind) -> Option<f64> {
        match kind {
            MetricKind::Ratio => (self.d_sum > 0.0).then(|| self.sum / self.d_sum),
            _ => (self.n > 0.0).then(|| self.sum / self.n),
        }
    }
    fn var_of_mean(&self) -> Option<f64> {
        if self.n < 2.0 {
            return None;
        }
        let var = (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1.0);
        Some(var.max(0.0) / self.n)
    }
    fn add(&mut self, y: f64, d: f64) {
        self.n += 1.0;
        self.sum += y;
        self.sum_squares += y * y;
        self.d_sum += d;
    }
}

/// (arm, community) → sums, for member designs.
fn member_sums(d: &MetricData) -> BTreeMap<(String, String), Sums> {
    let mut out: BTreeMap<(String, String), Sums> = BTreeMap::new();
    match &d.rows {
        MetricRows::Cells(cells) => {
            for c in cells {
                let s = out
                    .entry((
                        c.arm.clone(),
                        c.community.clone().unwrap_or_else(|| "(none)".into()),
                    ))
                    .or_default();
                s.n += c.n as f64;
                s.sum += c.sum;
                s.sum_squares += c.sum_squares;
                s.d_sum += c.d_sum;
            }
        }
        MetricRows::Members(members) => {
            for m in members {
                out.entry((
                    m.arm.clone(),
                    m.community.clone().unwrap_or_else(|| "(none)".into()),
                ))
                .or_default()
                .add(m.y, m.d);
            }
        }
        MetricRows::Communities { .. } => {}
    }
    out
}

/// Each arm's value of `metric` over the analysed units (community
/// designs: the mean over community × period rows).
pub fn arm_values(t: &StoredTrial, metric: &str) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    let Some(d) = t.metrics.iter().find(|d| d.metric.name == metric) else {
        return out;
    };
    let arms: Vec<String> = t.spec.arms.iter().map(|a| a.variant.clone()).collect();
    if t.spec.is_community_design() {
        let rows = community_rows(t, d);
        for a in arms {
            let vals: Vec<f64> = rows
                .iter()
                .filter(|r| r.arm == a)
                .map(|r| r.value)
                .collect();
            let v = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
            out.insert(a, v);
        }
        return out;
    }
    let sums = member_sums(d);
    for a in arms {
        let mut s = Sums::default();
        for ((arm, _), x) in &sums {
            if *arm == a {
                s.n += x.n;
                s.sum += x.sum;
                s.sum_squares += x.sum_squares;
                s.d_sum += x.d_sum;
            }
        }
        out.insert(a, s.mean(d.metric.kind));
    }
    out
}

/// Per community and treatment arm, the descriptive effect of `metric`
/// (ordered by community, then arm in file order).
pub fn community_effects(t: &StoredTrial, metric: &str) -> Vec<CommunityEffect> {
    let Some(d) = t.metrics.iter().find(|d| d.metric.name == metric) else {
        return Vec::new();
    };
    let control = t.spec.control().variant.clone();
    let treatments: Vec<String> = t
        .spec
        .arms
        .iter()
        .filter(|a| !a.control)
        .map(|a| a.variant.clone())
        .collect();
    let mut out = Vec::new();
    if t.spec.is_community_design() {
        let rows = community_rows(t, d);
        let mut communities: Vec<&str> = rows.iter().map(|r| r.community.as_str()).collect();
        communities.sort_unstable();
        communities.dedup();
        for c in communities {
            for arm in &treatments {
                let of = |a: &str| -> Vec<f64> {
                    rows.iter()
                        .filter(|r| r.community == c && r.arm == a)
                        .map(|r| r.value)
                        .collect()
                };
                let (x, y) = (of(arm), of(&control));
                if x.is_empty() && y.is_empty() {
                    continue;
                }
                let mean =
                    |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
                out.push(CommunityEffect {
                    community: c.to_string(),
                    arm: arm.clone(),
                    control: control.clone(),
                    n_arm: x.len() as i64,
                    n_control: y.len() as i64,
                    estimate: mean(&x).zip(mean(&y)).map(|(a, b)| a - b),
                    ci_low: None,
                    ci_high: None,
                });
            }
        }
        return out;
    }
    let sums = member_sums(d);
    let mut communities: Vec<&String> = sums.keys().map(|(_, c)| c).collect();
    communities.sort_unstable();
    communities.dedup();
    let ratio = d.metric.kind == MetricKind::Ratio;
    for c in communities {
        let get = |a: &str| {
            sums.get(&(a.to_string(), c.clone()))
                .copied()
                .unwrap_or_default()
        };
        let base = get(&control);
        for arm in &treatments {
            let s = get(arm);
            let est = s
                .mean(d.metric.kind)
                .zip(base.mean(d.metric.kind))
                .map(|(a, b)| a - b);
            let se = if ratio {
                None
            } else {
                s.var_of_mean()
                    .zip(base.var_of_mean())
                    .map(|(a, b)| (a + b).sqrt())
            };
            let z = 1.959_963_984_540_054;
            out.push(CommunityEffect {
                community: c.clone(),
                arm: arm.clone(),
                control: control.clone(),
                n_arm: s.n as i64,
                n_control: base.n as i64,
                estimate: est,
                ci_low: est.zip(se).map(|(e, s)| e - z * s),
                ci_high: est.zip(se).map(|(e, s)| e + z * s),
            });
        }
    }
    out
}
