//! Runs flagd's evaluator conformance suite (flagd-testbed `evaluator/`)
//! against `commonlab_core::flags`.
//!
//! ```text
//! cargo run -p commonlab-core --release --example flagd_conformance -- DIR
//! ```
//!
//! `DIR` (or `$COMMONLAB_FLAGD_TESTBED`) holds `flags/testkit-flags.json` and
//! `gherkin/*.feature`. A small Gherkin runner: Feature, Background, Scenario,
//! Scenario Outline with Examples, tags; only the steps those files use.
//! Cases tagged `@fractional-v1` (flagd's legacy bucketing) are skipped.

use commonlab_core::flags::{EvalContext, FlagSet, LoadMode, Resolution, ValueType};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EXCLUDED_TAGS: &[&str] = &["@fractional-v1"];

#[derive(Debug, Clone)]
struct Step {
    text: String,
    line: usize,
    table: Vec<Vec<String>>,
}

#[derive(Debug, Default)]
struct Examples {
    tags: Vec<String>,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

#[derive(Debug, Default)]
struct Scenario {
    name: String,
    line: usize,
    tags: Vec<String>,
    outline: bool,
    steps: Vec<Step>,
    examples: Vec<Examples>,
}

#[derive(Debug, Default)]
struct Feature {
    tags: Vec<String>,
    background: Vec<Step>,
    scenarios: Vec<Scenario>,
}

/// Splits a `| a | b |` row, honouring `\|`, `\\` and `\n` escapes.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cur.push('|'),
                Some('n') => cur.push('\n'),
                Some('\\') => cur.push('\\'),
                Some(other) => {
                    cur.push('\\');
                    cur.push(other);
                }
                None => cur.push('\\'),
            },
            '|' => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    out
}

fn parse_feature(src: &str) -> Result<Feature, String> {
    #[derive(PartialEq)]
    enum In {
        Nothing,
        Background,
        Scenario,
        Examples,
    }
    let mut f = Feature::default();
    let mut pending: Vec<String> = Vec::new();
    let mut state = In::Nothing;
    for (i, raw) in src.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            pending.extend(line.split_whitespace().map(str::to_string));
            continue;
        }
        if line.starts_with("Feature:") {
            f.tags = std::mem::take(&mut pending);
            state = In::Nothing;
        } else if line.starts_with("Background:") {
            state = In::Background;
        } else if let Some(rest) = [
            "Scenario Outline:",
            "Scenario Template:",
            "Scenario:",
            "Example:",
        ]
        .iter()
        .find_map(|k| line.strip_prefix(k).map(|r| (k, r)))
        {
            f.scenarios.push(Scenario {
                name: rest.1.trim().to_string(),
                line: line_no,
                tags: std::mem::take(&mut pending),
                outline: rest.0.starts_with("Scenario Outline")
                    || rest.0.starts_with("Scenario Template"),
                ..Scenario::default()
            });
            state = In::Scenario;
        } else if line.starts_with("Examples:") || line.starts_with("Scenarios:") {
            let sc = f
                .scenarios
                .last_mut()
                .ok_or_else(|| format!("line {line_no}: Examples outside a scenario"))?;
            sc.examples.push(Examples {
                tags: std::mem::take(&mut pending),
                ..Examples::default()
            });
            state = In::Examples;
        } else if line.starts_with('|') {
            let row = cells(line);
            match state {
                In::Examples => {
                    let ex = f
                        .scenarios
                        .last_mut()
                        .and_then(|s| s.examples.last_mut())
                        .ok_or_else(|| format!("line {line_no}: table outside Examples"))?;
                    if ex.header.is_empty() {
                        ex.header = row;
                    } else {
                        ex.rows.push((line_no, row));
                    }
                }
                In::Background | In::Scenario => {
                    let steps = if state == In::Background {
                        &mut f.background
                    } else {
                        &mut f.scenarios.last_mut().ok_or("no scenario")?.steps
                    };
                    steps
                        .last_mut()
                        .ok_or_else(|| format!("line {line_no}: data table without a step"))?
                        .table
                        .push(row);
                }
                In::Nothing => return Err(format!("line {line_no}: unexpected table")),
            }
        } else if let Some(text) = ["Given ", "When ", "Then ", "And ", "But ", "* "]
            .iter()
            .find_map(|k| line.strip_prefix(k))
        {
            let step = Step {
                text: text.trim().to_string(),
                line: line_no,
                table: Vec::new(),
            };
            match state {
                In::Background => f.background.push(step),
                In::Scenario => f
                    .scenarios
                    .last_mut()
                    .ok_or("no scenario")?
                    .steps
                    .push(step),
                _ => return Err(format!("line {line_no}: step outside a scenario")),
            }
        }
        // Anything else is free-form description.
    }
    Ok(f)
}

/// The double-quoted arguments of a step, in order (`\"` is a quote inside one).
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (&mut cur, c) {
            (Some(s), '\\') if chars.peek() == Some(&'"') => {
                s.push('"');
                chars.next();
            }
            (Some(_), '"') => out.extend(cur.take()),
            (Some(s), c) => s.push(c),
            (None, '"') => cur = Some(String::new()),
            (None, _) => {}
        }
    }
    out
}

