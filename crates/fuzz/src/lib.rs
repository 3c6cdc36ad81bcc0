//! Fuzz targets for what Commonlab reads from people and clients: the flag
//! and targeting compiler (flagd JSON), trial files, survey instruments,
//! event batches, and survey answers. Each target is a function of an
//! input that `bolero` generates (`TypeGenerator`): structured inputs
//! (rule trees, mutations of the valid files in `seeds/`, event objects)
//! reach the deep code paths on the stable toolchain, where no coverage
//! guided engine runs; raw text covers the parsers' first steps.
//!
//! A target's oracle is that it returns (no panic, no unbounded work) and
//! the invariants its doc states. The harness (`tests/fuzz.rs`) runs each
//! on its kept corpus and for a bounded time, under an allocator capped
//! at [`MEMORY_CAP`] bytes (an allocation past it aborts the run).
//! How to run, and the CI step: `docs/security.md`, "Fuzzing".

use bolero::generator::TypeGenerator;
use commonlab_core::flags::{EvalContext, FlagSet, LoadMode};
use commonlab_core::surveys::{parse_instrument, validate_page, Answer, Answers, Instrument};
use serde_json::{json, Map, Value};
use std::sync::LazyLock;

/// Most memory the fuzz test binary may hold at once, every target
/// together.
pub const MEMORY_CAP: usize = 1 << 30;

// ---------------------------------------------------------------- flags

/// A JSONLogic node of flagd's dialect, drawn from the operators and
/// attributes a rule can use.
#[derive(Debug, Clone, TypeGenerator)]
pub enum Node {
    Var(u8),
    Int(i16),
    Float(f32),
    Str(u8),
    Bool(bool),
    Null,
    Ref(u8),
    Op(
        u8,
        #[generator(bolero::produce::<Vec<Node>>().with().len(0usize..=3))] Vec<Node>,
    ),
    Array(#[generator(bolero::produce::<Vec<Node>>().with().len(0usize..=4))] Vec<Node>),
    /// An operator whose argument is one node, not a list.
    Unary(u8, Box<Node>),
}

const VARS: &[&str] = &[
    "targetingKey",
    "community",
    "role",
    "age",
    "tags",
    "version",
    "$flagd.timestamp",
    "$flagd.flagKey",
    "nested.a.b",
    "",
    "missing",
];

const STRS: &[&str] = &[
    "",
    "wiki-a",
    "coop-b",
    "editor",
    "1.2.3",
    "2.0.0-rc.1",
    "v1",
    "on",
    "off",
    "a",
    "b",
    "^",
    "=",
    "control",
];

const OPS: &[&str] = &[
    "and",
    "or",
    "!",
    "!!",
    "==",
    "===",
    "!=",
    "!==",
    "<",
    "<=",
    ">",
    ">=",
    "if",
    "?:",
    "in",
    "cat",
    "substr",
    "merge",
    "map",
    "filter",
    "all",
    "some",
    "none",
    "reduce",
    "missing",
    "missing_some",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
    "+",
    "-",
    "*",
    "/",
    "%",
    "min",
    "max",
    "var",
    "$ref",
    "no-such-op",
];

fn pick<'a>(from: &[&'a str], i: u8) -> &'a str {
    from[usize::from(i) % from.len()]
}

impl Node {
    /// The node as flagd JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Node::Var(i) => json!({ "var": pick(VARS, *i) }),
            Node::Int(n) => json!(n),
            Node::Float(x) => serde_json::Number::from_f64(f64::from(*x))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(i) => json!(pick(STRS, *i)),
            Node::Bool(b) => json!(b),
            Node::Null => Value::Null,
            Node::Ref(i) => json!({ "$ref": format!("e{}", i % 4) }),
            Node::Op(i, args) => {
                let args: Vec<Value> = args.iter().map(Node::to_json).collect();
                let mut m = Map::new();
                m.insert(pick(OPS, *i).to_string(), Value::Array(args));
                Value::Object(m)
            }
            Node::Array(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Unary(i, arg) => {
                let mut m = Map::new();
                m.insert(pick(OPS, *i).to_string(), arg.to_json());
                Value::Object(m)
            }
        }
    }
}

/// One flag of a generated document.
#[derive(Debug, Clone, TypeGenerator)]
pub struct FlagInput {
    pub disabled: bool,
    #[generator(bolero::produce::<Vec<Node>>().with().len(1usize..=3))]
    pub variants: Vec<Node>,
    pub default_variant: u8,
    pub targeting: Option<Node>,
}

