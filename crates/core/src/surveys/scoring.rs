//! Scale scores of one respondent, by the scale's declared scoring.
//!
//! A score needs an answer to every item of its scale (the published
//! formulas are defined only for complete answers); otherwise there is no
//! score and the respondent counts as missing for that scale.

use super::{Answer, Answers, Instrument, ItemKind, Scale, Scoring};

/// One respondent's score on one scale, with the recoded item values it
/// came from (reverse-coded Likert items turned back; the published
/// formulas' own recoding for SUS and UMUX-Lite).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleScore {
    pub score: f64,
    pub recoded: Vec<f64>,
}

/// The respondent's score on `scale`, or `None` when an item is unanswered
/// (or not a number).
pub fn score_scale(
    instrument: &Instrument,
    scale: &Scale,
    answers: &Answers,
) -> Option<ScaleScore> {
    let mut raw = Vec::with_capacity(scale.items.len());
    for key in &scale.items {
        let item = instrument.item(key)?;
        let Some(Answer::Number(x)) = answers.get(key) else {
            return None;
        };
        let value = match &item.kind {
            ItemKind::Likert { points, .. } if item.reverse => 1.0 + f64::from(*points) - x,
            _ => *x,
        };
        raw.push(value);
    }
    let n = raw.len() as f64;
    let (score, recoded) = match scale.scoring {
        Scoring::Sum => (raw.iter().sum(), raw),
        Scoring::Mean => (raw.iter().sum::<f64>() / n, raw),
        Scoring::Sus => {
            // Items 1, 3, 5, 7, 9 (index 0, 2, ...): r − 1; the others 5 − r.
            let recoded: Vec<f64> = raw
                .iter()
                .enumerate()
                .map(|(i, r)| if i % 2 == 0 { r - 1.0 } else { 5.0 - r })
                .collect();
            (recoded.iter().sum::<f64>() * 2.5, recoded)
        }
        Scoring::UmuxLite => ((raw[0] + raw[1] - 2.0) * 100.0 / 12.0, raw),
        Scoring::Nps => {
            let x = raw[0];
            let category = if x >= 9.0 {
                100.0
            } else if x <= 6.0 {
                -100.0
            } else {
                0.0
            };
            (category, raw)
        }
    };
    Some(ScaleScore { score, recoded })
}

/// The Net Promoter Score of a group's 0–10 answers: % promoters (9–10)
/// minus % detractors (0–6); `None` for no answers.
pub fn nps_of(answers: &[f64]) -> Option<f64> {
    if answers.is_empty() {
        return None;
    }
    let n = answers.len() as f64;
    let promoters = answers.iter().filter(|&&x| x >= 9.0).count() as f64;
    let detractors = answers.iter().filter(|&&x| x <= 6.0).count() as f64;
    Some(100.0 * (promoters - detractors) / n)
}
