//! `[analysis]`: the pre-registered analysis plan (alpha, sidedness, MDE or
//! sample size, power, horizon and looks, correction, decision rules).

use super::Cx;
use crate::experiments::{Analysis, Correction, Decision, Horizon, Sidedness};
use crate::toml_reader::{Kind, Node, Report, Tbl};

pub(super) fn read_analysis(cx: &mut Cx<'_>, n: &Node) -> Option<Analysis> {
    let t = Tbl::open(
        cx,
        n,
        "analysis",
        &[
            "alpha",
            "sidedness",
            "mde",
            "sample_size",
            "power",
            "horizon",
            "looks",
            "correction",
            "decision",
        ],
    )?;
    let alpha = match t.get("alpha") {
        None => {
            t.missing(cx, "alpha", "a number greater than 0 and at most 0.5");
            None
        }
        Some(n) => {
            match n.kind {
                Kind::Int(_) | Kind::Float(_) => {
                    let a = if let Kind::Int(i) = n.kind {
                        i as f64
                    } else if let Kind::Float(f) = n.kind {
                        f
                    } else {
                        0.0
                    };
                    if a > 0.0 && a <= 0.5 {
                        Some(a)
                    } else {
                        cx.err(n.pos, "analysis.alpha", format!("{a} is out of range; expected a number greater than 0 and at most 0.5"));
                        None
                    }
                }
                _ => {
                    cx.wrong_type(
                        n,
                        "analysis.alpha",
                        "a number greater than 0 and at most 0.5",
                    );
                    None
                }
            }
        }
    };
    let sidedness = t
        .choice(cx, "sidedness", &["two-sided", "one-sided"])
        .map(|(s, _)| {
            if s == "one-sided" {
                Sidedness::OneSided
            } else {
                Sidedness::TwoSided
            }
        });
    let mde = t.opt_number(cx, "mde", 0.0, f64::INFINITY);
    let sample_size = t.opt_int(cx, "sample_size", 2, i64::MAX);
    if let (Some(None), Some(None)) = (mde, sample_size) {
        t.missing(
            cx,
            "mde",
            "a minimum detectable effect (mde) or a target sample size (sample_size), or both",
        );
    }
    let power = t.opt_number(cx, "power", 0.0, 1.0);
    let horizon = t.choice(cx, "horizon", &["fixed", "sequential"]);
    let looks = t.opt_int(cx, "looks", 2, 100);
    let horizon = match (horizon, looks) {
        (Some((h, _)), Some(None)) if h == "fixed" => Some(Horizon::Fixed),
        (Some((h, _)), Some(Some(_))) if h == "fixed" => {
            let pos = t.get("looks").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "analysis.looks",
                "looks is only for horizon = \"sequential\"",
            );
            None
        }
        (Some(_), Some(Some(l))) => Some(Horizon::Sequential { looks: l as u32 }),
        (Some(_), Some(None)) => {
            t.missing(
                cx,
                "looks",
                "the number of planned looks (an integer from 2 to 100) for a sequential horizon",
            );
            None
        }
        _ => None,
    };
    let correction = t
        .choice(cx, "correction", &["none", "holm", "bh"])
        .map(|(c, _)| match c.as_str() {
            "holm" => Correction::Holm,
            "bh" => Correction::Bh,
            _ => Correction::None,
        });
    let decision = t
        .req(cx, "decision", "a table with ship, iterate and roll_back")
        .and_then(|d| {
            let d = Tbl::open(
                cx,
                d,
                "analysis.decision",
                &["ship", "iterate", "roll_back"],
            )?;
            let ship = d.string(cx, "ship");
            let iterate = d.string(cx, "iterate");
            let roll_back = d.string(cx, "roll_back");
            Some(Decision {
                ship: ship?,
                iterate: iterate?,
                roll_back: roll_back?,
            })
        });
    let (mde, sample_size) = (mde?, sample_size?);
    if mde.is_none() && sample_size.is_none() {
        return None;
    }
    Some(Analysis {
        alpha: alpha?,
        sidedness: sidedness?,
        mde,
        sample_size: sample_size.map(|s| s as u64),
        power: power?.unwrap_or(0.8),
        horizon: horizon?,
        correction: correction?,
        decision: decision?,
    })
}
