//! Metric definitions: what is counted or summed per unit, in which window
//! relative to the unit's first exposure, with which pre-exposure
//! covariate, filters and capping. Pure data; the store compiles a
//! [`Metric`] into one SQL query per backend (see `docs/metrics.md`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// 1 when the unit has at least one matching event in the window, else 0.
    Proportion,
    /// Per-unit count of matching events, or sum of a numeric property
    /// ([`MetricValue`]).
    Mean,
    /// Per-unit numerator (the first event, [`MetricValue`]) over per-unit
    /// denominator (count of the second event); analysed as sum over sum
    /// with the delta method. `events` is `[numerator, denominator]`.
    Ratio,
    /// Per-unit count of matching events (a mean whose value is a count).
    Count,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Proportion => "proportion",
            MetricKind::Mean => "mean",
            MetricKind::Ratio => "ratio",
            MetricKind::Count => "count",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Increase,
    Decrease,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
        }
    }
}

/// What one matching event contributes to the per-unit value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    /// 1 per event.
    Count,
    /// The event's numeric property of this name (events where it is
    /// missing or not a number contribute 0).
    Sum(String),
}

/// A scalar property value, as sent in an event's `properties`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// A comparison on one property. Comparisons with a value of another JSON
/// type are false (a string `"5"` is not `gte = 3`).
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    Eq(Scalar),
    Ne(Scalar),
    In(Vec<Scalar>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    /// `true`: the property is present (any type); `false`: absent.
    Exists(bool),
}

/// All filters of a metric must hold for an event to count.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyFilter {
    /// `[A-Za-z0-9_]+`, at most 64 characters.
    pub property: String,
    pub op: FilterOp,
}

/// How far from first exposure a window bound may lie, either way: 3650
/// days (about ten years). Far beyond any trial's horizon, and far inside
/// what both databases compute with (PostgreSQL's `interval` and
/// `timestamptz`, SQLite's date functions, which stop at year 9999).
pub const MAX_WINDOW_SECS: i64 = 3650 * 86_400;

/// A half-open window `[start, end)` in seconds relative to the unit's
/// first exposure. Invariants: `start < end`, both within
/// ±[`MAX_WINDOW_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_secs: i64,
    pub end_secs: i64,
}

impl Window {
    /// `None` unless `start < end` and both are within ±[`MAX_WINDOW_SECS`].
    pub fn new(start_secs: i64, end_secs: i64) -> Option<Window> {
        let bounded = |s: i64| s.abs() <= MAX_WINDOW_SECS;
        (start_secs < end_secs && bounded(start_secs) && bounded(end_secs)).then_some(Window {
            start_secs,
            end_secs,
        })
    }

    pub fn len_secs(self) -> i64 {
        self.end_secs - self.start_secs
    }
}

/// Percentiles of caps have at most six decimals: `p` is the exact decimal
/// `k / PERCENTILE_SCALE`, so that the rank `ceil(p · n)` is computed in
/// integers, identically by both databases (`(k · n + SCALE − 1) / SCALE`).
pub const PERCENTILE_SCALE: i64 = 1_000_000;

/// Winsorising of per-unit values (and, separately, of the covariate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    /// At the nearest-rank percentile `p` in (0, 1) of the per-unit values
    /// of all analysed units (all arms together, zeros included): the
    /// value at 1-based rank `ceil(p · n)` in ascending order, with `p`
    /// the decimal of at most six places it was written as (see
    /// [`Cap::percentile_millionths`]).
    Percentile(f64),
    /// At a fixed value (> 0).
    Value(f64),
}

impl Cap {
    /// A percentile as the integer `k` of `p = k / 1,000,000`, if `p` is in
    /// (0, 1) and has at most six decimals (as written: `0.55` is 550000,
    /// although the nearest `f64` is a little above 0.55).
    pub fn percentile_millionths(p: f64) -> Option<i64> {
        if !(p > 0.0 && p < 1.0) {
            return None;
        }
        let k = (p * PERCENTILE_SCALE as f64).round();
        // The division is correctly rounded: it gives back `p` exactly when
        // `p` is the `f64` nearest to the decimal k / 10⁶.
        (k / PERCENTILE_SCALE as f64 == p).then_some(k as i64)
    }
}

/// What one value of a metric describes in a community design (cluster,
/// stepped wedge): a member (the default: each member's value, averaged
/// over the community's active members) or the community as a whole (the
/// value of all its members together). Designs that randomise members
/// only allow `Member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricUnit {
    #[default]
    Member,
    Community,
}

impl MetricUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Member => "member",
            MetricUnit::Community => "community",
        }
    }
}

/// A validated metric definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Event names; for ratios `[numerator, denominator]`.
    pub events: Vec<String>,
    /// The desired direction.
    pub direction: Direction,
    /// Per event (the numerator's, for ratios); always `Count` for
    /// proportions and counts.
    pub value: MetricValue,
    pub filters: Vec<PropertyFilter>,
    /// The analysis window (`start >= 0`).
    pub window: Window,
    /// The pre-exposure window of the same metric used as the CUPED
    /// covariate (`end <= 0`); `None` when switched off.
    pub covariate: Option<Window>,
    /// Not allowed for proportions.
    pub cap: Option<Cap>,
    /// Counted per member or per community (community designs only).
    pub unit: MetricUnit,
    /// Community designs: the length (seconds) of the window inside each
    /// period, which is the last `period_window` seconds of the period;
    /// `None`: the shortest period's length (see
    /// [`crate::experiments::TrialSpec::period_windows`]).
    pub period_window: Option<i64>,
    /// Where the definition came from: `None` for the trial file itself,
    /// `Some(name)` for a reference into the metric library.
    pub library_ref: Option<String>,
}

/// Metric definitions shared between trials (`experiments/metrics.toml`),
/// referenced from a trial file with `ref = "name"`.
#[derive(Debug, Clone, Default)]
pub struct MetricLibrary {
    /// The library's file name (for messages).
    pub file: String,
    pub metrics: BTreeMap<String, Metric>,
    /// Each definition's source text as a TOML inline table, so that a
    /// trial can be stored with its references inlined.
    pub(crate) sources: BTreeMap<String, toml_edit::InlineTable>,
}

/// Default analysis window: the 14 days from first exposure.
pub const DEFAULT_WINDOW: Window = Window {
    start_secs: 0,
    end_secs: 14 * 86_400,
};

/// Formats seconds as the shortest of `Nd`, `Nh`, `Nm` or `Ns`.
pub fn format_duration(secs: i64) -> String {
    let (n, unit) = if secs % 86_400 == 0 {
        (secs / 86_400, "d")
    } else if secs % 3_600 == 0 {
        (secs / 3_600, "h")
    } else if secs % 60 == 0 {
        (secs / 60, "m")
    } else {
        (secs, "s")
    };
    format!("{n}{unit}")
}

/// Parses `Nd`, `Nh`, `Nm` or `Ns` (optionally negative) into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'd') => (&s[..i], 86_400),
        (i, 'h') => (&s[..i], 3_600),
        (i, 'm') => (&s[..i], 60),
        (i, 's') => (&s[..i], 1),
        _ => return None,
    };
    let digits = num.strip_prefix('-').unwrap_or(num);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return None;
    }
    num.parse::<i64>().ok().map(|n| n * mult)
}