/// A flag set: shared evaluators (`e0`…`e4`) and flags.
#[derive(Debug, Clone, TypeGenerator)]
pub struct FlagDocument {
    /// Shared evaluators: an operator and its arguments each.
    #[generator(bolero::produce::<Vec<(u8, Vec<Node>)>>().with().len(0usize..=4))]
    pub evaluators: Vec<(u8, Vec<Node>)>,
    #[generator(bolero::produce::<Vec<FlagInput>>().with().len(1usize..=4))]
    pub flags: Vec<FlagInput>,
    /// A context attribute's value, besides the fixed contexts.
    pub context: Node,
}

impl FlagDocument {
    pub fn to_json(&self) -> Value {
        let evaluators: Map<String, Value> = self
            .evaluators
            .iter()
            .take(5)
            .enumerate()
            .map(|(i, (op, args))| {
                let args = args.iter().take(3).cloned().collect();
                (format!("e{i}"), Node::Op(*op, args).to_json())
            })
            .collect();
        let flags: Map<String, Value> = self
            .flags
            .iter()
            .take(8)
            .enumerate()
            .map(|(i, f)| {
                let variants: Map<String, Value> = f
                    .variants
                    .iter()
                    .take(4)
                    .enumerate()
                    .map(|(j, v)| (format!("v{j}"), v.to_json()))
                    .collect();
                // Mostly a declared variant; sometimes one that is not.
                let n = variants.len().max(1) as u8;
                let default = match f.default_variant {
                    250.. => f.default_variant,
                    d => d % n,
                };
                let mut flag = json!({
                    "state": if f.disabled { "DISABLED" } else { "ENABLED" },
                    "variants": variants,
                    "defaultVariant": format!("v{default}"),
                });
                if let Some(t) = &f.targeting {
                    flag["targeting"] = t.to_json();
                }
                (format!("f{i}"), flag)
            })
            .collect();
        json!({ "$evaluators": evaluators, "flags": flags })
    }
}

fn contexts(extra: &Value) -> Vec<Value> {
    vec![
        json!({}),
        json!({"targetingKey": "member-1", "community": "wiki-a", "role": "editor",
               "age": 31, "tags": ["a", "b"], "version": "1.2.3", "nested": {"a": {"b": 1}}}),
        json!({"targetingKey": "", "community": extra, "role": extra, "age": extra,
               "tags": [extra, extra], "version": extra}),
    ]
}

/// Loads `doc` in both modes; a set that loads evaluates every flag on a
/// few contexts (never panicking, whatever the context), and its exported
/// document loads again.
pub fn flag_document(doc: &FlagDocument) {
    let value = doc.to_json();
    let extra = doc.context.to_json();
    for mode in [LoadMode::Lenient, LoadMode::Strict] {
        let Ok((set, _)) = FlagSet::from_value(&value, mode) else {
            continue;
        };
        for ctx in contexts(&extra) {
            let ctx = EvalContext::new(&ctx, 1_780_000_000);
            for key in set.keys() {
                let _ = set.evaluate(key, &ctx);
            }
            let _ = set.evaluate("no-such-flag", &ctx);
        }
        let again = FlagSet::from_value(&set.to_document(), LoadMode::Lenient);
        assert!(
            again.is_ok(),
            "an exported set does not load again: {again:?}"
        );
    }
}

/// Raw text as a flag document, both modes.
pub fn flag_text(text: &str) {
    for mode in [LoadMode::Lenient, LoadMode::Strict] {
        if let Ok((set, _)) = FlagSet::from_json_str(text, mode) {
            let ctx = json!({"targetingKey": "m"});
            let ctx = EvalContext::new(&ctx, 0);
            for key in set.keys() {
                let _ = set.evaluate(key, &ctx);
            }
        }
    }
}

// ---------------------------------------------------------- text files

/// Edits applied to a seed file: each `(position, operation, byte)`.
#[derive(Debug, Clone, TypeGenerator)]
pub struct Mutation {
    pub seed: u8,
    #[generator(bolero::produce::<Vec<(u16, u8, u8)>>().with().len(0usize..=16))]
    pub edits: Vec<(u16, u8, u8)>,
}

/// Bytes the edits insert: the TOML syntax that matters, and plain text.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "#",
    ".",
    "-",
    "0",
    "1",
    "1e999",
    "-1",
    "true",
    "nan",
    "inf",
    "\"\"\"",
    "[[",
    "]]",
    "\\u0000",
    "é",
    "2026-01-01T00:00:00Z",
    "99999999999999999999",
    " = ",
    "key",
    "arms",
    "weight",
    "design",
    "kind",
];

