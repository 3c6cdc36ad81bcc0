//! How values are kept in columns, the same way for both backends, so that
//! one statement serves both: timestamps bound as [`Ts`], enums as their
//! lowercase names.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo};
use sqlx::{Encode, Postgres, Sqlite, Type};

/// Truncates to whole microseconds, the precision both backends keep.
pub(crate) fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// A timestamp as a statement parameter: `timestamptz` on PostgreSQL; on
/// SQLite RFC 3339 UTC text with exactly six fractional digits and `Z`
/// ([`Ts::text`]), fixed width so that text order is time order, which the
/// indexes, `ORDER BY`, range conditions and the metric SQL's arithmetic on
/// the text rely on. (sqlx's own SQLite encoding of a `DateTime` writes 0,
/// 3, 6 or 9 fractional digits and `+00:00`: text that does not sort.)
/// Read back as `DateTime<Utc>`
/// with sqlx's decoding: `timestamptz`, or RFC 3339 text on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ts(pub(crate) DateTime<Utc>);

impl Ts {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub(crate) fn text(self) -> String {
        self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.text(), buf)
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

/// Reads an enum from a text column holding its lowercase name (its
/// `FromStr`; a name it does not know is a decoding error), on either
/// database.
macro_rules! text_column {
    ($($enum:ty),*) => {$(
        impl<DB: sqlx::Database> Type<DB> for $enum
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $enum
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }
    )*};
}

text_column!(
    crate::TrialStatus,
    crate::ExposureSource,
    crate::privacy::ConsentStatus
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_to_micros() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let at = DateTime::from_timestamp(1_700_000_000, 5_000).unwrap();
        let text = Ts(at).text();
        assert_eq!(text, "2023-11-14T22:13:20.000005Z");
        // What sqlx's SQLite decoding tries first.
        assert_eq!(DateTime::parse_from_rfc3339(&text).unwrap(), at);
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(Ts(whole).text(), "2023-11-14T22:13:20.000000Z");
    }
}
