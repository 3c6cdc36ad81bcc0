//! What a survey page shows, apart from HTTP: the posted form read into
//! answers (keeping what was typed), stored answers turned back into form
//! values (to resume), and the view of each question for the templates.
//!
//! One question per fieldset: Likert, NPS and single choice are radio
//! buttons (never a grid), multiple choice checkboxes with an optional
//! "other" text field, numbers a text field with a decimal keyboard (a
//! `type=number` field would drop what does not parse, so the error could
//! not show what was typed), free text a text area, a ranking one select
//! per position.

use super::i18n::{self, Ui};
use commonlab_core::surveys::{Answer, AnswerError, Answers, Instrument, Item, ItemKind, Text};
use serde::Serialize;
use std::collections::HashMap;

/// The posted (or resumed) values by field name: `KEY` (once, or once per
/// checkbox or ranking position, in order), `KEY.other`.
pub type Fields = HashMap<String, Vec<String>>;

/// Most name/value pairs a page may post (a page has at most a few dozen
/// fields); more is refused unread.
pub const MAX_FIELDS: usize = 1_000;

/// `body` (application/x-www-form-urlencoded) as fields, in order; `None`
/// when it does not parse or has more than [`MAX_FIELDS`] pairs.
pub fn parse_form(body: &[u8]) -> Option<Fields> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    if pairs.len() > MAX_FIELDS {
        return None;
    }
    let mut fields = Fields::new();
    for (k, v) in pairs {
        fields.entry(k).or_default().push(v);
    }
    Some(fields)
}

/// The first value of `name`, if any.
pub fn first<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(|v| v.first()).map(String::as_str)
}

pub fn text_of<'a>(text: &'a Text, lang: &str, default: &str) -> &'a str {
    text.get(lang)
        .or_else(|| text.get(default))
        .map_or("", String::as_str)
}

fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    // A decimal comma, as Spanish writes it, when there is no point.
    let s = if s.contains('.') {
        s.to_string()
    } else {
        s.replace(',', ".")
    };
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The answer `fields` give item `item`: `Ok(None)` when unanswered,
/// `Err(code)` when what was posted is not of the item's type (a number
/// that does not parse: `number`; a point that is not one: `choose`).
pub fn answer_of(item: &Item, fields: &Fields) -> Result<Option<Answer>, &'static str> {
    let one = first(fields, &item.key)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    let all = |name: &str| -> Vec<String> {
        fields
            .get(name)
            .map(|v| v.iter().filter(|s| !s.is_empty()).cloned().collect())
            .unwrap_or_default()
    };
    Ok(match &item.kind {
        ItemKind::Likert { .. } | ItemKind::Nps { .. } => match one {
            None => None,
            Some(s) => Some(Answer::Number(number(&s).ok_or("choose")?)),
        },
        ItemKind::Numeric { .. } => match one {
            None => None,
            Some(s) => Some(Answer::Number(number(&s).ok_or("number")?)),
        },
        ItemKind::Single { .. } => one.map(Answer::Text),
        // Stored verbatim (escaped on output), not trimmed.
        ItemKind::Text { .. } => {
            one.map(|_| Answer::Text(first(fields, &item.key).unwrap_or_default().to_string()))
        }
        ItemKind::Multiple { .. } => {
            let codes = all(&item.key);
            let other = first(fields, &format!("{}.other", item.key))
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string);
            (!codes.is_empty() || other.is_some()).then_some(Answer::Choices { codes, other })
        }
        ItemKind::Ranking { .. } => {
            let codes = all(&item.key);
            (!codes.is_empty()).then_some(Answer::Choices { codes, other: None })
        }
    })
}

/// A stored answer as the form values that post it again (to resume).
pub fn fields_of(item: &Item, answer: &Answer, into: &mut Fields) {
    match answer {
        Answer::Number(x) => {
            into.insert(item.key.clone(), vec![x.to_string()]);
        }
        Answer::Text(s) => {
            into.insert(item.key.clone(), vec![s.clone()]);
        }
        Answer::Choices { codes, other } => {
            into.insert(item.key.clone(), codes.clone());
            if let Some(o) = other {
                into.insert(format!("{}.other", item.key), vec![o.clone()]);
            }
        }
    }
}

