//! `[design] kind = "switchback"`: the communities, the periods (a
//! `period` length tiling the schedule, or explicit `boundaries`), the
//! `scheme` (`independent` with `probability`, `balanced`,
//! `blocked_pairs`) and an optional `washout` at the start of each period.

use super::Cx;
use crate::experiments::{
    format_duration, format_rfc3339, parse_duration, Arm, Design, Schedule, SwitchbackScheme,
};
use crate::toml_reader::{as_date, Kind, Pos, Report, Tbl};

/// At most this many periods (the schedule's grid is recorded whole).
pub(crate) const MAX_PERIODS: usize = 1_000;
/// At most this many community × period cells (the analysis refits the
/// effect in `O(cells²)` per allocation and holds a cells² matrix).
pub(crate) const MAX_CELLS: usize = 2_000;

pub(super) fn read_switchback(
    cx: &mut Cx<'_>,
    t: &Tbl<'_>,
    kind_pos: Pos,
    arms: Option<&[Arm]>,
    schedule: Option<&Schedule>,
) -> Option<Design> {
    let mut ok = true;
    if let Some(arms) = arms {
        if arms.len() != 2 {
            cx.err(
                kind_pos,
                "design.kind",
                format!(
                    "a switchback design needs exactly 2 arms (control and treatment), found {}",
                    arms.len()
                ),
            );
            ok = false;
        }
    }
    let communities = t.strings(cx, "communities", false);
    if let Some(c) = &communities {
        if c.len() < 2 {
            let pos = t.get("communities").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "design.communities",
                "a switchback needs at least 2 communities",
            );
            ok = false;
        }
    }
    let (scheme, scheme_pos) =
        t.choice(cx, "scheme", &["independent", "balanced", "blocked_pairs"])?;
    let probability = t.opt_number(cx, "probability", 0.0, 1.0);
    let scheme = match (scheme.as_str(), probability) {
        ("independent", Some(p)) => Some(SwitchbackScheme::Independent {
            probability: p.unwrap_or(0.5),
        }),
        (_, Some(Some(_))) => {
            let pos = t.get("probability").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "design.probability",
                format!("only the independent scheme takes a probability; {scheme} fixes how many are on"),
            );
            None
        }
        ("balanced", Some(None)) => Some(SwitchbackScheme::Balanced),
        ("blocked_pairs", Some(None)) => Some(SwitchbackScheme::BlockedPairs),
        _ => None,
    };
    if let (Some(SwitchbackScheme::Balanced), Some(communities)) = (scheme, &communities) {
        if communities.len() % 2 == 1 {
            cx.err(
            scheme_pos,
            "design.scheme",
            format!(
                "the balanced scheme puts exactly half of the communities on in each period; {} communities cannot be halved (list an even number, or use independent)",
                communities.len()
            ),
        );
            ok = false;
        }
    }
    let boundaries = read_periods(cx, t, schedule);
    let washout = match t.get("washout") {
        None => Some(0),
        Some(n) => match &n.kind {
            Kind::Str(s) => match parse_duration(s) {
                Some(w) if w >= 0 => Some(w),
                _ => {
                    cx.err(
                        n.pos,
                        "design.washout",
                        format!("expected a duration such as \"1d\" or \"6h\"; found {s:?}"),
                    );
                    None
                }
            },
            _ => {
                cx.wrong_type(n, "design.washout", "a duration such as \"1d\" or \"6h\"");
                None
            }
        },
    };
    let shortest = boundaries
        .as_ref()
        .and_then(|b| b.windows(2).map(|w| w[1] - w[0]).min());
    if let (Some(shortest), Some(washout)) = (shortest, washout) {
        if washout >= shortest {
            let pos = t.get("washout").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "design.washout",
                format!(
                    "\"{}\" is not shorter than the shortest period ({}); each period must keep time to measure after its washout",
                    format_duration(washout),
                    format_duration(shortest)
                ),
            );
            ok = false;
        }
    }
    let periods = boundaries.as_ref().map_or(0, |b| b.len() - 1);
    if scheme == Some(SwitchbackScheme::BlockedPairs) && periods % 2 == 1 {
        cx.err(
            scheme_pos,
            "design.scheme",
            format!(
                "blocked_pairs takes the periods in pairs (each community on in one period of each pair); {periods} periods cannot be paired (make it an even number)"
            ),
        );
        ok = false;
    }
    let (communities, scheme, boundaries, washout) = (communities?, scheme?, boundaries?, washout?);
    if communities.len() * periods > MAX_CELLS {
        let pos = t.get("communities").map_or(t.pos, |n| n.pos);
        cx.err(
            pos,
            "design.communities",
            format!(
                "{} communities × {periods} periods = {} cells; a switchback is analysed on at most {MAX_CELLS} (fewer communities or longer periods)",
                communities.len(),
                communities.len() * periods
            ),
        );
        return None;
    }
    ok.then_some(Design::Switchback {
        communities,
        boundaries,
        scheme,
        washout,
    })
}

