//! One respondent's answers as results and exports show them (raw and
//! recoded, scale scores), and the codebook of an instrument (item texts,
//! codes, scale definitions). Pure: the statistics over respondents are in
//! `commonlab_stats::survey`, the IO in the server.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{score_scale, Answer, Answers, Instrument, Item, ItemKind, Text};

/// An item's answer: as given, and recoded (reverse coding applied) for
/// Likert, NPS and numeric items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemValue {
    pub raw: Answer,
    pub recoded: Option<f64>,
}

/// A respondent's items and scale scores (`None`: a scale with an
/// unanswered item).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RespondentScores {
    pub items: BTreeMap<String, ItemValue>,
    pub scales: BTreeMap<String, Option<f64>>,
}

/// The item's numeric value for analysis: a reverse-coded Likert item
/// turned back (`1 + points − answer`), other numeric answers as given;
/// `None` for non-numeric kinds or answers.
pub fn recode(item: &Item, answer: &Answer) -> Option<f64> {
    let Answer::Number(x) = answer else {
        return None;
    };
    match &item.kind {
        ItemKind::Likert { points, .. } if item.reverse => Some(1.0 + f64::from(*points) - x),
        ItemKind::Likert { .. } | ItemKind::Nps { .. } | ItemKind::Numeric { .. } => Some(*x),
        _ => None,
    }
}

/// Whether the item takes free text (a text item, or a multiple choice
/// with "other"): such answers may identify a respondent and are shown
/// only to roles allowed to see them.
pub fn is_free_text(item: &Item) -> bool {
    matches!(
        item.kind,
        ItemKind::Text { .. } | ItemKind::Multiple { other: true, .. }
    )
}

/// Every answered item of the instrument (answers to unknown items are
/// left out) and every scale's score.
pub fn score_respondent(instrument: &Instrument, answers: &Answers) -> RespondentScores {
    let items = instrument
        .items()
        .filter_map(|(_, item)| {
            let raw = answers.get(&item.key)?;
            Some((
                item.key.clone(),
                ItemValue {
                    raw: raw.clone(),
                    recoded: recode(item, raw),
                },
            ))
        })
        .collect();
    let scales = instrument
        .scales
        .iter()
        .map(|s| {
            (
                s.key.clone(),
                score_scale(instrument, s, answers).map(|x| x.score),
            )
        })
        .collect();
    RespondentScores { items, scales }
}

/// An answer as one CSV cell: a number as written, a code or text as is,
/// several codes joined by `;` (ranking: most preferred first). The
/// "other" text of a multiple choice is its own column ([`other_text`]).
pub fn cell(answer: &Answer) -> String {
    match answer {
        Answer::Number(x) => format_number(*x),
        Answer::Text(s) => s.clone(),
        Answer::Choices { codes, .. } => codes.join(";"),
    }
}

/// The "other" text of a multiple choice, if given.
pub fn other_text(answer: &Answer) -> Option<&str> {
    match answer {
        Answer::Choices { other, .. } => other.as_deref(),
        _ => None,
    }
}

