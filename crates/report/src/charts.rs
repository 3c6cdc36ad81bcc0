//! The report's charts as inline SVG, drawn with `plotters` (its SVG
//! backend only: three small pure-Rust crates, no fonts loaded, no
//! network). Every chart is black and greys with distinct marker shapes,
//! so it reads in grey-scale and in print, and carries its alt text as the
//! SVG's `<title>` and `<desc>` (`role="img"`).
//!
//! A chart that cannot be drawn (no data) is `None`; the templates then
//! say so in words.

use crate::document::{Report, ScheduleRow};
use plotters::prelude::*;

/// One rendered chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Chart {
    pub id: &'static str,
    pub title: String,
    /// The alt text: what the chart shows, in words.
    pub alt: String,
    pub svg: String,
}

pub(crate) const GREYS: [RGBColor; 4] = [
    RGBColor(0, 0, 0),
    RGBColor(90, 90, 90),
    RGBColor(140, 140, 140),
    RGBColor(60, 60, 60),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds `role`, the title and the description to plotters' SVG.
pub(crate) fn accessible(svg: String, title: &str, alt: &str) -> String {
    let Some(open) = svg.find("<svg") else {
        return svg;
    };
    let Some(end) = svg[open..].find('>').map(|i| open + i) else {
        return svg;
    };
    let mut out = String::with_capacity(svg.len() + alt.len() + 64);
    out.push_str(&svg[open..end]);
    out.push_str(" role=\"img\">");
    out.push_str(&format!(
        "<title>{}</title><desc>{}</desc>",
        escape(title),
        escape(alt)
    ));
    out.push_str(&svg[end + 1..]);
    out
}

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

pub(crate) fn pad(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let span = (hi - lo).max(1e-9);
    (lo - span * 0.08, hi + span * 0.08)
}

/// One row of the forest plot: label, estimate, interval, overall.
type ForestRow = (String, f64, Option<(f64, f64)>, bool);

/// A forest plot: one row per (community, arm) and one per arm overall.
fn forest(report: &Report) -> Result<Option<Chart>, String> {
    let Some(primary) = report.results.first() else {
        return Ok(None);
    };
    let mut rows: Vec<ForestRow> = Vec::new();
    for e in &report.communities {
        if let Some(est) = e.estimate {
            rows.push((
                format!("{} · {}", e.community, e.arm),
                est,
                e.ci_low.zip(e.ci_high),
                false,
            ));
        }
    }
    for e in &primary.effects {
        rows.push((
            format!("overall · {}", e.arm),
            e.absolute,
            e.ci_low.zip(e.ci_high),
            true,
        ));
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| {
            let (a, b) = r.2.unwrap_or((r.1, r.1));
            (l.min(a).min(r.1), h.max(b).max(r.1))
        });
    let (lo, hi) = pad(lo, hi);
    let n = rows.len();
    let height = 80 + 26 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(190)
            .build_cartesian_2d(lo..hi, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                labels.get(n - 1 - i as usize).cloned().unwrap_or_default()
            })
            .x_desc(format!("effect on {} (treatment − control)", primary.name))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
                GREYS[2].stroke_width(1),
            )))
            .map_err(err)?;
        for (i, (_, est, ci, overall)) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            if let Some((a, b)) = ci {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(*a, y), (*b, y)],
                        BLACK.stroke_width(if *overall { 3 } else { 1 }),
                    )))
                    .map_err(err)?;
            }
            if *overall {
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        (*est, y),
                        7,
                        BLACK.filled(),
                    )))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(std::iter::once(Circle::new((*est, y), 4, BLACK.filled())))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    let title = format!("Forest plot: effect on {} by community", primary.name);
    let alt = format!(
        "Horizontal forest plot of the effect on {} (treatment minus control), one row per community and treatment arm (circles; lines are 95% intervals where a community's own data give one) and the design's overall estimate per arm (triangles, thick lines). A vertical line marks no effect. Values: {}.",
        primary.name,
        rows.iter()
            .map(|r| format!("{} {:.4}", r.0, r.1))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(Some(Chart {
        id: "forest",
        svg: accessible(svg, &title, &alt),
        title,
        alt,
    }))
}