fn unescape_quotes(s: &str) -> String {
    s.replace("\\\"", "\"")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "Boolean" => Kind::Boolean,
            "String" => Kind::String,
            "Integer" => Kind::Integer,
            "Float" => Kind::Float,
            "Object" => Kind::Object,
            _ => return None,
        })
    }

    fn value_type(self) -> ValueType {
        match self {
            Kind::Boolean => ValueType::Bool,
            Kind::String => ValueType::String,
            Kind::Integer | Kind::Float => ValueType::Number,
            Kind::Object => ValueType::Object,
        }
    }

    /// A value written in a feature file, as the typed JSON value.
    fn parse_value(self, s: &str) -> Result<Value, String> {
        let bad = |_| format!("cannot parse {s:?} as {self:?}");
        Ok(match self {
            Kind::Boolean => Value::Bool(s.parse::<bool>().map_err(|_| bad(()))?),
            Kind::String => Value::String(s.to_string()),
            Kind::Integer => Value::from(s.parse::<i64>().map_err(|_| bad(()))?),
            Kind::Float => Value::from(s.parse::<f64>().map_err(|_| bad(()))?),
            Kind::Object => serde_json::from_str(&unescape_quotes(s)).map_err(|_| bad(()))?,
        })
    }
}

struct Outcome {
    value: Value,
    reason: String,
    error_code: String,
    metadata: Map<String, Value>,
}

struct Case<'f> {
    flags: &'f FlagSet,
    now: i64,
    kind: Kind,
    key: String,
    fallback: Value,
    context: Map<String, Value>,
    outcome: Option<Outcome>,
}

impl Case<'_> {
    fn evaluate(&mut self) {
        let ctx = Value::Object(self.context.clone());
        let r: Resolution<'_> = self
            .flags
            .evaluate(&self.key, &EvalContext::new(&ctx, self.now))
            .expect_type(self.kind.value_type());
        let value = match r.value {
            None => self.fallback.clone(),
            Some(v) => match self.kind {
                Kind::Integer => v.as_i64().map_or(Value::Null, Value::from),
                Kind::Float => v.as_f64().map_or(Value::Null, Value::from),
                _ => v.to_json(),
            },
        };
        self.outcome = Some(Outcome {
            value,
            reason: r.reason.as_str().to_string(),
            error_code: r
                .error
                .as_ref()
                .map_or(String::new(), |e| e.code.as_str().to_string()),
            metadata: r.metadata.clone(),
        });
    }

    fn outcome(&self) -> Result<&Outcome, String> {
        self.outcome
            .as_ref()
            .ok_or_else(|| "the flag was not evaluated".to_string())
    }

    fn run(&mut self, step: &Step) -> Result<(), String> {
        let t = step.text.as_str();
        let q = quoted(t);
        let arg = |i: usize| {
            q.get(i)
                .cloned()
                .ok_or_else(|| format!("step {t:?}: missing argument {i}"))
        };
        if t == "an evaluator" {
            Ok(())
        } else if let Some(rest) = t
            .strip_prefix("a ")
            .filter(|r| r.contains("-flag with key "))
        {
            let ty = rest.split("-flag").next().unwrap_or("");
            self.kind = Kind::parse(ty).ok_or_else(|| format!("unknown flag type {ty:?}"))?;
            self.key = arg(0)?;
            self.fallback = self.kind.parse_value(&arg(1)?)?;
            Ok(())
        } else if t.starts_with("a context containing a nested property") {
            let (outer, inner, value) = (arg(0)?, arg(1)?, arg(2)?);
            let entry = self
                .context
                .entry(outer)
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(m) => {
                    m.insert(inner, Value::String(value));
                    Ok(())
                }
                _ => Err("outer context key is not an object".into()),
            }
        } else if t.starts_with("a context containing a targeting key") {
            self.context
                .insert("targetingKey".into(), Value::String(arg(0)?));
            Ok(())
        } else if t.starts_with("a context containing a key ") {
            let (key, ty, value) = (arg(0)?, arg(1)?, arg(2)?);
            let kind = Kind::parse(&ty).ok_or_else(|| format!("unknown context type {ty:?}"))?;
            self.context.insert(key, kind.parse_value(&value)?);
            Ok(())
        } else if t == "the flag was evaluated with details" {
            self.evaluate();
            Ok(())
        } else if t.starts_with("the resolved details value should be") {
            let expected = self.kind.parse_value(&arg(0)?)?;
            let got = &self.outcome()?.value;
            let same = match (self.kind, &expected, got) {
                (Kind::Float, e, g) => e.as_f64() == g.as_f64(),
                (_, e, g) => e == g,
            };
            if same {
                Ok(())
            } else {
                Err(format!("value: expected {expected}, got {got}"))
            }
        } else if t.starts_with("the reason should be") {
            let expected = arg(0)?;
            let got = &self.outcome()?.reason;
            if *got == expected {
                Ok(())
            } else {
                Err(format!("reason: expected {expected}, got {got}"))
            }
        } else if t.starts_with("the error-code should be") {
            let expected = arg(0)?;
            let got = &self.outcome()?.error_code;
            if *got == expected {
                Ok(())
            } else {
                Err(format!("error code: expected {expected:?}, got {got:?}"))
            }
        } else if t == "the resolved metadata is empty" {
            let m = &self.outcome()?.metadata;
            if m.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "metadata: expected none, got {}",
                    Value::Object(m.clone())
                ))
            }
        } else if t == "the resolved metadata should contain" {
            let m = &self.outcome()?.metadata;
            let mut rows = step.table.iter();
            let header = rows.next().ok_or("metadata table without a header")?;
            let col = |name: &str| {
                header
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| format!("metadata table lacks column {name:?}"))
            };
            let (k, ty, v) = (col("key")?, col("metadata_type")?, col("value")?);
            for row in rows {
                let kind = Kind::parse(&row[ty])
                    .ok_or_else(|| format!("unknown metadata type {:?}", row[ty]))?;
                let expected = kind.parse_value(&row[v])?;
                let got = m.get(&row[k]).cloned().unwrap_or(Value::Null);
                let same = match kind {
                    Kind::Float => expected.as_f64() == got.as_f64(),
                    _ => expected == got,
                };
                if !same {
                    return Err(format!(
                        "metadata {:?}: expected {expected}, got {got}",
                        row[k]
                    ));
                }
            }
            Ok(())
        } else {
            Err(format!("unsupported step {t:?}"))
        }
    }
}

