//! Few-community analysis entry point: rows in, every few-cluster method out.
//!
//! Input: per-unit or per-cluster-period rows (`cluster`, optional `period`,
//! `arm` or `treated`, `value`, optional `covariate` and `stratum`) and a
//! design (`cluster`, `stepped_wedge` or `blocked`: communities assigned;
//! `blocked_users`: users randomised within communities). For community-level
//! designs the output is the treatment coefficient of
//! `value ~ 1 + period FE [+ cluster FE | stratum FE] [+ covariate] + treated`
//! (community fixed effects by default wherever a community is observed both
//! untreated and treated; [`crate::rows_model`] chooses and says why) with
//!
//! * randomisation inference over the assignments the design allowed, with
//!   the smallest attainable p-value ([`crate::randomization`]); it is the
//!   [`Lead`] result whenever it ran;
//! * CR2 with Bell–McCaffrey df and with Imbens–Kolesár df, and which of the
//!   two leads the model-based checks ([`Cr2Lead`]), CR1 (labelled
//!   anti-conservative) ([`crate::cluster`]);
//! * the wild cluster restricted bootstrap with Webb weights;
//! * per-community results (stepped wedge: own-trajectory estimates and the
//!   Ibragimov–Müller test, [`crate::stepped_wedge`]).
//!
//! For `blocked_users` the estimate is the post-stratified (by community)
//! difference in means with its Neyman standard error and a t reference with
//! Welch–Satterthwaite df ([`PostStratified`]), tested by the
//! stratified permutation test ([`crate::permutation`]), with one estimate
//! per community.
//!
//! Each method reports either a value or the typed reason it is unavailable.
//! The contract is documented in `docs/analyze-few.md`.

mod blocked_users;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterTest, ClusteredOls, WildBootstrap};
use crate::randomization::{randomisation_test, Alternative, RandomisationResult};
use crate::rows_model::{choose_model, community_starts};
use crate::stepped_wedge::{
    community_estimates, ibragimov_muller, CellFwl, CommunityEstimate, IbragimovMuller, ModelSpec,
    Panel,
};
use crate::{Result, StatsError};
use blocked_users::analyze_blocked_users;

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
    /// Users randomised individually within communities (the `cluster`
    /// column): blocked / stratified randomisation of users, as a trial with
    /// `design.kind = "blocked"` stratified by community assigns them.
    BlockedUsers,
}

pub use crate::rows_model::{
    cr2_lead, lead, CommunityEffects, Cr2Lead, Lead, LeadMethodReason, LeadReason, FEW_CLUSTERS,
};

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
    /// Community fixed effects: absent (default) = wherever some community is
    /// observed untreated and treated; `fixed` = required; `none` = the
    /// model without them, on request (see [`crate::rows_model`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_effects: Option<CommunityEffects>,
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
    /// (see [`crate::stepped_wedge`]); `blocked_users`: the difference in
    /// means `ȳ_1c − ȳ_0c`.
    pub estimate: Option<f64>,
    /// `blocked_users`: Welch standard error `√(s²_1c/n_1c + s²_0c/n_0c)`
    /// of `estimate` (needs two users per arm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se: Option<f64>,
    /// `blocked_users`: treated users in the community.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_treated: Option<usize>,
    /// `blocked_users`: control users in the community.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_control: Option<usize>,
}

