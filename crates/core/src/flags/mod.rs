//! Feature flags in flagd's flag-definition format, and their evaluation.
//!
//! A document looks like
//! `{"flags": {key: flag, ...}, "$evaluators": {name: rule}, "metadata": {...}}`
//! (flagd's daemon format also allows `"flags"` to be an array of flags with a
//! `"key"`). A flag has a `state` (`ENABLED`/`DISABLED`), typed `variants`, an
//! optional `defaultVariant`, optional `targeting` (JSONLogic plus flagd's
//! `fractional`, `sem_ver`, `starts_with`, `ends_with` and `$ref`) and flat
//! `metadata`.
//!
//! Commonlab extends a flag with `"cohorts"`: an ordered list of
//! `{"name", "attribute", "values", "variant"}` overrides checked before the
//! targeting rule: when the context attribute (a dotted path, like `var`) is a
//! string or number equal to one of `values`, the flag resolves to `variant`.
//! [`FlagSet::to_flagd_document`] inlines them into plain flagd targeting.
//!
//! Loading compiles every rule once ([`FlagSet::from_json_str`]), each
//! shared evaluator once for all the rules that `$ref` it, and refuses a
//! document whose rules would cost too much to evaluate or nest too deep
//! ([`MAX_RULE_COST`], [`MAX_SET_COST`], [`MAX_RULE_DEPTH`]; in either load
//! mode, naming the evaluator or flag); [`FlagSet::evaluate`] then walks
//! the compiled tree, within a budget that the context cannot exceed (a
//! flag that runs out fails with GENERAL). Evaluating an ordinary
//! rule allocates nothing: values borrow from the rule and the context, and
//! `fractional` hashes `flagKey + targetingKey` by streaming both slices.
//!
//! Everything here is pure: the caller passes the clock in [`EvalContext`].
//!
//! # Resolution rules
//!
//! In order: unknown key -> FLAG_NOT_FOUND; `DISABLED` -> reason DISABLED, no
//! value; a context that is not an object (or a non-string `targetingKey`)
//! -> INVALID_CONTEXT; the first matching cohort -> its variant,
//! TARGETING_MATCH, [`Resolution::cohort`] set; no targeting -> the default
//! variant with STATIC (DEFAULT and no value when there is no default
//! variant); a rule that could not be compiled (unknown operator or `$ref`)
//! -> PARSE_ERROR; otherwise the rule's result: null -> the default variant
//! (or none) with DEFAULT, a string names a variant, `true`/`false` name the
//! variants `"true"`/`"false"`, a number names the variant spelled like it;
//! SPLIT when the result came from `fractional` (directly or through `if`
//! branches), TARGETING_MATCH otherwise; a name that is not a variant, or an
//! array/object result -> GENERAL.
//!
//! JSONLogic follows json-logic-js (truthiness, `==` coercions, `if` chains,
//! `var` defaults); the custom operators follow flagd: `fractional` uses
//! flagd's current integer bucketing (`(murmur3(value) * total) >> 32`),
//! bucketing on `flagKey + targetingKey` when there is no bucketing
//! expression or it evaluates to null, and returns null (so the default
//! variant with reason DEFAULT, as flagd answers) without a targeting key,
//! on all-zero weights or on invalid weights; `sem_ver`,
//! `starts_with` and `ends_with` return null on invalid input.

mod flag;
mod keys;
mod load;
mod locate;
mod logic;
pub mod murmur3;
mod rule;
mod semver;
mod value;

#[cfg(test)]
mod tests;

pub use flag::{Cohort, Flag};
pub use keys::{check_new_key, position_of, MAX_KEY_LEN};
pub use logic::{MAX_RULE_COST, MAX_RULE_DEPTH, MAX_SET_COST};
pub use rule::Rule;
pub use value::{FlagValue, ValueType};

use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Flag-set or flag metadata: a flat map of booleans, strings and numbers.
pub type Metadata = serde_json::Map<String, Value>;

/// How strictly [`FlagSet::from_json_str`] treats problems that flagd itself
/// only logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Like flagd: schema problems become [`LoadWarning`]s and the flag still
    /// loads where it can (a broken targeting rule evaluates to PARSE_ERROR).
    Lenient,
    /// Any warning is an error (for the management API).
    Strict,
}

