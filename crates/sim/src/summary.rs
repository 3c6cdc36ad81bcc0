//! Descriptive statistics of simulated communities: what the defaults are
//! calibrated against (participation shares, Gini, top-1% share).

use statrs::function::erf::erfc;

use crate::{Member, Role};

/// Φ(z), the standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The mean of x^−alpha on [1, xmax] (normalised density).
pub fn truncated_power_mean(alpha: f64, xmax: f64) -> f64 {
    let norm = |p: f64| {
        if (p - 1.0).abs() < 1e-12 {
            xmax.ln()
        } else {
            (xmax.powf(1.0 - p) - 1.0) / (1.0 - p)
        }
    };
    norm(alpha - 1.0) / norm(alpha)
}

/// The Gini coefficient of non-negative values (0: all equal; near 1: one
/// holds everything). 0 for an empty or all-zero sample.
pub fn gini(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let total: f64 = v.iter().sum();
    if v.is_empty() || total <= 0.0 {
        return 0.0;
    }
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum();
    weighted / (n * total)
}

/// The share of the total held by the top `fraction` of values (at least
/// one value).
pub fn top_share(values: &[f64], fraction: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = v.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let k = ((v.len() as f64 * fraction).ceil() as usize).max(1);
    v[..k.min(v.len())].iter().sum::<f64>() / total
}

/// One community's shape, over the members present at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct CommunitySummary {
    pub members: usize,
    /// Share of members with no contribution at all.
    pub lurker_share: f64,
    /// Share of members in each role.
    pub role_shares: [(Role, f64); 4],
    /// Gini of contribution counts over all members.
    pub gini: f64,
    /// Share of contributions made by the top 1% of members.
    pub top1_share: f64,
}

/// Summarises community `c` from `members` (every member, as
/// [`crate::Simulation::members`] gives them).
pub fn summarise(members: &[Member], c: usize) -> CommunitySummary {
    let present: Vec<&Member> = members
        .iter()
        .filter(|m| m.community == c && m.present())
        .collect();
    let n = present.len().max(1) as f64;
    let counts: Vec<f64> = present.iter().map(|m| m.contributions as f64).collect();
    let share = |role: Role| present.iter().filter(|m| m.role == role).count() as f64 / n;
    CommunitySummary {
        members: present.len(),
        lurker_share: counts.iter().filter(|&&x| x == 0.0).count() as f64 / n,
        role_shares: [
            (Role::Core, share(Role::Core)),
            (Role::Contributor, share(Role::Contributor)),
            (Role::Peripheral, share(Role::Peripheral)),
            (Role::Lurker, share(Role::Lurker)),
        ],
        gini: gini(&counts),
        top1_share: top_share(&counts, 0.01),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_of_known_samples() {
        assert_eq!(gini(&[]), 0.0);
        assert_eq!(gini(&[0.0, 0.0]), 0.0);
        assert!((gini(&[1.0, 1.0, 1.0]) - 0.0).abs() < 1e-15);
        // One of four holds all: (n − 1)/n.
        assert!((gini(&[0.0, 0.0, 0.0, 8.0]) - 0.75).abs() < 1e-15);
        // 1, 2, 3, 4: Σ|xi − xj| / (2 n² mean) = 20 / (2·16·2.5) = 0.25.
        assert!((gini(&[4.0, 1.0, 3.0, 2.0]) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn top_share_takes_at_least_one() {
        assert!((top_share(&[1.0, 1.0, 2.0], 0.01) - 0.5).abs() < 1e-15);
        assert!((top_share(&[5.0; 200], 0.01) - 0.01).abs() < 1e-15);
        assert_eq!(top_share(&[0.0; 5], 0.5), 0.0);
    }

    #[test]
    fn normal_cdf_and_power_mean() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        let p = normal_cdf(1.959_963_984_540_054);
        // statrs' erfc is accurate to about 1e-12 here.
        assert!((p - 0.975).abs() < 1e-10, "{p}");
        // alpha = 3 on [1, ∞): mean (alpha − 1)/(alpha − 2) = 2.
        assert!((truncated_power_mean(3.0, 1e12) - 2.0).abs() < 1e-9);
        // alpha = 2 on [1, e]: ∫x·x^−2 / ∫x^−2 = 1 / (1 − 1/e).
        let e = std::f64::consts::E;
        assert!((truncated_power_mean(2.0, e) - 1.0 / (1.0 - 1.0 / e)).abs() < 1e-12);
    }
}
