//! The ingestion pipeline, shared by `POST /v1/events` ([`super::api`]) and
//! `commonlab events import`: validation of each event, the allow-lists,
//! pseudonymisation and consent ([`admit`]).

use crate::config::Config;
use chrono::{DateTime, Utc};
use commonlab_core::privacy::pseudonymise;
use commonlab_store::{NewEvent, Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;

const MAX_PROPERTIES: usize = 64;
const MAX_TEXT: usize = 1024;

/// One refused event.
#[derive(Debug, Serialize, PartialEq)]
pub struct Rejected {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Dropped {
    pub not_allowed: u64,
    pub no_consent: u64,
    pub properties_removed: u64,
}

pub(super) fn reject(
    index: usize,
    id: Option<&str>,
    field: &str,
    reason: impl Into<String>,
) -> Rejected {
    Rejected {
        index,
        event_id: id.map(str::to_string),
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn text<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err("must not be empty".into()),
        Some(Value::String(s)) if s.len() > MAX_TEXT => {
            Err(format!("longer than {MAX_TEXT} bytes"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err("must not contain control characters".into())
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("must be a string".into()),
    }
}

/// Checks one event; `Err` names the field and the reason. The returned
/// event still carries the raw unit id: pseudonymise it before storing.
pub fn validate_event(
    index: usize,
    v: &Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<NewEvent, Rejected> {
    let Some(obj) = v.as_object() else {
        return Err(reject(index, None, "", "an event must be a JSON object"));
    };
    let id_text = obj.get("event_id").and_then(Value::as_str);
    let r = |field: &str, reason: String| reject(index, id_text, field, reason);
    for key in obj.keys() {
        if ![
            "event_id",
            "unit",
            "community",
            "name",
            "timestamp",
            "properties",
        ]
        .contains(&key.as_str())
        {
            return Err(r(
                key,
                "unknown field (expected event_id, unit, community, name, timestamp, properties)"
                    .into(),
            ));
        }
    }
    let id = match id_text {
        Some(s) => uuid::Uuid::parse_str(s).map_err(|_| r("event_id", "must be a UUID".into()))?,
        None => {
            return Err(r(
                "event_id",
                "required (a UUID chosen by the client)".into(),
            ))
        }
    };
    let unit = text(obj, "unit")
        .map_err(|e| r("unit", e))?
        .ok_or_else(|| r("unit", "required".into()))?;
    let community = text(obj, "community").map_err(|e| r("community", e))?;
    let name = text(obj, "name")
        .map_err(|e| r("name", e))?
        .ok_or_else(|| r("name", "required".into()))?;
    if name.len() > 100
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-$:".contains(&b))
    {
        return Err(r(
            "name",
            "1 to 100 characters of letters, digits and _ . - $ :".into(),
        ));
    }
    let ts_text = text(obj, "timestamp")
        .map_err(|e| r("timestamp", e))?
        .ok_or_else(|| r("timestamp", "required (RFC 3339)".into()))?;
    let ts = DateTime::parse_from_rfc3339(ts_text)
        .map_err(|_| {
            r(
                "timestamp",
                "must be an RFC 3339 date-time, e.g. 2027-01-11T09:00:00Z".into(),
            )
        })?
        .with_timezone(&Utc);
    let skew = chrono::Duration::from_std(max_future_skew).unwrap_or_default();
    if ts > now + skew {
        return Err(r(
            "timestamp",
            format!(
                "more than {} s in the future (clock skew)",
                max_future_skew.as_secs()
            ),
        ));
    }
    let properties = match obj.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            if m.len() > MAX_PROPERTIES {
                return Err(r(
                    "properties",
                    format!("at most {MAX_PROPERTIES} properties"),
                ));
            }
            for (k, v) in m {
                let field = format!("properties.{k}");
                if k.is_empty() || k.len() > 100 || k.chars().any(char::is_control) {
                    return Err(r(
                        &field,
                        "property names are 1 to 100 printable characters".into(),
                    ));
                }
                match v {
                    Value::Null | Value::Bool(_) | Value::Number(_) => {}
                    Value::String(s) if s.len() > MAX_TEXT => {
                        return Err(r(&field, format!("longer than {MAX_TEXT} bytes")))
                    }
                    Value::String(s) if s.contains('\0') => {
                        return Err(r(&field, "must not contain NUL".into()))
                    }
                    Value::String(_) => {}
                    _ => {
                        return Err(r(
                            &field,
                            "properties are flat: a string, number, boolean or null".into(),
                        ))
                    }
                }
            }
            m.clone()
        }
        Some(_) => return Err(r("properties", "must be an object".into())),
    };
    Ok(NewEvent {
        event_id: id,
        unit: unit.to_string(),
        community: community.map(str::to_string),
        name: name.to_string(),
        ts,
        properties,
    })
}

/// What the ingestion pipeline ([`admit`]) made of a batch.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Valid, allowed and consented events, units pseudonymised: to store.
    pub events: Vec<NewEvent>,
    /// The index each of `events` was given (its position in the batch).
    pub origin: Vec<usize>,
    /// Invalid events, with the index they were given.
    pub rejected: Vec<Rejected>,
    /// Valid events (and properties) not stored by policy.
    pub dropped: Dropped,
}

/// The ingestion pipeline, the same for `POST /v1/events` and `commonlab
/// events import`: validates each event (`index` is what an error names:
/// the position in a batch, the line of a file), drops events whose name is
/// not on `allowed_events` and properties not on `allowed_properties`,
/// pseudonymises the unit with the study key and, with `consent_scope`,
/// keeps only units whose latest decision for it is a grant (one lookup for
/// the whole batch).
pub async fn admit<'a>(
    store: &Store,
    config: &Config,
    items: impl IntoIterator<Item = (usize, &'a Value)>,
    now: DateTime<Utc>,
) -> Result<Admitted, StoreError> {
    let mut out = Admitted::default();
    for (index, v) in items {
        match validate_event(index, v, now, config.max_future_skew) {
            Ok(mut event) => {
                if let Some(allowed) = &config.allowed_events {
                    if !allowed.contains(&event.name) {
                        out.dropped.not_allowed += 1;
                        continue;
                    }
                }
                if let Some(allowed) = &config.allowed_properties {
                    let before = event.properties.len();
                    event.properties.retain(|k, _| allowed.contains(k));
                    out.dropped.properties_removed += (before - event.properties.len()) as u64;
                }
                event.unit = pseudonymise(&config.study_key, &event.unit).into_string();
                out.events.push(event);
                out.origin.push(index);
            }
            Err(r) => out.rejected.push(r),
        }
    }
    if let Some(scope) = &config.consent_scope {
        let units: Vec<&str> = out.events.iter().map(|e| e.unit.as_str()).collect();
        let consented = store.units_with_consent(&units, scope).await?;
        let before = out.events.len();
        (out.events, out.origin) = std::mem::take(&mut out.events)
            .into_iter()
            .zip(std::mem::take(&mut out.origin))
            .filter(|(e, _)| consented.contains(&e.unit))
            .unzip();
        out.dropped.no_consent = (before - out.events.len()) as u64;
    }
    Ok(out)
}
