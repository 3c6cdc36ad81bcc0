//! Survey exports (pure, from computed results): a wide CSV (one row per
//! response, one column per item, then the scale scores), a long CSV for R
//! (one row per respondent and item or scale, raw and recoded), and the
//! codebook as JSON and CSV (item texts in every language, codes, scale
//! definitions). Every CSV goes through `csv_out` (formula cells
//! neutralised); free-text columns are left out unless included; a small
//! cell's arm or community is written `suppressed`.

use commonlab_core::surveys::results::{
    cell, codebook, format_number, is_free_text, other_text, Codebook,
};
use commonlab_core::surveys::{Instrument, ItemKind};
use commonlab_store::CampaignRecord;
use serde::Serialize;

use super::results::{Respondent, SurveyResults};
use crate::csv_out::Writer;

/// Which export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wide,
    Long,
    CodebookJson,
    CodebookCsv,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["wide", "long", "codebook-json", "codebook-csv"];

    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "wide" => Format::Wide,
            "long" => Format::Long,
            "codebook-json" => Format::CodebookJson,
            "codebook-csv" => Format::CodebookCsv,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::CodebookJson => "application/json",
            _ => "text/csv; charset=utf-8",
        }
    }
}

/// The export in `format`, as bytes.
pub fn export(
    format: Format,
    c: &CampaignRecord,
    instrument: &Instrument,
    results: &SurveyResults,
) -> Vec<u8> {
    match format {
        Format::Wide => wide(c, instrument, results),
        Format::Long => long(c, instrument, results),
        Format::CodebookJson => {
            let mut v = serde_json::to_vec_pretty(&ExportCodebook::new(instrument, results))
                .expect("a codebook serialises");
            v.push(b'\n');
            v
        }
        Format::CodebookCsv => codebook_csv(instrument, results),
    }
}

/// The columns every row starts with.
const LEAD: &[&str] = &[
    "unit",
    "campaign",
    "wave",
    "instrument",
    "version",
    "status",
    "language",
    "consent_version",
    "started_at",
    "completed_at",
    "completion_seconds",
    "arm",
    "community",
];

/// An item column: its key, and whether it is the "other" text of a
/// multiple choice.
fn item_columns(instrument: &Instrument, include_text: bool) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for (_, item) in instrument.items() {
        let other = matches!(item.kind, ItemKind::Multiple { other: true, .. });
        match &item.kind {
            ItemKind::Text { .. } if !include_text => {}
            _ => out.push((item.key.clone(), item.key.clone(), false)),
        }
        if other && include_text {
            out.push((format!("{}_other", item.key), item.key.clone(), true));
        }
    }
    out
}

fn lead(c: &CampaignRecord, r: &Respondent) -> Vec<String> {
    let withheld = |what: &str, v: &Option<String>| {
        if r.suppressed.contains(&what) {
            "suppressed".to_string()
        } else {
            v.clone().unwrap_or_default()
        }
    };
    vec![
        r.unit.clone(),
        c.key.clone(),
        c.wave.clone(),
        c.instrument.clone(),
        c.version.to_string(),
        r.status.as_str().to_string(),
        r.language.clone(),
        r.consent_version.clone(),
        r.started_at.to_rfc3339(),
        r.completed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        r.completion_seconds
            .map(|s| s.to_string())
            .unwrap_or_default(),
        withheld("arm", &r.arm),
        withheld("community", &r.community),
    ]
}

fn finish(w: Writer<Vec<u8>>) -> Vec<u8> {
    w.into_inner().expect("writing to memory")
}

fn wide(c: &CampaignRecord, instrument: &Instrument, results: &SurveyResults) -> Vec<u8> {
    let columns = item_columns(instrument, results.free_text_included);
    let mut w = Writer::from_writer(Vec::new());
    let mut header: Vec<String> = LEAD.iter().map(|s| s.to_string()).collect();
    header.extend(columns.iter().map(|(name, _, _)| name.clone()));
    header.extend(instrument.scales.iter().map(|s| format!("scale_{}", s.key)));
    w.write_record(header.iter().map(String::as_str))
        .expect("writing to memory");
    for r in &results.respondents {
        let mut row = lead(c, r);
        for (_, key, is_other) in &columns {
            let v = r.items.get(key).map(|v| {
                if *is_other {
                    other_text(&v.raw).unwrap_or_default().to_string()
                } else {
                    cell(&v.raw)
                }
            });
            row.push(v.unwrap_or_default());
        }
        for s in &instrument.scales {
            row.push(
                r.scales
                    .get(&s.key)
                    .copied()
                    .flatten()
                    .map(format_number)
                    .unwrap_or_default(),
            );
        }
        w.write_record(row.iter().map(String::as_str))
            .expect("writing to memory");
    }
    finish(w)
}