/// Every stored answer as form values.
pub fn fields_of_answers(instrument: &Instrument, answers: &Answers) -> Fields {
    let mut f = Fields::new();
    for (key, answer) in answers {
        if let Some(item) = instrument.item(key) {
            fields_of(item, answer, &mut f);
        }
    }
    f
}

/// The message of an answer error, in `lang`, with the item's bounds.
pub fn error_message(item: &Item, code: &str, typed: &Fields, lang: &str) -> String {
    let fmt = |x: f64| x.to_string();
    let code = match (code, &item.kind) {
        ("type" | "range" | "unknown_option", ItemKind::Likert { .. } | ItemKind::Nps { .. }) => {
            "choose"
        }
        ("type", ItemKind::Numeric { .. }) => "number",
        ("type" | "unknown_option", _) => "choose",
        (c, _) => c,
    };
    let args: Vec<(&str, String)> = match &item.kind {
        ItemKind::Numeric { min, max, step } => {
            vec![("min", fmt(*min)), ("max", fmt(*max)), ("step", fmt(*step))]
        }
        ItemKind::Text { max_length } => vec![
            ("max", max_length.to_string()),
            (
                "n",
                first(typed, &item.key)
                    .map_or(0, |s| s.chars().count())
                    .to_string(),
            ),
        ],
        ItemKind::Multiple { .. } => vec![
            ("max", "500".to_string()),
            (
                "n",
                first(typed, &format!("{}.other", item.key))
                    .map_or(0, |s| s.chars().count())
                    .to_string(),
            ),
        ],
        _ => Vec::new(),
    };
    i18n::answer_error(lang, code, &args)
}

/// One choice of a question.
#[derive(Debug, Serialize)]
pub struct OptionView {
    pub id: String,
    pub value: String,
    pub label: String,
    pub checked: bool,
}

