//! The charts of data series (see [`crate::charts`] for the conventions:
//! plotters SVG, black and greys with distinct markers, alt text listing
//! the values drawn): the cumulative effect, the distribution by arm and
//! the Likert stacked bars. Each draws only numbers that are in
//! `results.json` (`cumulative`, `distribution`, `surveys`), and nothing
//! withheld as a small cell.

use crate::charts::{accessible, err, pad, Chart, GREYS};
use crate::document::Report;
use plotters::prelude::*;

type Drawn = Result<Option<Chart>, String>;

fn chart(id: &'static str, svg: String, title: String, alt: String) -> Drawn {
    Ok(Some(Chart {
        id,
        svg: accessible(svg, &title, &alt),
        title,
        alt,
    }))
}

/// The primary metric's estimate and 95% interval as periods closed.
pub(crate) fn cumulative(report: &Report) -> Drawn {
    let c = &report.cumulative;
    if c.points.is_empty() {
        return Ok(None);
    }
    let mut arms: Vec<&str> = c.points.iter().map(|p| p.arm.as_str()).collect();
    arms.dedup();
    let (lo, hi) = c
        .points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
            let (al, ah) = p.always_valid.unwrap_or((None, None));
            (
                l.min(p.ci_low.unwrap_or(p.estimate))
                    .min(al.unwrap_or(p.estimate))
                    .min(p.estimate),
                h.max(p.ci_high.unwrap_or(p.estimate))
                    .max(ah.unwrap_or(p.estimate))
                    .max(p.estimate),
            )
        });
    let (lo, hi) = pad(lo, hi);
    let first = c.points.iter().map(|p| p.through_period).min().unwrap_or(0) as f64;
    let last = c.points.iter().map(|p| p.through_period).max().unwrap_or(0) as f64;
    let by = if c.by == "look" { "look" } else { "to period" };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut ch = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((first - 0.5)..(last + 0.5), lo..hi)
            .map_err(err)?;
        ch.configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels((last - first) as usize + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 1e-6 {
                    String::new()
                } else {
                    format!("{by} {i}")
                }
            })
            .y_desc(format!("effect on {} (95% interval)", c.metric))
            .draw()
            .map_err(err)?;
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(first - 0.5, 0.0), (last + 0.5, 0.0)],
            GREYS[2].stroke_width(1),
        )))
        .map_err(err)?;
        for (k, arm) in arms.iter().enumerate() {
            let colour = GREYS[k % GREYS.len()];
            // Arms side by side around each period.
            let dx = (k as f64 - (arms.len() as f64 - 1.0) / 2.0) * 0.12;
            let pts: Vec<_> = c.points.iter().filter(|p| p.arm == *arm).collect();
            ch.draw_series(LineSeries::new(
                pts.iter()
                    .map(|p| (p.through_period as f64 + dx, p.estimate)),
                colour.stroke_width(1),
            ))
            .map_err(err)?
            .label(*arm)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            for p in &pts {
                let x = p.through_period as f64 + dx;
                // The sequential boundary: the always-valid interval, a
                // thin line with caps (an infinite end runs to the edge).
                if let Some((a, b)) = p.always_valid {
                    let (a, b) = (a.unwrap_or(lo), b.unwrap_or(hi));
                    for seg in [
                        vec![(x + 0.05, a), (x + 0.05, b)],
                        vec![(x, a), (x + 0.1, a)],
                        vec![(x, b), (x + 0.1, b)],
                    ] {
                        ch.draw_series(std::iter::once(PathElement::new(
                            seg,
                            GREYS[2].stroke_width(1),
                        )))
                        .map_err(err)?;
                    }
                }
                if let (Some(a), Some(b)) = (p.ci_low, p.ci_high) {
                    ch.draw_series(std::iter::once(PathElement::new(
                        vec![(x, a), (x, b)],
                        colour.stroke_width(2),
                    )))
                    .map_err(err)?;
                }
                if k % 2 == 0 {
                    ch.draw_series(std::iter::once(Circle::new(
                        (x, p.estimate),
                        4,
                        colour.filled(),
                    )))
                    .map_err(err)?;
                } else {
                    ch.draw_series(std::iter::once(TriangleMarker::new(
                        (x, p.estimate),
                        6,
                        colour.filled(),
                    )))
                    .map_err(err)?;
                }
            }
        }
        ch.configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let bound = |x: Option<f64>| x.map_or("unbounded".into(), |v| format!("{v:.4}"));
    let title = if c.by == "look" {
        format!(
            "Cumulative effect on {} at each look, with the sequential boundary",
            c.metric
        )
    } else {
        format!("Cumulative effect on {} as periods closed", c.metric)
    };
    let alt = format!(
        "Estimates of the effect on {} (treatment minus control) from the data so far, one point per {} and treatment arm with its fixed-horizon 95% interval as a thick vertical line{}; a horizontal line marks no effect. Values: {}.",
        c.metric,
        if c.by == "look" { "look" } else { "closed period" },
        if c.interval == "always_valid" {
            " and the always-valid 95% interval (the sequential boundary) as a thin capped line beside it"
        } else {
            ""
        },
        c.points
            .iter()
            .map(|p| format!(
                "{} {by} {} {:.4} [{}]{}",
                p.arm,
                p.through_period,
                p.estimate,
                p.ci_low
                    .zip(p.ci_high)
                    .map_or("no interval".into(), |(a, b)| format!("{a:.4}, {b:.4}")),
                p.always_valid.map_or(String::new(), |(a, b)| format!(
                    " always-valid [{}, {}]",
                    bound(a),
                    bound(b)
                ))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    chart("cumulative", svg, title, alt)
}

/// The primary metric's distribution by arm: a histogram of shares per
/// bin (member rows) or the cell values per arm (community designs).
pub(crate) fn distribution(report: &Report) -> Drawn {
    let d = &report.distribution;
    match d.of {
        "member" => histogram(report),
        "cell" => cells(report),
        _ => Ok(None),
    }
    .map(|c| c.filter(|_| !d.by_arm.is_empty()))
}

fn histogram(report: &Report) -> Drawn {
    let d = &report.distribution;
    let nb = d.bins.len().saturating_sub(1);
    if nb == 0 || d.by_arm.iter().all(|a| a.n == 0) {
        return Ok(None);
    }
    let share = |a: &crate::series::DistributionArm, i: usize| {
        a.counts[i]
            .filter(|_| a.n > 0)
            .map(|c| c as f64 / a.n as f64)
    };
    let top = d
        .by_arm
        .iter()
        .flat_map(|a| (0..nb).filter_map(move |i| share(a, i)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let (x0, x1) = (d.bins[0], d.bins[nb]);
    let k = d.by_arm.len() as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut ch = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(err)?;
        ch.configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc(format!("{} per member (last bin: and above)", d.metric))
            .y_desc("share of the arm's members")
            .draw()
            .map_err(err)?;
        for (j, a) in d.by_arm.iter().enumerate() {
            let fill = [
                RGBColor(30, 30, 30),
                RGBColor(120, 120, 120),
                RGBColor(200, 200, 200),
            ][j % 3];
            let mut first = true;
            for i in 0..nb {
                let Some(s) = share(a, i) else { continue };
                let w = (d.bins[i + 1] - d.bins[i]) / k;
                let left = d.bins[i] + w * j as f64;
                let bar = Rectangle::new([(left, 0.0), (left + w, s)], fill.filled());
                let series = ch.draw_series(std::iter::once(bar)).map_err(err)?;
                if first {
                    first = false;
                    series.label(a.arm.clone()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], fill.filled())
                    });
                }
                ch.draw_series(std::iter::once(Rectangle::new(
                    [(left, 0.0), (left + w, s)],
                    BLACK.stroke_width(1),
                )))
                .map_err(err)?;
            }
        }
        ch.configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let title = format!("Distribution of {} by arm", d.metric);
    let alt = format!(
        "Histogram of {} per member, bars side by side per arm (darkest first: {}), each bar the share of the arm's members in the bin; bins with fewer than {} members are withheld and not drawn. Bins from {} to {}. Shares: {}.",
        d.metric,
        d.by_arm.iter().map(|a| a.arm.as_str()).collect::<Vec<_>>().join(", "),
        d.min_cell,
        x0,
        x1,
        d.by_arm
            .iter()
            .map(|a| format!(
                "{} (n = {}) {}",
                a.arm,
                a.n,
                (0..nb)
                    .map(|i| share(a, i).map_or("withheld".into(), |s| format!("{s:.3}")))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    chart("distribution", svg, title, alt)
}

fn cells(report: &Report) -> Drawn {
    let d = &report.distribution;
    let shown: Vec<_> = d.cells.iter().filter(|c| c.value.is_some()).collect();
    if shown.is_empty() {
        return Ok(None);
    }
    let arms: Vec<&str> = d.by_arm.iter().map(|a| a.arm.as_str()).collect();
    let (lo, hi) = shown
        .iter()
        .filter_map(|c| c.value)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    let span = (hi - lo).max(1e-9);
    let (lo, hi) = (lo - span * 0.08, hi + span * 0.08);
    let n = arms.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 80 + 60 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut ch = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(120)
            .build_cartesian_2d(lo..hi, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        ch.configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                arms.get(i as usize)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            })
            .x_desc(format!("{} per community × period cell", d.metric))
            .draw()
            .map_err(err)?;
        for c in &shown {
            let Some(i) = arms.iter().position(|a| *a == c.arm) else {
                continue;
            };
            // Periods spread vertically within the arm's row.
            let y = i as f64 + ((c.period % 5) as f64 - 2.0) * 0.08;
            let v = c.value.unwrap_or_default();
            ch.draw_series(std::iter::once(Circle::new((v, y), 5, BLACK)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let title = format!("Distribution of {} over community × period cells", d.metric);
    let alt = format!(
        "Dot plot of {} per community × period cell, one row per arm (hollow circles, periods spread vertically); cells with fewer than {} active members are withheld and not drawn. Values: {}.",
        d.metric,
        d.min_cell,
        d.cells
            .iter()
            .map(|c| format!(
                "{} {} period {} {}",
                c.arm,
                c.community,
                c.period,
                c.value.map_or("withheld".into(), |v| format!("{v:.4}"))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    chart("distribution", svg, title, alt)
}

/// 100% stacked bars of every Likert item of every wave, one bar per
/// (item, arm); shades from light (the first point) to dark (the last).
pub(crate) fn likert(report: &Report) -> Drawn {
    let Some(s) = &report.surveys else {
        return Ok(None);
    };
    let rows: Vec<(String, &crate::surveys::LikertArm, usize)> = s
        .waves
        .iter()
        .flat_map(|w| {
            w.likert.iter().flat_map(move |it| {
                it.by_arm.iter().map(move |a| {
                    (
                        format!("{} · {} · {}", w.wave, it.item, a.arm),
                        a,
                        it.labels.len(),
                    )
                })
            })
        })
        .collect();
    if rows.is_empty() || rows.iter().all(|r| r.1.shares.is_none()) {
        return Ok(None);
    }
    let points = rows.iter().map(|r| r.2).max().unwrap_or(1).max(1);
    let labels: Vec<String> = s
        .waves
        .iter()
        .flat_map(|w| &w.likert)
        .find(|it| it.labels.len() == points)
        .map(|it| it.labels.clone())
        .unwrap_or_default();
    let shade = |p: usize| {
        let t = if points > 1 {
            p as f64 / (points - 1) as f64
        } else {
            1.0
        };
        let g = (235.0 - t * 215.0).round() as u8;
        RGBColor(g, g, g)
    };
    let n = rows.len();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (720, 100 + 24 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut ch = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(230)
            .build_cartesian_2d(0.0f64..1.0, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        ch.configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                let name = names.get(n - 1 - i as usize).cloned().unwrap_or_default();
                if rows.get(n - 1 - i as usize).is_some_and(|r| r.1.suppressed) {
                    format!("{name} (withheld)")
                } else {
                    name
                }
            })
            .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
            .x_desc("share of the arm's answers")
            .draw()
            .map_err(err)?;
        for p in 0..points {
            let fill = shade(p);
            let label = labels
                .get(p)
                .cloned()
                .unwrap_or_else(|| (p + 1).to_string());
            ch.draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(err)?
                .label(format!("{} {label}", p + 1))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], fill.filled()));
        }
        for (i, (_, a, _)) in rows.iter().enumerate() {
            let Some(shares) = &a.shares else { continue };
            let y = (n - 1 - i) as f64;
            let mut left = 0.0;
            for (p, sh) in shares.iter().enumerate() {
                let r = [(left, y - 0.35), (left + sh, y + 0.35)];
                ch.draw_series(std::iter::once(Rectangle::new(r, shade(p).filled())))
                    .map_err(err)?;
                ch.draw_series(std::iter::once(Rectangle::new(r, BLACK.stroke_width(1))))
                    .map_err(err)?;
                left += sh;
            }
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let title = "Likert items by arm".to_string();
    let alt = format!(
        "100% stacked horizontal bars, one per wave, item and arm; segments from the first point (lightest, left) to the last (darkest, right), each the share of the arm's answers; arms with fewer than {} answers are withheld and drawn empty. Shares: {}.",
        s.min_cell,
        rows.iter()
            .map(|(name, a, _)| format!(
                "{name} {}",
                a.shares.as_ref().map_or("withheld".into(), |v| v
                    .iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(" "))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    chart("likert", svg, title, alt)
}