/// A problem found while loading that did not prevent loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// JSON pointer to the offending value, e.g. `/flags/my-flag/targeting`.
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// Why a document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", ParseError::prefix(*.line, *.column, .pointer), .message)]
pub struct ParseError {
    /// 1-based; 0 when unknown (e.g. loading from a `Value`).
    pub line: usize,
    /// 1-based, in characters; 0 when unknown.
    pub column: usize,
    /// JSON pointer to the offending value; empty for syntax errors.
    pub pointer: String,
    pub message: String,
}

impl ParseError {
    fn prefix(line: usize, column: usize, pointer: &str) -> String {
        let mut p = String::new();
        if line > 0 {
            p = format!("line {line}, column {column}: ");
        }
        if !pointer.is_empty() {
            p.push_str(pointer);
            p.push_str(": ");
        }
        p
    }
}

/// `ENABLED` or `DISABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagState {
    Enabled,
    Disabled,
}

impl FlagState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagState::Enabled => "ENABLED",
            FlagState::Disabled => "DISABLED",
        }
    }
}

/// OpenFeature resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting ran and returned null: the default variant (or the caller's default).
    Default,
    /// Targeting (or a cohort) chose the variant.
    TargetingMatch,
    /// `fractional` chose the variant (pseudorandom assignment).
    Split,
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(Reason, ErrorCode, FlagState);

/// An evaluation error: an OpenFeature code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: ErrorCode,
    pub detail: Cow<'static, str>,
}

impl EvalError {
    pub fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Self {
        EvalError {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for EvalError {}

static NO_CONTEXT: Value = Value::Null;

/// What a flag is evaluated against: the OFREP context object (which may
/// contain `"targetingKey"`) and the current time, passed in by the caller.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    context: &'a Value,
    now: i64,
    targeting_key: Option<&'a str>,
    invalid: Option<&'static str>,
}

impl<'a> EvalContext<'a> {
    /// `context` should be an object (or null for none); anything else makes
    /// evaluations fail with INVALID_CONTEXT, as does a non-string `targetingKey`.
    /// `now_unix_secs` is what `{"var": "$flagd.timestamp"}` returns.
    pub fn new(context: &'a Value, now_unix_secs: i64) -> Self {
        let mut invalid = None;
        let mut targeting_key = None;
        match context {
            Value::Object(m) => match m.get("targetingKey") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => targeting_key = Some(s.as_str()),
                Some(_) => invalid = Some("\"targetingKey\" must be a string"),
            },
            Value::Null => {}
            _ => invalid = Some("the evaluation context must be a JSON object"),
        }
        EvalContext {
            context,
            now: now_unix_secs,
            targeting_key,
            invalid,
        }
    }

    /// An empty context.
    pub fn empty(now_unix_secs: i64) -> EvalContext<'static> {
        EvalContext::new(&NO_CONTEXT, now_unix_secs)
    }

    pub fn targeting_key(&self) -> Option<&'a str> {
        self.targeting_key
    }

    pub fn context(&self) -> &'a Value {
        self.context
    }

    pub fn now_unix_secs(&self) -> i64 {
        self.now
    }
}

/// The outcome of evaluating a flag. Borrows from the [`FlagSet`].
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'a> {
    /// `None`: use the caller's default value.
    pub value: Option<&'a FlagValue>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error: Option<EvalError>,
    /// Flag-set metadata merged with the flag's (the flag's entries win); the
    /// set's metadata alone for FLAG_NOT_FOUND.
    pub metadata: &'a Metadata,
    /// The cohort override that chose the variant, if any.
    pub cohort: Option<&'a str>,
}

impl<'a> Resolution<'a> {
    fn error(
        code: ErrorCode,
        detail: impl Into<Cow<'static, str>>,
        metadata: &'a Metadata,
    ) -> Self {
        Resolution {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some(EvalError::new(code, detail)),
            metadata,
            cohort: None,
        }
    }

