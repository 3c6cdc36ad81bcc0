//! The rows a design produced, as a table (`commonlab analyze --trial KEY
//! --rows` prints it as CSV) so a reviewer can re-run them through any
//! other tool.
//!
//! - `hash`: one row per (metric, arm, community) cell of sufficient
//!   statistics (`metric,arm,community,n,sum,sum_squares,x_sum,
//!   x_sum_squares,xy_sum,d_sum,d_sum_squares,md_sum,dx_sum`): the design's
//!   analysis needs nothing finer.
//! - `blocked`: one row per (metric, member): `metric,unit,arm,stratum,
//!   community,value,covariate,denominator`.
//! - `cluster`, `stepped_wedge`: one row per (metric, community, period):
//!   `metric,community,period,arm,treated,members,value`.

use super::community::community_rows;
use super::fetch::{MetricRows, StoredTrial};
use super::members::stratum_of;

/// A header and its records, every value as text.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsTable {
    pub header: Vec<&'static str>,
    pub records: Vec<Vec<String>>,
}

fn num(x: f64) -> String {
    // The shortest text that reads back as the same f64.
    format!("{x:?}")
}

pub fn rows_table(t: &StoredTrial) -> RowsTable {
    let mut records = Vec::new();
    let header: Vec<&'static str> = match t.spec.design.kind() {
        "hash" => vec![
            "metric",
            "arm",
            "community",
            "n",
            "sum",
            "sum_squares",
            "x_sum",
            "x_sum_squares",
            "xy_sum",
            "d_sum",
            "d_sum_squares",
            "md_sum",
            "dx_sum",
        ],
        "blocked" => vec![
            "metric",
            "unit",
            "arm",
            "stratum",
            "community",
            "value",
            "covariate",
            "denominator",
        ],
        _ => vec![
            "metric",
            "community",
            "period",
            "arm",
            "treated",
            "members",
            "value",
        ],
    };
    for d in &t.metrics {
        let name = d.metric.name.clone();
        match &d.rows {
            MetricRows::Cells(cells) => {
                for c in cells {
                    records.push(vec![
                        name.clone(),
                        c.arm.clone(),
                        c.community.clone().unwrap_or_default(),
                        c.n.to_string(),
                        num(c.sum),
                        num(c.sum_squares),
                        num(c.x_sum),
                        num(c.x_sum_squares),
                        num(c.xy_sum),
                        num(c.d_sum),
                        num(c.d_sum_squares),
                        num(c.md_sum),
                        num(c.dx_sum),
                    ]);
                }
            }
            MetricRows::Members(members) => {
                for v in members {
                    records.push(vec![
                        name.clone(),
                        v.unit.clone(),
                        v.arm.clone(),
                        stratum_of(v),
                        v.community.clone().unwrap_or_default(),
                        num(v.y),
                        num(v.x),
                        num(v.d),
                    ]);
                }
            }
            MetricRows::Communities { .. } => {
                for r in community_rows(t, d) {
                    records.push(vec![
                        name.clone(),
                        r.community,
                        r.period.to_string(),
                        r.arm,
                        r.treated.to_string(),
                        r.members.to_string(),
                        num(r.value),
                    ]);
                }
            }
        }
    }
    RowsTable { header, records }
}
