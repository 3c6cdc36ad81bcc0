//! The primary metric's data behind two charts (pure, from the rows the
//! analysis already read; no extra query):
//!
//! - [`cumulative`]: the design's own estimate and 95% interval as data
//!   accrued. Community designs: for each closed period `p`, the design's
//!   analysis (the same lead method) re-run on the community × period
//!   cells of periods `0..=p` (at most [`CUMULATIVE_POINTS`] points,
//!   evenly spaced, the last always included). `hash` designs with a
//!   sequential plan: the caller reads the primary metric's cells as of
//!   each planned look already past ([`Look`]: the only extra queries, one
//!   per look); each point is the Welch difference with its fixed 95%
//!   interval and the always-valid 95% interval (the engine's confidence
//!   sequence: the sequential boundary), the last point the report's own
//!   data. Other member designs' rows carry no exposure date (`hash`: sums
//!   per arm and community; `blocked`: one value per member), so they get
//!   no points and a note saying why.
//! - [`distribution`]: member designs with per-member rows (`blocked`): a
//!   histogram of the per-member values by arm (unit bins for small
//!   integer ranges, else [`BINS`] equal bins up to the 99th percentile
//!   with the last bin open above), every bin with fewer than `min_cell`
//!   members withheld; community designs: the community × period cell
//!   values by arm, cells with fewer than `min_cell` active members
//!   withheld; `hash`: none (sums only), with a note.

use crate::analysis::{
    analyse, community_rows, MetricData, MetricRows, StoredTrial, TrialAnalysis,
};
use chrono::{DateTime, Utc};
use commonlab_store::MetricCell;
use serde::Serialize;

/// A `hash` trial's primary metric as of one planned look of a sequential
/// plan (read by the caller; see the module docs).
#[derive(Debug, Clone)]
pub struct Look {
    pub at: DateTime<Utc>,
    pub cells: Vec<MetricCell>,
}

/// At most this many points of the cumulative effect.
pub const CUMULATIVE_POINTS: usize = 12;
/// Histogram bins of a metric with a wide range.
pub const BINS: usize = 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cumulative {
    pub metric: String,
    /// What a point accrues over (`period`, `look`), or `none`.
    pub by: &'static str,
    /// `fixed` (95% interval of the design's lead method at each point)
    /// or `always_valid` (also the sequential plan's always-valid one).
    pub interval: &'static str,
    pub points: Vec<CumulativePoint>,
    /// Why there are no points.
    pub note: Option<String>,
}

