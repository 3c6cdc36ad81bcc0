//! Switchback (crossover) analysis: community × period cells, each
//! community switched on or off in each period by the design's own
//! randomisation.
//!
//! - **Estimate**: the treatment coefficient of OLS with community and
//!   period fixed effects, `y_ck = α_c + γ_k + θ·D_ck + ε_ck`, one row per
//!   observed cell.
//! - **Randomisation inference over the design's allocation
//!   distribution**: `θ̂(a)` for every allocation `a` the scheme could have
//!   drawn (independent: every cell on with probability `p`; balanced:
//!   every half of the communities in each period; blocked pairs: one
//!   period of each pair per community), weighted by its probability. The
//!   two-sided p-value is `P(|θ̂(a)| ≥ |θ̂(obs)|)`. Exact (enumerated) when
//!   the number of allocations is at most `max_enumerate`; otherwise
//!   `draws` allocations are drawn from the design with a seeded ChaCha20
//!   RNG and `p = (1 + #{|θ̂*| ≥ |θ̂|}) / (1 + B)` (Phipson & Smyth 2010),
//!   with its Monte Carlo standard error `√(p(1−p)/B)`. Allocations under
//!   which the effect is not estimable (the treatment collinear with the
//!   fixed effects, e.g. a community on in every period) are left out and
//!   counted, so the p-value is conditional on an estimable allocation.
//!   The smallest attainable p is stated: enumerated, the probability of
//!   the allocations tying the most extreme `|θ̂|`; sampled, `1/(1+B)`.
//!   A sampled `θ̂(a)` costs `O(cells · on cells)` through
//!   [`CellFwl`](crate::stepped_wedge::CellFwl); enumerated allocations
//!   are visited in a Gray code, `O(cells)` each (`switchback_enumerate.rs`).
//! - **CR2** (Bell–McCaffrey, communities as clusters) beside it.
//! - **Carry-over check**: over periods `k ≥ 1`, with `L_ck = D_c,k−1`,
//!   `y = α_c + γ_k + a·D(1−L) + b·D·L + c·L + ε`: `a` is the effect in
//!   periods following an off period, `b` following an on period, `c` the
//!   effect lingering into an off period that follows an on period; the
//!   same model as `a·D + δ·D·L + c·L` gives the difference `δ = b − a`.
//!   Each with CR2 and its 95% interval; the check warns ("material") when
//!   the interval of `c` or of `δ` excludes zero.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::cluster::{ClusterTest, ClusteredOls};
use crate::stepped_wedge::{CellFwl, ModelSpec, Panel};
use crate::{Result, StatsError};

#[path = "switchback_enumerate.rs"]
mod enumerate;
use enumerate::{for_each_allocation, Projection};

/// At most this many cells (the refit holds a cells² matrix).
pub const MAX_CELLS: usize = 10_000;

/// How the design drew its allocation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Scheme {
    /// Every community-period on with `probability`, independently.
    Independent { probability: f64 },
    /// Exactly half of the communities on in each period.
    Balanced,
    /// Periods in consecutive pairs; each community on in one of each pair.
    BlockedPairs,
}

/// One community in one period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Dense, `< communities`.
    pub community: usize,
    /// Dense, `< periods`.
    pub period: usize,
    pub value: f64,
}

/// What the analysis needs: the grid, the observed cells and the drawn
/// allocation.
#[derive(Debug, Clone)]
pub struct SwitchbackInput {
    pub communities: usize,
    pub periods: usize,
    /// At most one per (community, period).
    pub cells: Vec<Cell>,
    /// `on[c][k]`: the allocation drawn (the whole grid).
    pub on: Vec<Vec<bool>>,
    pub scheme: Scheme,
    /// Enumerate when the design allows at most this many allocations.
    pub max_enumerate: u64,
    /// Allocations drawn otherwise.
    pub draws: usize,
    pub seed: u64,
}

/// Randomisation inference over the design's allocations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchbackRi {
    pub statistic: f64,
    pub p_value: f64,
    /// Every allocation enumerated (else sampled).
    pub exact: bool,
    /// Allocations the design allows (`None` beyond 2^127: "astronomical").
    pub total_allocations: Option<u128>,
    /// Allocations evaluated (enumerated or drawn).
    pub evaluated: u64,
    /// Of those, allocations under which the effect is not estimable (left
    /// out).
    pub not_estimable: u64,
    /// Sampled: the Monte Carlo standard error of `p_value`.
    pub mc_se: Option<f64>,
    /// The smallest p-value this analysis could have given.
    pub min_attainable_p: f64,
    /// The RNG seed when sampled.
    pub seed: Option<u64>,
}

