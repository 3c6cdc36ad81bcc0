//! A walk through one area's routes: every answer is checked against the
//! document ([`Harness::conforms`]), and the walk fails unless every JSON
//! operation of its area answered a success at least once.

use super::*;
use std::cell::RefCell;

pub(super) struct Walk<'h> {
    pub h: &'h Harness,
    pub doc: Value,
    /// `(METHOD, path template)` of the operations that answered a success.
    succeeded: RefCell<BTreeSet<(String, String)>>,
}

impl<'h> Walk<'h> {
    pub fn new(h: &'h Harness) -> Self {
        Walk {
            h,
            doc: doc(),
            succeeded: RefCell::default(),
        }
    }

    /// `method path` (the operation `template`) with `key` and, if any, a
    /// JSON `body`: asserts `status` and that the answer is documented;
    /// returns its body.
    pub async fn call(
        &self,
        (method, path, template): (Method, &str, &str),
        key: Option<&str>,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let mut req = self.h.req(method.clone(), path, key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send((method, path, template), req, status).await
    }

    /// [`Walk::call`] with a request built by the caller.
    pub async fn send(
        &self,
        (method, path, template): (Method, &str, &str),
        req: reqwest::RequestBuilder,
        status: StatusCode,
    ) -> Value {
        let body = self
            .h
            .conforms(&self.doc, (method.clone(), path, template), req, status)
            .await;
        if status.is_success() {
            self.succeeded
                .borrow_mut()
                .insert((method.to_string(), template.to_string()));
        }
        body
    }

    /// Whether `schema`, a documented schema, refuses `value` (the checker
    /// is not a rubber stamp).
    pub fn refuses(&self, schema: &str, value: &Value) -> bool {
        let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
        !Checker { doc: &self.doc }
            .check(&schema, value, "")
            .is_empty()
    }

    /// Every operation of the document whose path is in `area` and whose
    /// success is JSON answered a success in this walk.
    pub fn assert_covered(&self, area: impl Fn(&str) -> bool) {
        let want: BTreeSet<(String, String)> = documented(&self.doc)
            .into_iter()
            .filter(|(method, path)| area(path) && answers_json(&self.doc, method, path))
            .collect();
        assert!(!want.is_empty(), "no operation in the area");
        let succeeded = self.succeeded.borrow();
        let missing: Vec<_> = want.difference(&succeeded).collect();
        assert!(missing.is_empty(), "not walked: {missing:?}");
    }
}

/// Whether a success of `METHOD path` is `application/json`.
fn answers_json(doc: &Value, method: &str, path: &str) -> bool {
    let responses = &doc["paths"][path][method.to_ascii_lowercase()]["responses"];
    responses.as_object().unwrap().iter().any(|(status, r)| {
        status.starts_with('2') && r["content"].get("application/json").is_some()
    })
}