#[derive(Debug, Serialize)]
pub struct OtherView {
    pub id: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct PositionView {
    pub id: String,
    pub label: String,
    pub options: Vec<OptionView>,
}

/// One question, as the page template shows it.
#[derive(Debug, Serialize)]
pub struct ItemView {
    pub key: String,
    /// The id of its first input: where the error summary links to.
    pub anchor: String,
    pub text: String,
    pub required: bool,
    pub hint: Option<String>,
    pub error: Option<String>,
    pub describedby: String,
    /// `radio`, `checkbox`, `number`, `text` or `ranking`.
    pub kind: &'static str,
    pub options: Vec<OptionView>,
    pub other: Option<OtherView>,
    pub value: String,
    pub positions: Vec<PositionView>,
}

/// The view of `item` in `lang`, showing `typed` and `error`.
pub fn item_view(
    instrument: &Instrument,
    item: &Item,
    lang: &str,
    ui: &Ui,
    typed: &Fields,
    error: Option<String>,
) -> ItemView {
    let default = instrument.default_language();
    let key = &item.key;
    let id = |i: usize| format!("q-{key}-{i}");
    let chosen = typed.get(key).cloned().unwrap_or_default();
    let is_chosen = |v: &str| chosen.iter().any(|c| c.trim() == v);
    let choices = |labels: Vec<(String, String)>| -> Vec<OptionView> {
        labels
            .into_iter()
            .enumerate()
            .map(|(i, (value, label))| OptionView {
                id: id(i),
                checked: is_chosen(&value),
                value,
                label,
            })
            .collect()
    };
    let coded = |options: &[commonlab_core::surveys::Choice]| -> Vec<(String, String)> {
        options
            .iter()
            .map(|o| (o.code.clone(), text_of(&o.label, lang, default).to_string()))
            .collect()
    };
    let mut view = ItemView {
        key: key.clone(),
        anchor: id(0),
        text: text_of(&item.text, lang, default).to_string(),
        required: item.required,
        hint: None,
        describedby: String::new(),
        error,
        kind: "radio",
        options: Vec::new(),
        other: None,
        value: String::new(),
        positions: Vec::new(),
    };
    match &item.kind {
        ItemKind::Likert { points, labels } => {
            let names = labels.get(lang).or_else(|| labels.get(default));
            view.options = choices(
                (1..=*points)
                    .map(|p| {
                        let label = names
                            .and_then(|n| n.get(usize::from(p) - 1))
                            .cloned()
                            .unwrap_or_else(|| p.to_string());
                        (p.to_string(), label)
                    })
                    .collect(),
            );
        }
        ItemKind::Nps { low, high } => {
            view.hint = Some(i18n::fill(
                ui.nps_hint,
                &[
                    ("low", text_of(low, lang, default).to_string()),
                    ("high", text_of(high, lang, default).to_string()),
                ],
            ));
            view.options = choices((0..=10).map(|p| (p.to_string(), p.to_string())).collect());
        }
        ItemKind::Single { options } => view.options = choices(coded(options)),
        ItemKind::Multiple { options, other } => {
            view.kind = "checkbox";
            view.hint = Some(ui.multiple_hint.to_string());
            view.options = choices(coded(options));
            if *other {
                view.other = Some(OtherView {
                    id: format!("q-{key}-other"),
                    value: first(typed, &format!("{key}.other"))
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
        ItemKind::Numeric { min, max, .. } => {
            view.kind = "number";
            view.hint = Some(i18n::fill(
                ui.number_hint,
                &[("min", min.to_string()), ("max", max.to_string())],
            ));
            view.value = first(typed, key).unwrap_or_default().to_string();
        }
        ItemKind::Text { max_length } => {
            view.kind = "text";
            view.hint = Some(i18n::fill(ui.text_hint, &[("max", max_length.to_string())]));
            view.value = first(typed, key).unwrap_or_default().to_string();
        }
        ItemKind::Ranking { options } => {
            view.kind = "ranking";
            view.hint = Some(ui.rank_hint.to_string());
            let labels = coded(options);
            view.positions = (0..options.len())
                .map(|i| PositionView {
                    id: id(i),
                    label: i18n::fill(ui.position, &[("n", (i + 1).to_string())]),
                    options: labels
                        .iter()
                        .enumerate()
                        .map(|(j, (value, label))| OptionView {
                            id: format!("q-{key}-{i}-{j}"),
                            value: value.clone(),
                            label: label.clone(),
                            checked: chosen.get(i).is_some_and(|c| c == value),
                        })
                        .collect(),
                })
                .collect();
        }
    }
    let mut described = Vec::new();
    if view.hint.is_some() {
        described.push(format!("hint-{key}"));
    }
    if view.error.is_some() {
        described.push(format!("err-{key}"));
    }
    view.describedby = described.join(" ");
    view
}

/// Whether `item` (on page `page`) is on the page when it is shown with
/// `answers` (earlier pages'): shown by its `show_if`, or conditioned on
/// an item of the same page that is itself on the page (such an item is
/// shown and its answer kept only if the condition holds once the page is
/// posted: a page without JavaScript cannot hide it as you answer).
pub fn on_page(instrument: &Instrument, page: usize, item: &Item, answers: &Answers) -> bool {
    let Some(rule) = &item.show_if else {
        return true;
    };
    let same_page = instrument.pages[page]
        .items
        .iter()
        .find(|i| i.key == rule.item);
    match same_page {
        Some(target) => on_page(instrument, page, target, answers),
        None => instrument.is_shown(&item.key, answers),
    }
}

/// The errors of a posted page by item: `validate_page`'s and the page's
/// own (what did not parse).
pub fn errors_by_item(errors: Vec<AnswerError>) -> HashMap<String, &'static str> {
    let mut by = HashMap::new();
    for e in errors {
        by.entry(e.item).or_insert(e.code);
    }
    by
}