    /// Turns a value of another type into a TYPE_MISMATCH error (value and
    /// variant `None`), as an OpenFeature SDK does for typed evaluation.
    pub fn expect_type(self, t: ValueType) -> Self {
        match self.value {
            Some(v) if v.value_type() != t => {
                let detail = format!(
                    "flag value is of type {}, not {}",
                    v.value_type().as_str(),
                    t.as_str()
                );
                Resolution::error(ErrorCode::TypeMismatch, detail, self.metadata)
            }
            _ => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// A small deterministic string hasher (FxHash's mixing step) for the flag
/// index: keys are chosen by whoever edits the flag set, so hash flooding is
/// not a concern, and no random state is needed.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ rest.len() as u64).wrapping_mul(K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyIndex = HashMap<Box<str>, usize, BuildHasherDefault<KeyHasher>>;

/// A compiled, immutable set of flags.
#[derive(Debug, Default)]
pub struct FlagSet {
    /// Sorted by key.
    flags: Vec<Flag>,
    /// Key -> position in `flags`.
    index: KeyIndex,
    metadata: Metadata,
    /// Shared evaluators as loaded, for [`FlagSet::to_document`].
    evaluators: serde_json::Map<String, Value>,
}

impl FlagSet {
    pub fn empty() -> FlagSet {
        FlagSet::default()
    }

    fn new(
        mut flags: Vec<Flag>,
        metadata: Metadata,
        evaluators: serde_json::Map<String, Value>,
    ) -> FlagSet {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let index = flags
            .iter()
            .enumerate()
            .map(|(i, f)| (f.key.as_str().into(), i))
            .collect();
        FlagSet {
            flags,
            index,
            metadata,
            evaluators,
        }
    }

    /// Parses and compiles a document. Syntax errors carry serde_json's line
    /// and column; semantic errors the position of the offending value.
    pub fn from_json_str(
        src: &str,
        mode: LoadMode,
    ) -> Result<(FlagSet, Vec<LoadWarning>), ParseError> {
        let doc: Value = serde_json::from_str(src).map_err(|e| ParseError {
            line: e.line(),
            column: e.column(),
            pointer: String::new(),
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or("")
                .to_string(),
        })?;
        load::load(&doc, mode, Some(src))
    }

    /// Compiles an already parsed document (errors have line and column 0).
    pub fn from_value(
        doc: &Value,
        mode: LoadMode,
    ) -> Result<(FlagSet, Vec<LoadWarning>), ParseError> {
        load::load(doc, mode, None)
    }

    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.index.get(key).map(|&i| &self.flags[i])
    }

    /// Flag keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.key.as_str())
    }

    /// Flags, sorted by key.
    pub fn flags(&self) -> impl Iterator<Item = &Flag> {
        self.flags.iter()
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The flag set's own metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Whether any flag's answer may depend on the time of evaluation
    /// (see [`Flag::reads_clock`]): its answers may change every second.
    pub fn reads_clock(&self) -> bool {
        self.flags.iter().any(Flag::reads_clock)
    }

    /// Evaluates flag `key`.
    pub fn evaluate<'a>(&'a self, key: &str, ctx: &EvalContext<'_>) -> Resolution<'a> {
        match self.get(key) {
            Some(flag) => flag.evaluate(ctx),
            None => Resolution::error(ErrorCode::FlagNotFound, "flag not found", &self.metadata),
        }
    }

    /// The document as loaded, with flags in key order and the `cohorts`
    /// extension; loading it again gives the same flag set.
    pub fn to_document(&self) -> Value {
        self.document(false)
    }

    /// Plain flagd: cohorts become a leading `if`/`in` chain in targeting.
    pub fn to_flagd_document(&self) -> Value {
        self.document(true)
    }

    fn document(&self, flagd: bool) -> Value {
        let flags = self
            .flags
            .iter()
            .map(|f| (f.key.clone(), f.json(flagd)))
            .collect();
        let mut doc = serde_json::Map::new();
        doc.insert("flags".into(), Value::Object(flags));
        if !self.evaluators.is_empty() {
            doc.insert("$evaluators".into(), Value::Object(self.evaluators.clone()));
        }
        if !self.metadata.is_empty() {
            doc.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        Value::Object(doc)
    }
}