/// The carry-over check (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarryOver {
    /// The effect in periods following an off period (`a`).
    pub after_off: ClusterTest,
    /// The effect in periods following an on period (`b`).
    pub after_on: ClusterTest,
    /// `b − a`.
    pub difference: ClusterTest,
    /// The effect lingering into an off period that follows an on one
    /// (`c`).
    pub lingering: ClusterTest,
    /// The interval of `lingering` or of `difference` excludes zero.
    pub material: bool,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchbackResult {
    pub estimate: f64,
    pub model: String,
    pub cells: usize,
    pub randomisation: SwitchbackRi,
    pub cr2: ClusterTest,
    /// `None` with `carryover_error` saying why (too few periods, a
    /// combination never drawn, …).
    pub carryover: Option<CarryOver>,
    pub carryover_error: Option<String>,
}

/// One block of the randomisation: the options it chooses among (each the
/// cells it turns on, as indices into the observed cells) and their
/// probabilities.
struct Block {
    options: Vec<Vec<usize>>,
    weights: Vec<f64>,
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    go(0, n, k, &mut cur, &mut out);
    out
}

/// The design's randomisation as independent blocks over the observed
/// cells (`index[c][k]`: the cell's row, if observed).
fn blocks(x: &SwitchbackInput, index: &[Vec<Option<usize>>]) -> Result<Vec<Block>> {
    let (nc, np) = (x.communities, x.periods);
    let cells_of = |pairs: &[(usize, usize)]| -> Vec<usize> {
        pairs.iter().filter_map(|&(c, k)| index[c][k]).collect()
    };
    Ok(match x.scheme {
        Scheme::Independent { probability: p } => {
            if !(p > 0.0 && p < 1.0) {
                return Err(StatsError::InvalidInput(format!(
                    "probability {p} is not in (0, 1)"
                )));
            }
            // Unobserved cells do not change the estimate: left out.
            (0..x.cells.len())
                .map(|i| Block {
                    options: vec![vec![], vec![i]],
                    weights: vec![1.0 - p, p],
                })
                .collect()
        }
        Scheme::Balanced => {
            if nc % 2 == 1 {
                return Err(StatsError::InvalidInput(
                    "a balanced switchback needs an even number of communities".into(),
                ));
            }
            let halves = subsets(nc, nc / 2);
            let w = 1.0 / halves.len() as f64;
            (0..np)
                .map(|k| Block {
                    options: halves
                        .iter()
                        .map(|h| cells_of(&h.iter().map(|&c| (c, k)).collect::<Vec<_>>()))
                        .collect(),
                    weights: vec![w; halves.len()],
                })
                .collect()
        }
        Scheme::BlockedPairs => {
            if np % 2 == 1 {
                return Err(StatsError::InvalidInput(
                    "blocked pairs need an even number of periods".into(),
                ));
            }
            (0..nc)
                .flat_map(|c| (0..np / 2).map(move |q| (c, q)))
                .map(|(c, q)| Block {
                    options: vec![cells_of(&[(c, 2 * q)]), cells_of(&[(c, 2 * q + 1)])],
                    weights: vec![0.5, 0.5],
                })
                .collect()
        }
    })
}

/// The number of allocations the design allows over the whole grid
/// (`None` when it overflows `u128`).
pub fn total_allocations(scheme: Scheme, communities: usize, periods: usize) -> Option<u128> {
    let (base, count): (u128, usize) = match scheme {
        Scheme::Independent { .. } => (2, communities * periods),
        Scheme::Balanced => (subsets_count(communities, communities / 2)?, periods),
        Scheme::BlockedPairs => (2, communities * (periods / 2)),
    };
    let mut n: u128 = 1;
    for _ in 0..count {
        n = n.checked_mul(base)?;
    }
    Some(n)
}

fn subsets_count(n: usize, k: usize) -> Option<u128> {
    let mut r: u128 = 1;
    for i in 0..k {
        r = r.checked_mul((n - i) as u128)? / (i as u128 + 1);
    }
    Some(r)
}

fn same_or_more(a: f64, obs: f64) -> bool {
    a.abs() >= obs.abs() - 1e-10 * obs.abs().max(1e-12)
}

/// Analyses a switchback (see the module docs).
pub fn analyze_switchback(x: &SwitchbackInput) -> Result<SwitchbackResult> {
    let (panel, spec, fwl) = setup(x)?;
    let z = panel.nuisance_matrix(spec);
    let d_obs: Vec<f64> = panel
        .treated
        .iter()
        .map(|&t| f64::from(u8::from(t)))
        .collect();
    let estimate = fwl.theta(&d_obs)?;
    let ols = ClusteredOls::new(panel.design_matrix(spec), &panel.y, &panel.cluster)?;
    let cr2 = ols.cr2(z.ncols())?;
    let randomisation = randomise(x, &index_of(x), &fwl, (&z, &panel.y), estimate)?;
    let (carryover, carryover_error) = match carryover(x) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(SwitchbackResult {
        estimate,
        model: "y ~ treated + community FE + period FE (one row per community × period)".into(),
        cells: x.cells.len(),
        randomisation,
        cr2,
        carryover,
        carryover_error,
    })
}

