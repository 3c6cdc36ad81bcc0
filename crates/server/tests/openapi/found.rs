//! Requests the property-based API test (`tests/api-fuzz/run.sh`,
//! schemathesis) found answered with a 5xx, each kept here as a regression
//! test once fixed.

use super::*;

/// A JSON body with an unknown member whose name has a `[` without its
/// `]` (or multi-byte characters before it) panicked while the field's
/// pointer was made from serde_path_to_error's dotted path (`a.b[0]`):
/// 500. Now a 422 naming the member, escaped as RFC 6901 says.
#[tokio::test]
async fn odd_member_names_are_422_naming_the_member() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let admin = h.key(Role::Admin).await;
        let cases = [
            ("/api/v1/trials", r#"{"a[": 1}"#, "/a["),
            ("/api/v1/keys", r#"{"\u00e9[": 1}"#, "/\u{e9}["),
            // Found by schemathesis: a member name of surrogate pairs ending in `[`.
            (
                "/api/v1/trials",
                r#"{"\u009e\u0085%\udb00\udecc\udb60\ude52[": [[]]}"#,
                "/\u{9e}\u{85}%\u{d02cc}\u{e8252}[",
            ),
            // `.`, `/` and `~` in a name: one segment, `/` and `~` escaped.
            ("/api/v1/keys", r#"{"a.b/c~": 1}"#, "/a.b~1c~0"),
            ("/api/v1/keys", r#"{"x]": 1}"#, "/x]"),
        ];
        for (path, body, pointer) in cases {
            let resp = h
                .req(Method::POST, path, Some(&admin))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body}"
            );
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["errors"][0]["pointer"], pointer, "{path} {body}: {v}");
        }
        // Nested: the index and the member both in the pointer.
        let resp = h
            .req(
                Method::POST,
                "/api/v1/surveys/campaigns/c/links",
                Some(&admin),
            )
            .json(&json!({"units": [{"id": "u", "x[": 1}], "reason": "r"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        h.stop().await;
    })
    .await;
}