/// Post-stratified difference in means for users randomised within
/// communities (Imbens & Rubin 2015, §9.5): `τ̂ = Σ_c w_c (ȳ_1c − ȳ_0c)`,
/// `w_c = n_c / Σ n_c` over communities with both arms, and the Neyman
/// variance `V̂ = Σ_c w_c² (s²_1c/n_1c + s²_0c/n_0c)` (community sizes and
/// arm counts fixed by the design).
///
/// Reference distribution: Student t with Welch–Satterthwaite degrees of
/// freedom for a linear combination of independent variance estimates
/// (Satterthwaite 1946, "An approximate distribution of estimates of
/// variance components", *Biometrics Bulletin* 2:110–114; Welch 1947; the
/// stratified-sample form in Cochran 1977, *Sampling Techniques*, §5.4):
///
/// `df = (Σ_c Σ_a k_ca)² / Σ_c Σ_a k_ca² / (n_ca − 1)`,
/// `k_ca = w_c² s²_ca / n_ca`, `a ∈ {treated, control}`.
///
/// With one community this is Welch's df. It lies between
/// `min(n_ca − 1)` and `Σ(n_ca − 1)` over the cells with non-zero variance.
/// A normal reference over-rejected with 2 users per arm per community
/// (10.65% at α = 0.05, `docs/calibration.md`); with large arms df is large
/// and the t reference is the normal one.
///
/// Degenerate cases (typed `degenerate` error, as before the t reference):
/// a community holding both arms with a single user in an arm has no
/// variance estimate (`n_ca − 1 = 0`), so neither `V̂` nor df is defined;
/// all within-community variances zero gives `V̂ = 0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostStratified {
    /// `τ̂`.
    pub estimate: f64,
    /// `√V̂`.
    pub se: f64,
    /// `τ̂ / se`, referred to Student t with `df` degrees of freedom (the
    /// field keeps its original name).
    pub z: f64,
    /// Welch–Satterthwaite degrees of freedom of `V̂` (see the type docs).
    pub df: f64,
    /// Two-sided p-value, `2·P(T_df > |z|)`.
    pub p_value: f64,
    /// 95% interval `τ̂ ± t_{0.975, df}·se`.
    pub ci95: (f64, f64),
    /// Communities with both arms (the strata used).
    pub strata: usize,
    /// Communities skipped because they hold only one arm.
    pub strata_skipped: usize,
}

