//! Stepped-wedge (and general cluster-period) analysis.
//!
//! Model (Hussey & Hughes 2007, fixed-effects form):
//! `y_ict = μ + γ_t + θ·X_ct [+ α_c] [+ β·cov_ict] + ε_ict`, period fixed
//! effects `γ_t` are **mandatory** (secular trends confound the crossover),
//! cluster fixed effects `α_c` optional. `θ` is estimated by OLS; inference
//! comes from CR2/Bell–McCaffrey, CR1, the wild cluster bootstrap
//! ([`crate::cluster`]) and randomisation over the orders of communities to
//! steps ([`crate::randomization`]).
//!
//! Per-community trajectories give one estimate per community from that
//! community's own cluster-period means only:
//! `ȳ_ct = a_c + b_c·t + θ_c·X_ct + e_ct` (OLS over its periods; the secular
//! trend is adjusted by a community-specific linear trend because period
//! fixed effects cannot be separated from a single community's step).
//! Using only the community's own data keeps the `θ_c` independent across
//! communities, which the Ibragimov–Müller (2010) t-test requires:
//! `t = θ̄ / (s_θ/√q)`, `q−1` df — valid (conservative at 5%) under
//! heterogeneous cluster variances for `q ≥ 2`. (Estimates that share pooled
//! period effects are correlated and make this test over-reject badly; we
//! measured 17–35% at nominal 5% before switching.) Assumption: the secular
//! trend is linear within the study window; needs ≥ 3 periods per community
//! with both conditions observed.

// `!(x > 0.0)` is used on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::DMatrix;
use serde::Serialize;

use crate::cluster::t_two_sided;
use crate::{Result, StatsError};

/// Cluster-period data with dense ids (`cluster < G`, `period < T`).
#[derive(Debug, Clone)]
pub struct Panel {
    /// Cluster id per row, dense `0..G`.
    pub cluster: Vec<usize>,
    /// Period id per row, dense `0..T`.
    pub period: Vec<usize>,
    /// Treatment indicator per row.
    pub treated: Vec<bool>,
    /// Outcome per row.
    pub y: Vec<f64>,
    /// Optional covariate per row.
    pub covariate: Option<Vec<f64>>,
    /// Optional stratum per row (constant within cluster), dense `0..S`.
    pub stratum: Option<Vec<usize>>,
    /// Number of clusters `G`.
    pub n_clusters: usize,
    /// Number of periods `T`.
    pub n_periods: usize,
}

/// Which fixed effects enter the design matrix.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelSpec {
    /// Period fixed effects (mandatory for stepped wedges).
    pub period_fe: bool,
    /// Cluster fixed effects.
    pub cluster_fe: bool,
    /// Stratum fixed effects (blocked designs).
    pub stratum_fe: bool,
}

impl Panel {
    /// Validate lengths and ids.
    pub fn validate(&self) -> Result<()> {
        let n = self.y.len();
        if n == 0 {
            return Err(StatsError::InvalidInput("no rows".into()));
        }
        if self.cluster.len() != n || self.period.len() != n || self.treated.len() != n {
            return Err(StatsError::InvalidInput("column lengths differ".into()));
        }
        if let Some(c) = &self.covariate {
            if c.len() != n || c.iter().any(|v| !v.is_finite()) {
                return Err(StatsError::InvalidInput(
                    "covariate length or value invalid".into(),
                ));
            }
        }
        if self.y.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::InvalidInput("non-finite value".into()));
        }
        if self.cluster.iter().any(|&c| c >= self.n_clusters)
            || self.period.iter().any(|&t| t >= self.n_periods)
        {
            return Err(StatsError::InvalidInput(
                "cluster or period id out of range".into(),
            ));
        }
        Ok(())
    }

    /// Dense cell index `cluster·T + period` per row.
    pub fn cell_of_row(&self) -> Vec<usize> {
        self.cluster
            .iter()
            .zip(&self.period)
            .map(|(&c, &t)| c * self.n_periods + t)
            .collect()
    }

    /// Nuisance design `Z`: intercept, period dummies `1..T`, optional
    /// cluster / stratum dummies, optional covariate.
    pub fn nuisance_matrix(&self, spec: ModelSpec) -> DMatrix<f64> {
        let n = self.y.len();
        let mut cols: Vec<Vec<f64>> = vec![vec![1.0; n]];
        if spec.period_fe {
            for t in 1..self.n_periods {
                cols.push(
                    self.period
                        .iter()
                        .map(|&p| f64::from(u8::from(p == t)))
                        .collect(),
                );
            }
        }
        if spec.cluster_fe {
            for c in 1..self.n_clusters {
                cols.push(
                    self.cluster
                        .iter()
                        .map(|&g| f64::from(u8::from(g == c)))
                        .collect(),
                );
            }
        } else if spec.stratum_fe {
            if let Some(s) = &self.stratum {
                let ns = s.iter().max().map_or(0, |m| m + 1);
                for k in 1..ns {
                    cols.push(s.iter().map(|&v| f64::from(u8::from(v == k))).collect());
                }
            }
        }
        if let Some(c) = &self.covariate {
            cols.push(c.clone());
        }
        DMatrix::from_fn(n, cols.len(), |i, j| cols[j][i])
    }

    /// Full design `[Z, treated]`; the treatment coefficient is the last column.
    pub fn design_matrix(&self, spec: ModelSpec) -> DMatrix<f64> {
        let z = self.nuisance_matrix(spec);
        let n = z.nrows();
        let p = z.ncols();
        let mut x = z.resize_horizontally(p + 1, 0.0);
        for i in 0..n {
            x[(i, p)] = f64::from(u8::from(self.treated[i]));
        }
        x
    }
}

