//! Few-community analysis entry point: rows in, every few-cluster method out.
//!
//! Input: per-unit or per-cluster-period rows (`cluster`, optional `period`,
//! `arm` or `treated`, `value`, optional `covariate` and `stratum`) and a
//! design (`cluster`, `stepped_wedge` or `blocked`). Output: the treatment
//! coefficient of `value ~ 1 + period FE [+ cluster FE | stratum FE]
//! [+ covariate] + treated` with
//!
//! * randomisation inference over the assignments the design allowed, with
//!   the smallest attainable p-value ([`crate::randomization`]);
//! * CR2 with Bell–McCaffrey df (primary model-based result) and CR1 (labelled
//!   anti-conservative) ([`crate::cluster`]);
//! * the wild cluster restricted bootstrap with Webb weights;
//! * per-community results (stepped wedge: own-trajectory estimates and the
//!   Ibragimov–Müller test, [`crate::stepped_wedge`]).
//!
//! Each method reports either a value or the typed reason it is unavailable.
//! The contract is documented in `docs/analyze-few.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterTest, ClusteredOls, WildBootstrap};
use crate::randomization::{randomisation_test, Alternative, RandomisationResult};
use crate::stepped_wedge::{
    community_estimates, crossover_periods, ibragimov_muller, CellFwl, CommunityEstimate,
    IbragimovMuller, ModelSpec, Panel,
};
use crate::{Result, StatsError};

/// One input row: a user (per-unit) or a cluster-period summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Community / cluster identifier.
    pub cluster: String,
    /// Period (any integer; densified in sorted order). Defaults to 0.
    #[serde(default)]
    pub period: Option<i64>,
    /// Arm name; anything other than `design.control_arm` counts as treated.
    #[serde(default)]
    pub arm: Option<String>,
    /// Treatment indicator (alternative to `arm`).
    #[serde(default)]
    pub treated: Option<bool>,
    /// Outcome.
    pub value: f64,
    /// Optional covariate (adjusted for linearly).
    #[serde(default)]
    pub covariate: Option<f64>,
    /// Optional randomisation stratum (must be constant within a cluster).
    #[serde(default)]
    pub stratum: Option<String>,
}

/// The randomisation scheme that produced the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesignKind {
    /// Complete randomisation of `k` of `m` clusters to treatment.
    Cluster,
    /// Communities cross over at staggered steps; all orders of communities
    /// to steps were possible.
    SteppedWedge,
    /// Clusters randomised within strata (the `stratum` column).
    Blocked,
}

fn default_max_enumerate() -> usize {
    100_000
}
fn default_draws() -> usize {
    9_999
}
fn default_control() -> String {
    "control".into()
}

/// Design and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsDesign {
    /// Randomisation scheme.
    pub kind: DesignKind,
    /// Name of the control arm when rows use `arm` (default "control").
    #[serde(default = "default_control")]
    pub control_arm: String,
    /// Add cluster fixed effects (stepped wedge only).
    #[serde(default)]
    pub cluster_fixed_effects: bool,
    /// Test direction for the randomisation test (default two-sided).
    #[serde(default)]
    pub alternative: Alternative,
    /// Enumerate every assignment when there are at most this many (default 100,000).
    #[serde(default = "default_max_enumerate")]
    pub max_enumerate: usize,
    /// Sampled assignments when enumeration is too large (default 9,999).
    #[serde(default = "default_draws")]
    pub randomisation_draws: usize,
    /// Wild cluster bootstrap draws (default 9,999).
    #[serde(default = "default_draws")]
    pub wild_bootstrap_draws: usize,
    /// RNG seed for every sampled step (default 0).
    #[serde(default)]
    pub seed: u64,
}

/// Rows plus design: the input of [`analyze_rows`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsInput {
    /// The data.
    pub rows: Vec<Row>,
    /// The design.
    pub design: RowsDesign,
}

/// A method's value or the typed reason it is unavailable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome<T> {
    /// The result, when available.
    pub result: Option<T>,
    /// Why the method gave no result.
    pub error: Option<StatsError>,
}

impl<T> From<Result<T>> for Outcome<T> {
    fn from(r: Result<T>) -> Self {
        match r {
            Ok(v) => Self {
                result: Some(v),
                error: None,
            },
            Err(e) => Self {
                result: None,
                error: Some(e),
            },
        }
    }
}