fn long(c: &CampaignRecord, instrument: &Instrument, results: &SurveyResults) -> Vec<u8> {
    let columns = item_columns(instrument, results.free_text_included);
    let mut w = Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = LEAD.to_vec();
    header.extend(["kind", "key", "value", "recoded"]);
    w.write_record(header).expect("writing to memory");
    for r in &results.respondents {
        let lead = lead(c, r);
        for (name, key, is_other) in &columns {
            let Some(v) = r.items.get(key) else { continue };
            let (value, recoded) = if *is_other {
                match other_text(&v.raw) {
                    Some(t) => (t.to_string(), String::new()),
                    None => continue,
                }
            } else {
                (
                    cell(&v.raw),
                    v.recoded.map(format_number).unwrap_or_default(),
                )
            };
            let mut row = lead.clone();
            row.extend(["item".into(), name.clone(), value, recoded]);
            w.write_record(row.iter().map(String::as_str))
                .expect("writing to memory");
        }
        for s in &instrument.scales {
            let Some(Some(score)) = r.scales.get(&s.key) else {
                continue;
            };
            let mut row = lead.clone();
            row.extend([
                "scale".into(),
                s.key.clone(),
                format_number(*score),
                String::new(),
            ]);
            w.write_record(row.iter().map(String::as_str))
                .expect("writing to memory");
        }
    }
    finish(w)
}

/// The codebook with what this export left out.
#[derive(Serialize)]
struct ExportCodebook {
    #[serde(flatten)]
    codebook: Codebook,
    /// Free-text items left out of this export (a role not allowed to see
    /// them).
    withheld_free_text: Vec<String>,
    /// Breakdowns with fewer respondents than this are written `suppressed`.
    min_cell: usize,
    /// The columns every row starts with.
    lead_columns: &'static [&'static str],
}

impl ExportCodebook {
    fn new(instrument: &Instrument, results: &SurveyResults) -> Self {
        ExportCodebook {
            codebook: codebook(instrument),
            withheld_free_text: if results.free_text_included {
                Vec::new()
            } else {
                instrument
                    .items()
                    .filter(|(_, i)| is_free_text(i))
                    .map(|(_, i)| i.key.clone())
                    .collect()
            },
            min_cell: results.min_cell,
            lead_columns: LEAD,
        }
    }
}

fn codebook_csv(instrument: &Instrument, results: &SurveyResults) -> Vec<u8> {
    let book = codebook(instrument);
    let langs = &instrument.languages;
    let mut w = Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "column",
        "kind",
        "page",
        "type",
        "required",
        "reverse",
        "show_if",
        "free_text",
        "exported",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(langs.iter().map(|l| format!("text_{l}")));
    header.extend(langs.iter().map(|l| format!("codes_{l}")));
    header.extend([
        "range".to_string(),
        "scoring".to_string(),
        "items".to_string(),
    ]);
    w.write_record(header.iter().map(String::as_str))
        .expect("writing to memory");
    for item in &book.items {
        let exported = !item.free_text || results.free_text_included || item.kind == "multiple";
        let mut row = vec![
            item.key.clone(),
            "item".into(),
            item.page.to_string(),
            item.kind.to_string(),
            item.required.to_string(),
            item.reverse.to_string(),
            item.show_if.clone().unwrap_or_default(),
            item.free_text.to_string(),
            exported.to_string(),
        ];
        row.extend(
            langs
                .iter()
                .map(|l| item.text.get(l).cloned().unwrap_or_default()),
        );
        row.extend(langs.iter().map(|l| {
            item.codes
                .iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        c.code,
                        c.label.get(l).map(String::as_str).unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        }));
        row.push(match (item.range, item.max_length) {
            (Some((lo, hi, step)), _) => format!(
                "{}..{} step {}",
                format_number(lo),
                format_number(hi),
                format_number(step)
            ),
            (_, Some(n)) => format!("at most {n} characters"),
            _ => String::new(),
        });
        row.extend([String::new(), String::new()]);
        w.write_record(row.iter().map(String::as_str))
            .expect("writing to memory");
    }
    for s in &book.scales {
        let mut row = vec![
            format!("scale_{}", s.key),
            "scale".into(),
            String::new(),
            s.scoring.to_string(),
            String::new(),
            String::new(),
            String::new(),
            "false".into(),
            "true".into(),
        ];
        row.extend(
            langs
                .iter()
                .map(|l| s.label.get(l).cloned().unwrap_or_default()),
        );
        row.extend(langs.iter().map(|_| String::new()));
        row.extend([String::new(), s.rule.to_string(), s.items.join(";")]);
        w.write_record(row.iter().map(String::as_str))
            .expect("writing to memory");
    }
    finish(w)
}