/// The estimate and its randomisation inference only (what power and
/// calibration runs repeat).
pub fn switchback_ri(x: &SwitchbackInput) -> Result<(f64, SwitchbackRi)> {
    let (panel, spec, fwl) = setup(x)?;
    let d_obs: Vec<f64> = panel
        .treated
        .iter()
        .map(|&t| f64::from(u8::from(t)))
        .collect();
    let estimate = fwl.theta(&d_obs)?;
    let z = panel.nuisance_matrix(spec);
    Ok((
        estimate,
        randomise(x, &index_of(x), &fwl, (&z, &panel.y), estimate)?,
    ))
}

fn index_of(x: &SwitchbackInput) -> Vec<Vec<Option<usize>>> {
    let mut index = vec![vec![None; x.periods]; x.communities];
    for (i, c) in x.cells.iter().enumerate() {
        index[c.community][c.period] = Some(i);
    }
    index
}

fn setup(x: &SwitchbackInput) -> Result<(Panel, ModelSpec, CellFwl)> {
    let (nc, np) = (x.communities, x.periods);
    if nc < 2 || np < 2 {
        return Err(StatsError::InvalidInput(
            "a switchback needs at least 2 communities and 2 periods".into(),
        ));
    }
    if x.cells.len() > MAX_CELLS {
        return Err(StatsError::InvalidInput(format!(
            "{} cells; at most {MAX_CELLS}",
            x.cells.len()
        )));
    }
    if x.on.len() != nc || x.on.iter().any(|r| r.len() != np) {
        return Err(StatsError::InvalidInput(
            "the allocation is not communities × periods".into(),
        ));
    }
    let mut index = vec![vec![None; np]; nc];
    for (i, c) in x.cells.iter().enumerate() {
        if c.community >= nc || c.period >= np {
            return Err(StatsError::InvalidInput("cell out of the grid".into()));
        }
        if !c.value.is_finite() {
            return Err(StatsError::InvalidInput("non-finite value".into()));
        }
        if index[c.community][c.period].replace(i).is_some() {
            return Err(StatsError::InvalidInput(format!(
                "two rows for community {} period {}",
                c.community, c.period
            )));
        }
    }
    let panel = Panel {
        cluster: x.cells.iter().map(|c| c.community).collect(),
        period: x.cells.iter().map(|c| c.period).collect(),
        treated: x
            .cells
            .iter()
            .map(|c| x.on[c.community][c.period])
            .collect(),
        y: x.cells.iter().map(|c| c.value).collect(),
        covariate: None,
        stratum: None,
        n_clusters: nc,
        n_periods: np,
    };
    panel.validate()?;
    let spec = ModelSpec {
        period_fe: true,
        cluster_fe: true,
        stratum_fe: false,
    };
    let z = panel.nuisance_matrix(spec);
    let n = x.cells.len();
    let fwl = CellFwl::new(&z, &panel.y, &(0..n).collect::<Vec<_>>(), n)?;
    Ok((panel, spec, fwl))
}

