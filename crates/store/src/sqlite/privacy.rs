//! SQLite side of [`crate::privacy`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{to_text, SqliteStore, BEGIN_WRITE};
use crate::privacy::{self, StudyKeyState, UnitVersions};
use crate::{db_err, write_err, StoreError};

impl SqliteStore {
    pub(crate) async fn study_key_state(&self) -> Result<StudyKeyState, StoreError> {
        let fingerprint = sqlx::query_scalar(privacy::STUDY_KEY)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        let pseudonymised_data = sqlx::query_scalar(privacy::PSEUDONYMISED_DATA)
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(StudyKeyState {
            fingerprint,
            pseudonymised_data,
        })
    }

    pub(crate) async fn record_study_key(
        &self,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let result: Result<String, sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            sqlx::query(privacy::RECORD_STUDY_KEY)
                .bind(fingerprint)
                .bind(to_text(at))
                .execute(&mut *tx)
                .await?;
            let recorded = sqlx::query_scalar(privacy::STUDY_KEY)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(recorded)
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn unit_versions(&self) -> Result<UnitVersions, StoreError> {
        let rows = sqlx::query_as(privacy::UNIT_VERSIONS)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(privacy::unit_versions(rows))
    }

    pub(crate) async fn units_with_consent(
        &self,
        units: &[&str],
        scope: &str,
    ) -> Result<HashSet<String>, StoreError> {
        let list =
            serde_json::to_string(units).map_err(|e| StoreError::InvalidState(e.to_string()))?;
        let statement = privacy::units_with_consent("IN (SELECT value FROM json_each($2))");
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(statement))
            .bind(scope)
            .bind(list)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }
}