/// Per-community trajectories of the primary metric over periods (filled
/// markers: treated periods; hollow: control).
fn trajectories(report: &Report) -> Result<Option<Chart>, String> {
    let rows = &report.trajectories;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut communities: Vec<&str> = rows.iter().map(|r| r.community.as_str()).collect();
    communities.sort_unstable();
    communities.dedup();
    let max_period = rows.iter().map(|r| r.period).max().unwrap_or(0) as f64;
    let (lo, hi) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| {
            (l.min(r.value), h.max(r.value))
        });
    let span = (hi - lo).max(1e-9);
    let (lo, hi) = (lo - span * 0.1, hi + span * 0.1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.3f64..(max_period + 0.3), lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(max_period as usize + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 1e-6 {
                    String::new()
                } else {
                    format!("period {i}")
                }
            })
            .y_desc(report.results.first().map_or("", |m| m.name.as_str()))
            .draw()
            .map_err(err)?;
        for (k, c) in communities.iter().enumerate() {
            let colour = GREYS[k % GREYS.len()];
            let mut pts: Vec<(f64, f64, bool)> = rows
                .iter()
                .filter(|r| r.community == *c)
                .map(|r| (r.period as f64, r.value, r.treated))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    colour.stroke_width(1 + (k as u32 % 2)),
                ))
                .map_err(err)?
                .label(*c)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            for p in &pts {
                let style = if p.2 { colour.filled() } else { WHITE.filled() };
                chart
                    .draw_series(std::iter::once(Circle::new((p.0, p.1), 5, style)))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Circle::new((p.0, p.1), 5, colour)))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let title = "Per-community trajectories of the primary metric".to_string();
    let alt = format!(
        "Line chart of {} per community across periods; filled circles are periods in which the community had the feature, hollow circles periods without it. Values: {}.",
        report.results.first().map_or("", |m| m.name.as_str()),
        rows.iter()
            .map(|r| format!(
                "{} period {} {} {:.4}",
                r.community,
                r.period,
                if r.treated { "treated" } else { "control" },
                r.value
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(Some(Chart {
        id: "trajectories",
        svg: accessible(svg, &title, &alt),
        title,
        alt,
    }))
}

/// The stepped-wedge schedule: one row per community, one column per
/// period; dark cells are treated.
fn schedule(report: &Report) -> Result<Option<Chart>, String> {
    let sched: &[ScheduleRow] = &report.design.schedule;
    let periods = &report.design.periods;
    if report.design.kind != "stepped_wedge" || sched.is_empty() || periods.is_empty() {
        return Ok(None);
    }
    let mut order: Vec<&ScheduleRow> = sched.iter().collect();
    order.sort_by(|a, b| {
        a.crossover
            .cmp(&b.crossover)
            .then(a.community.cmp(&b.community))
    });
    let (w, h) = (720u32, 50 + 34 * order.len() as u32);
    let left = 150i32;
    let cell_w = ((w as i32 - left - 10) / periods.len() as i32).max(10);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let font = ("sans-serif", 13).into_font();
        for (j, p) in periods.iter().enumerate() {
            root.draw(&Text::new(
                format!("period {}", p.period),
                (left + j as i32 * cell_w + 6, 12),
                font.clone(),
            ))
            .map_err(err)?;
        }
        for (i, row) in order.iter().enumerate() {
            let y = 30 + i as i32 * 34;
            root.draw(&Text::new(row.community.clone(), (6, y + 8), font.clone()))
                .map_err(err)?;
            for (j, p) in periods.iter().enumerate() {
                let treated = row
                    .crossover
                    .as_deref()
                    .is_some_and(|c| c <= p.start.as_str());
                let x = left + j as i32 * cell_w;
                let fill = if treated {
                    RGBColor(60, 60, 60)
                } else {
                    RGBColor(230, 230, 230)
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w - 4, y + 26)],
                    fill.filled(),
                ))
                .map_err(err)?;
                let (label, colour) = if treated {
                    ("on", WHITE)
                } else {
                    ("off", BLACK)
                };
                root.draw(&Text::new(
                    label,
                    (x + 6, y + 8),
                    font.clone().color(&colour),
                ))
                .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    let title = "Stepped-wedge schedule".to_string();
    let alt = format!(
        "Grid of communities (rows) by period (columns); dark cells marked 'on' are periods with the feature. Crossovers: {}.",
        order
            .iter()
            .map(|r| format!("{} at {}", r.community, r.crossover.as_deref().unwrap_or("never")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(Some(Chart {
        id: "schedule",
        svg: accessible(svg, &title, &alt),
        title,
        alt,
    }))
}

/// Every chart the report has data for, in the order the report shows
/// them; a chart that fails to draw is left out with its reason.
pub fn charts(report: &Report) -> (Vec<Chart>, Vec<String>) {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for (name, f) in [
        (
            "schedule",
            schedule as fn(&Report) -> Result<Option<Chart>, String>,
        ),
        ("forest", forest),
        ("cumulative", crate::charts_series::cumulative),
        ("trajectories", trajectories),
        ("distribution", crate::charts_series::distribution),
        ("likert", crate::charts_series::likert),
    ] {
        match f(report) {
            Ok(Some(c)) => out.push(c),
            Ok(None) => {}
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessible_adds_title_and_role() {
        let svg = accessible(
            "<svg width=\"1\" height=\"1\" xmlns=\"http://www.w3.org/2000/svg\"></svg>".into(),
            "T <1>",
            "A & B",
        );
        assert!(svg.starts_with("<svg width=\"1\""));
        assert!(
            svg.contains(" role=\"img\"><title>T &lt;1&gt;</title><desc>A &amp; B</desc></svg>")
        );
    }
}