fn substitute(step: &Step, header: &[String], row: &[String]) -> Step {
    let sub = |s: &str| {
        let mut s = s.to_string();
        for (h, v) in header.iter().zip(row) {
            s = s.replace(&format!("<{h}>"), v);
        }
        s
    };
    Step {
        text: sub(&step.text),
        line: step.line,
        table: step
            .table
            .iter()
            .map(|r| r.iter().map(|c| sub(c)).collect())
            .collect(),
    }
}

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("COMMONLAB_FLAGD_TESTBED").map(PathBuf::from));
    let Some(dir) = dir else {
        eprintln!("usage: flagd_conformance DIR (or set COMMONLAB_FLAGD_TESTBED); DIR is flagd-testbed's evaluator/ folder");
        return ExitCode::FAILURE;
    };
    match run(&dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flagd conformance: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<bool, String> {
    let flags_path = dir.join("flags").join("testkit-flags.json");
    let src = std::fs::read_to_string(&flags_path)
        .map_err(|e| format!("cannot read {}: {e}", flags_path.display()))?;
    let (flags, warnings) = FlagSet::from_json_str(&src, LoadMode::Lenient)
        .map_err(|e| format!("{}: {e}", flags_path.display()))?;
    println!(
        "loaded {} flags from {} ({} load warnings)",
        flags.len(),
        flags_path.display(),
        warnings.len()
    );
    for w in &warnings {
        println!("  warning: {w}");
    }
    let gherkin = dir.join("gherkin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&gherkin)
        .map_err(|e| format!("cannot read {}: {e}", gherkin.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "feature"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .feature files in {}", gherkin.display()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let feature = parse_feature(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for sc in &feature.scenarios {
            // (line of the case, tags, steps)
            let mut cases: Vec<(usize, Vec<String>, Vec<Step>)> = Vec::new();
            let base_tags: Vec<String> = feature.tags.iter().chain(&sc.tags).cloned().collect();
            if sc.outline {
                for ex in &sc.examples {
                    let tags: Vec<String> = base_tags.iter().chain(&ex.tags).cloned().collect();
                    for (line, row) in &ex.rows {
                        let steps = feature
                            .background
                            .iter()
                            .chain(&sc.steps)
                            .map(|s| substitute(s, &ex.header, row))
                            .collect();
                        cases.push((*line, tags.clone(), steps));
                    }
                }
            } else {
                let steps = feature
                    .background
                    .iter()
                    .chain(&sc.steps)
                    .cloned()
                    .collect();
                cases.push((sc.line, base_tags, steps));
            }
            for (line, tags, steps) in cases {
                if tags.iter().any(|t| EXCLUDED_TAGS.contains(&t.as_str())) {
                    skipped += 1;
                    continue;
                }
                let mut case = Case {
                    flags: &flags,
                    now,
                    kind: Kind::String,
                    key: String::new(),
                    fallback: Value::Null,
                    context: Map::new(),
                    outcome: None,
                };
                let result = steps
                    .iter()
                    .try_for_each(|s| case.run(s).map_err(|e| (s.line, e)));
                match result {
                    Ok(()) => passed += 1,
                    Err((step_line, e)) => {
                        failed += 1;
                        println!(
                            "FAIL {}:{}: {} (step at line {step_line}, flag {:?}): {e}",
                            file.display(),
                            line,
                            sc.name,
                            case.key
                        );
                    }
                }
            }
        }
    }
    println!(
        "skipped {skipped} cases tagged {}",
        EXCLUDED_TAGS.join(", ")
    );
    println!("flagd conformance: {passed} passed, {failed} failed");
    Ok(failed == 0)
}
