//! Bodies without a Rust type to derive from: handlers that build their
//! answer as a JSON value, OFREP's wire items, and types of crates that do
//! not depend on `utoipa` (analyses, reports, survey results, events).
//!
//! Each is a marker type named like its schema; an annotation names the
//! marker (`body = shapes::TrialAnalysis`), and [`merge`] puts the
//! description from the files of `shapes/` (with the shared parameters,
//! headers, responses and security schemes) into the generated document.
//! The server's tests check real responses against these shapes.

use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

/// The files of `shapes/`, one per area, each in OpenAPI's `components`
/// layout (`schemas`, `parameters`, `headers`, `responses`,
/// `securitySchemes`). A name is described in one file only.
pub const SHAPES: &[(&str, &str)] = &[
    ("common.json", include_str!("shapes/common.json")),
    ("telemetry.json", include_str!("shapes/telemetry.json")),
    ("analysis.json", include_str!("shapes/analysis.json")),
    ("surveys.json", include_str!("shapes/surveys.json")),
    (
        "survey_results.json",
        include_str!("shapes/survey_results.json"),
    ),
    ("ofrep.json", include_str!("shapes/ofrep.json")),
    ("flags.json", include_str!("shapes/flags.json")),
    ("keys.json", include_str!("shapes/keys.json")),
    ("meta.json", include_str!("shapes/meta.json")),
    ("trials.json", include_str!("shapes/trials.json")),
];

macro_rules! shapes {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` shape of `shapes/`.")]
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
    ApiKey,
    CampaignList,
    ConsentHistory,
    ConsentRecord,
    ConsentRequest,
    CreateCampaign,
    ErasureResponse,
    EventBatch,
    EventsUnprocessable,
    ExposureOutcome,
    FlagDefinition,
    FlagHistory,
    FlagList,
    FlagSetDocument,
    Health,
    IngestOutcome,
    InstrumentList,
    KeyList,
    LinksRequest,
    OfrepBulk,
    OfrepError,
    OfrepRequest,
    OfrepSuccess,
    Problem,
    PublishInstrument,
    Readiness,
    StoredFlag,
    SurveyCampaign,
    SurveyCodebook,
    SurveyInstrument,
    SurveyLinks,
    SurveyResults,
    TrialAmendment,
    TrialAnalysis,
    TrialEvent,
    TrialList,
    TrialRecord,
    TrialReport,
    TrialSurveyResponse,
    TrialValidation,
);

/// Replaces the markers' placeholders with the shapes of `shapes/` and
/// adds their other components. Panics when a shape would replace anything
/// but a marker's placeholder (a derived schema of the same name, or the
/// same name described twice): the document would silently lose one.
pub fn merge(doc: &mut Value) {
    let placeholder = serde_json::to_value(Schema::default()).expect("a schema serialises");
    let components = doc
        .as_object_mut()
        .expect("the document is an object")
        .entry("components")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .expect("components is an object");
    for (file, text) in SHAPES {
        let shapes: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("shapes/{file} is not JSON: {e}"));
        for (kind, entries) in shapes
            .as_object()
            .unwrap_or_else(|| panic!("shapes/{file} is not an object"))
        {
            let target = components
                .entry(kind.clone())
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
                .expect("a components entry is an object");
            for (name, value) in entries
                .as_object()
                .unwrap_or_else(|| panic!("shapes/{file}: {kind} is not an object"))
            {
                let replaces_placeholder = kind == "schemas"
                    && NAMES.contains(&name.as_str())
                    && target.get(name) == Some(&placeholder);
                assert!(
                    replaces_placeholder || !target.contains_key(name),
                    "shapes/{file}: {kind}/{name} is already in the document (derived, or described twice)"
                );
                target.insert(name.clone(), value.clone());
            }
        }
    }
}