/// A number without a trailing `.0` for whole values.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The codebook of an instrument version: what every column of an export
/// means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Codebook {
    pub instrument: String,
    pub version: u32,
    pub languages: Vec<String>,
    pub source: String,
    pub published_scale: bool,
    pub consent_version: String,
    pub items: Vec<CodebookItem>,
    pub scales: Vec<CodebookScale>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodebookItem {
    /// The column (and the item's key).
    pub key: String,
    /// 1-based page number.
    pub page: usize,
    pub kind: &'static str,
    pub text: Text,
    pub required: bool,
    pub reverse: bool,
    /// Free text (withheld from roles not allowed to see it).
    pub free_text: bool,
    /// `item op value`, when the item is shown only on a condition.
    pub show_if: Option<String>,
    /// Every code the column may hold, with its labels (Likert: the points
    /// 1..k; NPS: 0..10 with the end labels; choices: the option codes).
    pub codes: Vec<Code>,
    /// Numeric items: min, max, step; text: max length.
    pub range: Option<(f64, f64, f64)>,
    pub max_length: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Code {
    pub code: String,
    pub label: Text,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodebookScale {
    pub key: String,
    pub label: Text,
    pub items: Vec<String>,
    pub scoring: &'static str,
    /// The scoring rule in words (docs/surveys.md).
    pub rule: &'static str,
}

/// The codebook of `instrument`.
pub fn codebook(instrument: &Instrument) -> Codebook {
    let items = instrument
        .items()
        .map(|(page, item)| codebook_item(instrument, page, item))
        .collect();
    let scales = instrument
        .scales
        .iter()
        .map(|s| CodebookScale {
            key: s.key.clone(),
            label: s.label.clone(),
            items: s.items.clone(),
            scoring: s.scoring.name(),
            rule: rule(s.scoring),
        })
        .collect();
    Codebook {
        instrument: instrument.key.clone(),
        version: instrument.version,
        languages: instrument.languages.clone(),
        source: instrument.source.clone(),
        published_scale: instrument.published_scale,
        consent_version: instrument.consent.version.clone(),
        items,
        scales,
    }
}

fn rule(s: super::Scoring) -> &'static str {
    use super::Scoring::*;
    match s {
        Sum => "sum of the answers, reverse-coded Likert items turned back (1 + points - answer)",
        Mean => "mean of the answers, reverse-coded Likert items turned back (1 + points - answer)",
        Sus => "odd items r - 1, even items 5 - r, sum x 2.5 (0-100)",
        UmuxLite => "(i1 + i2 - 2) x 100/12 (0-100)",
        Nps => "per respondent +100 (9-10), 0 (7-8), -100 (0-6); the group mean is % promoters - % detractors",
    }
}

fn codebook_item(instrument: &Instrument, page: usize, item: &Item) -> CodebookItem {
    let one = |s: &str| -> Text {
        instrument
            .languages
            .iter()
            .map(|l| (l.clone(), s.to_string()))
            .collect()
    };
    let mut range = None;
    let mut max_length = None;
    let codes = match &item.kind {
        ItemKind::Likert { points, labels } => (1..=*points)
            .map(|p| Code {
                code: p.to_string(),
                label: labels
                    .iter()
                    .map(|(l, ls)| (l.clone(), ls[usize::from(p) - 1].clone()))
                    .collect(),
            })
            .collect(),
        ItemKind::Nps { low, high } => (0..=10)
            .map(|p| Code {
                code: p.to_string(),
                label: match p {
                    0 => low.clone(),
                    10 => high.clone(),
                    _ => one(&p.to_string()),
                },
            })
            .collect(),
        ItemKind::Single { options }
        | ItemKind::Multiple { options, .. }
        | ItemKind::Ranking { options } => options
            .iter()
            .map(|o| Code {
                code: o.code.clone(),
                label: o.label.clone(),
            })
            .collect(),
        ItemKind::Numeric { min, max, step } => {
            range = Some((*min, *max, *step));
            Vec::new()
        }
        ItemKind::Text { max_length: m } => {
            max_length = Some(*m);
            Vec::new()
        }
    };
    CodebookItem {
        key: item.key.clone(),
        page: page + 1,
        kind: item.kind.name(),
        text: item.text.clone(),
        required: item.required,
        reverse: item.reverse,
        free_text: is_free_text(item),
        show_if: item.show_if.as_ref().map(|s| {
            use super::Condition::*;
            let (op, v) = match &s.condition {
                Equals(c) => ("equals", c.clone()),
                In(cs) => ("in", cs.join(";")),
                Gte(x) => (">=", format_number(*x)),
                Lte(x) => ("<=", format_number(*x)),
            };
            format!("{} {op} {v}", s.item)
        }),
        codes,
        range,
        max_length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surveys::parse_instrument;

    fn shipped(name: &str) -> Instrument {
        let path = format!("{}/../../surveys/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_instrument(&std::fs::read_to_string(path).unwrap(), name).unwrap()
    }

    #[test]
    fn answers_are_recoded_and_written_as_cells() {
        let i = shipped("cbpp-community.toml");
        let item = |k: &str| i.item(k).unwrap();
        assert_eq!(recode(item("value4"), &Answer::Number(2.0)), Some(4.0));
        assert_eq!(recode(item("value1"), &Answer::Number(2.0)), Some(2.0));
        assert_eq!(recode(item("hours"), &Answer::Number(2.5)), Some(2.5));
        assert_eq!(
            recode(item("frequency"), &Answer::Text("weekly".into())),
            None
        );
        assert!(is_free_text(item("comments")) && is_free_text(item("activities")));
        assert!(!is_free_text(item("priorities")) && !is_free_text(item("value1")));
        let choices = Answer::Choices {
            codes: vec!["write".into(), "review".into()],
            other: Some("translate".into()),
        };
        assert_eq!(cell(&choices), "write;review");
        assert_eq!(other_text(&choices), Some("translate"));
        assert_eq!(cell(&Answer::Number(3.0)), "3");
        assert_eq!(cell(&Answer::Number(2.5)), "2.5");
        let answers: Answers = [
            ("value1", 4.0),
            ("value2", 4.0),
            ("value3", 5.0),
            ("value4", 2.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Answer::Number(v)))
        .collect();
        let s = score_respondent(&i, &answers);
        assert_eq!(s.scales["value"], Some(4.25));
        assert_eq!(s.scales["belonging"], None);
        assert_eq!(s.items["value4"].recoded, Some(4.0));
        assert_eq!(s.items.len(), 4);
    }

    #[test]
    fn the_codebook_has_every_item_code_and_scale() {
        let i = shipped("cbpp-community.toml");
        let b = codebook(&i);
        assert_eq!(b.items.len(), i.items().count());
        let v4 = b.items.iter().find(|c| c.key == "value4").unwrap();
        assert!(v4.reverse && v4.codes.len() == 5 && v4.page == 2);
        assert_eq!(v4.codes[0].code, "1");
        assert_eq!(v4.codes[0].label["es"], "Totalmente en desacuerdo");
        let hours = b.items.iter().find(|c| c.key == "hours").unwrap();
        assert_eq!(hours.range, Some((0.0, 80.0, 0.5)));
        assert_eq!(
            hours.show_if.as_deref(),
            Some("frequency in monthly;weekly;daily")
        );
        let comments = b.items.iter().find(|c| c.key == "comments").unwrap();
        assert!(comments.free_text && comments.max_length == Some(2000));
        assert_eq!(b.scales[0].scoring, "mean");
        let nps = codebook(&shipped("nps.toml"));
        let rec = nps.items.iter().find(|c| c.kind == "nps").unwrap();
        assert_eq!(rec.codes.len(), 11);
        assert_eq!(rec.codes[5].label["en"], "5");
        assert!(nps.scales[0].rule.contains("promoters"));
    }
}
