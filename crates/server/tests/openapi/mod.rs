//! The generated OpenAPI document against the route table, and its
//! committed copy `docs/openapi.json`. (Real responses are checked against
//! the document by `events::openapi` and the areas' own tests.)

use super::*;
use crate::events::openapi::Checker;
use commonlab_server::openapi::{self, shapes};
use commonlab_server::route::Access;
use std::collections::BTreeSet;

mod answers;
mod found;
mod preconditions;
mod trial_answers;
mod walk;

/// The committed copy, relative to this crate.
const COPY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn doc() -> Value {
    serde_json::from_str(openapi::document()).expect("the document is JSON")
}

/// `(METHOD, path)` of every operation of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                ops.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Routes that answer HTML, out of the document: the survey pages.
fn answers_json(path: &str) -> bool {
    !path.starts_with("/s/") && !path.starts_with("/console")
}

#[test]
fn document_and_route_table_agree() {
    let doc = doc();
    let table = commonlab_server::route_table();
    let routed: BTreeSet<(String, String)> = table
        .iter()
        .filter(|r| answers_json(r.path()))
        .map(|r| (r.method().to_string(), r.path().to_string()))
        .collect();
    let documented = documented(&doc);
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without an operation (add #[utoipa::path] and list the handler in openapi::ApiDoc): {missing:?}\n\
         operations without a route: {extra:?}"
    );
    // The HTML routes are the survey pages, and there are some.
    assert!(table.iter().any(|r| !answers_json(r.path())));

    // Each operation's security is its route's guard: none for a public
    // route; the role, as bearer or X-API-Key, with 401, 503 (and 403 above
    // sdk).
    for r in &table {
        if !answers_json(r.path()) {
            continue;
        }
        let op = &doc["paths"][r.path()][r.method().as_str().to_ascii_lowercase()];
        match r.access() {
            Access::Public => {
                assert!(op.get("security").is_none(), "{} {}", r.method(), r.path());
                assert!(
                    op["responses"].get("401").is_none(),
                    "{} {}",
                    r.method(),
                    r.path()
                );
            }
            Access::Role(role) => {
                let want = json!([{ "bearer": [role.as_str()] }, { "apiKey": [role.as_str()] }]);
                assert_eq!(op["security"], want, "{} {}", r.method(), r.path());
                for status in ["401", "503"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{} {}: {status}",
                        r.method(),
                        r.path()
                    );
                }
                assert_eq!(
                    op["responses"]["403"].is_object(),
                    role != Role::Sdk,
                    "{} {}",
                    r.method(),
                    r.path()
                );
            }
            Access::Console(_) => panic!("{} {}: console pages are HTML", r.method(), r.path()),
        }
        // Every operation documents a success and an operationId.
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{} {} has no 2xx",
            r.method(),
            r.path()
        );
        assert!(op["operationId"].is_string(), "{} {}", r.method(), r.path());
    }
}

/// Every `$ref` points into the document, and every shape marker has its
/// description (not the placeholder).
#[test]
fn references_resolve_and_shapes_are_described() {
    let doc = doc();
    fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    refs.push(r);
                }
                o.values().for_each(|v| walk(v, refs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(refs.len() > 50, "{}", refs.len());
    for r in refs {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    for name in shapes::NAMES {
        let schema = &doc["components"]["schemas"][name];
        assert!(
            schema.as_object().is_some_and(|o| !o.is_empty()),
            "shape {name} is not described in openapi/shapes/"
        );
    }
    assert_eq!(doc["openapi"], "3.1.0");
    for scheme in ["bearer", "apiKey"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object());
    }
}

/// No success answered as JSON is documented as "any JSON": each names a
/// shape that constrains it (a `type`, a reference, ...), not `{}` or a
/// bare description.
#[test]
fn every_json_success_has_a_shape() {
    let doc = crate::events::openapi::parsed();
    let resolve = |mut v: &'static Value| -> &'static Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            v = doc.pointer(r.strip_prefix('#').unwrap()).unwrap();
        }
        v
    };
    let mut checked = 0;
    let mut shapeless = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().into_iter().flatten() {
                let Some(media) = resolve(resp)["content"].get("application/json") else {
                    continue;
                };
                if !status.starts_with('2') {
                    continue;
                }
                checked += 1;
                let schema = resolve(&media["schema"]);
                let constrains = schema.as_object().is_some_and(|o| {
                    o.keys()
                        .any(|k| !["description", "title", "examples"].contains(&k.as_str()))
                });
                if !constrains {
                    shapeless.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(
        shapeless.is_empty(),
        "successes documented as any JSON: {shapeless:?}"
    );
    assert!(checked > 40, "{checked}");
}

/// A shape never silently replaces a schema utoipa derived under the same
/// name (only a marker's placeholder).
#[test]
#[should_panic(expected = "schemas/Problem is already in the document")]
fn a_shape_does_not_replace_a_derived_schema() {
    let mut doc = json!({ "components": { "schemas": { "Problem": { "type": "string" } } } });
    shapes::merge(&mut doc);
}

/// `docs/openapi.json` is the document, byte for byte. To regenerate it:
/// `COMMONLAB_BLESS=1 cargo test -p commonlab-server --test api committed_copy`.
#[test]
fn committed_copy_is_fresh() {
    let generated = openapi::document();
    if std::env::var_os("COMMONLAB_BLESS").is_some() {
        std::fs::write(COPY, generated).unwrap();
    }
    let committed = std::fs::read_to_string(COPY).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale; regenerate it with \
         `COMMONLAB_BLESS=1 cargo test -p commonlab-server --test api committed_copy`"
    );
}

/// Both addresses serve the document, without a key.
#[tokio::test]
async fn served_at_both_addresses() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        for path in [openapi::PATH, openapi::LEGACY_PATH] {
            let resp = h.req(Method::GET, path, None).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(resp.text().await.unwrap(), openapi::document(), "{path}");
        }
        h.stop().await;
    })
    .await;
}