/// The estimate from periods `0..=through_period` (or looks).
#[derive(Debug, Clone, Serialize)]
pub struct CumulativePoint {
    /// The period (or look, from 1; the last is the report's data).
    pub through_period: i64,
    /// The end of that period's window, or the look's time (RFC 3339).
    pub through: String,
    pub arm: String,
    pub method: String,
    pub estimate: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
    /// Sequential plans: the always-valid 95% interval (`null`: ±∞).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_valid: Option<(Option<f64>, Option<f64>)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Distribution {
    pub metric: String,
    /// `member` (a histogram of per-member values), `cell` (community ×
    /// period cell values) or `none`.
    pub of: &'static str,
    pub min_cell: usize,
    /// Bin edges (`member`): bin `i` is `[bins[i], bins[i+1])`, the last
    /// closed above and holding every larger value.
    pub bins: Vec<f64>,
    /// Each bin in words (`3` for a unit bin of integers, `a to b`, the
    /// last `a and above`).
    pub bin_labels: Vec<String>,
    pub by_arm: Vec<DistributionArm>,
    /// `cell`: every cell (value `null` when withheld).
    pub cells: Vec<DistributionCell>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DistributionArm {
    pub arm: String,
    pub n: i64,
    /// Members per bin (`null`: fewer than `min_cell`, withheld).
    pub counts: Vec<Option<u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DistributionCell {
    pub community: String,
    pub period: i64,
    pub arm: String,
    pub members: i64,
    pub value: Option<f64>,
}

fn primary(t: &StoredTrial) -> Option<&MetricData> {
    t.metrics
        .iter()
        .find(|d| d.metric.name == t.spec.metrics.primary.name)
}

/// A `hash` sequential plan's points: per look, and the report's data.
fn sequential(t: &StoredTrial, d: &MetricData, looks: &[Look], out: &mut Cumulative) {
    out.by = "look";
    out.interval = "always_valid";
    let main = Look {
        at: d.as_of,
        cells: match &d.rows {
            MetricRows::Cells(c) => c.clone(),
            _ => Vec::new(),
        },
    };
    for (i, look) in looks
        .iter()
        .filter(|l| l.at < d.as_of)
        .chain(std::iter::once(&main))
        .enumerate()
    {
        let mut part = t.clone();
        part.as_of = look.at;
        part.metrics = vec![MetricData {
            rows: MetricRows::Cells(look.cells.clone()),
            as_of: look.at,
            ..d.clone()
        }];
        let a: TrialAnalysis = analyse(&part);
        for m in &a.metrics {
            for e in &m.estimates {
                let abs = &m.detail["comparisons"][&e.arm]["absolute"];
                let (fixed, seq) = (&abs["two_sided"], &abs["sequential_two_sided"]);
                let Some(est) = fixed["effect"].as_f64() else {
                    continue;
                };
                out.points.push(CumulativePoint {
                    through_period: i as i64 + 1,
                    through: look.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    arm: e.arm.clone(),
                    method: "welch".into(),
                    estimate: est,
                    ci_low: fixed["ci_lower"].as_f64(),
                    ci_high: fixed["ci_upper"].as_f64(),
                    p_value: fixed["p_value"].as_f64(),
                    always_valid: Some((seq["ci_lower"].as_f64(), seq["ci_upper"].as_f64())),
                });
            }
        }
    }
    if out.points.is_empty() {
        out.note = Some("no look yet has an estimate in both arms".into());
    }
}

/// The primary metric's estimate as data accrued (see the module docs);
/// `looks` only for `hash` designs with a sequential plan.
pub fn cumulative(t: &StoredTrial, looks: &[Look]) -> Cumulative {
    let mut out = Cumulative {
        metric: t.spec.metrics.primary.name.clone(),
        by: "none",
        interval: "fixed",
        ..Default::default()
    };
    let Some(d) = primary(t) else {
        out.note = Some("the primary metric has no rows".into());
        return out;
    };
    let sequential_plan = matches!(
        t.spec.analysis.horizon,
        commonlab_core::experiments::Horizon::Sequential { .. }
    );
    if matches!(d.rows, MetricRows::Cells(_)) && sequential_plan {
        sequential(t, d, looks, &mut out);
        return out;
    }
    let MetricRows::Communities { rows, closed, .. } = &d.rows else {
        out.note = Some(format!(
            "not drawn: a {} design's rows carry no exposure date (they are {}), so the estimate cannot be recomputed as data accrued without reading the events again",
            t.spec.design.kind(),
            if matches!(d.rows, MetricRows::Cells(_)) {
                "sums per arm and community"
            } else {
                "one value per member"
            }
        ));
        return out;
    };
    out.by = "period";
    let mut periods: Vec<&commonlab_store::PeriodSpan> = closed.iter().collect();
    periods.sort_by_key(|p| p.period);
    let n = periods.len();
    let picked: Vec<usize> = if n <= CUMULATIVE_POINTS {
        (0..n).collect()
    } else {
        let mut v: Vec<usize> = (1..=CUMULATIVE_POINTS)
            .map(|i| i * n / CUMULATIVE_POINTS - 1)
            .collect();
        v.dedup();
        v
    };
    for i in picked {
        let through = periods[i];
        let mut part = t.clone();
        part.metrics = vec![MetricData {
            rows: MetricRows::Communities {
                rows: commonlab_store::CommunityRows {
                    cells: rows
                        .cells
                        .iter()
                        .filter(|c| c.period <= through.period)
                        .cloned()
                        .collect(),
                    excluded_members: rows.excluded_members,
                },
                closed: closed
                    .iter()
                    .filter(|p| p.period <= through.period)
                    .cloned()
                    .collect(),
                open: Vec::new(),
            },
            ..d.clone()
        }];
        let a: TrialAnalysis = analyse(&part);
        for e in a.metrics.iter().flat_map(|m| &m.estimates) {
            if !e.estimate.is_finite() {
                continue;
            }
            out.points.push(CumulativePoint {
                through_period: through.period,
                through: through
                    .end
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                arm: e.arm.clone(),
                method: e.method.clone(),
                estimate: e.estimate,
                ci_low: e.ci95.map(|c| c.0),
                ci_high: e.ci95.map(|c| c.1),
                p_value: e.p_value,
                always_valid: None,
            });
        }
    }
    if out.points.is_empty() {
        out.note = Some(
            "no closed period yet holds both treated and control cells the design's analysis can compare".into(),
        );
    }
    out
}

/// Bin edges for `sorted` values (see the module docs).
fn edges(sorted: &[f64]) -> Vec<f64> {
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let integers = sorted.iter().all(|v| v.fract() == 0.0);
    if integers && hi - lo <= 30.0 {
        return (0..=((hi - lo) as i64 + 1))
            .map(|i| lo + i as f64)
            .collect();
    }
    let q99 = sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize];
    let top = if q99 > lo { q99 } else { hi.max(lo + 1.0) };
    let w = (top - lo) / BINS as f64;
    (0..=BINS).map(|i| lo + w * i as f64).collect()
}

fn bin_labels(bins: &[f64], sorted: &[f64]) -> Vec<String> {
    let nb = bins.len().saturating_sub(1);
    let unit =
        sorted.iter().all(|v| v.fract() == 0.0) && bins.windows(2).all(|w| w[1] - w[0] == 1.0);
    (0..nb)
        .map(|i| {
            let a = crate::render::num(bins[i]);
            if unit {
                a
            } else if i + 1 == nb {
                format!("{a} and above")
            } else {
                format!("{a} to {}", crate::render::num(bins[i + 1]))
            }
        })
        .collect()
}

/// The primary metric's distribution by arm (see the module docs).
pub fn distribution(t: &StoredTrial, min_cell: usize) -> Distribution {
    let min_cell = min_cell.max(1);
    let mut out = Distribution {
        metric: t.spec.metrics.primary.name.clone(),
        of: "none",
        min_cell,
        ..Default::default()
    };
    let Some(d) = primary(t) else {
        out.note = Some("the primary metric has no rows".into());
        return out;
    };
    let arms: Vec<String> = t.spec.arms.iter().map(|a| a.variant.clone()).collect();
    match &d.rows {
        MetricRows::Cells(_) => {
            out.note = Some(
                "not drawn: a hash design's rows are sums per arm and community (the analysis needs nothing finer), so per-member values are not read".into(),
            );
        }
        MetricRows::Members(members) => {
            out.of = "member";
            let ratio = d.metric.kind == commonlab_core::experiments::MetricKind::Ratio;
            let value = |m: &commonlab_store::MemberValue| {
                if ratio {
                    (m.d > 0.0).then(|| m.y / m.d)
                } else {
                    Some(m.y)
                }
            };
            let mut all: Vec<f64> = members
                .iter()
                .filter_map(value)
                .filter(|v| v.is_finite())
                .collect();
            all.sort_by(f64::total_cmp);
            out.bins = edges(&all);
            out.bin_labels = bin_labels(&out.bins, &all);
            let nb = out.bins.len().saturating_sub(1);
            for arm in arms {
                let mut counts = vec![0u64; nb];
                let mut n = 0;
                for v in members
                    .iter()
                    .filter(|m| m.arm == arm)
                    .filter_map(value)
                    .filter(|v| v.is_finite())
                {
                    n += 1;
                    let i = out.bins.partition_point(|e| *e <= v).saturating_sub(1);
                    if let Some(c) = counts.get_mut(i.min(nb.saturating_sub(1))) {
                        *c += 1;
                    }
                }
                out.by_arm.push(DistributionArm {
                    arm,
                    n,
                    counts: counts
                        .into_iter()
                        .map(|c| (c == 0 || c >= min_cell as u64).then_some(c))
                        .collect(),
                });
            }
        }
        MetricRows::Communities { .. } => {
            out.of = "cell";
            let mut rows = community_rows(t, d);
            rows.sort_by(|a, b| (a.period, &a.community).cmp(&(b.period, &b.community)));
            for arm in &arms {
                out.by_arm.push(DistributionArm {
                    arm: arm.clone(),
                    n: rows.iter().filter(|r| &r.arm == arm).count() as i64,
                    counts: Vec::new(),
                });
            }
            out.cells = rows
                .into_iter()
                .map(|r| DistributionCell {
                    value: (r.members >= min_cell as i64).then_some(r.value),
                    community: r.community,
                    period: r.period,
                    arm: r.arm,
                    members: r.members,
                })
                .collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_unit_bins_for_small_counts_and_open_above_otherwise() {
        assert_eq!(edges(&[0.0, 1.0, 3.0]), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let wide: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
        let e = edges(&wide);
        assert_eq!(e.len(), BINS + 1);
        assert_eq!(e[0], 0.0);
        // The 99th percentile, not the maximum, is the last edge.
        assert!((e[BINS] - wide[989]).abs() < 1e-9, "{}", e[BINS]);
        assert!(edges(&[]).is_empty());
    }
}
