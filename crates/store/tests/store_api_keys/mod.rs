//! API keys: creating, listing, revoking, the version counter, and the
//! database's checks on ids and hashes.

use super::*;

#[tokio::test]
async fn api_keys_lifecycle() {
    both_backends(|db| async move {
        let store = db.store();
        assert_eq!(store.keys_version().await.unwrap(), 0);
        assert!(store.list_api_keys(true).await.unwrap().is_empty());
        assert!(store.find_api_key("0123456789ab").await.unwrap().is_none());

        let admin = store
            .insert_api_key(&key("0123456789ab", "ci", "admin", 1))
            .await
            .unwrap();
        assert_eq!(admin.id, "0123456789ab");
        assert_eq!(admin.name, "ci");
        assert_eq!(admin.role, "admin");
        assert_eq!(admin.hash_hex, "ab".repeat(32));
        assert_eq!(admin.created_at, at(1));
        assert_eq!(admin.created_by, "cli:root");
        assert_eq!(admin.revoked_at, None);
        let v1 = store.keys_version().await.unwrap();
        assert!(v1 > 0);

        let sdk = store
            .insert_api_key(&key("ba9876543210", "web", "sdk", 2))
            .await
            .unwrap();
        let v2 = store.keys_version().await.unwrap();
        assert!(v2 > v1);

        // Same active name: refused, version unchanged.
        let err = store
            .insert_api_key(&key("aaaaaaaaaaaa", "ci", "sdk", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what.contains("'ci'")),
            "{err:?}"
        );
        // Same id: refused too.
        let err = store
            .insert_api_key(&key("0123456789ab", "other", "sdk", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what.contains("0123456789ab")),
            "{err:?}"
        );
        assert_eq!(store.keys_version().await.unwrap(), v2);

        assert_eq!(
            store.find_api_key("0123456789ab").await.unwrap(),
            Some(admin.clone())
        );
        assert_eq!(
            store.list_api_keys(false).await.unwrap(),
            vec![admin.clone(), sdk.clone()]
        );
        assert_eq!(
            store.active_api_keys().await.unwrap(),
            vec![admin.clone(), sdk.clone()]
        );

        // Revoke by name.
        let revoked = store.revoke_api_key("ci", at(10)).await.unwrap();
        assert_eq!(revoked.id, admin.id);
        assert_eq!(revoked.revoked_at, Some(at(10)));
        assert!(!revoked.is_active());
        let v3 = store.keys_version().await.unwrap();
        assert!(v3 > v2);
        let err = store.revoke_api_key("ci", at(11)).await.unwrap_err();
        assert!(matches!(&err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(err.to_string(), "active API key 'ci' not found");
        let err = store
            .revoke_api_key("0123456789ab", at(11))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(store.keys_version().await.unwrap(), v3);
        assert_eq!(
            store
                .find_api_key("0123456789ab")
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(at(10)),
            "revoked keys are still found"
        );

        // The name is free again.
        let again = store
            .insert_api_key(&key("cccccccccccc", "ci", "developer", 12))
            .await
            .unwrap();
        let v4 = store.keys_version().await.unwrap();
        assert!(v4 > v3);
        assert_eq!(
            store.active_api_keys().await.unwrap(),
            vec![sdk.clone(), again.clone()]
        );
        let all = store.list_api_keys(true).await.unwrap();
        assert_eq!(all, vec![revoked.clone(), sdk.clone(), again.clone()]);

        // Revoke by id.
        let gone = store.revoke_api_key("ba9876543210", at(13)).await.unwrap();
        assert_eq!(gone.name, "web");
        assert!(store.keys_version().await.unwrap() > v4);
        assert_eq!(store.active_api_keys().await.unwrap(), vec![again]);

        // The hash never leaves through serde.
        let json = serde_json::to_value(&gone).unwrap();
        assert!(json.get("hash_hex").is_none(), "{json}");
        assert_eq!(json["name"], "web");
    })
    .await;
}

#[tokio::test]
async fn api_key_checks_reject_malformed_ids_and_hashes() {
    both_backends(|db| async move {
        let store = db.store();
        for bad in [
            key("0123456789AB", "upper", "sdk", 1),
            key("0123", "short", "sdk", 1),
            NewApiKeyRecord {
                hash_hex: "xyz",
                ..key("0123456789ab", "hash", "sdk", 1)
            },
        ] {
            let err = store.insert_api_key(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{bad:?}: {err:?}");
        }
        assert_eq!(store.keys_version().await.unwrap(), 0);
    })
    .await;
}
