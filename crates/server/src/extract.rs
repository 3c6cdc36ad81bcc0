//! Request extractors that turn every client mistake into a problem+json.

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// True when the request says its body is JSON (`application/json` or any
/// `+json` type), with or without parameters.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why a JSON body was refused, before it is rendered for a given API.
#[derive(Debug)]
pub enum BodyError {
    UnsupportedMediaType,
    TooLarge,
    Unreadable(String),
    /// Not JSON at all: line and column of the syntax error.
    Syntax {
        line: usize,
        column: usize,
        detail: String,
    },
    /// JSON, but not of the expected shape: the JSON pointer to the field.
    Shape {
        pointer: String,
        detail: String,
    },
}

impl BodyError {
    pub fn from_bytes_rejection(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(r.body_text())
        }
    }

    pub fn message(&self) -> String {
        match self {
            BodyError::UnsupportedMediaType => {
                "expected a JSON body with Content-Type: application/json".into()
            }
            BodyError::TooLarge => "the request body is larger than the server accepts".into(),
            BodyError::Unreadable(d) => format!("the request body could not be read: {d}"),
            BodyError::Syntax {
                line,
                column,
                detail,
            } => {
                format!("the body is not valid JSON (line {line}, column {column}): {detail}")
            }
            BodyError::Shape { pointer, detail } => {
                if pointer.is_empty() {
                    format!("the body does not have the expected shape: {detail}")
                } else {
                    format!("{pointer}: {detail}")
                }
            }
        }
    }
}

impl From<BodyError> for Problem {
    fn from(e: BodyError) -> Self {
        let msg = e.message();
        match e {
            BodyError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                msg,
            ),
            BodyError::TooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
                msg,
            ),
            BodyError::Unreadable(_) => Problem::bad_request(msg),
            BodyError::Syntax {
                line,
                column,
                detail,
            } => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                msg,
            )
            .with_field_error(crate::problem::FieldError {
                pointer: String::new(),
                detail,
                line: Some(line),
                column: Some(column),
            }),
            BodyError::Shape { pointer, detail } => {
                Problem::validation(msg).with_field(pointer, detail)
            }
        }
    }
}

/// Parses `bytes` as `T`, reporting syntax errors with line/column and shape
/// errors with a JSON pointer to the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let pointer = to_pointer(e.path());
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(BodyError::Syntax {
                    line: inner.line(),
                    column: inner.column(),
                    detail: strip_position(&inner.to_string()),
                })
            } else {
                Err(BodyError::Shape {
                    pointer,
                    detail: strip_position(&inner.to_string()),
                })
            }
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The JSON pointer (RFC 6901) of serde_path_to_error's path, made from
/// its segments: a member name may hold `.`, `[`, `/` or `~` (the dotted
/// text, `a.b[0].c`, cannot be read back).
fn to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A JSON body for the research and management APIs.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(BodyError::UnsupportedMediaType.into());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(BodyError::from_bytes_rejection)?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

/// Query parameters for the APIs; a bad parameter is a problem+json naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = parse_query(q);
        match de {
            Ok(v) => Ok(ApiQuery(v)),
            Err(e) => Err(Problem::validation(format!("bad query parameter: {e}"))
                .with_field("/query", e.to_string())),
        }
    }
}

fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, String> {
    // axum's Query extractor, with its rejection turned into text we control.
    let uri: axum::http::Uri = format!("/?{q}").parse().map_err(|e| format!("{e}"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|axum::extract::Query(v)| v)
        .map_err(|e| e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        flag: std::collections::BTreeMap<String, Vec<u32>>,
    }

    fn pointer_of(body: &str) -> String {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(BodyError::Shape { pointer, .. }) => pointer,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pointers() {
        assert_eq!(pointer_of(r#"[]"#), "");
        assert_eq!(pointer_of(r#"{"flag": {"on": [1, "x"]}}"#), "/flag/on/1");
        // Names holding the characters of the dotted path, or RFC 6901's.
        assert_eq!(
            pointer_of(r#"{"flag": {"a.b[0]": [-1]}}"#),
            "/flag/a.b[0]/0"
        );
        assert_eq!(
            pointer_of(r#"{"flag": {"a/b~c": ["x"]}}"#),
            "/flag/a~1b~0c/0"
        );
        // An unknown member whose name has `[` without `]` (a 500 once).
        assert_eq!(pointer_of(r#"{"a[": 1}"#), "/a[");
        assert_eq!(pointer_of(r#"{"\u00e9[": 1}"#), "/\u{e9}[");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        reason: String,
        n: u32,
    }

    #[test]
    fn parse_errors_locate_the_field() {
        match parse_json::<Body>(br#"{"reason": "x", "n": "seven"}"#) {
            Err(BodyError::Shape { pointer, .. }) => assert_eq!(pointer, "/n"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(b"{\n  \"reason\": }") {
            Err(BodyError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }
}