/// The period edges: `period = "7d"` tiling `[schedule.start,
/// schedule.end)` exactly, or `boundaries` (strictly increasing, within the
/// schedule). At least 2 periods, at most [`MAX_PERIODS`].
fn read_periods(cx: &mut Cx<'_>, t: &Tbl<'_>, schedule: Option<&Schedule>) -> Option<Vec<i64>> {
    let (bounds, pos) = match (t.get("period"), t.get("boundaries")) {
        (Some(n), Some(_)) => {
            cx.err(
                n.pos,
                "design.period",
                "give either period (a length tiling the schedule) or boundaries (the period edges), not both",
            );
            return None;
        }
        (None, None) => {
            t.missing(
                cx,
                "period",
                "a period length such as \"7d\" (or boundaries: a list of period edges)",
            );
            return None;
        }
        (Some(n), None) => {
            let len = match &n.kind {
                Kind::Str(s) => parse_duration(s).filter(|&l| l > 0),
                _ => None,
            };
            let Some(len) = len else {
                cx.err(
                    n.pos,
                    "design.period",
                    format!(
                        "expected a positive duration such as \"7d\"; found {}",
                        n.describe()
                    ),
                );
                return None;
            };
            let s = schedule?;
            let span = s.end - s.start;
            if span % len != 0 {
                cx.err(
                    n.pos,
                    "design.period",
                    format!(
                        "the schedule ({} to {}) is not a whole number of {} periods; move schedule.end or give boundaries",
                        format_rfc3339(s.start),
                        format_rfc3339(s.end),
                        format_duration(len)
                    ),
                );
                return None;
            }
            let count = span / len;
            if count > MAX_PERIODS as i64 {
                cx.err(
                    n.pos,
                    "design.period",
                    format!("{count} periods; at most {MAX_PERIODS}"),
                );
                return None;
            }
            (
                (0..=count).map(|k| s.start + k * len).collect::<Vec<i64>>(),
                n.pos,
            )
        }
        (None, Some(n)) => {
            let Kind::Array(items) = &n.kind else {
                cx.wrong_type(n, "design.boundaries", "an array of RFC 3339 date-times");
                return None;
            };
            if items.len() > MAX_PERIODS + 1 {
                cx.err(
                    n.pos,
                    "design.boundaries",
                    format!("{} edges; at most {}", items.len(), MAX_PERIODS + 1),
                );
                return None;
            }
            let mut out: Vec<i64> = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let f = format!("design.boundaries[{i}]");
                match as_date(cx, item, &f) {
                    Some(b) if out.last().is_some_and(|&p| p >= b) => {
                        cx.err(
                            item.pos,
                            &f,
                            "periods must not overlap: each edge must come after the one before it",
                        );
                        ok = false;
                    }
                    Some(b) => out.push(b),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            if let (Some(s), Some(&first), Some(&last)) = (schedule, out.first(), out.last()) {
                if first < s.start || last > s.end {
                    cx.err(
                        n.pos,
                        "design.boundaries",
                        format!(
                            "the periods must lie within the schedule ({} to {}); they run from {} to {}",
                            format_rfc3339(s.start),
                            format_rfc3339(s.end),
                            format_rfc3339(first),
                            format_rfc3339(last)
                        ),
                    );
                    return None;
                }
            }
            (out, n.pos)
        }
    };
    if bounds.len() < 3 {
        cx.err(
            pos,
            if t.get("period").is_some() {
                "design.period"
            } else {
                "design.boundaries"
            },
            format!(
                "a switchback needs at least 2 periods; this gives {}",
                bounds.len().saturating_sub(1)
            ),
        );
        return None;
    }
    Some(bounds)
}