impl Mutation {
    /// The seed picked, with the edits applied (valid UTF-8).
    pub fn apply(&self, seeds: &[&str]) -> String {
        let mut text: Vec<u8> = seeds[usize::from(self.seed) % seeds.len()]
            .as_bytes()
            .to_vec();
        for &(pos, op, byte) in self.edits.iter().take(64) {
            if text.is_empty() {
                text.push(byte);
                continue;
            }
            let at = usize::from(pos) % text.len();
            match op % 5 {
                0 => text[at] = byte,
                1 => text
                    .splice(at..at, pick(TOKENS, byte).bytes())
                    .for_each(drop),
                2 => {
                    let end = (at + usize::from(byte % 16) + 1).min(text.len());
                    text.drain(at..end);
                }
                3 => {
                    // Repeat a line (a table or key given twice).
                    let start = text[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    let end = text[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(text.len(), |p| at + p + 1);
                    let line = text[start..end].to_vec();
                    text.splice(end..end, line).for_each(drop);
                }
                _ => {
                    let end = (at + usize::from(byte % 32) + 1).min(text.len());
                    text.truncate(end.max(at));
                }
            }
            if text.len() > 64 * 1024 {
                text.truncate(64 * 1024);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

pub const TRIAL_SEEDS: &[&str] = &[
    include_str!("../../core/src/experiments/testdata/valid_hash.toml"),
    include_str!("../../core/src/experiments/testdata/valid_wedge.toml"),
    include_str!("../../core/src/experiments/testdata/valid_cluster.toml"),
    include_str!("../../core/src/experiments/testdata/valid_refs.toml"),
    include_str!("../../../experiments/thanks-button.toml"),
];

pub const SURVEY_SEEDS: &[&str] = &[
    include_str!("../../../surveys/nps.toml"),
    include_str!("../../../surveys/sus.toml"),
    include_str!("../../../surveys/umux-lite.toml"),
    include_str!("../../../surveys/cbpp-community.toml"),
];

/// A trial file: parsed, every error carries a line (a file reader
/// reports where).
pub fn trial_file(src: &str) {
    if let Err(errors) = commonlab_core::experiments::parse_trial(src, "fuzz.toml") {
        assert!(!errors.is_empty(), "an error result with no error");
        for e in &errors {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml:"), "{shown}");
        }
    }
}

/// A survey instrument: parsed, every error names the file; a parsed one
/// renders its page orders.
pub fn survey_file(src: &str) {
    match parse_instrument(src, "fuzz.toml") {
        Ok(i) => {
            for page in 0..i.pages.len() {
                let order = i.page_order(page, 7);
                assert_eq!(order.len(), i.pages[page].items.len());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result with no error");
            for e in &errors {
                assert!(e.to_string().starts_with("fuzz.toml:"), "{e}");
            }
        }
    }
}

// -------------------------------------------------------------- events

/// An event-like JSON value made of plausible and hostile parts.
#[derive(Debug, Clone, TypeGenerator)]
pub struct EventInput {
    #[generator(bolero::produce::<Vec<(u8, Node)>>().with().len(0usize..=4))]
    pub fields: Vec<(u8, Node)>,
    pub id: u8,
    pub timestamp: u8,
    #[generator(bolero::produce::<Vec<(u8, Node)>>().with().len(0usize..=6))]
    pub properties: Vec<(u8, Node)>,
}

const EVENT_FIELDS: &[&str] = &[
    "event_id",
    "unit",
    "community",
    "name",
    "timestamp",
    "properties",
    "ip",
    "",
    "unit ",
];
const EVENT_IDS: &[&str] = &[
    "0190a6b8-0000-7000-8000-000000000001",
    "0190A6B8-0000-7000-8000-000000000001",
    "not-a-uuid",
    "",
    "00000000-0000-0000-0000-000000000000",
];
const TIMESTAMPS: &[&str] = &[
    "2026-11-26T08:00:00Z",
    "2026-11-26T08:00:00.123456789+02:00",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z",
    "yesterday",
    "",
];

impl EventInput {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event_id".into(), json!(pick(EVENT_IDS, self.id)));
        m.insert("unit".into(), json!("member-1"));
        m.insert("name".into(), json!("thanks_given"));
        m.insert("timestamp".into(), json!(pick(TIMESTAMPS, self.timestamp)));
        for (k, v) in self.fields.iter().take(8) {
            m.insert(pick(EVENT_FIELDS, *k).into(), v.to_json());
        }
        let props: Map<String, Value> = self
            .properties
            .iter()
            .take(16)
            .map(|(k, v)| (format!("{}{k}", pick(STRS, *k)), v.to_json()))
            .collect();
        if !props.is_empty() {
            m.insert("properties".into(), Value::Object(props));
        }
        Value::Object(m)
    }
}

/// A batch body in one of the accepted content types.
#[derive(Debug, Clone, TypeGenerator)]
pub struct BatchInput {
    pub ndjson: bool,
    #[generator(bolero::produce::<Vec<EventInput>>().with().len(0usize..=8))]
    pub events: Vec<EventInput>,
    /// Bytes appended (a truncated or corrupted body).
    pub tail: Vec<u8>,
}

/// Parses a batch body and validates each event, as `POST /v1/events`
/// does: an unparseable body is one error; a parsed one gives each event
/// either a stored form or a rejection naming its index.
pub fn event_batch(input: &BatchInput) {
    let mut body: Vec<u8> = if input.ndjson {
        input
            .events
            .iter()
            .map(|e| e.to_json().to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    } else {
        Value::Array(input.events.iter().map(EventInput::to_json).collect())
            .to_string()
            .into_bytes()
    };
    body.extend_from_slice(&input.tail);
    event_body(input.ndjson, &body);
}

/// [`event_batch`] on a body as it comes.
pub fn event_body(ndjson: bool, body: &[u8]) {
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(ct),
    );
    let Ok(events) = commonlab_server::events::api::parse_batch(&headers, body) else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a valid instant");
    for (i, v) in events.iter().enumerate() {
        if let Err(r) = commonlab_server::events::pipeline::validate_event(
            i,
            v,
            now,
            std::time::Duration::from_secs(300),
        ) {
            assert_eq!(r.index, i);
        }
    }
}

// ------------------------------------------------------------- answers

/// Answers to an instrument: item keys (the instrument's, or others) and
/// values of every shape.
#[derive(Debug, Clone, TypeGenerator)]
pub struct AnswersInput {
    pub instrument: u8,
    #[generator(bolero::produce::<Vec<(u8, AnswerInput)>>().with().len(0usize..=24))]
    pub answers: Vec<(u8, AnswerInput)>,
}

#[derive(Debug, Clone, TypeGenerator)]
pub enum AnswerInput {
    Number(f64),
    Small(i8),
    Text(u8, u16),
    Choices(
        #[generator(bolero::produce::<Vec<u8>>().with().len(0usize..=12))] Vec<u8>,
        Option<u8>,
    ),
}

static INSTRUMENTS: LazyLock<Vec<Instrument>> = LazyLock::new(|| {
    SURVEY_SEEDS
        .iter()
        .map(|s| parse_instrument(s, "seed.toml").expect("the shipped instruments parse"))
        .collect()
});

/// Checks generated answers against a shipped instrument, every page and
/// one past the end: never a panic, and every error names an item of the
/// instrument (or none, for an unknown page).
pub fn survey_answers(input: &AnswersInput) {
    let instrument = &INSTRUMENTS[usize::from(input.instrument) % INSTRUMENTS.len()];
    let keys: Vec<&str> = instrument.items().map(|(_, i)| i.key.as_str()).collect();
    let codes = ["1", "2", "other", "", "a", "zz"];
    let mut answers = Answers::new();
    for (k, a) in input.answers.iter().take(32) {
        let key = match keys.get(usize::from(*k)) {
            Some(key) => key.to_string(),
            None => format!("unknown-{k}"),
        };
        let answer = match a {
            AnswerInput::Number(x) => Answer::Number(*x),
            AnswerInput::Small(n) => Answer::Number(f64::from(*n)),
            AnswerInput::Text(c, len) => {
                let base = codes[usize::from(*c) % codes.len()];
                Answer::Text(base.repeat(usize::from(*len % 3000) / base.len().max(1) + 1))
            }
            AnswerInput::Choices(cs, other) => Answer::Choices {
                codes: cs
                    .iter()
                    .take(16)
                    .map(|c| codes[usize::from(*c) % codes.len()].to_string())
                    .collect(),
                other: other.map(|o| "x".repeat(usize::from(o))),
            },
        };
        answers.insert(key, answer);
    }
    for page in 0..=instrument.pages.len() {
        if let Err(errors) = validate_page(instrument, page, &answers) {
            for e in errors {
                assert!(
                    e.item.is_empty() || keys.contains(&e.item.as_str()),
                    "{e:?}"
                );
            }
        }
    }
    // The stored form reads back as it was written.
    let json = serde_json::to_string(&answers).expect("answers serialise");
    if let Ok(back) = serde_json::from_str::<Answers>(&json) {
        assert_eq!(back.len(), answers.len());
    }
}

/// Answers as a page posts them (JSON text), checked against every
/// shipped instrument.
pub fn survey_answers_text(text: &str) {
    let Ok(answers) = serde_json::from_str::<Answers>(text) else {
        return;
    };
    for instrument in INSTRUMENTS.iter() {
        for page in 0..=instrument.pages.len() {
            let _ = validate_page(instrument, page, &answers);
        }
    }
}
