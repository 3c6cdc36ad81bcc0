//! Survey instruments as code (`surveys/*.toml`): their parsed form, the
//! validation of a respondent's answers against them, and scale scoring.
//!
//! The file format, its rules and the shipped instruments are documented in
//! `docs/surveys.md`. Pure: no IO, no clock; the per-respondent seed that
//! orders randomised pages is passed in.

mod answers;
mod parse;
pub mod results;
mod scale_parse;
mod scoring;
#[cfg(test)]
mod tests;
pub mod token;

use std::collections::BTreeMap;

pub use answers::{validate_page, Answer, AnswerError, Answers};
pub use parse::parse_instrument;
pub use scoring::{nps_of, score_scale, ScaleScore};

pub use crate::toml_reader::SpecError;

/// A text in every language of its instrument, by BCP 47 tag.
pub type Text = BTreeMap<String, String>;

/// A validated survey instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    pub key: String,
    /// Answers keep the version they were given under; a changed published
    /// instrument needs a new version.
    pub version: u32,
    /// BCP 47 tags; the first is the default.
    pub languages: Vec<String>,
    pub title: Text,
    pub intro: Text,
    /// Where the items come from: a citation for a published scale, or a
    /// statement that the instrument is Commonlab's own.
    pub source: String,
    /// Whether the items are a published, validated scale.
    pub published_scale: bool,
    pub consent: Consent,
    pub pages: Vec<Page>,
    pub scales: Vec<Scale>,
}

/// What a respondent agrees to before the first page.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// Stored with the respondent's decision.
    pub version: String,
    pub text: Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub title: Option<Text>,
    /// Items shown in an order drawn per respondent ([`Instrument::page_order`]).
    pub randomise: bool,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: String,
    pub text: Text,
    pub kind: ItemKind,
    pub required: bool,
    /// Likert only: scored as `min + max − answer`.
    pub reverse: bool,
    /// Shown (and validated) only when an earlier answer matches.
    pub show_if: Option<ShowIf>,
}

/// A choice: its stable code (what is stored) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub code: String,
    pub label: Text,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// Answers 1..=points, each point labelled in every language.
    Likert {
        points: u8,
        labels: BTreeMap<String, Vec<String>>,
    },
    Single {
        options: Vec<Choice>,
    },
    /// Any number of the options; `other`: a free-text "other" may be given.
    Multiple {
        options: Vec<Choice>,
        other: bool,
    },
    /// A number in [min, max] on the grid min + k·step.
    Numeric {
        min: f64,
        max: f64,
        step: f64,
    },
    /// Free text of at most `max_length` characters.
    Text {
        max_length: u32,
    },
    /// 0..=10, the two ends labelled.
    Nps {
        low: Text,
        high: Text,
    },
    /// Every option once, most preferred first.
    Ranking {
        options: Vec<Choice>,
    },
}

impl ItemKind {
    pub fn name(&self) -> &'static str {
        match self {
            ItemKind::Likert { .. } => "likert",
            ItemKind::Single { .. } => "single",
            ItemKind::Multiple { .. } => "multiple",
            ItemKind::Numeric { .. } => "numeric",
            ItemKind::Text { .. } => "text",
            ItemKind::Nps { .. } => "nps",
            ItemKind::Ranking { .. } => "ranking",
        }
    }

    /// The range of a numeric answer (Likert, NPS, numeric), for scoring.
    pub fn range(&self) -> Option<(f64, f64)> {
        match self {
            ItemKind::Likert { points, .. } => Some((1.0, f64::from(*points))),
            ItemKind::Nps { .. } => Some((0.0, 10.0)),
            ItemKind::Numeric { min, max, .. } => Some((*min, *max)),
            _ => None,
        }
    }
}

/// `item` (an earlier one) must have an answer matching the condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowIf {
    pub item: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A single choice's code, or a multiple choice containing it.
    Equals(String),
    /// A single choice among these codes.
    In(Vec<String>),
    /// A numeric answer (Likert, NPS, numeric) at least this.
    Gte(f64),
    /// A numeric answer at most this.
    Lte(f64),
}

/// Items scored together.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub key: String,
    pub label: Text,
    pub items: Vec<String>,
    pub scoring: Scoring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Sum of the (reverse-coded) answers.
    Sum,
    /// Mean of the (reverse-coded) answers.
    Mean,
    /// System Usability Scale: 10 five-point items; odd items r − 1, even
    /// items 5 − r, the sum × 2.5 (0–100).
    Sus,
    /// UMUX-Lite: 2 seven-point items; (i1 + i2 − 2) × 100/12 (0–100).
    UmuxLite,
    /// Net Promoter Score of one NPS item: per respondent +100 (9–10), 0
    /// (7–8) or −100 (0–6), so the mean over respondents is % promoters −
    /// % detractors.
    Nps,
}

impl Scoring {
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Sum => "sum",
            Scoring::Mean => "mean",
            Scoring::Sus => "sus",
            Scoring::UmuxLite => "umux_lite",
            Scoring::Nps => "nps",
        }
    }
}

/// Right-to-left scripts, by primary language subtag.
const RTL: &[&str] = &[
    "ar", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi",
];

/// `rtl` for languages written right to left, else `ltr` (for the HTML
/// `dir` attribute).
pub fn direction(language: &str) -> &'static str {
    let primary = language
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if RTL.contains(&primary.as_str()) {
        "rtl"
    } else {
        "ltr"
    }
}

impl Instrument {
    pub fn default_language(&self) -> &str {
        &self.languages[0]
    }

    /// The instrument's language for a request: `wanted` (from the link)
    /// if the instrument has it, else the first of `accept` (an
    /// `Accept-Language` list, best first) it has, matching on the primary
    /// subtag too, else the default.
    pub fn pick_language<'a>(&'a self, wanted: Option<&str>, accept: &[&str]) -> &'a str {
        let find = |tag: &str| {
            let tag = tag.trim().to_ascii_lowercase();
            self.languages
                .iter()
                .find(|l| l.to_ascii_lowercase() == tag)
                .or_else(|| {
                    let primary = tag.split('-').next().unwrap_or("");
                    self.languages.iter().find(|l| {
                        l.split('-')
                            .next()
                            .unwrap_or("")
                            .eq_ignore_ascii_case(primary)
                    })
                })
        };
        wanted
            .and_then(find)
            .or_else(|| accept.iter().find_map(|t| find(t)))
            .map_or(self.default_language(), String::as_str)
    }

    /// Every item, in file order, with its page number.
    pub fn items(&self) -> impl Iterator<Item = (usize, &Item)> {
        self.pages
            .iter()
            .enumerate()
            .flat_map(|(p, page)| page.items.iter().map(move |i| (p, i)))
    }

    pub fn item(&self, key: &str) -> Option<&Item> {
        self.items().map(|(_, i)| i).find(|i| i.key == key)
    }

    /// The order a respondent sees page `page`'s items in (indices into
    /// `pages[page].items`): file order, or for a randomised page a
    /// permutation drawn from `seed` (the server derives it per respondent
    /// and records it).
    pub fn page_order(&self, page: usize, seed: u64) -> Vec<usize> {
        let n = self.pages[page].items.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.pages[page].randomise {
            // Fisher–Yates with SplitMix64 (a pure, documented generator;
            // core draws no randomness of its own).
            let mut state = seed ^ (page as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = || {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            for i in (1..n).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        order
    }
}