/// Per-community descriptive and (stepped wedge) own-trajectory results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityResult {
    /// Cluster identifier from the input.
    pub cluster: String,
    /// Rows in the community.
    pub n: usize,
    /// Mean outcome over control rows (None if none).
    pub mean_control: Option<f64>,
    /// Mean outcome over treated rows (None if none).
    pub mean_treated: Option<f64>,
    /// First treated period (input label) for stepped wedges / treated clusters.
    pub crossover_period: Option<i64>,
    /// Stepped wedge: `θ_c`, the community's own trend-adjusted contrast
    /// (see [`crate::stepped_wedge`]).
    pub estimate: Option<f64>,
}

/// Output of [`analyze_rows`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowsOutput {
    /// Design analysed.
    pub design: DesignKind,
    /// Model in words, e.g. "value ~ 1 + period FE + treated".
    pub model: String,
    /// Number of rows, clusters and periods.
    pub n_rows: usize,
    /// Number of clusters.
    pub n_clusters: usize,
    /// Number of periods.
    pub n_periods: usize,
    /// Treated / control cluster counts (a stepped-wedge cluster counts as treated).
    pub treated_clusters: usize,
    /// Control clusters.
    pub control_clusters: usize,
    /// OLS treatment coefficient `θ̂`.
    pub estimate: f64,
    /// Randomisation inference (design-based; primary with few clusters).
    pub randomisation: Outcome<RandomisationResult>,
    /// CR2 with Bell–McCaffrey df (model-based, small-sample corrected).
    pub cr2: Outcome<ClusterTest>,
    /// CR2 SE with Imbens–Kolesár df (working model with the residual ICC;
    /// more conservative than `cr2` when residuals cluster).
    pub cr2_ik: Outcome<ClusterTest>,
    /// CR1 with `G−1` df (anti-conservative with few clusters; comparison only).
    pub cr1: Outcome<ClusterTest>,
    /// Wild cluster restricted bootstrap (Webb weights).
    pub wild_bootstrap: Outcome<WildBootstrap>,
    /// Ibragimov–Müller across per-community estimates (stepped wedge).
    pub ibragimov_muller: Option<Outcome<IbragimovMuller>>,
    /// Per-community results, in sorted cluster-id order.
    pub communities: Vec<CommunityResult>,
    /// Warnings for the reader.
    pub notes: Vec<String>,
}

struct Prepared {
    panel: Panel,
    cluster_names: Vec<String>,
    period_labels: Vec<i64>,
    spec: ModelSpec,
}