/// First treated period per cluster (`T` when never treated). Errors when a
/// cluster's treatment switches off again or varies within a cluster-period.
pub fn crossover_periods(panel: &Panel) -> Result<Vec<usize>> {
    let t = panel.n_periods;
    let mut state = vec![None::<bool>; panel.n_clusters * t];
    for i in 0..panel.y.len() {
        let cell = panel.cluster[i] * t + panel.period[i];
        match state[cell] {
            None => state[cell] = Some(panel.treated[i]),
            Some(s) if s != panel.treated[i] => {
                return Err(StatsError::InvalidInput(format!(
                    "treatment varies within cluster {} period {}",
                    panel.cluster[i], panel.period[i]
                )))
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(panel.n_clusters);
    for c in 0..panel.n_clusters {
        let mut start = t;
        for p in 0..t {
            match state[c * t + p] {
                Some(true) if start == t => start = p,
                Some(false) if start < t => {
                    return Err(StatsError::InvalidInput(format!(
                        "cluster {c} returns to control after crossing over (not a stepped wedge)"
                    )))
                }
                _ => {}
            }
        }
        out.push(start);
    }
    Ok(out)
}

/// Frisch–Waugh–Lovell representation of the treatment coefficient when the
/// treatment is constant within cells: `θ̂(d) = d'r / d'Sd`, with
/// `r_c = Σ_{i∈c} (M_Z y)_i` and `S_cc' = n_c δ_cc' − s_c'(Z'Z)⁻¹s_c'`,
/// `s_c = Σ_{i∈c} z_i`. Set up once in `O(n p²)`; each assignment then
/// costs `O(C²)` — what makes exact randomisation over thousands of users cheap.
#[derive(Debug, Clone)]
pub struct CellFwl {
    r: Vec<f64>,
    s: Vec<f64>,
    n_cells: usize,
}

impl CellFwl {
    /// Build from the nuisance design `z`, outcome `y` and a cell per row.
    pub fn new(z: &DMatrix<f64>, y: &[f64], cell: &[usize], n_cells: usize) -> Result<Self> {
        let p = z.ncols();
        let ztz = z.transpose() * z;
        let inv = ztz
            .clone()
            .try_inverse()
            .ok_or_else(|| StatsError::Degenerate("nuisance design is singular".into()))?;
        let yv = nalgebra::DVector::from_column_slice(y);
        let b = &inv * (z.transpose() * &yv);
        let res = &yv - z * b;
        let mut r = vec![0.0; n_cells];
        let mut nc = vec![0.0; n_cells];
        let mut sc = DMatrix::<f64>::zeros(p, n_cells);
        for i in 0..y.len() {
            let c = cell[i];
            r[c] += res[i];
            nc[c] += 1.0;
            for j in 0..p {
                sc[(j, c)] += z[(i, j)];
            }
        }
        let q = sc.transpose() * &inv * &sc;
        let mut s = vec![0.0; n_cells * n_cells];
        for a in 0..n_cells {
            for b2 in 0..n_cells {
                s[a * n_cells + b2] = -q[(a, b2)] + if a == b2 { nc[a] } else { 0.0 };
            }
        }
        Ok(Self { r, s, n_cells })
    }

    /// `θ̂(d)` for a 0/1 treatment per cell.
    pub fn theta(&self, d: &[f64]) -> Result<f64> {
        let nc = self.n_cells;
        let num: f64 = d.iter().zip(&self.r).map(|(a, b)| a * b).sum();
        let mut den = 0.0;
        let mut scale = 0.0;
        for a in 0..nc {
            if d[a] == 0.0 {
                continue;
            }
            let row = &self.s[a * nc..(a + 1) * nc];
            den += d[a] * row.iter().zip(d).map(|(s, dd)| s * dd).sum::<f64>();
            scale += d[a] * d[a] * row[a].abs();
        }
        if !(den > 1e-10 * scale.max(1e-300)) {
            return Err(StatsError::Degenerate(
                "treatment is collinear with the fixed effects under this assignment".into(),
            ));
        }
        Ok(num / den)
    }
}

/// One community's own before/after contrast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityEstimate {
    /// Dense cluster id.
    pub cluster: usize,
    /// First treated period (`None` if never treated).
    pub crossover_period: Option<usize>,
    /// `θ_c` (see module docs); `None` when the community has no control or
    /// no treated periods.
    pub estimate: Option<f64>,
    /// Number of control and treated periods observed.
    pub control_periods: usize,
    /// Number of treated periods observed.
    pub treated_periods: usize,
    /// Rows in the community.
    pub n: usize,
}

/// Ibragimov–Müller t-test across per-community estimates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IbragimovMuller {
    /// Number of estimates `q`.
    pub q: usize,
    /// Mean estimate `θ̄`.
    pub mean: f64,
    /// `s_θ/√q`.
    pub se: f64,
    /// `θ̄/se`.
    pub t: f64,
    /// `q − 1`.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Ibragimov & Müller (2010, JBES 28(4)) t-test: `t = θ̄/(s/√q)` on `q−1` df.
pub fn ibragimov_muller(estimates: &[f64]) -> Result<IbragimovMuller> {
    let q = estimates.len();
    if q < 2 {
        return Err(StatsError::Degenerate(format!(
            "Ibragimov–Müller needs at least two community estimates, got {q}"
        )));
    }
    let qf = q as f64;
    let mean = estimates.iter().sum::<f64>() / qf;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (qf - 1.0);
    if !(var > 1e-24 * mean.abs().max(1e-300).powi(2)) {
        return Err(StatsError::Degenerate(
            "community estimates have zero variance".into(),
        ));
    }
    let se = (var / qf).sqrt();
    let t = mean / se;
    let (p, _) = t_two_sided(t, qf - 1.0)?;
    Ok(IbragimovMuller {
        q,
        mean,
        se,
        t,
        df: qf - 1.0,
        p_value: p,
    })
}

/// Per-community estimates `θ_c` from each community's own cluster-period
/// means `ȳ_ct` (after removing `covariate_slope·cov`):
/// OLS of `ȳ_ct` on `[1, t, X_ct]` over the community's observed periods.
pub fn community_estimates(panel: &Panel, covariate_slope: f64) -> Result<Vec<CommunityEstimate>> {
    let t = panel.n_periods;
    let starts = crossover_periods(panel)?;
    let mut sum = vec![0.0; panel.n_clusters * t];
    let mut cnt = vec![0usize; panel.n_clusters * t];
    for i in 0..panel.y.len() {
        let cell = panel.cluster[i] * t + panel.period[i];
        let adj = panel
            .covariate
            .as_ref()
            .map_or(0.0, |c| c[i] * covariate_slope);
        sum[cell] += panel.y[i] - adj;
        cnt[cell] += 1;
    }
    let mut out = Vec::with_capacity(panel.n_clusters);
    for (c, &start) in starts.iter().enumerate() {
        let mut pts = Vec::new();
        let (mut n0, mut n1, mut n) = (0usize, 0usize, 0usize);
        for p in 0..t {
            let cell = c * t + p;
            if cnt[cell] == 0 {
                continue;
            }
            n += cnt[cell];
            let x = p >= start;
            if x {
                n1 += 1;
            } else {
                n0 += 1;
            }
            pts.push((
                p as f64,
                f64::from(u8::from(x)),
                sum[cell] / cnt[cell] as f64,
            ));
        }
        let estimate = if n0 >= 1 && n1 >= 1 && pts.len() >= 3 {
            let x = DMatrix::from_fn(pts.len(), 3, |i, j| match j {
                0 => 1.0,
                1 => pts[i].0,
                _ => pts[i].1,
            });
            let y = nalgebra::DVector::from_iterator(pts.len(), pts.iter().map(|p| p.2));
            let xtx = x.transpose() * &x;
            xtx.try_inverse().map(|inv| (inv * (x.transpose() * y))[2])
        } else {
            None
        };
        out.push(CommunityEstimate {
            cluster: c,
            crossover_period: (start < t).then_some(start),
            estimate,
            control_periods: n0,
            treated_periods: n1,
            n,
        });
    }
    Ok(out)
}
