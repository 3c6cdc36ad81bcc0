//! The `[[scales]]` of an instrument file: which items, which scoring,
//! and the published formulas' constraints.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::{array, text};
use super::{Item, ItemKind, Page, Scale, Scoring};
use crate::toml_reader::{ident, Node, Report, Tbl};

const SCORINGS: &[&str] = &["sum", "mean", "sus", "umux_lite", "nps"];

pub(super) fn read_scales(
    cx: &mut impl Report,
    n: &Node,
    pages: &[Page],
    broken: &BTreeSet<String>,
    langs: &[String],
) -> Option<Vec<Scale>> {
    let nodes = array(cx, n, "scales", "an array of tables ([[scales]])")?;
    let items: BTreeMap<&str, &Item> = pages
        .iter()
        .flat_map(|p| p.items.iter())
        .map(|i| (i.key.as_str(), i))
        .collect();
    let mut out = Vec::new();
    let mut keys = BTreeSet::new();
    let mut ok = true;
    for (s, node) in nodes.iter().enumerate() {
        let path = format!("scales[{s}]");
        let Some(t) = Tbl::open(cx, node, &path, &["key", "label", "items", "scoring"]) else {
            ok = false;
            continue;
        };
        let key = ident(cx, &t, "key");
        let label = text(cx, &t, "label", langs);
        let members = t.strings(cx, "items", false);
        let scoring = t
            .choice(cx, "scoring", SCORINGS)
            .map(|(s, _)| match s.as_str() {
                "sum" => Scoring::Sum,
                "mean" => Scoring::Mean,
                "sus" => Scoring::Sus,
                "umux_lite" => Scoring::UmuxLite,
                _ => Scoring::Nps,
            });
        let (Some(key), Some(label), Some(members), Some(scoring)) = (key, label, members, scoring)
        else {
            ok = false;
            continue;
        };
        if !keys.insert(key.clone()) {
            cx.err(
                node.pos,
                &t.field("key"),
                format!("duplicate scale key {key:?}"),
            );
            ok = false;
        }
        let pos = t.get("items").map_or(t.pos, |n| n.pos);
        let field = t.field("items");
        let mut kinds = Vec::new();
        for m in &members {
            match items.get(m.as_str()) {
                Some(i) if i.kind.range().is_some() => kinds.push(*i),
                Some(i) => {
                    cx.err(
                        pos,
                        &field,
                        format!(
                            "{m:?} is a {} item; scales take Likert, NPS or numeric items",
                            i.kind.name()
                        ),
                    );
                    ok = false;
                }
                // Its own problems are reported where it is written.
                None if broken.contains(m) => ok = false,
                None => {
                    cx.err(
                        pos,
                        &field,
                        format!("{m:?} is not an item of this instrument"),
                    );
                    ok = false;
                }
            }
        }
        if kinds.len() == members.len() {
            if let Err(why) = check_formula(scoring, &kinds) {
                cx.err(pos, &field, why);
                ok = false;
            }
        }
        out.push(Scale {
            key,
            label,
            items: members,
            scoring,
        });
    }
    ok.then_some(out)
}

/// The published formulas fix their items' number, kind and coding.
fn check_formula(scoring: Scoring, items: &[&Item]) -> Result<(), String> {
    let likert = |points: u8| {
        items
            .iter()
            .all(|i| matches!(i.kind, ItemKind::Likert { points: p, .. } if p == points))
    };
    let no_reverse = items.iter().all(|i| !i.reverse);
    match scoring {
        Scoring::Sus if items.len() == 10 && likert(5) && no_reverse => Ok(()),
        Scoring::Sus => Err("SUS scoring needs exactly 10 five-point Likert items, none marked reverse (the formula reverses the even items)".into()),
        Scoring::UmuxLite if items.len() == 2 && likert(7) && no_reverse => Ok(()),
        Scoring::UmuxLite => Err("UMUX-Lite scoring needs exactly 2 seven-point Likert items, none marked reverse".into()),
        Scoring::Nps if items.len() == 1 && matches!(items[0].kind, ItemKind::Nps { .. }) => Ok(()),
        Scoring::Nps => Err("NPS scoring needs exactly one nps item".into()),
        Scoring::Sum | Scoring::Mean => Ok(()),
    }
}
