//! Rendering: the report document through the templates in
//! `reports/templates/` (minijinja; embedded at build time, so the binary
//! needs no files at run time) into Markdown and a self-contained HTML
//! file (inline CSS and SVG; no script, no link, no request), and
//! `results.json` (the document in canonical form).
//!
//! Numbers are formatted by the templates' filters from the canonical
//! (rounded) document, so a number shown is the number in `results.json`
//! at fewer digits: `num` (4 significant digits, at least 4 decimals below
//! 1), `pct` (one decimal of a percentage), `pval` (4 decimals, `< 0.0001`
//! below).

use crate::canonical;
use crate::charts::{self, Chart};
use crate::document::Report;
use crate::ReportError;
use minijinja::{context, Environment, Value};
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "report.md",
        include_str!("../../../reports/templates/report.md.j2"),
    ),
    (
        "report.html",
        include_str!("../../../reports/templates/report.html.j2"),
    ),
    (
        "style.css",
        include_str!("../../../reports/templates/style.css"),
    ),
    (
        "decision.md",
        include_str!("../../../reports/templates/decision.md.j2"),
    ),
    (
        "index.html",
        include_str!("../../../reports/templates/index.html.j2"),
    ),
];

/// A number for people: 4 significant digits (fixed decimals below 1000).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn opt_num(v: Option<f64>) -> String {
    v.map_or("–".into(), num)
}

fn pct(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
}

fn pval(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(p) if p < 0.0001 => "< 0.0001".into(),
        Some(p) => format!("{p:.4}"),
    }
}

fn oneline(s: String) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(s: String) -> String {
    s.replace('_', " ")
}

/// HTML-escapes `s`, then turns `**x**` into `<strong>x</strong>`.
fn bold(s: String) -> Value {
    let escaped = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let mut out = String::new();
    for (i, part) in escaped.split("**").enumerate() {
        if i % 2 == 1 {
            out.push_str("<strong>");
            out.push_str(part);
            out.push_str("</strong>");
        } else {
            out.push_str(part);
        }
    }
    Value::from_safe_string(out)
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_trim_blocks(false);
        env.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a broken one fails the
            // crate's tests, which render every one.
            if let Err(e) = env.add_template(name, source) {
                panic!("template {name} does not parse: {e}");
            }
        }
        env.add_filter("num", opt_num);
        env.add_filter("pct", pct);
        env.add_filter("pval", pval);
        env.add_filter("oneline", oneline);
        env.add_filter("words", words);
        env.add_filter("bold", bold);
        env
    })
}

fn render(name: &str, ctx: Value) -> Result<String, ReportError> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| ReportError::Render(format!("{name}: {e:#}")))
}

/// `results.json`: the report in canonical form.
pub fn results_json(r: &Report) -> Result<String, ReportError> {
    canonical::to_json(r).map_err(|e| ReportError::Render(format!("results.json: {e}")))
}

fn canonical(r: &Report) -> Result<Value, ReportError> {
    let v = canonical::to_value(r).map_err(|e| ReportError::Render(e.to_string()))?;
    Ok(Value::from_serialize(&v))
}

/// The report in Markdown.
pub fn markdown(r: &Report) -> Result<String, ReportError> {
    render("report.md", context! { r => canonical(r)? })
}

/// The charts the report has data for (and why any is missing).
pub fn charts(r: &Report) -> (Vec<Chart>, Vec<String>) {
    charts::charts(r)
}

/// The report as one self-contained HTML file.
pub fn html(r: &Report) -> Result<String, ReportError> {
    let (charts, chart_errors) = charts::charts(r);
    render(
        "report.html",
        context! { r => canonical(r)?, charts => charts, chart_errors => chart_errors },
    )
}

/// `decision.md` for the platform team, from `decision.json`'s document.
pub fn decision_markdown(d: &crate::feedback::Decision) -> Result<String, ReportError> {
    let v = canonical::to_value(d).map_err(|e| ReportError::Render(e.to_string()))?;
    render("decision.md", context! { d => Value::from_serialize(&v) })
}

/// One line of the index page of `report --all`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexEntry {
    pub key: String,
    pub title: String,
    pub status: String,
    pub decision: String,
    pub dir: String,
}

/// The index page of `report --all`.
pub fn index_html(
    entries: &[IndexEntry],
    failures: &[(String, String)],
) -> Result<String, ReportError> {
    render(
        "index.html",
        context! { entries => entries, failures => failures },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_format_as_documented() {
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(-12.3456), "-12.35");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.000_012_34), "1.234e-5");
        assert_eq!(pct(Some(0.1234)), "12.3%");
        assert_eq!(pct(None), "–");
        assert_eq!(pval(Some(0.00001)), "< 0.0001");
        assert_eq!(pval(Some(0.04321)), "0.0432");
        assert_eq!(
            bold("a **b** <c>".into()).to_string(),
            "a <strong>b</strong> &lt;c&gt;"
        );
    }
}
