//! `surveys/*.toml` -> [`Instrument`], every problem with file, line,
//! column and field (see `crate::toml_reader`).

use std::collections::{BTreeMap, BTreeSet};

use super::scale_parse::read_scales;
use super::{Choice, Condition, Consent, Instrument, Item, ItemKind, Page, ShowIf, Text};
use crate::toml_reader::{
    as_string, ident, is_ident, join, parse_document, Errors, Kind, Node, Pos, Report, SpecError,
    Tbl,
};

const TOP: &[&str] = &[
    "key",
    "version",
    "languages",
    "title",
    "intro",
    "source",
    "published_scale",
    "consent",
    "label_sets",
    "pages",
    "scales",
];
const PAGE: &[&str] = &["title", "randomise", "items"];
const ITEM: &[&str] = &[
    "key",
    "kind",
    "text",
    "required",
    "reverse",
    "show_if",
    "points",
    "labels",
    "options",
    "other",
    "min",
    "max",
    "step",
    "max_length",
    "low",
    "high",
];
const KINDS: &[&str] = &[
    "likert", "single", "multiple", "numeric", "text", "nps", "ranking",
];

/// The longest free-text answer an instrument may allow.
pub const MAX_TEXT_LENGTH: i64 = 10_000;

/// Parses and validates an instrument file. `file` is only used in errors.
pub fn parse_instrument(src: &str, file: &str) -> Result<Instrument, Vec<SpecError>> {
    let root = parse_document(src, file)?;
    let mut errors = Errors::new(file);
    let instrument = read_instrument(&mut errors, &root);
    errors.finish(instrument, "survey instrument")
}

/// A BCP 47 tag, syntactically: a 2–3 letter primary subtag, then subtags
/// of 1–8 letters or digits, separated by `-`.
fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn read_instrument(cx: &mut Errors<'_>, root: &Node) -> Option<Instrument> {
    let t = Tbl::open(cx, root, "", TOP)?;
    let key = ident(cx, &t, "key");
    let version = t.int(cx, "version", 1, i64::from(u32::MAX));
    // Texts are checked against the languages as written, even when a tag
    // is refused, so that one mistake does not flag every text.
    let written = t.strings(cx, "languages", false);
    let languages = written.clone().and_then(|langs| {
        let n = t.get("languages")?;
        let mut ok = true;
        for l in &langs {
            if !is_language_tag(l) {
                cx.err(
                    n.pos,
                    "languages",
                    format!("{l:?} is not a BCP 47 language tag (e.g. en, es, pt-BR)"),
                );
                ok = false;
            }
        }
        ok.then_some(langs)
    });
    let langs: Vec<String> = written
        .unwrap_or_default()
        .into_iter()
        .filter(|l| is_language_tag(l))
        .collect();
    let title = text(cx, &t, "title", &langs);
    let intro = text(cx, &t, "intro", &langs);
    let source = t.string(cx, "source");
    let published_scale = t
        .opt_bool(cx, "published_scale")
        .map(|b| b.unwrap_or(false));
    let consent = t
        .req(cx, "consent", "a table with version and text")
        .and_then(|n| {
            let c = Tbl::open(cx, n, "consent", &["version", "text"])?;
            let version = c.string(cx, "version");
            let text = text(cx, &c, "text", &langs);
            Some(Consent {
                version: version?,
                text: text?,
            })
        });
    let label_sets = match t.get("label_sets") {
        None => Some(BTreeMap::new()),
        Some(n) => read_label_sets(cx, n, &langs),
    };
    let sets = label_sets.clone().unwrap_or_default();
    // Scales are checked against the items that were read, even when
    // others were not, so that one run reports every problem.
    let (read, broken, pages_ok) = t
        .req(cx, "pages", "an array of tables ([[pages]])")
        .map_or((Vec::new(), BTreeSet::new(), false), |n| {
            read_pages(cx, n, &langs, &sets)
        });
    label_sets?;
    let scales = match t.get("scales") {
        None => Some(Vec::new()),
        Some(n) => read_scales(cx, n, &read, &broken, &langs),
    };
    let pages = pages_ok.then_some(read);
    Some(Instrument {
        key: key?,
        version: u32::try_from(version?).ok()?,
        languages: languages?,
        title: title?,
        intro: intro?,
        source: source?,
        published_scale: published_scale?,
        consent: consent?,
        pages: pages?,
        scales: scales?,
    })
}

