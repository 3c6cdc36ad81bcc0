//! A respondent's answers, checked against the instrument: type, range,
//! required, and `show_if` (an item that is not shown takes no answer and
//! is never required).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Condition, Instrument, ItemKind};

/// One answer, as stored (JSON) and as the page posts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// Likert, NPS and numeric items.
    Number(f64),
    /// A single choice's code, or free text.
    Text(String),
    /// Multiple choice: the codes chosen (and the "other" text, if any);
    /// ranking: every code, most preferred first.
    Choices {
        codes: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        other: Option<String>,
    },
}

/// Every answer given so far, by item key.
pub type Answers = BTreeMap<String, Answer>;

/// A problem with one answer, for the page to show next to the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerError {
    pub item: String,
    /// `required`, `type`, `range`, `step`, `too_long`, `unknown_option`,
    /// `duplicate`, `incomplete`, `not_shown`, `unknown_item`.
    pub code: &'static str,
    pub message: String,
}

impl Instrument {
    /// Whether item `key` is shown given the answers so far (items without
    /// `show_if` always are; one whose condition's item is unanswered or
    /// hidden is not).
    pub fn is_shown(&self, key: &str, answers: &Answers) -> bool {
        let Some(item) = self.item(key) else {
            return false;
        };
        let Some(rule) = &item.show_if else {
            return true;
        };
        if !self.is_shown(&rule.item, answers) {
            return false;
        }
        match (answers.get(&rule.item), &rule.condition) {
            (None, _) => false,
            (Some(Answer::Text(code)), Condition::Equals(want)) => code == want,
            (Some(Answer::Choices { codes, .. }), Condition::Equals(want)) => {
                codes.iter().any(|c| c == want)
            }
            (Some(Answer::Text(code)), Condition::In(set)) => set.contains(code),
            (Some(Answer::Number(x)), Condition::Gte(v)) => x >= v,
            (Some(Answer::Number(x)), Condition::Lte(v)) => x <= v,
            _ => false,
        }
    }
}

/// Checks the answers to page `page` (`answers` holds every answer so far,
/// this page's included, so that `show_if` can look back). Every problem is
/// returned, in the page's order; answers to items of other pages are not
/// checked here.
pub fn validate_page(
    instrument: &Instrument,
    page: usize,
    answers: &Answers,
) -> Result<(), Vec<AnswerError>> {
    let mut errors = Vec::new();
    let Some(p) = instrument.pages.get(page) else {
        errors.push(AnswerError {
            item: String::new(),
            code: "unknown_item",
            message: format!("the survey has no page {}", page + 1),
        });
        return Err(errors);
    };
    for item in &p.items {
        let err = |code, message: String| AnswerError {
            item: item.key.clone(),
            code,
            message,
        };
        let shown = instrument.is_shown(&item.key, answers);
        let Some(answer) = answers.get(&item.key) else {
            if shown && item.required {
                errors.push(err("required", "please answer this question".into()));
            }
            continue;
        };
        if !shown {
            errors.push(err(
                "not_shown",
                "this question does not apply given an earlier answer".into(),
            ));
            continue;
        }
        if let Err((code, message)) = check(&item.kind, answer) {
            errors.push(err(code, message));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check(kind: &ItemKind, answer: &Answer) -> Result<(), (&'static str, String)> {
    let wrong = |what: &str| Err(("type", format!("expected {what}")));
    match (kind, answer) {
        (ItemKind::Likert { points, .. }, Answer::Number(x)) => {
            whole_in(*x, 1.0, f64::from(*points))
        }
        (ItemKind::Likert { .. }, _) => wrong("one of the points"),
        (ItemKind::Nps { .. }, Answer::Number(x)) => whole_in(*x, 0.0, 10.0),
        (ItemKind::Nps { .. }, _) => wrong("a number from 0 to 10"),
        (ItemKind::Numeric { min, max, step }, Answer::Number(x)) => {
            if !x.is_finite() || x < min || x > max {
                return Err(("range", format!("enter a number from {min} to {max}")));
            }
            let k = (x - min) / step;
            if (k - k.round()).abs() > 1e-9 {
                return Err(("step", format!("enter a multiple of {step} from {min}")));
            }
            Ok(())
        }
        (ItemKind::Numeric { .. }, _) => wrong("a number"),
        (ItemKind::Text { max_length }, Answer::Text(s)) => {
            let n = s.chars().count();
            if n > *max_length as usize {
                Err((
                    "too_long",
                    format!("{n} characters; at most {max_length} are allowed"),
                ))
            } else {
                Ok(())
            }
        }
        (ItemKind::Text { .. }, _) => wrong("text"),
        (ItemKind::Single { options }, Answer::Text(code)) => {
            if options.iter().any(|o| &o.code == code) {
                Ok(())
            } else {
                Err((
                    "unknown_option",
                    format!("{code:?} is not one of the options"),
                ))
            }
        }
        (ItemKind::Single { .. }, _) => wrong("one of the options"),
        (ItemKind::Multiple { options, other }, Answer::Choices { codes, other: text }) => {
            distinct_known(options.iter().map(|o| o.code.as_str()), codes)?;
            match text {
                Some(_) if !other => Err(("type", "this question has no \"other\" answer".into())),
                Some(t) if t.chars().count() > 500 => Err((
                    "too_long",
                    "the \"other\" answer is limited to 500 characters".into(),
                )),
                _ => Ok(()),
            }
        }
        (ItemKind::Multiple { .. }, _) => wrong("a list of options"),
        (ItemKind::Ranking { options }, Answer::Choices { codes, other: None }) => {
            distinct_known(options.iter().map(|o| o.code.as_str()), codes)?;
            if codes.len() != options.len() {
                return Err(("incomplete", "rank every option".into()));
            }
            Ok(())
        }
        (ItemKind::Ranking { .. }, _) => wrong("every option in order"),
    }
}

fn whole_in(x: f64, lo: f64, hi: f64) -> Result<(), (&'static str, String)> {
    if x.fract() == 0.0 && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(("range", format!("choose one of {lo} to {hi}")))
    }
}

fn distinct_known<'a>(
    known: impl Iterator<Item = &'a str> + Clone,
    codes: &[String],
) -> Result<(), (&'static str, String)> {
    for (i, c) in codes.iter().enumerate() {
        if !known.clone().any(|k| k == c) {
            return Err(("unknown_option", format!("{c:?} is not one of the options")));
        }
        if codes[..i].contains(c) {
            return Err(("duplicate", format!("{c:?} is given twice")));
        }
    }
    Ok(())
}
