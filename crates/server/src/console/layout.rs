//! How console pages look: the layout every page extends
//! (`console/base.html`: skip link, header with who is signed in and the
//! sign-out button, the nav by role, the main landmark), the shared
//! macros (`console/macros.html`), the page [`Template`]s, the [`Frame`]
//! every template gets as `layout`, and the HTML responses' headers: never
//! cached, no referrer, and a content security policy allowing nothing but
//! the console's own inline style (by its hash): no script, image, frame or
//! other origin.

use super::session::Session;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use commonlab_core::auth::Role;
use minijinja::{AutoEscape, Environment};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::{LazyLock, OnceLock};

/// The console's style sheet, inlined in every page.
pub const CSS: &str = include_str!("../../templates/console/style.css");
const BASE: &str = include_str!("../../templates/console/base.html");
const MACROS: &str = include_str!("../../templates/console/macros.html");

/// A page template: its name (`console/NAME.html`) and source, compiled
/// once, on first use, beside the layout and the macros. Declare one as a
/// `static` in the page's module.
pub struct Template {
    name: &'static str,
    source: &'static str,
    env: OnceLock<Result<Environment<'static>, String>>,
}

impl Template {
    pub const fn new(name: &'static str, source: &'static str) -> Template {
        Template {
            name,
            source,
            env: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn env(&self) -> Result<&Environment<'static>, &str> {
        self.env
            .get_or_init(|| {
                let mut env = Environment::new();
                env.set_auto_escape_callback(|_| AutoEscape::Html);
                for (name, source) in [
                    ("console/base.html", BASE),
                    ("console/macros.html", MACROS),
                    (self.name, self.source),
                ] {
                    env.add_template(name, source)
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                Ok(env)
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether the template (and the layout) compile: for the tests.
    pub fn check(&self) -> Result<(), String> {
        self.env().map(|_| ()).map_err(str::to_string)
    }
}

/// The nav's entries: the page a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Home,
    Flags,
    Trials,
    Surveys,
    Audit,
    Keys,
    /// Pages outside the nav (sign-in, errors).
    None,
}

/// The nav, in order: label, path, entry, and the role that may open it.
const NAV: [(&str, &str, Nav, Role); 6] = [
    ("Home", "/console/", Nav::Home, Role::Developer),
    ("Flags", "/console/flags", Nav::Flags, Role::Developer),
    ("Trials", "/console/trials", Nav::Trials, Role::Developer),
    (
        "Surveys",
        "/console/surveys",
        Nav::Surveys,
        Role::Researcher,
    ),
    ("Audit", "/console/audit", Nav::Audit, Role::Developer),
    ("Keys", "/console/keys", Nav::Keys, Role::Admin),
];

/// Whether `role` may open the nav entry `nav`.
pub fn may_open(role: Role, nav: Nav) -> bool {
    NAV.iter()
        .find(|(_, _, n, _)| *n == nav)
        .is_none_or(|(.., needed)| role.allows(*needed))
}

#[derive(Debug, Serialize)]
pub struct NavLink {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub name: String,
    pub role: &'static str,
}

/// What every console template has, as `layout`.
#[derive(Debug, Serialize)]
pub struct Frame {
    /// The page's title (the `<title>` adds " – Commonlab console").
    pub title: String,
    pub css: &'static str,
    /// Who is signed in (none on the sign-in and some error pages).
    pub user: Option<User>,
    /// The entries this user's role may open.
    pub nav: Vec<NavLink>,
    /// The session's form token (empty when signed out).
    pub csrf: String,
}

impl Frame {
    /// The frame of a page seen by `session`, `nav` marked current.
    pub fn signed_in(session: &Session, nav: Nav, title: &str) -> Frame {
        let role = session.caller.role;
        Frame {
            title: title.to_string(),
            css: CSS,
            user: Some(User {
                name: session.caller.name.clone(),
                role: role.as_str(),
            }),
            nav: NAV
                .iter()
                .filter(|(.., needed)| role.allows(*needed))
                .map(|(label, href, n, _)| NavLink {
                    label,
                    href,
                    current: *n == nav,
                })
                .collect(),
            csrf: session.csrf.clone(),
        }
    }

    /// The frame of a page seen without a session.
    pub fn signed_out(title: &str) -> Frame {
        Frame {
            title: title.to_string(),
            css: CSS,
            user: None,
            nav: Vec::new(),
            csrf: String::new(),
        }
    }
}

/// Nothing but the console's own style.
pub static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("ASCII")
});

/// An HTML answer with the console's headers.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// Renders `template` with `frame` as `layout` and `page` as `page`.
pub fn render<T: Serialize>(
    template: &'static Template,
    frame: &Frame,
    page: &T,
    status: StatusCode,
) -> Response {
    let rendered = template.env().map_err(str::to_string).and_then(|env| {
        env.get_template(template.name)
            .and_then(|t| {
                t.render(minijinja::context! {
                    layout => minijinja::Value::from_serialize(frame),
                    page => minijinja::Value::from_serialize(page),
                })
            })
            .map_err(|e| format!("{e:#}"))
    });
    match rendered {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template = template.name, error = %e, "a console template failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be rendered.</p>"
                    .to_string(),
            )
        }
    }
}

/// A 303 to `to` (a local path), never cached.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub static ERROR: Template = Template::new(
    "console/error.html",
    include_str!("../../templates/console/error.html"),
);

#[derive(Serialize)]
struct ErrorView<'a> {
    text: &'a str,
}

/// A page saying what went wrong (`heading`, `text`), with `status`; in
/// the layout of `session` when there is one.
pub fn error_page(
    session: Option<&Session>,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    let frame = match session {
        Some(s) => Frame::signed_in(s, Nav::None, heading),
        None => Frame::signed_out(heading),
    };
    render(&ERROR, &frame, &ErrorView { text }, status)
}

/// 503 with `Retry-After`: the database cannot be reached.
pub fn unavailable() -> Response {
    let mut r = error_page(
        None,
        StatusCode::SERVICE_UNAVAILABLE,
        "The console is unavailable",
        "The database cannot be reached right now. Try again in a few seconds.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// A store failure on a console page: 503 when the database is
/// unavailable, else 500 (logged); `NotFound` is the caller's to handle.
pub fn store_failed(session: &Session, e: commonlab_store::StoreError) -> Response {
    match e {
        commonlab_store::StoreError::Unavailable(_) => unavailable(),
        e => {
            tracing::error!(error = %e, "a console page could not read or write the store");
            error_page(
                Some(session),
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The page could not be shown. The error was logged.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_and_the_error_page_compile_and_the_policy_allows_the_style() {
        ERROR.check().unwrap();
        let r = error_page(None, StatusCode::FORBIDDEN, "No", "no");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
    }

    #[test]
    fn the_nav_follows_the_role() {
        assert!(may_open(Role::Developer, Nav::Audit));
        assert!(!may_open(Role::Developer, Nav::Surveys));
        assert!(!may_open(Role::Researcher, Nav::Keys));
        assert!(may_open(Role::Admin, Nav::Keys));
    }
}