fn prepare(input: &RowsInput) -> Result<Prepared> {
    let d = &input.design;
    if input.rows.is_empty() {
        return Err(StatsError::InvalidInput("no rows".into()));
    }
    let mut cl_map = BTreeMap::<&str, usize>::new();
    let mut per_map = BTreeMap::<i64, usize>::new();
    let mut st_map = BTreeMap::<&str, usize>::new();
    for r in &input.rows {
        cl_map.insert(&r.cluster, 0);
        per_map.insert(r.period.unwrap_or(0), 0);
        if let Some(s) = &r.stratum {
            st_map.insert(s, 0);
        }
    }
    for (i, v) in cl_map.values_mut().enumerate() {
        *v = i;
    }
    for (i, v) in per_map.values_mut().enumerate() {
        *v = i;
    }
    for (i, v) in st_map.values_mut().enumerate() {
        *v = i;
    }
    let has_cov = input.rows[0].covariate.is_some();
    let has_st = input.rows[0].stratum.is_some();
    let n = input.rows.len();
    let mut panel = Panel {
        cluster: Vec::with_capacity(n),
        period: Vec::with_capacity(n),
        treated: Vec::with_capacity(n),
        y: Vec::with_capacity(n),
        covariate: has_cov.then(|| Vec::with_capacity(n)),
        stratum: has_st.then(|| Vec::with_capacity(n)),
        n_clusters: cl_map.len(),
        n_periods: per_map.len(),
    };
    for (i, r) in input.rows.iter().enumerate() {
        let treated = match (&r.treated, &r.arm) {
            (Some(t), None) => *t,
            (None, Some(a)) => *a != d.control_arm,
            (Some(t), Some(a)) if *t == (*a != d.control_arm) => *t,
            _ => {
                return Err(StatsError::InvalidInput(format!(
                    "row {i}: give exactly one of `arm` or `treated` (or consistent values)"
                )))
            }
        };
        if !r.value.is_finite() {
            return Err(StatsError::InvalidInput(format!(
                "row {i}: value is not finite"
            )));
        }
        panel.cluster.push(cl_map[r.cluster.as_str()]);
        panel.period.push(per_map[&r.period.unwrap_or(0)]);
        panel.treated.push(treated);
        panel.y.push(r.value);
        match (&mut panel.covariate, r.covariate) {
            (Some(c), Some(v)) if v.is_finite() => c.push(v),
            (None, None) => {}
            _ => {
                return Err(StatsError::InvalidInput(format!(
                    "row {i}: covariate must be given (finite) on every row or on none"
                )))
            }
        }
        match (&mut panel.stratum, &r.stratum) {
            (Some(s), Some(v)) => s.push(st_map[v.as_str()]),
            (None, None) => {}
            _ => {
                return Err(StatsError::InvalidInput(format!(
                    "row {i}: stratum must be given on every row or on none"
                )))
            }
        }
    }
    let spec = ModelSpec {
        period_fe: panel.n_periods > 1,
        cluster_fe: d.cluster_fixed_effects,
        stratum_fe: d.kind == DesignKind::Blocked,
    };
    if d.cluster_fixed_effects && d.kind != DesignKind::SteppedWedge {
        return Err(StatsError::InvalidInput(
            "cluster fixed effects are collinear with a cluster-level treatment; only allowed for stepped wedges"
                .into(),
        ));
    }
    if d.kind == DesignKind::Blocked && !has_st {
        return Err(StatsError::InvalidInput(
            "blocked design needs a `stratum` column".into(),
        ));
    }
    Ok(Prepared {
        panel,
        cluster_names: cl_map.keys().map(|s| s.to_string()).collect(),
        period_labels: per_map.keys().copied().collect(),
        spec,
    })
}

