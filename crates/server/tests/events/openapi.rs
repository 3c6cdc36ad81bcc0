//! The OpenAPI document (generated, `commonlab_server::openapi`, served at
//! `/api/v1/openapi.json`) against real responses, with a small checker for the JSON Schema subset
//! the document uses (hand-written: the `jsonschema` crate would bring a
//! regex engine, an HTTP resolver and a few dozen crates for this one test).
//! A keyword the checker does not know fails the test, so the document
//! cannot promise what is not checked.

use super::*;
use std::sync::OnceLock;

/// The document the server generates and serves.
pub(crate) fn file() -> &'static str {
    commonlab_server::openapi::document()
}

/// [`file`], parsed once.
pub(crate) fn parsed() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(file()).expect("the document is JSON"))
}

/// Asserts that `body`, a JSON answer `status` of the operation `method
/// template`, is what the document says: for the tests' helpers that read
/// answers of their own.
pub(crate) fn assert_documented(method: &Method, template: &str, status: StatusCode, body: &Value) {
    let doc = parsed();
    let m = method.as_str().to_ascii_lowercase();
    let schema = response_schema(doc, template, &m, status.as_u16(), "application/json");
    let errs = Checker { doc }.check(schema, body, "");
    assert!(
        errs.is_empty(),
        "{method} {template} {status}: {errs:?}\n{body}"
    );
}

/// Checks `value` against `schema`; returns the violations (empty: valid).
pub(crate) struct Checker<'a> {
    pub(crate) doc: &'a Value,
}

