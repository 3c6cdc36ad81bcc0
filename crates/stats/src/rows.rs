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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterTest, ClusteredOls, WildBootstrap};
use crate::permutation::{stratified_difference, stratified_permutation_test};
use crate::randomization::{randomisation_test, Alternative, RandomisationResult};
use crate::rows_model::{choose_model, community_starts};
use crate::stepped_wedge::{
    community_estimates, ibragimov_muller, CellFwl, CommunityEstimate, IbragimovMuller, ModelSpec,
    Panel,
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

/// Per-arm count, mean and variance (divisor `n − 1`; two-pass).
fn moments(v: &[f64]) -> (usize, f64, Option<f64>) {
    let n = v.len();
    if n == 0 {
        return (0, 0.0, None);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var =
        (n > 1).then(|| v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64);
    (n, mean, var)
}

/// `blocked_users`: users randomised within communities; see
/// [`PostStratified`] and [`crate::permutation`].
fn analyze_blocked_users(prep: &Prepared, d: &RowsDesign) -> Result<RowsOutput> {
    let panel = &prep.panel;
    let g = panel.n_clusters;
    let mut vals = vec![[Vec::new(), Vec::new()]; g];
    for i in 0..panel.y.len() {
        vals[panel.cluster[i]][usize::from(panel.treated[i])].push(panel.y[i]);
    }
    let estimate = stratified_difference(
        &panel.y,
        &panel
            .treated
            .iter()
            .map(|&t| usize::from(t))
            .collect::<Vec<_>>(),
        &panel.cluster,
    )?;
    let mut notes = Vec::new();
    let mut communities = Vec::with_capacity(g);
    let (mut num, mut var, mut w, mut used, mut var_ok) = (0.0, 0.0, 0.0, 0usize, true);
    // Σ k_ca² / (n_ca − 1) for the Satterthwaite df, with k_ca = n_c² s²_ca / n_ca
    // (the common factor 1/(Σ n_c)² of the weights cancels in the df).
    let mut df_den = 0.0;
    for (c, [v0, v1]) in vals.iter().enumerate() {
        let (n0, m0, s0) = moments(v0);
        let (n1, m1, s1) = moments(v1);
        let both = n0 > 0 && n1 > 0;
        let se2 = match (s0, s1) {
            (Some(a), Some(b)) if both => Some(a / n0 as f64 + b / n1 as f64),
            _ => None,
        };
        if both {
            let nc = (n0 + n1) as f64;
            num += nc * (m1 - m0);
            w += nc;
            used += 1;
            match (se2, s0, s1) {
                (Some(v), Some(a), Some(b)) => {
                    var += nc * nc * v;
                    for (s2, n) in [(a, n0), (b, n1)] {
                        let k = nc * nc * s2 / n as f64;
                        df_den += k * k / (n - 1) as f64;
                    }
                }
                _ => var_ok = false,
            }
        }
        communities.push(CommunityResult {
            cluster: prep.cluster_names[c].clone(),
            n: n0 + n1,
            mean_control: (n0 > 0).then_some(m0),
            mean_treated: (n1 > 0).then_some(m1),
            crossover_period: None,
            estimate: both.then_some(m1 - m0),
            se: se2.map(f64::sqrt),
            n_treated: Some(n1),
            n_control: Some(n0),
        });
    }
    let skipped = g - used;
    if skipped > 0 {
        notes.push(format!(
            "{skipped} communities hold only one arm and do not enter the post-stratified estimate or the permutation test"
        ));
    }
    let post: Result<PostStratified> = (|| {
        if !var_ok {
            return Err(StatsError::Degenerate(
                "a community with both arms has fewer than two users in an arm; its variance is not estimable"
                    .into(),
            ));
        }
        let se = (var / (w * w)).sqrt();
        if !(se.is_finite() && se > 0.0) {
            return Err(StatsError::Degenerate(
                "zero within-community variance in both arms".into(),
            ));
        }
        // Welch–Satterthwaite df (see [`PostStratified`]); var > 0 here, so
        // some k_ca > 0 and df_den > 0.
        let df = var * var / df_den;
        if !(df.is_finite() && df > 0.0) {
            return Err(StatsError::Degenerate(
                "the Satterthwaite degrees of freedom are not finite".into(),
            ));
        }
        let tau = num / w;
        let z = tau / se;
        let q = crate::dist::t_ppf(0.975, df);
        Ok(PostStratified {
            estimate: tau,
            se,
            z,
            df,
            p_value: (2.0 * crate::dist::t_sf(z.abs(), df)).min(1.0),
            ci95: (tau - q * se, tau + q * se),
            strata: used,
            strata_skipped: skipped,
        })
    })();
    let randomisation: Outcome<RandomisationResult> = stratified_permutation_test(
        &panel.y,
        &panel.treated,
        &panel.cluster,
        d.alternative,
        d.max_enumerate,
        d.randomisation_draws,
        d.seed,
    )
    .into();
    if let Some(r) = &randomisation.result {
        if r.min_attainable_p > 0.05 {
            notes.push(format!(
                "this design cannot produce a permutation p-value below {:.3}; no result can be 'significant' at 0.05",
                r.min_attainable_p
            ));
        }
    }
    let blocked_lead = lead(&randomisation, None, d.kind);
    let has = |arm: usize| vals.iter().filter(|v| !v[arm].is_empty()).count();
    Ok(RowsOutput {
        design: d.kind,
        model:
            "value ~ treated within community: post-stratified difference in means (weights n_c/n)"
                .into(),
        model_reason:
            "users were randomised within communities: each community is a stratum, so the \
                       comparison is within communities by design"
                .into(),
        n_rows: panel.y.len(),
        n_clusters: g,
        n_periods: panel.n_periods,
        treated_clusters: has(1),
        control_clusters: has(0),
        estimate,
        randomisation,
        cr2: None,
        cr2_ik: None,
        cr2_lead: None,
        lead: blocked_lead,
        cr1: None,
        wild_bootstrap: None,
        post_stratified: Some(post.into()),
        ibragimov_muller: None,
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
            let input = crate::rows_model::legacy_input(&c["input"]);
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
            let cr1 = out.cr1.as_ref().unwrap().result.as_ref().unwrap();
            assert!(
                rel(cr1.se, e["cr1_se"].as_f64().unwrap()) < 1e-9,
                "{name} cr1"
            );
            assert!(
                rel(cr1.p_value, e["cr1_p"].as_f64().unwrap()) < 1e-8,
                "{name} cr1 p"
            );
            let cr2 = out.cr2.as_ref().unwrap().result.as_ref().unwrap();
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
                let wb = out
                    .wild_bootstrap
                    .as_ref()
                    .unwrap()
                    .result
                    .as_ref()
                    .unwrap();
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
            let input = crate::rows_model::legacy_input(&c["input"]);
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
            let (ca, cb) = (
                a.cr2.unwrap().result.unwrap(),
                b.cr2.unwrap().result.unwrap(),
            );
            assert!((ca.se - cb.se).abs() < 1e-9 * ca.se);
            assert!((ca.df - cb.df).abs() < 1e-8 * ca.df);
        }
    }

    const BLOCKED_USERS_REF: &str = include_str!("../reference/few_blocked_users.json");

    #[test]
    fn blocked_users_match_reference() {
        let v: Value = serde_json::from_str(BLOCKED_USERS_REF).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let mut se_errors = 0;
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
            let out = analyze_rows(&input).unwrap();
            let e = &c["expected"];
            let f = |v: &Value| v.as_f64().unwrap();
            assert!(
                rel(out.estimate, f(&e["estimate"])) < 1e-9,
                "{name} estimate"
            );
            let r = out.randomisation.result.as_ref().unwrap();
            assert!(r.exact, "{name}");
            assert_eq!(
                r.total_assignments,
                e["randomisation"]["n_assignments"].as_u64().unwrap()
            );
            assert!((r.statistic - out.estimate).abs() < 1e-12 * out.estimate.abs().max(1.0));
            assert!(
                (r.p_value - f(&e["randomisation"]["p"])).abs() < 1e-12,
                "{name} p {}",
                r.p_value
            );
            assert!(
                (r.min_attainable_p - f(&e["randomisation"]["min_p"])).abs() < 1e-12,
                "{name} min p"
            );
            let ps = out.post_stratified.as_ref().unwrap();
            let we = &e["post_stratified"];
            match we.get("error") {
                Some(_) => {
                    assert!(
                        matches!(ps.error, Some(StatsError::Degenerate(_))),
                        "{name}"
                    );
                    se_errors += 1;
                }
                None => {
                    let p = ps.result.as_ref().unwrap();
                    assert!(rel(p.estimate, f(&we["estimate"])) < 1e-9, "{name}");
                    assert!(rel(p.se, f(&we["se"])) < 1e-9, "{name} se");
                    assert!(rel(p.df, f(&we["df"])) < 1e-9, "{name} df {}", p.df);
                    assert!(rel(p.z, f(&we["t"])) < 1e-9, "{name} t");
                    assert!(rel(p.p_value, f(&we["p"])) < 1e-9, "{name} p");
                    assert!(
                        rel(p.ci95.0, f(&we["ci95"][0])) < 1e-9
                            && rel(p.ci95.1, f(&we["ci95"][1])) < 1e-9,
                        "{name} ci95 {:?}",
                        p.ci95
                    );
                    // Satterthwaite df lies between the smallest and the
                    // summed per-cell df
                    assert!(p.df >= 1.0 - 1e-12, "{name} df {}", p.df);
                    assert_eq!(p.strata as u64, we["strata"].as_u64().unwrap());
                    assert_eq!(
                        p.strata_skipped as u64,
                        we["strata_skipped"].as_u64().unwrap()
                    );
                }
            }
            let wc = e["communities"].as_array().unwrap();
            assert_eq!(out.communities.len(), wc.len());
            for (got, want) in out.communities.iter().zip(wc) {
                assert_eq!(got.cluster, want["cluster"].as_str().unwrap());
                assert_eq!(
                    got.n_treated,
                    want["n_treated"].as_u64().map(|v| v as usize)
                );
                assert_eq!(
                    got.n_control,
                    want["n_control"].as_u64().map(|v| v as usize)
                );
                for (g, w) in [(got.estimate, &want["estimate"]), (got.se, &want["se"])] {
                    match (g, w.as_f64()) {
                        (Some(a), Some(b)) => {
                            assert!(rel(a, b) < 1e-9 || (a - b).abs() < 1e-12, "{name}")
                        }
                        (None, None) => {}
                        other => panic!("{name}: {other:?}"),
                    }
                }
            }
            assert!(out.cr2.is_none() && out.cr1.is_none() && out.cr2_lead.is_none());
            let js = serde_json::to_string(&out).unwrap();
            assert!(!js.contains("NaN"));
        }
        assert!(se_errors >= 2);
    }

    #[test]
    fn blocked_users_sampled_permutation_is_seeded_and_close() {
        let v: Value = serde_json::from_str(BLOCKED_USERS_REF).unwrap();
        let c = &v["cases"][0];
        let mut input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
        let exact = analyze_rows(&input).unwrap().randomisation.result.unwrap();
        assert!(exact.exact && exact.total_assignments > 1000);
        input.design.max_enumerate = 100;
        input.design.randomisation_draws = 4000;
        let a = analyze_rows(&input).unwrap();
        let s = a.randomisation.result.as_ref().unwrap();
        assert!(!s.exact && s.seed == Some(input.design.seed));
        assert!((s.min_attainable_p - 1.0 / 4001.0).abs() < 1e-15);
        let sd = (exact.p_value * (1.0 - exact.p_value) / 4000.0).sqrt();
        assert!((s.p_value - exact.p_value).abs() < 4.0 * sd + 1e-3);
        assert_eq!(a, analyze_rows(&input).unwrap());
    }

    #[test]
    fn blocked_users_rejects_what_it_does_not_use() {
        let base = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                      {"cluster":"a","treated":true,"value":1.5},{"cluster":"a","treated":false,"value":0.5}"#;
        let ok = analyze_rows(&tiny("blocked_users", &format!("{base}]"))).unwrap();
        assert_eq!(ok.n_clusters, 1);
        assert_eq!(ok.randomisation.result.unwrap().total_assignments, 6);
        assert!(ok.model.contains("post-stratified"));
        for extra in [
            r#",{"cluster":"a","treated":true,"value":1.0,"covariate":1.0}]"#,
            r#",{"cluster":"a","treated":true,"value":1.0,"stratum":"s"}]"#,
            r#",{"cluster":"a","treated":true,"value":1.0,"period":3}]"#,
        ] {
            let r = analyze_rows(&tiny("blocked_users", &format!("{base}{extra}")));
            assert!(
                matches!(r, Err(StatsError::InvalidInput(_))),
                "{extra}: {r:?}"
            );
        }
        // one arm only: no estimate at all
        let one = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"b","treated":false,"value":2.0}]"#;
        assert!(matches!(
            analyze_rows(&tiny("blocked_users", one)),
            Err(StatsError::Degenerate(_))
        ));
        // the community-level `blocked` design points at blocked_users
        let mixed = format!(
            "{base},{{\"cluster\":\"b\",\"treated\":true,\"value\":1.0,\"stratum\":\"s\"}}]"
        )
        .replace("\"value\":1.0}", "\"value\":1.0,\"stratum\":\"s\"}")
        .replace("\"value\":2.0}", "\"value\":2.0,\"stratum\":\"s\"}")
        .replace("\"value\":1.5}", "\"value\":1.5,\"stratum\":\"s\"}")
        .replace("\"value\":0.5}", "\"value\":0.5,\"stratum\":\"s\"}");
        let e = analyze_rows(&tiny("blocked", &mixed))
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocked_users"), "{e}");
    }

    #[test]
    fn blocked_users_one_community_is_welch() {
        // One community: the post-stratified result is Welch's t-test.
        // scipy.stats.ttest_ind([1.0, 1.5, 3.0], [2.0, 0.5, 0.7, 1.1], equal_var=False)
        let rows = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":true,"value":1.5},
                       {"cluster":"a","treated":true,"value":3.0},{"cluster":"a","treated":false,"value":2.0},
                       {"cluster":"a","treated":false,"value":0.5},{"cluster":"a","treated":false,"value":0.7},
                       {"cluster":"a","treated":false,"value":1.1}]"#;
        let out = analyze_rows(&tiny("blocked_users", rows)).unwrap();
        let p = out.post_stratified.unwrap().result.unwrap();
        assert!(rel(p.z, 1.104_105_529_852_595_7) < 1e-12);
        assert!(rel(p.df, 3.212_113_658_450_371_6) < 1e-12, "{}", p.df);
        assert!(rel(p.p_value, 0.345_320_925_541_256_8) < 1e-9);
        assert!(rel(p.ci95.0, -1.348_037_313_481_912_4) < 1e-9);
        assert!(rel(p.ci95.1, 2.864_703_980_148_578_7) < 1e-9);
        // a single user in an arm of a used community: no variance, no df
        let one = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                      {"cluster":"b","treated":true,"value":1.0},{"cluster":"b","treated":true,"value":3.0},
                      {"cluster":"b","treated":false,"value":2.0},{"cluster":"b","treated":false,"value":0.5}]"#;
        let ps = analyze_rows(&tiny("blocked_users", one))
            .unwrap()
            .post_stratified
            .unwrap();
        assert!(matches!(ps.error, Some(StatsError::Degenerate(_))));
        let js = serde_json::to_value(analyze_rows(&tiny("blocked_users", rows)).unwrap()).unwrap();
        assert!(js["post_stratified"]["result"]["df"].is_number());
    }

    #[test]
    fn cr2_lead_is_a_field_and_follows_the_cluster_count() {
        let v: Value = serde_json::from_str(REF).unwrap();
        // sw_4x5_period_fe: fitted without community effects
        let input = crate::rows_model::legacy_input(&v["panel_cases"][0]["input"]);
        let out = analyze_rows(&input).unwrap();
        let lead = out.cr2_lead.as_ref().unwrap();
        assert_eq!(
            (lead.method.as_str(), lead.field.as_str()),
            ("CR2-IK", "cr2_ik")
        );
        assert_eq!(lead.reason, LeadReason::FewClustersCalibration);
        let js = serde_json::to_value(&out).unwrap();
        assert_eq!(js["cr2_lead"]["reason"], "few_clusters_calibration");
        let field = js["cr2_lead"]["field"].as_str().unwrap();
        assert_eq!(js[field]["result"]["method"], "CR2-IK");
        assert!(js["cr2"]["result"]["method"] == "CR2", "BM stays reported");
        let many = cr2_lead(FEW_CLUSTERS, false);
        assert_eq!(
            (many.method.as_str(), many.reason),
            ("CR2", LeadReason::ManyClusters)
        );
        assert_eq!(cr2_lead(FEW_CLUSTERS - 1, false).method, "CR2-IK");
        let fe = cr2_lead(4, true);
        assert_eq!(
            (fe.method.as_str(), fe.reason),
            ("CR2", LeadReason::CommunityFixedEffects)
        );
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
        let (cr2, cr1) = (out.cr2.as_ref().unwrap(), out.cr1.as_ref().unwrap());
        assert!(cr2.error.is_some() && cr2.result.is_none());
        assert!(cr1.error.is_some());
        let js = serde_json::to_string(&out).unwrap();
        assert!(!js.contains("NaN") && !js.contains("null,\"error\":null"));
    }
}
