//! Exact enumeration of a switchback's allocations in `O(cells)` each.
//!
//! With one row per cell, `θ̂(d) = d'r / d'Md`, where `M = I − Z(Z'Z)⁻¹Z'`
//! projects out the community and period fixed effects and `r = My`
//! (Frisch–Waugh–Lovell; the same quantities as
//! [`CellFwl`](crate::stepped_wedge::CellFwl)). The allocations are
//! visited in a reflected mixed-radix Gray code over the blocks (Knuth,
//! TAOCP 7.2.1.1, Algorithm H), so consecutive allocations differ in one
//! block; `v = Md`, `d'r` and `d'Md` are updated for each cell switched
//! (`d'Md` changes by `±2v_a + M_aa`), which costs `O(cells)` instead of
//! the `O(cells · on cells)` of computing `d'Md` afresh. To keep rounding
//! from accumulating, the state is recomputed from scratch every
//! [`REFRESH`] allocations; the result agrees with the direct computation
//! to about 1e-14 relative (tested to 1e-12 on 65,536 allocations).

use nalgebra::DMatrix;

use super::Block;
use crate::{Result, StatsError};

/// Allocations between recomputations of the state from scratch.
const REFRESH: u64 = 1_024;

/// `M` and `r` of the model (see the module docs).
pub(super) struct Projection {
    n: usize,
    r: Vec<f64>,
    /// `M`, row-major, symmetric.
    m: Vec<f64>,
}

impl Projection {
    pub fn new(z: &DMatrix<f64>, y: &[f64]) -> Result<Self> {
        let n = z.nrows();
        let inv = (z.transpose() * z)
            .try_inverse()
            .ok_or_else(|| StatsError::Degenerate("nuisance design is singular".into()))?;
        let hat = z * inv * z.transpose();
        let mut m = vec![0.0; n * n];
        for a in 0..n {
            for b in 0..n {
                m[a * n + b] = f64::from(u8::from(a == b)) - hat[(a, b)];
            }
        }
        let r = (0..n)
            .map(|a| (0..n).map(|b| m[a * n + b] * y[b]).sum())
            .collect();
        Ok(Projection { n, r, m })
    }
}

/// The treatment of one allocation and what `θ̂` needs of it.
struct State<'a> {
    p: &'a Projection,
    d: Vec<bool>,
    /// `M d`.
    v: Vec<f64>,
    num: f64,
    den: f64,
    /// `Σ_on |M_aa|`: the scale of `den` for the estimability check.
    scale: f64,
}

impl<'a> State<'a> {
    fn new(p: &'a Projection) -> Self {
        State {
            p,
            d: vec![false; p.n],
            v: vec![0.0; p.n],
            num: 0.0,
            den: 0.0,
            scale: 0.0,
        }
    }

    fn set(&mut self, a: usize, on: bool) {
        if self.d[a] == on {
            return;
        }
        let n = self.p.n;
        let row = &self.p.m[a * n..(a + 1) * n];
        let sign = if on { 1.0 } else { -1.0 };
        self.den += sign * 2.0 * self.v[a] + row[a];
        for (v, m) in self.v.iter_mut().zip(row) {
            *v += sign * m;
        }
        self.num += sign * self.p.r[a];
        self.scale += sign * row[a].abs();
        self.d[a] = on;
    }

    /// Recomputes `v`, `d'r`, `d'Md` and the scale from `d`.
    fn refresh(&mut self) {
        let n = self.p.n;
        self.v.iter_mut().for_each(|v| *v = 0.0);
        let (mut num, mut scale) = (0.0, 0.0);
        for a in (0..n).filter(|&a| self.d[a]) {
            let row = &self.p.m[a * n..(a + 1) * n];
            for (v, m) in self.v.iter_mut().zip(row) {
                *v += m;
            }
            num += self.p.r[a];
            scale += row[a].abs();
        }
        self.den = (0..n).filter(|&a| self.d[a]).map(|a| self.v[a]).sum();
        self.num = num;
        self.scale = scale;
    }

    /// `θ̂`, or `None` when the treatment is collinear with the fixed
    /// effects (the same rule as `CellFwl::theta`).
    fn theta(&self) -> Option<f64> {
        (self.den > 1e-10 * self.scale.max(1e-300)).then(|| self.num / self.den)
    }
}

/// Calls `visit(θ̂ or None, probability)` for every allocation of the
/// blocks, each once.
pub(super) fn for_each_allocation(
    p: &Projection,
    blocks: &[Block],
    mut visit: impl FnMut(Option<f64>, f64),
) {
    let mut state = State::new(p);
    let mut choice = vec![0usize; blocks.len()];
    for b in blocks {
        for &i in &b.options[0] {
            state.set(i, true);
        }
    }
    // Algorithm H over the blocks with a choice to make.
    let active: Vec<usize> = (0..blocks.len())
        .filter(|&j| blocks[j].options.len() > 1)
        .collect();
    let k = active.len();
    let mut rising = vec![true; k];
    let mut focus: Vec<usize> = (0..=k).collect();
    let mut visited = 0u64;
    loop {
        let w: f64 = blocks
            .iter()
            .zip(&choice)
            .map(|(b, &o)| b.weights[o])
            .product();
        visit(state.theta(), w);
        visited += 1;
        let j = focus[0];
        focus[0] = 0;
        if j == k {
            break;
        }
        let b = active[j];
        let old = choice[b];
        let new = if rising[j] { old + 1 } else { old - 1 };
        choice[b] = new;
        for &i in &blocks[b].options[old] {
            state.set(i, false);
        }
        for &i in &blocks[b].options[new] {
            state.set(i, true);
        }
        if visited.is_multiple_of(REFRESH) {
            state.refresh();
        }
        if new == 0 || new == blocks[b].options.len() - 1 {
            rising[j] = !rising[j];
            focus[j] = focus[j + 1];
            focus[j + 1] = j + 1;
        }
    }
}
