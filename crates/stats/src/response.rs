//! Data-quality check: differential survey response between arms.
//!
//! A survey outcome is only comparable between arms when the arms respond at
//! similar rates; differential non-response breaks randomisation just like a
//! sample-ratio mismatch. Given, per arm, the units *invited* `n_i` and the
//! units that *responded* `r_i`, the check tests independence of arm and
//! response on the k × 2 table `[r_i, n_i − r_i]`:
//!
//! * Pearson chi-square without continuity correction:
//!   `E_ij = row_i · col_j / N`, `X² = Σ_ij (O_ij − E_ij)² / E_ij`,
//!   `df = k − 1`, `p = P(χ²_df > X²)` — as
//!   `scipy.stats.chi2_contingency(table, correction=False)`.
//! * For two arms, Fisher's exact test (two-sided): with the margins fixed,
//!   `r_1` is hypergeometric, `P(x) = C(R, x) C(N − R, n_1 − x) / C(N, n_1)`
//!   (`R = Σ r_i`); `p = Σ_{x: P(x) ≤ P(r_1)(1 + 10⁻⁷)} P(x)` (the relative
//!   tolerance for ties is R's `fisher.test`; same p as
//!   `scipy.stats.fisher_exact` except on exact near-ties).
//!   Fisher (1935), *The Design of Experiments*; Agresti (2002),
//!   *Categorical Data Analysis*, §3.5.
//!
//! The reported `p_value` is Fisher's when there are two arms and the
//! smallest expected count is below 5 (Cochran's rule), the chi-square p
//! otherwise. Like SRM the check is flagged when `p < 0.001`
//! ([`RESPONSE_P_THRESHOLD`]). Per-wave data are tested wave by wave and
//! pooled (counts summed over waves).

use crate::dist;
use crate::{Result, StatsError};
use serde::Serialize;

/// Flag threshold on the p-value (the SRM threshold).
pub const RESPONSE_P_THRESHOLD: f64 = 0.001;

/// Smallest expected cell count for which the chi-square approximation is
/// trusted (Cochran 1954); below it two-arm checks use Fisher's exact test.
pub const MIN_EXPECTED: f64 = 5.0;

/// Invited and responded units of one arm (in one wave).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct ArmResponse {
    pub invited: u64,
    pub responded: u64,
}

/// Which test produced `p_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseTest {
    ChiSquare,
    FisherExact,
}

/// Result of the differential-response check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseCheck {
    /// Response rate r_i / n_i per arm, in input order.
    pub rates: Vec<f64>,
    /// Pearson X² (no continuity correction).
    pub chi2: f64,
    /// Degrees of freedom (arms − 1).
    pub df: f64,
    /// P(χ²_df > X²).
    pub chi2_p: f64,
    /// Fisher's exact two-sided p (two arms only).
    pub fisher_p: Option<f64>,
    /// Smallest expected cell count of the table.
    pub min_expected: f64,
    /// The test behind `p_value`.
    pub test: ResponseTest,
    /// Fisher's p for two arms with a small expected count, else the chi-square p.
    pub p_value: f64,
    /// True when `p_value` < [`RESPONSE_P_THRESHOLD`].
    pub flagged: bool,
}

/// Per-wave checks plus the check on counts pooled over waves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseByWave {
    pub waves: Vec<ResponseCheck>,
    pub pooled: ResponseCheck,
    /// True when the pooled check or any wave is flagged.
    pub flagged: bool,
}

