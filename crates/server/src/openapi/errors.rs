//! Error answers many operations share, written once: an annotation lists
//! the set beside its own answers, as in
//! `responses((status = 200, ...), crate::openapi::errors::BodyErrors)`.
//! All are RFC 9457 problem details (the `Problem` shape).

use super::shapes::Problem;

/// A JSON request body the server could not take: not JSON (400), too
/// large (413), not `application/json` (415), or a field invalid (422).
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(
        status = 400,
        description = "The body is not JSON.",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
    #[response(
        status = 413,
        description = "The body is over the size limit.",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "The body is not `application/json`.",
        content_type = "application/problem+json"
    )]
    NotJsonMediaType(Problem),
    #[response(
        status = 422,
        description = "A field is invalid (named by `errors[].pointer`).",
        content_type = "application/problem+json"
    )]
    InvalidField(Problem),
}

/// A query parameter the server could not take (422).
#[derive(utoipa::IntoResponses)]
pub enum QueryErrors {
    #[response(
        status = 422,
        description = "A query parameter is invalid (named by `errors[].pointer`).",
        content_type = "application/problem+json"
    )]
    InvalidParameter(Problem),
}

/// An `If-Match` that is not the current ETag (412): the resource changed
/// since the client read it; nothing was changed.
#[derive(utoipa::IntoResponses)]
pub enum StaleErrors {
    #[response(
        status = 412,
        description = "`If-Match` is not the current ETag: the resource changed since you read it (nothing was changed; read it again). For a flag or the flag set, `currentRevision` is the flag set's current revision.",
        content_type = "application/problem+json"
    )]
    Stale(Problem),
}