/// A table of non-empty strings with exactly the instrument's languages.
fn as_text(cx: &mut impl Report, n: &Node, field: &str, langs: &[String]) -> Option<Text> {
    let allowed: Vec<&str> = langs.iter().map(String::as_str).collect();
    let t = Tbl::open(cx, n, field, &allowed)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for l in langs {
        match t.get(l) {
            Some(v) => match as_string(cx, v, &t.field(l)) {
                Some(s) => {
                    out.insert(l.clone(), s);
                }
                None => ok = false,
            },
            None => {
                cx.err(n.pos, &t.field(l), format!("missing the {l:?} translation"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub(super) fn text(
    cx: &mut impl Report,
    t: &Tbl<'_>,
    name: &str,
    langs: &[String],
) -> Option<Text> {
    let n = t.req(cx, name, "a table of texts by language")?;
    as_text(cx, n, &t.field(name), langs)
}

pub(super) fn array<'n>(
    cx: &mut impl Report,
    n: &'n Node,
    field: &str,
    what: &str,
) -> Option<&'n [Node]> {
    match &n.kind {
        Kind::Array(items) if !items.is_empty() => Some(items),
        Kind::Array(_) => {
            cx.err(n.pos, field, "must not be empty");
            None
        }
        _ => {
            cx.wrong_type(n, field, what);
            None
        }
    }
}

/// Likert labels by language, by name.
type LabelSets = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// `[label_sets.NAME]` tables: label lists shared by Likert items
/// (`labels = "NAME"`).
fn read_label_sets(cx: &mut impl Report, n: &Node, langs: &[String]) -> Option<LabelSets> {
    let Kind::Table(entries) = &n.kind else {
        cx.wrong_type(n, "label_sets", "a table of label sets");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, node) in entries {
        let field = join("label_sets", name);
        if !is_ident(name) {
            cx.err(node.pos, &field, format!("{name:?} is not a valid name"));
            ok = false;
            continue;
        }
        match label_lists(cx, node, &field, langs, None) {
            Some(l) => {
                out.insert(name.clone(), l);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A table of label lists with exactly the instrument's languages, each of
/// `points` labels when given, all of the same length.
fn label_lists(
    cx: &mut impl Report,
    n: &Node,
    field: &str,
    langs: &[String],
    points: Option<i64>,
) -> Option<BTreeMap<String, Vec<String>>> {
    let allowed: Vec<&str> = langs.iter().map(String::as_str).collect();
    let lt = Tbl::open(cx, n, field, &allowed)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ok = true;
    for l in langs {
        let Some(list) = lt.get(l) else {
            cx.err(
                n.pos,
                &lt.field(l),
                format!("missing the {l:?} translation"),
            );
            ok = false;
            continue;
        };
        let Some(v) = lt.strings(cx, l, false) else {
            ok = false;
            continue;
        };
        let want = points
            .map(|p| p as usize)
            .or_else(|| out.values().next().map(Vec::len));
        if let Some(want) = want {
            if v.len() != want {
                cx.err(
                    list.pos,
                    &lt.field(l),
                    format!(
                        "{} labels where {want} are needed; label every point",
                        v.len()
                    ),
                );
                ok = false;
            }
        }
        out.insert(l.clone(), v);
    }
    ok.then_some(out)
}

fn read_pages(
    cx: &mut impl Report,
    n: &Node,
    langs: &[String],
    sets: &LabelSets,
) -> (Vec<Page>, BTreeSet<String>, bool) {
    let Some(pages) = array(cx, n, "pages", "an array of tables ([[pages]])") else {
        return (Vec::new(), BTreeSet::new(), false);
    };
    // Item key -> (page, position, kind) of the items read so far: show_if
    // may only look back.
    let mut earlier: BTreeMap<String, ItemKind> = BTreeMap::new();
    // Keys of items that could not be read (their problems are reported).
    let mut broken = BTreeSet::new();
    let mut out = Vec::new();
    let mut ok = true;
    for (p, page) in pages.iter().enumerate() {
        let path = format!("pages[{p}]");
        let Some(t) = Tbl::open(cx, page, &path, PAGE) else {
            ok = false;
            continue;
        };
        let title = match t.get("title") {
            None => Some(None),
            Some(n) => as_text(cx, n, &t.field("title"), langs).map(Some),
        };
        let randomise = t.opt_bool(cx, "randomise").map(|b| b.unwrap_or(false));
        let items = t
            .req(cx, "items", "an array of tables ([[pages.items]])")
            .and_then(|n| array(cx, n, &t.field("items"), "an array of tables"))
            .map(|nodes| {
                let mut items = Vec::new();
                for (i, node) in nodes.iter().enumerate() {
                    let field = format!("{path}.items[{i}]");
                    let item = read_item(cx, node, &field, langs, sets, &earlier);
                    if item.is_none() {
                        if let Some(key) = key_of(node) {
                            if earlier.contains_key(&key) || !broken.insert(key.clone()) {
                                cx.err(
                                    node.pos,
                                    &join(&field, "key"),
                                    format!("duplicate item key {key:?}"),
                                );
                            }
                        }
                    }
                    if let Some(item) = item {
                        if earlier.contains_key(&item.key) || broken.contains(&item.key) {
                            cx.err(
                                node.pos,
                                &join(&field, "key"),
                                format!("duplicate item key {:?}", item.key),
                            );
                            continue;
                        }
                        earlier.insert(item.key.clone(), item.kind.clone());
                        items.push(item);
                    } else {
                        ok = false;
                    }
                }
                items
            });
        match (title, randomise, items) {
            (Some(title), Some(randomise), Some(items)) => out.push(Page {
                title,
                randomise,
                items,
            }),
            _ => ok = false,
        }
    }
    (out, broken, ok)
}

/// The `key` string of an item table, however broken the rest is.
fn key_of(node: &Node) -> Option<String> {
    let Kind::Table(entries) = &node.kind else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match (&**k, &v.kind) {
        ("key", Kind::Str(s)) => Some(s.clone()),
        _ => None,
    })
}

fn read_item(
    cx: &mut impl Report,
    n: &Node,
    path: &str,
    langs: &[String],
    sets: &LabelSets,
    earlier: &BTreeMap<String, ItemKind>,
) -> Option<Item> {
    let t = Tbl::open(cx, n, path, ITEM)?;
    let key = ident(cx, &t, "key");
    let text = text(cx, &t, "text", langs);
    let required = t.opt_bool(cx, "required").map(|b| b.unwrap_or(false));
    let reverse = t.opt_bool(cx, "reverse").map(|b| b.unwrap_or(false));
    let kind_name = t.choice(cx, "kind", KINDS);
    let kind = kind_name
        .as_ref()
        .and_then(|(k, _)| read_kind(cx, &t, k, langs, sets));
    // Fields that belong to other kinds are refused, so a misplaced one
    // never passes silently.
    if let Some((kind_name, _)) = &kind_name {
        let own: &[&str] = match kind_name.as_str() {
            "likert" => &["points", "labels"],
            "single" | "ranking" => &["options"],
            "multiple" => &["options", "other"],
            "numeric" => &["min", "max", "step"],
            "text" => &["max_length"],
            _ => &["low", "high"],
        };
        for f in [
            "points",
            "labels",
            "options",
            "other",
            "min",
            "max",
            "step",
            "max_length",
            "low",
            "high",
        ] {
            if let Some(v) = t.get(f) {
                if !own.contains(&f) {
                    cx.err(
                        v.pos,
                        &t.field(f),
                        format!("not a field of a {kind_name} item"),
                    );
                }
            }
        }
        if reverse == Some(true) && kind_name != "likert" {
            let pos = t.get("reverse").map_or(t.pos, |v| v.pos);
            cx.err(
                pos,
                &t.field("reverse"),
                format!("only Likert items can be reverse-coded, not a {kind_name} item"),
            );
        }
    }
    let show_if = match t.get("show_if") {
        None => Some(None),
        Some(s) => read_show_if(cx, s, &t.field("show_if"), earlier).map(Some),
    };
    Some(Item {
        key: key?,
        text: text?,
        kind: kind?,
        required: required?,
        reverse: reverse?,
        show_if: show_if?,
    })
}

fn read_kind(
    cx: &mut impl Report,
    t: &Tbl<'_>,
    kind: &str,
    langs: &[String],
    sets: &LabelSets,
) -> Option<ItemKind> {
    match kind {
        "likert" => {
            let points = t.int(cx, "points", 2, 11);
            let field = t.field("labels");
            let labels = t
                .req(
                    cx,
                    "labels",
                    "a label set's name or a table of label lists by language",
                )
                .and_then(|n| match &n.kind {
                    Kind::Str(name) => match sets.get(name) {
                        Some(set) => {
                            let len = set.values().next().map_or(0, Vec::len);
                            if points.is_some_and(|p| p as usize != len) {
                                cx.err(
                                    n.pos,
                                    &field,
                                    format!(
                                        "label set {name:?} has {len} labels, not {}",
                                        points.unwrap_or(0)
                                    ),
                                );
                                return None;
                            }
                            Some(set.clone())
                        }
                        None => {
                            let known: Vec<&str> = sets.keys().map(String::as_str).collect();
                            cx.err(
                                n.pos,
                                &field,
                                format!("no label set {name:?} (label_sets: {})", known.join(", ")),
                            );
                            None
                        }
                    },
                    _ => label_lists(cx, n, &field, langs, points),
                });
            Some(ItemKind::Likert {
                points: u8::try_from(points?).ok()?,
                labels: labels?,
            })
        }
        "single" | "ranking" => {
            let options = options(cx, t, langs)?;
            Some(if kind == "single" {
                ItemKind::Single { options }
            } else {
                ItemKind::Ranking { options }
            })
        }
        "multiple" => {
            let options = options(cx, t, langs);
            let other = t.opt_bool(cx, "other").map(|b| b.unwrap_or(false));
            Some(ItemKind::Multiple {
                options: options?,
                other: other?,
            })
        }
        "numeric" => {
            let min = t.opt_number(cx, "min", -1e12, 1e12);
            let max = t.opt_number(cx, "max", -1e12, 1e12);
            let step = t.opt_number(cx, "step", 1e-9, 1e12);
            let (min, max, step) = (min?, max?, step?);
            let (Some(min), Some(max)) = (min, max) else {
                t.missing(cx, if min.is_none() { "min" } else { "max" }, "a number");
                return None;
            };
            if min >= max {
                let pos = t.get("max").map_or(t.pos, |n| n.pos);
                cx.err(pos, &t.field("max"), format!("must be above min ({min})"));
                return None;
            }
            Some(ItemKind::Numeric {
                min,
                max,
                step: step.unwrap_or(1.0),
            })
        }
        "text" => {
            let max_length = t.int(cx, "max_length", 1, MAX_TEXT_LENGTH)?;
            Some(ItemKind::Text {
                max_length: max_length as u32,
            })
        }
        "nps" => {
            let low = text(cx, t, "low", langs);
            let high = text(cx, t, "high", langs);
            Some(ItemKind::Nps {
                low: low?,
                high: high?,
            })
        }
        _ => None,
    }
}

fn options(cx: &mut impl Report, t: &Tbl<'_>, langs: &[String]) -> Option<Vec<Choice>> {
    let n = t.req(cx, "options", "an array of tables with code and label")?;
    let field = t.field("options");
    let nodes = array(cx, n, &field, "an array of tables with code and label")?;
    if nodes.len() < 2 {
        cx.err(n.pos, &field, "needs at least two options");
        return None;
    }
    let mut out = Vec::new();
    let mut codes = BTreeSet::new();
    let mut ok = true;
    for (i, node) in nodes.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let Some(o) = Tbl::open(cx, node, &path, &["code", "label"]) else {
            ok = false;
            continue;
        };
        let code = ident(cx, &o, "code");
        let label = text(cx, &o, "label", langs);
        match (code, label) {
            (Some(code), Some(label)) => {
                if !codes.insert(code.clone()) {
                    cx.err(
                        node.pos,
                        &o.field("code"),
                        format!("duplicate code {code:?}"),
                    );
                    ok = false;
                }
                out.push(Choice { code, label });
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_show_if(
    cx: &mut impl Report,
    n: &Node,
    field: &str,
    earlier: &BTreeMap<String, ItemKind>,
) -> Option<ShowIf> {
    let t = Tbl::open(cx, n, field, &["item", "equals", "in", "gte", "lte"])?;
    let item = t.string(cx, "item")?;
    let item_pos = t.get("item").map_or(t.pos, |n| n.pos);
    let Some(kind) = earlier.get(&item) else {
        let why = if is_ident(&item) {
            "is not an earlier item (show_if may only refer to items before it)"
        } else {
            "is not an item key"
        };
        cx.err(item_pos, &t.field("item"), format!("{item:?} {why}"));
        return None;
    };
    let given: Vec<&str> = ["equals", "in", "gte", "lte"]
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    if given.len() != 1 {
        cx.err(t.pos, field, "needs exactly one of equals, in, gte, lte");
        return None;
    }
    let op = given[0];
    let node = t.get(op)?;
    let codes = |kind: &ItemKind| -> Option<Vec<String>> {
        match kind {
            ItemKind::Single { options } | ItemKind::Multiple { options, .. } => {
                Some(options.iter().map(|o| o.code.clone()).collect())
            }
            _ => None,
        }
    };
    let check_code = |cx: &mut dyn FnMut(Pos, String), code: &str, pos: Pos| match codes(kind) {
        Some(c) if c.iter().any(|x| x == code) => true,
        Some(c) => {
            cx(
                pos,
                format!(
                    "{code:?} is not an option of {item:?} (options: {})",
                    c.join(", ")
                ),
            );
            false
        }
        None => {
            cx(
                pos,
                format!(
                    "{item:?} is a {} item; equals and in need a choice item",
                    kind.name()
                ),
            );
            false
        }
    };
    let f = t.field(op);
    let mut report = |pos: Pos, m: String| cx.err(pos, &f, m);
    let condition = match op {
        "equals" => {
            let Kind::Str(code) = &node.kind else {
                report(
                    node.pos,
                    format!("expected a string, found {}", node.describe()),
                );
                return None;
            };
            check_code(&mut report, code, node.pos).then(|| Condition::Equals(code.clone()))?
        }
        "in" => {
            let Kind::Array(items) = &node.kind else {
                report(
                    node.pos,
                    format!("expected an array of strings, found {}", node.describe()),
                );
                return None;
            };
            if !matches!(kind, ItemKind::Single { .. }) {
                report(
                    node.pos,
                    format!(
                        "{item:?} is a {} item; in needs a single-choice item",
                        kind.name()
                    ),
                );
                return None;
            }
            let mut out = Vec::new();
            for v in items {
                match &v.kind {
                    Kind::Str(code) if check_code(&mut report, code, v.pos) => {
                        out.push(code.clone())
                    }
                    Kind::Str(_) => return None,
                    _ => {
                        report(v.pos, format!("expected a string, found {}", v.describe()));
                        return None;
                    }
                }
            }
            Condition::In(out)
        }
        _ => {
            let value = match &node.kind {
                Kind::Int(i) => *i as f64,
                Kind::Float(x) if x.is_finite() => *x,
                _ => {
                    report(
                        node.pos,
                        format!("expected a number, found {}", node.describe()),
                    );
                    return None;
                }
            };
            if kind.range().is_none() {
                report(
                    node.pos,
                    format!(
                        "{item:?} is a {} item; gte and lte need a Likert, NPS or numeric item",
                        kind.name()
                    ),
                );
                return None;
            }
            if op == "gte" {
                Condition::Gte(value)
            } else {
                Condition::Lte(value)
            }
        }
    };
    Some(ShowIf { item, condition })
}