/// Differential response between arms (see the module docs).
///
/// Errors: fewer than two arms, an arm with nobody invited, or more
/// responders than invitees → `InvalidInput`; nobody or everybody responded
/// (a zero column, the test is undefined) → `Degenerate`.
pub fn check(arms: &[ArmResponse]) -> Result<ResponseCheck> {
    if arms.len() < 2 {
        return Err(StatsError::InvalidInput(
            "differential response needs at least two arms".into(),
        ));
    }
    if arms.iter().any(|a| a.invited == 0) {
        return Err(StatsError::InvalidInput(
            "every arm needs at least one invited unit".into(),
        ));
    }
    if arms.iter().any(|a| a.responded > a.invited) {
        return Err(StatsError::InvalidInput(
            "an arm has more responders than invited units".into(),
        ));
    }
    let n: u64 = arms.iter().map(|a| a.invited).sum();
    let r: u64 = arms.iter().map(|a| a.responded).sum();
    if r == 0 || r == n {
        return Err(StatsError::Degenerate(
            if r == 0 {
                "nobody responded in any arm"
            } else {
                "everybody responded in every arm"
            }
            .into(),
        ));
    }
    let nf = n as f64;
    let cols = [r as f64, (n - r) as f64];
    let mut chi2 = 0.0;
    let mut min_expected = f64::INFINITY;
    for a in arms {
        let obs = [a.responded as f64, (a.invited - a.responded) as f64];
        for j in 0..2 {
            let e = a.invited as f64 * cols[j] / nf;
            min_expected = min_expected.min(e);
            chi2 += (obs[j] - e) * (obs[j] - e) / e;
        }
    }
    let df = (arms.len() - 1) as f64;
    let chi2_p = dist::chi2_sf(chi2, df).clamp(0.0, 1.0);
    let fisher_p = (arms.len() == 2).then(|| fisher_two_sided(arms[0], arms[1]));
    let (test, p_value) = match fisher_p {
        Some(fp) if min_expected < MIN_EXPECTED => (ResponseTest::FisherExact, fp),
        _ => (ResponseTest::ChiSquare, chi2_p),
    };
    Ok(ResponseCheck {
        rates: arms
            .iter()
            .map(|a| a.responded as f64 / a.invited as f64)
            .collect(),
        chi2,
        df,
        chi2_p,
        fisher_p,
        min_expected,
        test,
        p_value,
        flagged: p_value < RESPONSE_P_THRESHOLD,
    })
}

/// Checks each wave (`waves[w][arm]`) and the counts pooled over waves.
/// Every wave must list the same arms in the same order.
pub fn check_waves(waves: &[Vec<ArmResponse>]) -> Result<ResponseByWave> {
    let Some(first) = waves.first() else {
        return Err(StatsError::InvalidInput("no waves".into()));
    };
    if waves.iter().any(|w| w.len() != first.len()) {
        return Err(StatsError::InvalidInput(
            "every wave must list the same arms".into(),
        ));
    }
    let per: Vec<ResponseCheck> = waves.iter().map(|w| check(w)).collect::<Result<_>>()?;
    let pooled_counts: Vec<ArmResponse> = (0..first.len())
        .map(|i| ArmResponse {
            invited: waves.iter().map(|w| w[i].invited).sum(),
            responded: waves.iter().map(|w| w[i].responded).sum(),
        })
        .collect();
    let pooled = check(&pooled_counts)?;
    let flagged = pooled.flagged || per.iter().any(|c| c.flagged);
    Ok(ResponseByWave {
        waves: per,
        pooled,
        flagged,
    })
}

