//! `[[surveys]]` of a trial file: the survey waves the trial gives, each
//! an instrument, a wave key and when the wave is due.
//!
//! ```toml
//! [[surveys]]
//! instrument = "cbpp-community"
//! wave = "baseline"
//! when = "before_start"
//!
//! [[surveys]]
//! instrument = "cbpp-community"
//! wave = "followup"
//! after_first_exposure = "14d"
//! trigger_flag = "survey-prompt"   # optional: shown in-app over OFREP
//! ```
//!
//! The older shorthand `waves = ["baseline", "follow-up"]` (no timing) is
//! still read, as one unscheduled wave per key. Whether the instrument
//! exists is not known to a trial file: `commonlab surveys validate
//! --trials` checks it against `surveys/`, and a campaign checks it
//! against the published instruments (`docs/experiments.md`).

use super::Cx;
use crate::experiments::{format_duration, parse_duration, Survey, WaveTiming, MAX_WINDOW_SECS};
use crate::toml_reader::{ident, is_ident, Kind, Node, Report, Tbl};

const FIELDS: &[&str] = &[
    "instrument",
    "wave",
    "waves",
    "when",
    "after_first_exposure",
    "trigger_flag",
];
const WHEN: &[&str] = &["before_start", "at_end"];

pub(super) fn read_surveys(cx: &mut Cx<'_>, n: &Node) -> Option<Vec<Survey>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(
            n,
            "surveys",
            "an array of tables ([[surveys]]) with instrument, wave and its timing",
        );
        return None;
    };
    let mut out: Vec<Survey> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("surveys[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, FIELDS) else {
            ok = false;
            continue;
        };
        match read_entry(cx, &t, &out) {
            Some(mut entries) => out.append(&mut entries),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One `[[surveys]]` table: one wave, or (shorthand) several untimed ones.
fn read_entry(cx: &mut Cx<'_>, t: &Tbl<'_>, earlier: &[Survey]) -> Option<Vec<Survey>> {
    let instrument = ident(cx, t, "instrument");
    let pos_of = |name: &str| t.get(name).map_or(t.pos, |n| n.pos);
    let waves: Vec<String> = match (t.get("wave"), t.get("waves")) {
        (Some(_), Some(n)) => {
            cx.err(
                n.pos,
                &t.field("waves"),
                "give either wave (one wave with its timing) or waves (a list of unscheduled waves), not both",
            );
            return None;
        }
        (None, None) => {
            t.missing(cx, "wave", "a wave key such as \"baseline\"");
            return None;
        }
        (Some(_), None) => vec![ident(cx, t, "wave")?],
        (None, Some(n)) => {
            let list = t.strings(cx, "waves", false)?;
            if let Some(bad) = list.iter().find(|w| !is_ident(w)) {
                cx.err(
                    n.pos,
                    &t.field("waves"),
                    format!("{bad:?} is not a valid wave key; expected e.g. \"baseline\" or \"follow-up\""),
                );
                return None;
            }
            if t.get("when").is_some() || t.get("after_first_exposure").is_some() {
                cx.err(
                    n.pos,
                    &t.field("waves"),
                    "a timing (when, after_first_exposure) needs one wave per [[surveys]] entry: use wave = \"...\"",
                );
                return None;
            }
            list
        }
    };
    let timing = read_timing(cx, t);
    let trigger_flag = read_trigger_flag(cx, t);
    let (timing, trigger_flag, instrument) = (timing?, trigger_flag?, instrument?);
    let mut out: Vec<Survey> = Vec::new();
    for wave in waves {
        let seen = earlier.iter().chain(&out);
        if seen
            .clone()
            .any(|s| s.instrument == instrument && s.wave == wave)
        {
            cx.err(
                pos_of("instrument"),
                &t.field("wave"),
                format!("instrument {instrument:?} is given twice in wave {wave:?}"),
            );
            return None;
        }
        if let Some(other) = seen.clone().find(|s| s.wave == wave && s.timing != timing) {
            cx.err(
                pos_of("wave"),
                &t.field("wave"),
                format!(
                    "wave {wave:?} is {} for {:?} but {} here; a wave is one point in time for every instrument",
                    other.timing.describe(),
                    other.instrument,
                    timing.describe()
                ),
            );
            return None;
        }
        if let Some(other) = seen
            .clone()
            .find(|s| s.wave == wave && s.trigger_flag != trigger_flag)
        {
            let describe =
                |f: &Option<String>| f.as_ref().map_or("none".into(), |f| format!("{f:?}"));
            cx.err(
                pos_of("trigger_flag"),
                &t.field("trigger_flag"),
                format!(
                    "wave {wave:?} has trigger_flag {} for {:?} but {} here; a wave has one survey-trigger flag",
                    describe(&other.trigger_flag),
                    other.instrument,
                    describe(&trigger_flag)
                ),
            );
            return None;
        }
        out.push(Survey {
            instrument: instrument.clone(),
            wave,
            timing,
            trigger_flag: trigger_flag.clone(),
        });
    }
    Some(out)
}

/// `trigger_flag`: a flag key (`flags::check_new_key`), or none.
/// `Some(None)` when absent, `None` after reporting a mistake.
fn read_trigger_flag(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<Option<String>> {
    let Some(n) = t.get("trigger_flag") else {
        return Some(None);
    };
    let field = t.field("trigger_flag");
    match &n.kind {
        Kind::Str(s) => match crate::flags::check_new_key(s) {
            Ok(()) => Some(Some(s.clone())),
            Err(e) => {
                cx.err(n.pos, &field, e);
                None
            }
        },
        _ => {
            cx.err(
                n.pos,
                &field,
                format!(
                    "expected a flag key such as \"survey-prompt\"; found {}",
                    n.describe()
                ),
            );
            None
        }
    }
}

fn read_timing(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<WaveTiming> {
    match (t.get("when"), t.get("after_first_exposure")) {
        (Some(_), Some(n)) => {
            cx.err(
                n.pos,
                &t.field("after_first_exposure"),
                "give either when or after_first_exposure, not both",
            );
            None
        }
        (None, None) => Some(WaveTiming::Unscheduled),
        (Some(_), None) => {
            let (w, _) = t.choice(cx, "when", WHEN)?;
            Some(if w == "before_start" {
                WaveTiming::BeforeStart
            } else {
                WaveTiming::AtEnd
            })
        }
        (None, Some(n)) => {
            let field = t.field("after_first_exposure");
            let secs = match &n.kind {
                Kind::Str(s) => parse_duration(s),
                _ => None,
            };
            match secs {
                Some(s) if s > 0 && s <= MAX_WINDOW_SECS => {
                    Some(WaveTiming::AfterFirstExposure { seconds: s })
                }
                Some(s) => {
                    cx.err(
                        n.pos,
                        &field,
                        format!(
                            "\"{}\" is not after first exposure; expected a positive duration of at most {}",
                            format_duration(s),
                            format_duration(MAX_WINDOW_SECS)
                        ),
                    );
                    None
                }
                None => {
                    cx.err(
                        n.pos,
                        &field,
                        format!(
                            "expected a duration such as \"14d\", \"12h\" or \"30m\"; found {}",
                            n.describe()
                        ),
                    );
                    None
                }
            }
        }
    }
}
