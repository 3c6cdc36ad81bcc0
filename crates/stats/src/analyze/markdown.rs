//! [`to_markdown`]: the output as a human-readable report.

use super::{AnalyzeOutput, Entry, MethodResults, MetricOutcome, ResponseEntry};
use crate::response;
use std::fmt::Write as _;

fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e-3 && x.abs() < 1e6 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn fmt_entry(e: &Entry, pct: bool) -> String {
    let f = |x: f64| {
        if pct {
            format!("{:.2}%", 100.0 * x)
        } else {
            fmt_num(x)
        }
    };
    let b = |x: Option<f64>, inf: &str| x.map(f).unwrap_or_else(|| inf.to_string());
    match e {
        Entry::Frequentist(r) => format!(
            "{} [{}, {}] p={}",
            f(r.effect),
            b(r.ci_lower, "−∞"),
            b(r.ci_upper, "∞"),
            fmt_num(r.p_value)
        ),
        Entry::Bayesian(r) => format!(
            "{} [{}, {}] P(win)={:.1}%",
            f(r.effect),
            f(r.ci_lower),
            f(r.ci_upper),
            100.0 * r.chance_to_win
        ),
        Entry::Error { error } => format!("— ({error})"),
    }
}

/// Render the output as a Markdown report.
pub fn to_markdown(out: &AnalyzeOutput) -> String {
    let mut s = String::from("# Experiment analysis\n\n## Sample ratio mismatch\n\n");
    match (&out.srm.error, out.srm.p_value) {
        (Some(e), _) => {
            let _ = writeln!(s, "SRM check not run: {e}.\n");
        }
        (None, Some(p)) => {
            let flag = if out.srm.mismatch == Some(true) {
                "**MISMATCH** — results are suspect"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "χ² = {}, p = {} ({flag}; threshold {}).\n",
                fmt_num(out.srm.statistic.unwrap_or(0.0)),
                fmt_num(p),
                out.srm.threshold
            );
        }
        _ => {}
    }
    if !out.srm.covariate_balance.is_empty() {
        s.push_str("| Metric | Arm | Covariate difference | p |\n|---|---|---|---|\n");
        for b in &out.srm.covariate_balance {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                b.metric,
                b.arm,
                b.difference.map(fmt_num).unwrap_or_else(|| "—".into()),
                b.p_value
                    .map(fmt_num)
                    .unwrap_or_else(|| b.error.clone().unwrap_or_default())
            );
        }
        s.push('\n');
    }
    if let Some(sr) = &out.survey_response {
        s.push_str("## Survey response\n\n");
        let _ = writeln!(
            s,
            "{} (threshold {}).\n",
            if sr.differential_response {
                "**DIFFERENTIAL RESPONSE** between arms — survey outcomes are suspect"
            } else {
                "No differential response between arms"
            },
            sr.threshold
        );
        s.push_str("| Wave | Response rate per arm | Test | p | Flag |\n|---|---|---|---|---|\n");
        for e in sr.waves.iter().chain(&sr.pooled) {
            match e {
                ResponseEntry::Ok { wave, check } => {
                    let rates: Vec<String> = check
                        .rates
                        .iter()
                        .map(|r| format!("{:.1}%", 100.0 * r))
                        .collect();
                    let test = match check.test {
                        response::ResponseTest::ChiSquare => "χ²",
                        response::ResponseTest::FisherExact => "Fisher exact",
                    };
                    let _ = writeln!(
                        s,
                        "| {wave} | {} | {test} | {} | {} |",
                        rates.join(" / "),
                        fmt_num(check.p_value),
                        if check.flagged { "**flagged**" } else { "ok" }
                    );
                }
                ResponseEntry::Error { wave, error } => {
                    let _ = writeln!(s, "| {wave} | — ({error}) | — | — | — |");
                }
            }
        }
        s.push('\n');
    }
    s.push_str("## Metrics\n\n");
    for (name, mo) in &out.metrics.0 {
        let _ = writeln!(s, "### {name}\n");
        let mr = match mo {
            MetricOutcome::Ok(m) => m,
            MetricOutcome::Error { error } => {
                let _ = writeln!(s, "No results: {error}\n");
                continue;
            }
        };
        s.push_str("| Arm | n | Value | Std. dev. |\n|---|---|---|---|\n");
        for a in &mr.arms {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                a.name,
                a.n,
                a.value.map(fmt_num).unwrap_or_else(|| "—".into()),
                a.stddev.map(fmt_num).unwrap_or_else(|| "—".into())
            );
        }
        s.push_str(
            "\n| Arm | Estimate | Absolute lift [CI] | Relative lift [CI] | Sequential (relative) | Bayesian, proper prior (relative) |\n|---|---|---|---|---|---|\n",
        );
        for (arm, c) in &mr.comparisons.0 {
            let mut row = |label: &str, a: &MethodResults, r: &MethodResults| {
                let _ = writeln!(
                    s,
                    "| {arm} | {label} | {} | {} | {} | {} |",
                    fmt_entry(&a.two_sided, false),
                    fmt_entry(&r.two_sided, true),
                    fmt_entry(&r.sequential_two_sided, true),
                    fmt_entry(&r.bayesian_proper_prior, true)
                );
            };
            row("Welch", &c.absolute, &c.relative);
            if let Some(cu) = &c.cuped {
                row("CUPED", &cu.absolute, &cu.relative);
            }
            if let Some(ps) = &c.post_stratified {
                row("Post-stratified", &ps.absolute, &ps.relative);
            }
        }
        s.push('\n');
    }
    if !out.multiple_testing.holm.is_empty() {
        s.push_str("## Multiple testing (absolute lift, two-sided)\n\n| Metric | Arm | p | Holm p | Holm CI | BH p | BH CI |\n|---|---|---|---|---|---|---|\n");
        for (h, b) in out
            .multiple_testing
            .holm
            .iter()
            .zip(&out.multiple_testing.bh)
        {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | [{}, {}] | {} | [{}, {}] |",
                h.metric,
                h.arm,
                fmt_num(h.p_value),
                fmt_num(h.adjusted_p_value),
                fmt_num(h.ci_lower),
                fmt_num(h.ci_upper),
                fmt_num(b.adjusted_p_value),
                fmt_num(b.ci_lower),
                fmt_num(b.ci_upper)
            );
        }
    }
    s
}