/// Two-sided Fisher exact p for the 2×2 table of two arms. Hypergeometric
/// probabilities are built by the ratio recursion from the mode (weight 1),
/// so no factorials overflow; far tails underflow to 0 harmlessly.
fn fisher_two_sided(a: ArmResponse, b: ArmResponse) -> f64 {
    let n1 = a.invited;
    let big_n = a.invited + b.invited;
    let k = a.responded + b.responded; // responders: the "successes"
    let lo = (n1 + k).saturating_sub(big_n);
    let hi = n1.min(k);
    let (n1f, nf, kf) = (n1 as f64, big_n as f64, k as f64);
    let mode = (((n1f + 1.0) * (kf + 1.0) / (nf + 2.0)).floor() as u64).clamp(lo, hi);
    let len = (hi - lo + 1) as usize;
    let mut w = vec![0.0; len];
    w[(mode - lo) as usize] = 1.0;
    // pmf(x+1)/pmf(x) = (k − x)(n1 − x) / ((x + 1)(N − k − n1 + x + 1))
    for x in mode..hi {
        let xf = x as f64;
        let ratio = (kf - xf) * (n1f - xf) / ((xf + 1.0) * (nf - kf - n1f + xf + 1.0));
        w[(x + 1 - lo) as usize] = w[(x - lo) as usize] * ratio;
    }
    for x in (lo + 1..=mode).rev() {
        let xf = (x - 1) as f64;
        let ratio = (kf - xf) * (n1f - xf) / ((xf + 1.0) * (nf - kf - n1f + xf + 1.0));
        w[(x - 1 - lo) as usize] = w[(x - lo) as usize] / ratio;
    }
    let total: f64 = w.iter().sum();
    let obs = w[(a.responded - lo) as usize] * (1.0 + 1e-7);
    let tail: f64 = w.iter().filter(|&&v| v <= obs).sum();
    (tail / total).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_response.json");

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    fn arms(c: &Value) -> Vec<ArmResponse> {
        let inv: Vec<u64> = serde_json::from_value(c["invited"].clone()).unwrap();
        let res: Vec<u64> = serde_json::from_value(c["responded"].clone()).unwrap();
        inv.iter()
            .zip(&res)
            .map(|(&invited, &responded)| ArmResponse { invited, responded })
            .collect()
    }

    #[test]
    fn matches_scipy_chi2_contingency_and_fisher_exact() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let mut fisher = 0;
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let r = check(&arms(c));
            if c["error"].as_str() == Some("degenerate") {
                assert!(matches!(r, Err(StatsError::Degenerate(_))), "{name}");
                continue;
            }
            let r = r.unwrap();
            let want_chi2 = c["chi2"].as_f64().unwrap();
            assert!(
                (r.chi2 - want_chi2).abs() < 1e-9 * want_chi2.max(1e-3),
                "{name} chi2 {} vs {want_chi2}",
                r.chi2
            );
            assert_eq!(r.df, c["df"].as_f64().unwrap());
            let want_p = c["chi2_p"].as_f64().unwrap();
            assert!(
                rel(r.chi2_p, want_p) < 1e-9 || (r.chi2_p - want_p).abs() < 1e-15,
                "{name} chi2 p {} vs {want_p}",
                r.chi2_p
            );
            assert!(rel(r.min_expected, c["min_expected"].as_f64().unwrap()) < 1e-12);
            let rates: Vec<f64> = serde_json::from_value(c["rates"].clone()).unwrap();
            for (a, b) in r.rates.iter().zip(&rates) {
                assert!((a - b).abs() < 1e-15);
            }
            match c["fisher_p"].as_f64() {
                Some(fp) => {
                    fisher += 1;
                    let got = r.fisher_p.unwrap();
                    assert!(
                        rel(got, fp) < 1e-9 || (got - fp).abs() < 1e-300,
                        "{name} fisher {got} vs {fp}"
                    );
                }
                None => assert!(r.fisher_p.is_none()),
            }
            assert_eq!(r.flagged, r.p_value < RESPONSE_P_THRESHOLD);
        }
        assert!(fisher >= 20);
    }

    #[test]
    fn small_two_arm_tables_use_fisher() {
        let r = check(&[
            ArmResponse {
                invited: 6,
                responded: 1,
            },
            ArmResponse {
                invited: 7,
                responded: 6,
            },
        ])
        .unwrap();
        assert_eq!(r.test, ResponseTest::FisherExact);
        assert_eq!(Some(r.p_value), r.fisher_p);
        let big = check(&[
            ArmResponse {
                invited: 1000,
                responded: 420,
            },
            ArmResponse {
                invited: 1000,
                responded: 330,
            },
        ])
        .unwrap();
        assert_eq!(big.test, ResponseTest::ChiSquare);
        assert!(big.flagged);
    }

    #[test]
    fn invalid_and_degenerate_inputs_are_typed() {
        let a = |invited, responded| ArmResponse { invited, responded };
        assert!(matches!(
            check(&[a(10, 3)]),
            Err(StatsError::InvalidInput(_))
        ));
        assert!(matches!(
            check(&[a(10, 3), a(0, 0)]),
            Err(StatsError::InvalidInput(_))
        ));
        assert!(matches!(
            check(&[a(10, 11), a(5, 1)]),
            Err(StatsError::InvalidInput(_))
        ));
        assert!(matches!(
            check(&[a(10, 0), a(5, 0)]),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(check_waves(&[]), Err(StatsError::InvalidInput(_))));
        assert!(matches!(
            check_waves(&[vec![a(10, 3), a(10, 4)], vec![a(10, 3)]]),
            Err(StatsError::InvalidInput(_))
        ));
    }

    #[test]
    fn waves_are_checked_separately_and_pooled() {
        let a = |invited, responded| ArmResponse { invited, responded };
        let w = check_waves(&[
            vec![a(500, 200), a(500, 205)],
            vec![a(400, 100), a(400, 180)],
        ])
        .unwrap();
        assert_eq!(w.waves.len(), 2);
        assert!(!w.waves[0].flagged);
        assert!(w.waves[1].flagged);
        assert!(w.flagged);
        let pooled = check(&[a(900, 300), a(900, 385)]).unwrap();
        assert_eq!(w.pooled, pooled);
    }
}