/// Output of [`analyze_rows`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowsOutput {
    /// Design analysed.
    pub design: DesignKind,
    /// Model in words, e.g. "value ~ 1 + period FE + cluster FE + treated".
    pub model: String,
    /// Why this model (see [`crate::rows_model`]).
    pub model_reason: String,
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
    /// `None` (null) for `blocked_users`, where communities are not the
    /// assignment unit.
    pub cr2: Option<Outcome<ClusterTest>>,
    /// CR2 SE with Imbens–Kolesár df (working model with the residual ICC;
    /// more conservative than `cr2` when residuals cluster).
    pub cr2_ik: Option<Outcome<ClusterTest>>,
    /// Which of `cr2` / `cr2_ik` is the lead model-based result, and why.
    pub cr2_lead: Option<Cr2Lead>,
    /// The result to report first, and why ([`lead`]).
    pub lead: Lead,
    /// CR1 with `G−1` df (anti-conservative with few clusters; comparison only).
    pub cr1: Option<Outcome<ClusterTest>>,
    /// Wild cluster restricted bootstrap (Webb weights).
    pub wild_bootstrap: Option<Outcome<WildBootstrap>>,
    /// `blocked_users`: post-stratified difference in means with its
    /// Neyman standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_stratified: Option<Outcome<PostStratified>>,
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
    // Community fixed effects are decided in `analyze_rows` from the crossovers.
    let spec = ModelSpec {
        period_fe: panel.n_periods > 1,
        cluster_fe: false,
        stratum_fe: d.kind == DesignKind::Blocked,
    };
    if d.kind == DesignKind::BlockedUsers {
        if d.community_effects.is_some() {
            return Err(StatsError::InvalidInput(
                "blocked_users compares users within each community already; community_effects does not apply"
                    .into(),
            ));
        }
        if has_cov || has_st {
            return Err(StatsError::InvalidInput(
                "blocked_users: the randomisation strata are the communities (`cluster`); `covariate` and `stratum` are not used by this design, leave them out"
                    .into(),
            ));
        }
        if panel.n_periods > 1 {
            return Err(StatsError::InvalidInput(
                "blocked_users: one row per user and a single period are expected".into(),
            ));
        }
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
    if d.kind == DesignKind::BlockedUsers {
        return analyze_blocked_users(&prep, d);
    }
    let g = panel.n_clusters;
    let mut notes = Vec::new();

    // Randomisation unit labels: the crossover step (stepped wedge) or
    // treated / control (communities treated from a common period `start`).
    let t = panel.n_periods;
    let starts = community_starts(panel, &prep.cluster_names, d.kind)?;
    let (labels, start_of_label): (Vec<usize>, Vec<usize>) = match d.kind {
        DesignKind::SteppedWedge => {
            let mut distinct: Vec<usize> = starts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() < 2 {
                return Err(StatsError::Degenerate(
                    "stepped wedge needs communities crossing over at two or more different steps"
                        .into(),
                ));
            }
            if !starts.iter().any(|&s| s > 0) || !starts.iter().any(|&s| s < t) {
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
        DesignKind::Cluster | DesignKind::Blocked | DesignKind::BlockedUsers => {
            let mut treated_starts: Vec<usize> =
                starts.iter().copied().filter(|&s| s < t).collect();
            treated_starts.sort_unstable();
            treated_starts.dedup();
            if treated_starts.len() > 1 {
                return Err(StatsError::InvalidInput(format!(
                    "treated communities start in different periods ({} distinct starts): a {:?} design treats \
                     them all from one period on (staggered starts: kind `stepped_wedge`)",
                    treated_starts.len(),
                    d.kind
                )));
            }
            let lab: Vec<usize> = starts.iter().map(|&s| usize::from(s < t)).collect();
            let nt = lab.iter().filter(|&&l| l == 1).count();
            if nt < 2 || g - nt < 2 {
                return Err(StatsError::Degenerate(format!(
                    "{nt} treated and {} control clusters: at least two per arm are needed for any between-cluster inference",
                    g - nt
                )));
            }
            // label 0 never starts; label 1 starts at the common period
            (lab, vec![t, treated_starts[0]])
        }
    };
    let choice = choose_model(d.kind, d.community_effects, &starts, t)?;
    let spec = ModelSpec {
        cluster_fe: choice.cluster_fe,
        ..prep.spec
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
    let x = panel.design_matrix(spec);
    let k = x.ncols() - 1;
    let fit = ClusteredOls::new(x, &panel.y, &panel.cluster)?;
    let estimate = fit.beta()[k];

    // Randomisation inference via the cell FWL form.
    let n_cells = g * t;
    let z = panel.nuisance_matrix(spec);
    let cells = panel.cell_of_row();
    let randomisation: Outcome<RandomisationResult> = (|| {
        let fwl = CellFwl::new(&z, &panel.y, &cells, n_cells)?;
        let mut dcell = vec![0.0; n_cells];
        let stat = |a: &[usize]| {
            for c in 0..g {
                for p in 0..t {
                    dcell[c * t + p] = f64::from(u8::from(p >= start_of_label[a[c]]));
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
    let cr2_lead = cr2_lead(g, spec.cluster_fe);
    let lead = lead(&randomisation, Some(&cr2_lead), d.kind);
    if g < FEW_CLUSTERS {
        notes.push(format!(
            "{g} clusters: {} leads (`lead`); the lead model-based check is {} (`cr2_lead`); CR1 over-rejects with few clusters",
            lead.method, cr2_lead.method
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
    let communities = (0..g)
        .map(|c| {
            let s = sums[c];
            CommunityResult {
                cluster: prep.cluster_names[c].clone(),
                n: s.1 + s.3,
                mean_control: (s.1 > 0).then(|| s.0 / s.1 as f64),
                mean_treated: (s.3 > 0).then(|| s.2 / s.3 as f64),
                crossover_period: (starts[c] < t).then(|| prep.period_labels[starts[c]]),
                estimate: est[c].as_ref().and_then(|e| e.estimate),
                se: None,
                n_treated: None,
                n_control: None,
            }
        })
        .collect();
    let treated_clusters = labels.iter().filter(|&&l| start_of_label[l] < t).count();
    let mut model = String::from("value ~ 1");
    if spec.period_fe {
        model.push_str(" + period FE");
    }
    if spec.cluster_fe {
        model.push_str(" + cluster FE");
    } else if spec.stratum_fe {
        model.push_str(" + stratum FE");
    }
    if panel.covariate.is_some() {
        model.push_str(" + covariate");
    }
    model.push_str(" + treated");
    Ok(RowsOutput {
        design: d.kind,
        model,
        model_reason: choice.reason,
        n_rows: panel.y.len(),
        n_clusters: g,
        n_periods: t,
        treated_clusters,
        control_clusters: g - treated_clusters,
        estimate,
        randomisation,
        cr2: Some(cr2),
        cr2_ik: Some(cr2_ik),
        cr2_lead: Some(cr2_lead),
        lead,
        cr1: Some(cr1),
        wild_bootstrap: Some(wild_bootstrap),
        post_stratified: None,
        ibragimov_muller: ims,
        communities,
        notes,
    })
}

#[cfg(test)]
mod tests;
