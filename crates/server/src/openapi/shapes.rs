//! Bodies without a Rust type to derive from: handlers that build their
//! answer as a JSON value, OFREP's wire items, and types of crates that do
//! not depend on `utoipa` (analyses, reports, survey results, events).
//!
//! Each is a marker type named like its schema; an annotation names the
//! marker (`body = shapes::TrialAnalysis`), and [`merge`] puts the
//! description from `shapes.json` (with the shared parameters, headers,
//! responses and security schemes) into the generated document. The
//! server's tests check real responses against these shapes.

use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

/// `shapes.json`: `schemas`, `parameters`, `headers`, `responses` and
/// `securitySchemes`, in OpenAPI's `components` layout.
pub const SHAPES: &str = include_str!("shapes.json");

macro_rules! shapes {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` shape of `shapes.json`.")]
            pub struct $name;
            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    // A placeholder: [`merge`] puts the description in.
                    RefOr::T(Schema::default())
                }
            }
            impl utoipa::ToSchema for $name {}
        )*
        /// Every marker's name.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

shapes!(
    CampaignList,
    ConsentHistory,
    ConsentRecord,
    ConsentRequest,
    CreateCampaign,
    ErasureResponse,
    EventBatch,
    EventsUnprocessable,
    IngestOutcome,
    InstrumentList,
    LinksRequest,
    OfrepBulk,
    OfrepError,
    OfrepRequest,
    OfrepSuccess,
    Problem,
    PublishInstrument,
    SurveyCampaign,
    SurveyInstrument,
    SurveyLinks,
    SurveyResults,
    TrialAnalysis,
    TrialReport,
    TrialSurveyResponse,
);

/// Replaces the markers' placeholders with `shapes.json` and adds its
/// other components.
pub fn merge(doc: &mut Value) {
    let shapes: Value = serde_json::from_str(SHAPES).expect("shapes.json is JSON");
    let components = doc
        .as_object_mut()
        .expect("the document is an object")
        .entry("components")
        .or_insert_with(|| Value::Object(Default::default()));
    for (kind, entries) in shapes.as_object().expect("shapes.json is an object") {
        let target = components
            .as_object_mut()
            .expect("components is an object")
            .entry(kind.clone())
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .expect("a components entry is an object");
        for (name, value) in entries
            .as_object()
            .expect("a shapes.json kind is an object")
        {
            target.insert(name.clone(), value.clone());
        }
    }
}
