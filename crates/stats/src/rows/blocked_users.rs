//! The `blocked_users` design: users randomised within communities,
//! analysed by the post-stratified difference in means ([`PostStratified`])
//! and the stratified permutation test ([`crate::permutation`]).

use super::{lead, CommunityResult, Outcome, PostStratified, Prepared, RowsDesign, RowsOutput};
use crate::permutation::{stratified_difference, stratified_permutation_test};
use crate::randomization::RandomisationResult;
use crate::{Result, StatsError};

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
pub(super) fn analyze_blocked_users(prep: &Prepared, d: &RowsDesign) -> Result<RowsOutput> {
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