/// `model`: the nuisance design and the outcome, one row per cell (for
/// the exact enumeration's projection).
fn randomise(
    x: &SwitchbackInput,
    index: &[Vec<Option<usize>>],
    fwl: &CellFwl,
    model: (&DMatrix<f64>, &[f64]),
    obs: f64,
) -> Result<SwitchbackRi> {
    let blocks = blocks(x, index)?;
    let n = x.cells.len();
    let total = total_allocations(x.scheme, x.communities, x.periods);
    // Enumerate over the blocks that matter (their product of option
    // counts); the rest of the grid does not change the estimate.
    let count: Option<u128> = blocks
        .iter()
        .try_fold(1u128, |acc, b| acc.checked_mul(b.options.len() as u128));
    let mut d = vec![0.0; n];
    let fill = |d: &mut [f64], choice: &[usize]| {
        d.iter_mut().for_each(|v| *v = 0.0);
        for (b, &o) in blocks.iter().zip(choice) {
            for &i in &b.options[o] {
                d[i] = 1.0;
            }
        }
    };
    if let Some(count) = count.filter(|&c| c <= u128::from(x.max_enumerate)) {
        let projection = Projection::new(model.0, model.1)?;
        let (mut extreme, mut defined, mut undefined) = (0.0, 0.0, 0u64);
        let mut thetas: Vec<(f64, f64)> = Vec::with_capacity(count as usize);
        for_each_allocation(&projection, &blocks, |theta, w| match theta {
            Some(t) => {
                defined += w;
                if same_or_more(t, obs) {
                    extreme += w;
                }
                thetas.push((t, w));
            }
            None => undefined += 1,
        });
        let max = thetas.iter().map(|(t, _)| t.abs()).fold(0.0, f64::max);
        let top: f64 = thetas
            .iter()
            .filter(|(t, _)| same_or_more(*t, max))
            .map(|(_, w)| w)
            .sum();
        return Ok(SwitchbackRi {
            statistic: obs,
            p_value: (extreme / defined).min(1.0),
            exact: true,
            total_allocations: total,
            evaluated: count as u64,
            not_estimable: undefined,
            mc_se: None,
            min_attainable_p: top / defined,
            seed: None,
        });
    }
    let mut rng = ChaCha20Rng::seed_from_u64(x.seed);
    let mut choice = vec![0usize; blocks.len()];
    let (mut hits, mut defined, mut undefined) = (0u64, 0u64, 0u64);
    for _ in 0..x.draws {
        for (b, c) in blocks.iter().zip(choice.iter_mut()) {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            *c = b.options.len() - 1;
            for (o, w) in b.weights.iter().enumerate() {
                acc += w;
                if u < acc {
                    *c = o;
                    break;
                }
            }
        }
        fill(&mut d, &choice);
        match fwl.theta(&d) {
            Ok(t) => {
                defined += 1;
                if same_or_more(t, obs) {
                    hits += 1;
                }
            }
            Err(_) => undefined += 1,
        }
    }
    let b = defined as f64;
    let p = (1.0 + hits as f64) / (1.0 + b);
    Ok(SwitchbackRi {
        statistic: obs,
        p_value: p,
        exact: false,
        total_allocations: total,
        evaluated: x.draws as u64,
        not_estimable: undefined,
        mc_se: Some((p * (1.0 - p) / b.max(1.0)).sqrt()),
        min_attainable_p: 1.0 / (1.0 + b),
        seed: Some(x.seed),
    })
}

/// The carry-over check (see the module docs).
fn carryover(x: &SwitchbackInput) -> Result<CarryOver> {
    let rows: Vec<&Cell> = x.cells.iter().filter(|c| c.period >= 1).collect();
    let panel = Panel {
        cluster: rows.iter().map(|c| c.community).collect(),
        period: rows.iter().map(|c| c.period - 1).collect(),
        treated: rows.iter().map(|c| x.on[c.community][c.period]).collect(),
        y: rows.iter().map(|c| c.value).collect(),
        covariate: None,
        stratum: None,
        n_clusters: x.communities,
        n_periods: x.periods - 1,
    };
    panel.validate()?;
    let z = panel.nuisance_matrix(ModelSpec {
        period_fe: true,
        cluster_fe: true,
        stratum_fe: false,
    });
    let p = z.ncols();
    let d: Vec<f64> = rows
        .iter()
        .map(|c| f64::from(u8::from(x.on[c.community][c.period])))
        .collect();
    let l: Vec<f64> = rows
        .iter()
        .map(|c| f64::from(u8::from(x.on[c.community][c.period - 1])))
        .collect();
    let fit = |cols: [Vec<f64>; 3]| -> Result<ClusteredOls> {
        let m = DMatrix::from_fn(z.nrows(), p + 3, |i, j| {
            if j < p {
                z[(i, j)]
            } else {
                cols[j - p][i]
            }
        });
        ClusteredOls::new(m, &panel.y, &panel.cluster)
    };
    let split = fit([
        d.iter().zip(&l).map(|(d, l)| d * (1.0 - l)).collect(),
        d.iter().zip(&l).map(|(d, l)| d * l).collect(),
        l.clone(),
    ])?;
    let diff = fit([
        d.clone(),
        d.iter().zip(&l).map(|(d, l)| d * l).collect(),
        l.clone(),
    ])?;
    let after_off = split.cr2(p)?;
    let after_on = split.cr2(p + 1)?;
    let lingering = split.cr2(p + 2)?;
    let difference = diff.cr2(p + 1)?;
    let excludes_zero = |t: &ClusterTest| t.ci95.0 > 0.0 || t.ci95.1 < 0.0;
    let material = excludes_zero(&lingering) || excludes_zero(&difference);
    let warning = material.then(|| {
        format!(
            "material carry-over: the effect lingering into an off period after an on period is {:.4} (95% CI {:.4} to {:.4}) and the effect after an on period differs from the effect after an off period by {:.4} (95% CI {:.4} to {:.4}); the switchback estimate assumes no carry-over, so lengthen the washout or the periods",
            lingering.estimate,
            lingering.ci95.0,
            lingering.ci95.1,
            difference.estimate,
            difference.ci95.0,
            difference.ci95.1
        )
    });
    Ok(CarryOver {
        after_off,
        after_on,
        difference,
        lingering,
        material,
        warning,
    })
}

#[cfg(test)]
#[path = "switchback_tests.rs"]
mod tests;
