//! A simulated switchback analysed as the report analyses a stored one:
//! community × period cells (each member who visited in the period outside
//! its washout, the value of its counted events there; the cell is their
//! mean), community and period fixed effects, randomisation inference over
//! the scheme's own allocations (`stats::switchback`, two-sided) leading,
//! CR2 beside it.

use commonlab_core::experiments::{Design, SwitchbackScheme, TrialSpec};
use commonlab_stats::switchback::{analyze_switchback, Cell, Scheme, SwitchbackInput};

use super::analysis::{value, Inference, Measure, MethodOutcome};
use super::trial::{day_start, Records};

/// Enumerate the design's allocations when there are at most this many.
const MAX_ENUMERATE: u64 = 100_000;

fn failed(e: impl ToString) -> Vec<MethodOutcome> {
    let f = || MethodOutcome {
        p_value: None,
        estimate: None,
        min_attainable_p: None,
        error: Some(e.to_string()),
    };
    vec![f(), f()]
}

pub(super) fn analyse(
    spec: &TrialSpec,
    names: &[String],
    records: &Records,
    m: Measure,
    inf: Inference,
) -> Vec<MethodOutcome> {
    let (
        Some(schedule),
        Design::Switchback {
            scheme, washout, ..
        },
    ) = (&records.switchback, &spec.design)
    else {
        return failed("no switchback schedule");
    };
    let scheme = match *scheme {
        SwitchbackScheme::Independent { probability } => Scheme::Independent { probability },
        SwitchbackScheme::Balanced => Scheme::Balanced,
        SwitchbackScheme::BlockedPairs => Scheme::BlockedPairs,
    };
    // The period of each simulated day (`None` outside the periods or in
    // a washout).
    let period_of: Vec<Option<usize>> = (0..records.days)
        .map(|d| {
            let t = day_start(spec, d);
            let k = schedule.period_at(t)?;
            (t >= schedule.periods[k].start + washout).then_some(k)
        })
        .collect();
    let periods = schedule.periods.len();
    let index: Vec<Option<usize>> = names
        .iter()
        .map(|n| schedule.communities.iter().position(|c| c == n))
        .collect();
    let mut cells = vec![(0.0, 0usize); names.len() * periods];
    let mut active = vec![false; periods];
    let mut counts = vec![0usize; periods];
    for r in &records.members {
        active.iter_mut().for_each(|a| *a = false);
        counts.iter_mut().for_each(|c| *c = 0);
        for &d in &r.visits {
            if let Some(k) = period_of[d as usize] {
                active[k] = true;
            }
        }
        for &d in &r.events {
            if let Some(k) = period_of[d as usize] {
                counts[k] += 1;
            }
        }
        for k in (0..periods).filter(|&k| active[k]) {
            let cell = &mut cells[r.community * periods + k];
            cell.0 += value(counts[k], m);
            cell.1 += 1;
        }
    }
    let mut out = Vec::new();
    for (c, idx) in index.iter().enumerate() {
        let Some(idx) = *idx else {
            return failed(format!(
                "'{}' is not one of the design's communities",
                names[c]
            ));
        };
        for k in 0..periods {
            let (sum, n) = cells[c * periods + k];
            if n > 0 {
                out.push(Cell {
                    community: idx,
                    period: k,
                    value: sum / n as f64,
                });
            }
        }
    }
    let input = SwitchbackInput {
        communities: schedule.communities.len(),
        periods,
        cells: out,
        on: schedule.on.clone(),
        scheme,
        max_enumerate: MAX_ENUMERATE,
        draws: inf.randomisation_draws,
        seed: inf.seed,
    };
    match analyze_switchback(&input) {
        Ok(r) => vec![
            MethodOutcome {
                p_value: Some(r.randomisation.p_value),
                estimate: Some(r.estimate),
                min_attainable_p: Some(r.randomisation.min_attainable_p),
                error: None,
            },
            MethodOutcome {
                p_value: Some(r.cr2.p_value),
                estimate: Some(r.estimate),
                min_attainable_p: None,
                error: None,
            },
        ],
        Err(e) => failed(e),
    }
}