impl<'a> Checker<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.strip_prefix('#').expect("only local $refs");
                let target = self
                    .doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
                self.resolve(target)
            }
            None => schema,
        }
    }

    pub(crate) fn check(&self, schema: &'a Value, value: &Value, at: &str) -> Vec<String> {
        let schema = self.resolve(schema);
        let obj = schema.as_object().expect("a schema is an object");
        let mut errs = Vec::new();
        for (keyword, arg) in obj {
            match keyword.as_str() {
                "description" | "title" => {}
                "propertyNames" => {
                    if let Some(o) = value.as_object() {
                        for name in o.keys() {
                            let key = Value::String(name.clone());
                            errs.extend(self.check(arg, &key, &format!("{at}/{name}")));
                        }
                    }
                }
                "type" => {
                    let types: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => panic!("bad type keyword at {at}"),
                    };
                    if !types.iter().any(|t| type_matches(t, value)) {
                        errs.push(format!("{at}: {value} is not of type {types:?}"));
                    }
                }
                "required" => {
                    if let Some(o) = value.as_object() {
                        for name in arg.as_array().unwrap() {
                            let name = name.as_str().unwrap();
                            if !o.contains_key(name) {
                                errs.push(format!("{at}: required property {name} missing"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let Some(o) = value.as_object() {
                        for (name, sub) in arg.as_object().unwrap() {
                            if let Some(v) = o.get(name) {
                                errs.extend(self.check(sub, v, &format!("{at}/{name}")));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(o) = value.as_object() {
                        let known = obj.get("properties").and_then(Value::as_object);
                        for (name, v) in o {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            match arg {
                                Value::Bool(false) => {
                                    errs.push(format!("{at}: property {name} is not documented"))
                                }
                                Value::Bool(true) => {}
                                sub => errs.extend(self.check(sub, v, &format!("{at}/{name}"))),
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(a) = value.as_array() {
                        for (i, v) in a.iter().enumerate() {
                            errs.extend(self.check(arg, v, &format!("{at}/{i}")));
                        }
                    }
                }
                "minItems" | "maxItems" | "minProperties" | "maxProperties" | "minLength"
                | "maxLength" => {
                    let n = arg.as_u64().unwrap() as usize;
                    let (len, ok) = match (keyword.as_str(), value) {
                        ("minItems", Value::Array(a)) => (a.len(), a.len() >= n),
                        ("maxItems", Value::Array(a)) => (a.len(), a.len() <= n),
                        ("minProperties", Value::Object(o)) => (o.len(), o.len() >= n),
                        ("maxProperties", Value::Object(o)) => (o.len(), o.len() <= n),
                        ("minLength", Value::String(s)) => {
                            let l = s.chars().count();
                            (l, l >= n)
                        }
                        ("maxLength", Value::String(s)) => {
                            let l = s.chars().count();
                            (l, l <= n)
                        }
                        _ => (0, true),
                    };
                    if !ok {
                        errs.push(format!("{at}: {keyword} {n} violated ({len})"));
                    }
                }
                "minimum" | "maximum" => {
                    if let (Some(v), Some(bound)) = (value.as_f64(), arg.as_f64()) {
                        if (keyword == "minimum" && v < bound)
                            || (keyword == "maximum" && v > bound)
                        {
                            errs.push(format!("{at}: {v} violates {keyword} {bound}"));
                        }
                    }
                }
                "enum" => {
                    if !arg.as_array().unwrap().contains(value) {
                        errs.push(format!("{at}: {value} is not one of {arg}"));
                    }
                }
                "const" => {
                    if value != arg {
                        errs.push(format!("{at}: {value} is not {arg}"));
                    }
                }
                "format" => {
                    // A format constrains the values of its own kind (strings
                    // or numbers) and lets the others through, as `type` is
                    // what refuses them.
                    let ok = match (arg.as_str().unwrap(), value) {
                        ("uuid", Value::String(s)) => uuid::Uuid::parse_str(s).is_ok(),
                        ("date-time", Value::String(s)) => {
                            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                        }
                        ("uri", Value::String(s)) => s.starts_with("https://"),
                        // OpenAPI's integer formats: a whole number in range.
                        ("int64", Value::Number(n)) => n.as_i64().is_some(),
                        ("int32", Value::Number(n)) => {
                            n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
                        }
                        ("uuid" | "date-time" | "uri" | "int64" | "int32", _) => true,
                        (f, _) => panic!("format {f} is not checked"),
                    };
                    if !ok {
                        errs.push(format!("{at}: {value} is not a {arg}"));
                    }
                }
                "pattern" => {
                    if let Some(s) = value.as_str() {
                        if !class_pattern_matches(arg.as_str().unwrap(), s) {
                            errs.push(format!("{at}: {s:?} does not match {arg}"));
                        }
                    }
                }
                "oneOf" => {
                    let matching = arg
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|sub| self.check(sub, value, at).is_empty())
                        .count();
                    if matching != 1 {
                        errs.push(format!("{at}: matches {matching} of oneOf, not exactly 1"));
                    }
                }
                other => panic!("the checker does not know the keyword {other} (at {at})"),
            }
        }
        errs
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Patterns of the one shape the document uses: `^[CLASS]{m}$` or
/// `^[CLASS]{m,n}$`, CLASS made of ranges `a-z` and literal characters.
fn class_pattern_matches(pattern: &str, s: &str) -> bool {
    let inner = pattern
        .strip_prefix("^[")
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("pattern {pattern} is not checked"));
    let (class, count) = inner.split_once("]{").expect("^[CLASS]{m,n}$");
    let count = count.strip_suffix('}').expect("^[CLASS]{m,n}$");
    let (min, max) = match count.split_once(',') {
        Some((a, b)) => (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()),
        None => (count.parse().unwrap(), count.parse().unwrap()),
    };
    let class: Vec<char> = class.chars().collect();
    let in_class = |c: char| {
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                if (class[i]..=class[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    let n = s.chars().count();
    (min..=max).contains(&n) && s.chars().all(in_class)
}

/// The schema of `status`'s `content_type` body of `method path`, from the
/// document (following a `$ref`'d response).
pub(crate) fn response_schema<'d>(
    doc: &'d Value,
    path: &str,
    method: &str,
    status: u16,
    content_type: &str,
) -> &'d Value {
    let c = Checker { doc };
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let resp = c.resolve(&op["responses"][status.to_string()]);
    assert!(
        resp.is_object(),
        "{status} of {method} {path} is not documented"
    );
    let schema = &resp["content"][content_type]["schema"];
    assert!(
        schema.is_object(),
        "{status} of {method} {path} has no {content_type} body"
    );
    schema
}

impl Harness {
    /// Sends a request and checks the answer against the document: status
    /// and content type documented, body valid. Returns the body.
    pub(crate) async fn conforms(
        &self,
        doc: &Value,
        (method, path, template): (Method, &str, &str),
        req: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Value {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let retry_after = resp.headers().get(header::RETRY_AFTER).is_some();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, expected, "{method} {path}: {body}");
        let m = method.as_str().to_ascii_lowercase();
        let schema = response_schema(doc, template, &m, status.as_u16(), &ct);
        let errs = Checker { doc }.check(schema, &body, "");
        assert!(
            errs.is_empty(),
            "{method} {path} {status}: {errs:?}\n{body}"
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry_after);
        }
        body
    }
}

#[tokio::test]
async fn openapi_document_matches_the_responses() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let sdk = h.key(Role::Sdk).await;
        let researcher = h.key(Role::Researcher).await;

        // Served without a key, byte for byte the generated document; OpenAPI 3.1.
        let resp = h.req(Method::GET, "/api/v1/openapi.json", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let served = resp.text().await.unwrap();
        assert_eq!(served, file());
        let doc: Value = serde_json::from_str(&served).expect("the document is JSON");
        let version = doc["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "{version}");

        // Every documented operation is routed (no 404 or 405 without a key).
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys().filter(|m| *m != "parameters") {
                let url = path
                    .replace("{id}", "member-1")
                    .replace("{key}", "k")
                    .replace("{name}", "n")
                    .replace("{action}", "start");
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                let s = h.req(method.clone(), &url, None).send().await.unwrap().status();
                assert!(
                    s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {s}"
                );
            }
        }

        let events = (Method::POST, "/v1/events", "/v1/events");
        let post = |body: String, ct: &str, key: Option<&str>| {
            h.req(Method::POST, "/v1/events", key)
                .header(header::CONTENT_TYPE, ct)
                .body(body)
        };
        // A mixed batch: 200 with per-event rejections.
        let mixed = json!([
            event(&id(1), "member-1", "thanks_given"),
            json!({"event_id": "not-a-uuid", "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z"}),
            json!({"event_id": id(3), "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z", "properties": {"nested": {"a": 1}}}),
            json!(7),
        ]);
        let v = h
            .conforms(&doc, events.clone(), post(mixed.to_string(), "application/json", Some(&sdk)), StatusCode::OK)
            .await;
        assert_eq!((v["received"].as_u64(), v["stored"].as_u64()), (Some(4), Some(1)));
        assert_eq!(v["rejected"].as_array().unwrap().len(), 3);
        assert_eq!(v["rejected"][1]["event_id"], id(3));
        assert!(v["rejected"][2].get("event_id").is_none(), "{v}");
        // The same over NDJSON, a retry: duplicates.
        let ndjson = mixed.as_array().unwrap().iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        let v = h
            .conforms(&doc, events.clone(), post(ndjson, "application/x-ndjson", Some(&sdk)), StatusCode::OK)
            .await;
        assert_eq!((v["stored"].as_u64(), v["duplicates"].as_u64()), (Some(1), Some(1)));

        // Every event invalid: 422, a problem carrying the outcome.
        let invalid = json!([
            {"event_id": "x"},
            {"event_id": id(11), "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z", "properties": {"a/b": [1]}},
        ]);
        let v = h
            .conforms(&doc, events.clone(), post(invalid.to_string(), "application/json", Some(&sdk)), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
        assert_eq!(v["type"], "https://commonlab.dev/problems/events-invalid");
        assert_eq!((v["received"].as_u64(), v["stored"].as_u64()), (Some(2), Some(0)));
        let pointers: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert_eq!(pointers, ["/0/event_id", "/1/properties/a~1b"]);
        // The checker is not a rubber stamp: an undocumented or a missing
        // member fails it.
        let schema = response_schema(&doc, "/v1/events", "post", 422, "application/problem+json");
        let mut extra = v.clone();
        extra["ip"] = json!("1.2.3.4");
        assert!(!Checker { doc: &doc }.check(schema, &extra, "").is_empty());
        let mut missing = v.clone();
        missing["rejected"][0].as_object_mut().unwrap().remove("reason");
        assert!(!Checker { doc: &doc }.check(schema, &missing, "").is_empty());

        // Not an array: a plain 422 problem; unparseable: 400; no key: 401;
        // wrong media type: 415; too large: 413.
        h.conforms(&doc, events.clone(), post("{}".into(), "application/json", Some(&sdk)), StatusCode::UNPROCESSABLE_ENTITY).await;
        h.conforms(&doc, events.clone(), post("[{".into(), "application/json", Some(&sdk)), StatusCode::BAD_REQUEST).await;
        h.conforms(&doc, events.clone(), post("{\n{".into(), "application/x-ndjson", Some(&sdk)), StatusCode::BAD_REQUEST).await;
        h.conforms(&doc, events.clone(), post("[]".into(), "application/json", None), StatusCode::UNAUTHORIZED).await;
        h.conforms(&doc, events.clone(), post("[]".into(), "text/csv", Some(&sdk)), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        let big = json!([event(&id(20), &"u".repeat(BODY_LIMIT), "x")]).to_string();
        h.conforms(&doc, events, post(big, "application/json", Some(&sdk)), StatusCode::PAYLOAD_TOO_LARGE).await;

        // Consent and erasure.
        let consent = (Method::PUT, "/api/v1/units/member-1/consent", "/api/v1/units/{id}/consent");
        let put = |body: Value| h.req(Method::PUT, consent.1, Some(&sdk)).json(&body);
        let v = h
            .conforms(&doc, consent.clone(), put(json!({"scope": "research", "text_version": "v2", "granted": true})), StatusCode::OK)
            .await;
        assert_eq!(v["granted"], true);
        h.conforms(&doc, consent.clone(), put(json!({"scope": "research", "text_version": "v2", "granted": "yes"})), StatusCode::UNPROCESSABLE_ENTITY).await;
        let history = (Method::GET, consent.1, consent.2);
        let v = h
            .conforms(&doc, history.clone(), h.req(Method::GET, consent.1, Some(&researcher)), StatusCode::OK)
            .await;
        assert_eq!(v["consent"].as_array().unwrap().len(), 1);
        h.conforms(&doc, history, h.req(Method::GET, consent.1, Some(&sdk)), StatusCode::FORBIDDEN).await;
        let erase = (Method::DELETE, "/api/v1/units/member-1", "/api/v1/units/{id}");
        h.conforms(&doc, erase.clone(), h.req(Method::DELETE, erase.1, Some(&researcher)), StatusCode::UNPROCESSABLE_ENTITY).await;
        let with_reason = format!("{}?reason=asked", erase.1);
        let v = h
            .conforms(&doc, erase.clone(), h.req(Method::DELETE, &with_reason, Some(&researcher)), StatusCode::OK)
            .await;
        assert_eq!((v["erased"]["events"].as_u64(), v["erased"]["consents"].as_u64()), (Some(1), Some(1)));

        // The request schema: the events the server stores conform, the
        // ones it rejects do not.
        let event_schema = &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let c = Checker { doc: &doc };
        assert_eq!(c.check(event_schema, &json!([event(&id(30), "m", "thanks_given")]), ""), Vec::<String>::new());
        for bad in invalid.as_array().unwrap().iter().chain(&mixed.as_array().unwrap()[1..]) {
            assert!(!c.check(event_schema, &json!([bad]), "").is_empty(), "{bad}");
        }
        h.stop().await;
    })
    .await;
}

/// The keywords and formats of the management routes' shapes refuse what
/// they should (and the checker is not a rubber stamp for them).
#[test]
fn checker_keywords() {
    let doc = json!({ "components": { "schemas": { "N": { "type": "integer" } } } });
    let valid = |schema: Value, v: Value| Checker { doc: &doc }.check(&schema, &v, "").is_empty();
    // OpenAPI's integer formats: whole numbers in range; other kinds are
    // `type`'s to refuse.
    assert!(valid(json!({"format": "int64"}), json!(i64::MIN)));
    assert!(valid(json!({"format": "int64"}), json!(i64::MAX)));
    assert!(!valid(json!({"format": "int64"}), json!(u64::MAX)));
    assert!(!valid(json!({"format": "int64"}), json!(1.5)));
    assert!(valid(json!({"format": "int64"}), json!("7")));
    assert!(valid(json!({"format": "int32"}), json!(i32::MIN)));
    assert!(!valid(
        json!({"format": "int32"}),
        json!(i64::from(i32::MAX) + 1)
    ));
    assert!(valid(json!({"format": "date-time"}), json!(null)));
    assert!(!valid(
        json!({"format": "date-time"}),
        json!("2026-13-01T00:00:00Z")
    ));
    // minProperties, maxItems.
    assert!(valid(json!({"minProperties": 1}), json!({"a": 1})));
    assert!(valid(json!({"maxItems": 3}), json!([1, 2, 3])));
    assert!(!valid(json!({"maxItems": 3}), json!([1, 2, 3, 4])));
    assert!(!valid(json!({"minProperties": 1}), json!({})));
    assert!(valid(json!({"minProperties": 1}), json!([])));
    // A nullable reference (utoipa's `Option<T>`): exactly one branch.
    let nullable = json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/N"}]});
    assert!(valid(nullable.clone(), json!(null)));
    assert!(valid(nullable.clone(), json!(3)));
    assert!(!valid(nullable, json!("3")));
    let both = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(!valid(both, json!(3)));
    // A map's values, and a closed object.
    let map = json!({"type": "object", "additionalProperties": {"type": ["string", "number"]}});
    assert!(valid(map.clone(), json!({"a": "x", "b": 2})));
    assert!(!valid(map, json!({"a": true})));
    let closed = json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
    assert!(valid(closed.clone(), json!({"a": [1]})));
    assert!(!valid(closed, json!({"a": 1, "b": 2})));
    // enum and const.
    assert!(!valid(
        json!({"enum": ["ENABLED", "DISABLED"]}),
        json!("enabled")
    ));
    assert!(!valid(json!({"const": true}), json!(1)));
}

#[test]
fn class_patterns() {
    assert!(class_pattern_matches("^[0-9a-f]{4}$", "09af"));
    assert!(!class_pattern_matches("^[0-9a-f]{4}$", "09aF"));
    assert!(!class_pattern_matches("^[0-9a-f]{4}$", "09a"));
    assert!(class_pattern_matches(
        "^[A-Za-z0-9_.$:-]{1,100}$",
        "a.b-c$d:e_F"
    ));
    assert!(!class_pattern_matches(
        "^[A-Za-z0-9_.$:-]{1,100}$",
        "<script>"
    ));
    assert!(!class_pattern_matches("^[A-Za-z0-9_.$:-]{1,100}$", ""));
}