/// Analyse few-community data; see the module docs and `docs/analyze-few.md`.
///
/// Errors (typed, never NaN): malformed rows; fewer than two clusters per
/// arm (cluster / blocked) or fewer than two distinct crossover steps
/// (stepped wedge); treatment varying within a cluster (cluster / blocked) or
/// a community reverting to control (stepped wedge); a design matrix that
/// cannot identify the treatment effect. Individual methods that fail (e.g.
/// CR2 on a saturated design) are reported in their `Outcome::error`.
pub fn analyze_rows(input: &RowsInput) -> Result<RowsOutput> {
    let prep = prepare(input)?;
    let d = &input.design;
    let panel = &prep.panel;
    panel.validate()?;
    let g = panel.n_clusters;
    let mut notes = Vec::new();

    // Randomisation unit labels.
    let starts = crossover_periods(panel);
    let (labels, start_of_label): (Vec<usize>, Vec<usize>) = match d.kind {
        DesignKind::SteppedWedge => {
            let starts = starts?;
            let mut distinct: Vec<usize> = starts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() < 2 {
                return Err(StatsError::Degenerate(
                    "stepped wedge needs communities crossing over at two or more different steps"
                        .into(),
                ));
            }
            if !starts.iter().any(|&s| s > 0) || !starts.iter().any(|&s| s < panel.n_periods) {
                return Err(StatsError::Degenerate(
                    "stepped wedge needs both control and treated periods".into(),
                ));
            }
            let labels = starts
                .iter()
                .map(|s| distinct.binary_search(s).unwrap_or(0))
                .collect();
            (labels, distinct)
        }
        DesignKind::Cluster | DesignKind::Blocked => {
            let mut lab = vec![None::<bool>; g];
            for i in 0..panel.y.len() {
                let c = panel.cluster[i];
                match lab[c] {
                    None => lab[c] = Some(panel.treated[i]),
                    Some(t) if t != panel.treated[i] => {
                        return Err(StatsError::InvalidInput(format!(
                            "cluster {} has both treated and control rows; a {:?} design randomises whole clusters",
                            prep.cluster_names[c], d.kind
                        )))
                    }
                    _ => {}
                }
            }
            let lab: Vec<usize> = lab
                .into_iter()
                .map(|t| usize::from(t == Some(true)))
                .collect();
            let nt = lab.iter().filter(|&&l| l == 1).count();
            if nt < 2 || g - nt < 2 {
                return Err(StatsError::Degenerate(format!(
                    "{nt} treated and {} control clusters: at least two per arm are needed for any between-cluster inference",
                    g - nt
                )));
            }
            (lab, vec![])
        }
    };
    let cluster_strata: Option<Vec<usize>> = match (&panel.stratum, d.kind) {
        (Some(s), DesignKind::Blocked) => {
            let mut cs = vec![None::<usize>; g];
            for (&si, &c) in s.iter().zip(&panel.cluster) {
                match cs[c] {
                    None => cs[c] = Some(si),
                    Some(v) if v != si => {
                        return Err(StatsError::InvalidInput(format!(
                            "stratum varies within cluster {}",
                            prep.cluster_names[c]
                        )))
                    }
                    _ => {}
                }
            }
            Some(cs.into_iter().map(|v| v.unwrap_or(0)).collect())
        }
        _ => None,
    };

    // Pooled model.
    let x = panel.design_matrix(prep.spec);
    let k = x.ncols() - 1;
    let fit = ClusteredOls::new(x, &panel.y, &panel.cluster)?;
    let estimate = fit.beta()[k];

    // Randomisation inference via the cell FWL form.
    let t = panel.n_periods;
    let n_cells = g * t;
    let z = panel.nuisance_matrix(prep.spec);
    let cells = panel.cell_of_row();
    let randomisation: Outcome<RandomisationResult> = (|| {
        let fwl = CellFwl::new(&z, &panel.y, &cells, n_cells)?;
        let mut dcell = vec![0.0; n_cells];
        let kind = d.kind;
        let stat = |a: &[usize]| {
            for c in 0..g {
                for p in 0..t {
                    dcell[c * t + p] = match kind {
                        DesignKind::SteppedWedge => f64::from(u8::from(p >= start_of_label[a[c]])),
                        _ => a[c] as f64,
                    };
                }
            }
            fwl.theta(&dcell)
        };
        randomisation_test(
            &labels,
            cluster_strata.as_deref(),
            stat,
            d.alternative,
            d.max_enumerate,
            d.randomisation_draws,
            d.seed,
        )
    })()
    .into();

    let cr2: Outcome<ClusterTest> = fit.cr2(k).into();
    let cr2_ik: Outcome<ClusterTest> = fit.cr2_ik(k).into();
    let cr1: Outcome<ClusterTest> = fit.cr1(k).into();
    let wild_bootstrap: Outcome<WildBootstrap> =
        fit.wild_bootstrap(k, d.wild_bootstrap_draws, d.seed).into();
    if g < 42 {
        notes.push(format!(
            "{g} clusters: the randomisation p-value is primary; CR2 with Imbens–Kolesár df is the calibrated model-based check (CR2 with Bell–McCaffrey df ran at about 5.5–5.8% false positives at nominal 5% with 4 communities in calibration); CR1 over-rejects with few clusters (about 12% there)"
        ));
    }
    if let Some(r) = &randomisation.result {
        if r.min_attainable_p > 0.05 {
            notes.push(format!(
                "this design cannot produce a randomisation p-value below {:.3}; no result can be 'significant' at 0.05",
                r.min_attainable_p
            ));
        }
    }

    // Per-community summaries.
    let mut sums = vec![(0.0, 0usize, 0.0, 0usize); g];
    for i in 0..panel.y.len() {
        let e = &mut sums[panel.cluster[i]];
        if panel.treated[i] {
            e.2 += panel.y[i];
            e.3 += 1;
        } else {
            e.0 += panel.y[i];
            e.1 += 1;
        }
    }
    let (ims, est): (
        Option<Outcome<IbragimovMuller>>,
        Vec<Option<CommunityEstimate>>,
    ) = if d.kind == DesignKind::SteppedWedge {
        let b = fit.beta();
        let slope = if panel.covariate.is_some() {
            b[k - 1]
        } else {
            0.0
        };
        let ce = community_estimates(panel, slope)?;
        let vals: Vec<f64> = ce.iter().filter_map(|c| c.estimate).collect();
        if vals.len() < g {
            notes.push(format!(
                    "{} communities lack control or treated periods and give no own-trajectory estimate",
                    g - vals.len()
                ));
        }
        (
            Some(ibragimov_muller(&vals).into()),
            ce.into_iter().map(Some).collect(),
        )
    } else {
        (None, vec![None; g])
    };
    let starts_any = crossover_periods(panel).ok();
    let communities = (0..g)
        .map(|c| {
            let s = sums[c];
            CommunityResult {
                cluster: prep.cluster_names[c].clone(),
                n: s.1 + s.3,
                mean_control: (s.1 > 0).then(|| s.0 / s.1 as f64),
                mean_treated: (s.3 > 0).then(|| s.2 / s.3 as f64),
                crossover_period: starts_any
                    .as_ref()
                    .and_then(|st| (st[c] < t).then(|| prep.period_labels[st[c]])),
                estimate: est[c].as_ref().and_then(|e| e.estimate),
            }
        })
        .collect();
    let treated_clusters = if d.kind == DesignKind::SteppedWedge {
        labels.iter().filter(|&&l| start_of_label[l] < t).count()
    } else {
        labels.iter().filter(|&&l| l == 1).count()
    };
    let mut model = String::from("value ~ 1");
    if prep.spec.period_fe {
        model.push_str(" + period FE");
    }
    if prep.spec.cluster_fe {
        model.push_str(" + cluster FE");
    } else if prep.spec.stratum_fe {
        model.push_str(" + stratum FE");
    }
    if panel.covariate.is_some() {
        model.push_str(" + covariate");
    }
    model.push_str(" + treated");
    Ok(RowsOutput {
        design: d.kind,
        model,
        n_rows: panel.y.len(),
        n_clusters: g,
        n_periods: t,
        treated_clusters,
        control_clusters: g - treated_clusters,
        estimate,
        randomisation,
        cr2,
        cr2_ik,
        cr1,
        wild_bootstrap,
        ibragimov_muller: ims,
        communities,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_randomization.json");

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn panel_cases_match_reference() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["panel_cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
            let out = analyze_rows(&input).unwrap();
            let e = &c["expected"];
            assert!(
                rel(out.estimate, e["theta"].as_f64().unwrap()) < 1e-9,
                "{name} theta"
            );
            let r = out.randomisation.result.as_ref().unwrap();
            assert!(r.exact);
            assert_eq!(
                r.total_assignments,
                e["randomisation"]["n_assignments"].as_u64().unwrap(),
                "{name}"
            );
            assert!(
                rel(r.statistic, out.estimate) < 1e-9,
                "{name} FWL statistic"
            );
            assert!(
                rel(r.p_value, e["randomisation"]["p"].as_f64().unwrap()) < 1e-12,
                "{name} p"
            );
            assert!(
                rel(
                    r.min_attainable_p,
                    e["randomisation"]["min_p"].as_f64().unwrap()
                ) < 1e-12,
                "{name} min p"
            );
            let cr1 = out.cr1.result.as_ref().unwrap();
            assert!(
                rel(cr1.se, e["cr1_se"].as_f64().unwrap()) < 1e-9,
                "{name} cr1"
            );
            assert!(
                rel(cr1.p_value, e["cr1_p"].as_f64().unwrap()) < 1e-8,
                "{name} cr1 p"
            );
            let cr2 = out.cr2.result.as_ref().unwrap();
            assert!(
                rel(cr2.se, e["cr2_se"].as_f64().unwrap()) < 1e-9,
                "{name} cr2"
            );
            assert!(
                rel(cr2.df, e["cr2_df"].as_f64().unwrap()) < 1e-9,
                "{name} cr2 df"
            );
            assert!(
                rel(cr2.p_value, e["cr2_p"].as_f64().unwrap()) < 1e-8,
                "{name} cr2 p"
            );
            if let Some(ests) = e.get("community_estimates") {
                let ests: Vec<Option<f64>> = serde_json::from_value(ests.clone()).unwrap();
                for (cr, want) in out.communities.iter().zip(&ests) {
                    match (cr.estimate, want) {
                        (Some(a), Some(b)) => assert!(rel(a, *b) < 1e-9, "{name} community"),
                        (None, None) => {}
                        other => panic!("{name}: {other:?}"),
                    }
                }
                let im = out
                    .ibragimov_muller
                    .as_ref()
                    .unwrap()
                    .result
                    .as_ref()
                    .unwrap();
                assert!(
                    rel(im.t, e["im"]["t"].as_f64().unwrap()) < 1e-9,
                    "{name} IM t"
                );
                assert!(
                    rel(im.p_value, e["im"]["p"].as_f64().unwrap()) < 1e-8,
                    "{name} IM p"
                );
            }
            if let Some(p) = e.get("wcr_p_enumerated").and_then(|p| p.as_f64()) {
                let wb = out.wild_bootstrap.result.as_ref().unwrap();
                assert!(wb.enumerated);
                assert!(rel(wb.p_value, p) < 1e-12, "{name} wcr");
            }
            // serialisable
            let js = serde_json::to_string(&out).unwrap();
            assert!(!js.contains("NaN"));
        }
    }

    #[test]
    fn invariant_to_renaming_clusters_and_row_order() {
        let v: Value = serde_json::from_str(REF).unwrap();
        for c in v["panel_cases"].as_array().unwrap() {
            let input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
            let a = analyze_rows(&input).unwrap();
            let mut renamed = input.clone();
            for r in renamed.rows.iter_mut() {
                // reverse the sort order of cluster names
                r.cluster = format!("z{}", 99 - r.cluster[1..].parse::<i32>().unwrap());
            }
            renamed.rows.reverse();
            let b = analyze_rows(&renamed).unwrap();
            let (ra, rb) = (
                a.randomisation.result.unwrap(),
                b.randomisation.result.unwrap(),
            );
            assert!((ra.p_value - rb.p_value).abs() < 1e-12);
            assert!((ra.min_attainable_p - rb.min_attainable_p).abs() < 1e-12);
            assert!((a.estimate - b.estimate).abs() < 1e-9 * a.estimate.abs().max(1.0));
            let (ca, cb) = (a.cr2.result.unwrap(), b.cr2.result.unwrap());
            assert!((ca.se - cb.se).abs() < 1e-9 * ca.se);
            assert!((ca.df - cb.df).abs() < 1e-8 * ca.df);
        }
    }

    fn tiny(kind: &str, rows: &str) -> RowsInput {
        serde_json::from_str(&format!(
            r#"{{"design": {{"kind": "{kind}"}}, "rows": {rows}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn one_cluster_per_arm_is_degenerate() {
        let rows = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":true,"value":2.0},
                      {"cluster":"b","treated":false,"value":1.5},{"cluster":"b","treated":false,"value":0.5}]"#;
        assert!(matches!(
            analyze_rows(&tiny("cluster", rows)),
            Err(StatsError::Degenerate(_))
        ));
    }

    #[test]
    fn malformed_rows_are_invalid_input() {
        let rows = r#"[{"cluster":"a","value":1.0}]"#;
        assert!(matches!(
            analyze_rows(&tiny("cluster", rows)),
            Err(StatsError::InvalidInput(_))
        ));
        assert!(analyze_rows(&tiny("cluster", "[]")).is_err());
        let mixed = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                       {"cluster":"b","treated":false,"value":1.0},{"cluster":"c","treated":true,"value":1.0}]"#;
        assert!(matches!(
            analyze_rows(&tiny("cluster", mixed)),
            Err(StatsError::InvalidInput(_))
        ));
    }

    #[test]
    fn zero_variance_gives_typed_method_errors() {
        let mut rows = Vec::new();
        for (c, t) in [("a", true), ("b", true), ("c", false), ("d", false)] {
            for _ in 0..3 {
                rows.push(format!(r#"{{"cluster":"{c}","treated":{t},"value":1.0}}"#));
            }
        }
        let out = analyze_rows(&tiny("cluster", &format!("[{}]", rows.join(",")))).unwrap();
        assert!(out.cr2.error.is_some() && out.cr2.result.is_none());
        assert!(out.cr1.error.is_some());
        let js = serde_json::to_string(&out).unwrap();
        assert!(!js.contains("NaN") && !js.contains("null,\"error\":null"));
    }
}
