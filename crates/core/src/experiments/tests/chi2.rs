//! Chi-square upper tail probabilities, for the statistical tests:
//! `P(X >= x) = Q(df/2, x/2)`, the regularized upper incomplete gamma
//! function (series below `a + 1`, Lentz's continued fraction above).

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma Q(a, x).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let lead = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * lead.exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        lead.exp() * h
    }
}

/// Upper tail probability of the chi-square distribution.
pub(super) fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Goodness of fit of `counts` to proportional `weights`: the p-value.
pub(super) fn goodness_of_fit(counts: &[u64], weights: &[u32]) -> f64 {
    let n: u64 = counts.iter().sum();
    let w: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let stat: f64 = counts
        .iter()
        .zip(weights)
        .map(|(&c, &wi)| {
            let e = n as f64 * f64::from(wi) / w as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum();
    chi2_sf(stat, (counts.len() - 1) as f64)
}

/// Independence in a contingency table: the p-value.
pub(super) fn independence(table: &[Vec<u64>]) -> f64 {
    let rows: Vec<f64> = table.iter().map(|r| r.iter().sum::<u64>() as f64).collect();
    let cols: Vec<f64> = (0..table[0].len())
        .map(|j| table.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let n: f64 = rows.iter().sum();
    let mut stat = 0.0;
    for (i, r) in table.iter().enumerate() {
        for (j, &o) in r.iter().enumerate() {
            let e = rows[i] * cols[j] / n;
            stat += (o as f64 - e).powi(2) / e;
        }
    }
    let df = ((rows.len() - 1) * (cols.len() - 1)) as f64;
    chi2_sf(stat, df)
}

#[test]
fn matches_tabulated_critical_values() {
    // 0.001 critical values (standard tables) and some textbook points.
    for (x, df) in [
        (10.828, 1.0),
        (13.816, 2.0),
        (16.266, 3.0),
        (18.467, 4.0),
        (29.588, 10.0),
    ] {
        let p = chi2_sf(x, df);
        assert!((p - 0.001).abs() < 2e-6, "df {df}: {p}");
    }
    assert!((chi2_sf(3.841, 1.0) - 0.05).abs() < 1e-4);
    assert!((chi2_sf(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
    assert!((chi2_sf(0.0, 3.0) - 1.0).abs() < 1e-12);
}
