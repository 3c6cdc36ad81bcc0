//! The web console: server-rendered HTML pages (minijinja, autoescaped,
//! templates in `crates/server/templates/console/` built into the binary)
//! for admins, researchers and developers, working without JavaScript.
//!
//! - Sign-in ([`sign_in`]): an API key of role developer, researcher or
//!   admin is exchanged for a session cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Path=/console`, `Secure` unless `console_secure_cookie = false`),
//!   valid for `console_session_secs`; sign-out ends it.
//! - Sessions ([`session`]): the cookie holds 32 random bytes; the
//!   database (`console_sessions`, migration 0012) holds only their keyed
//!   hash (the key derived from the study key, so every replica on one
//!   database recognises every session). Each page view reads the session
//!   joined with its key: sign-out, expiry and key revocation end it on
//!   every replica at once.
//! - Forms ([`csrf`]): every form carries a token bound to the session,
//!   checked on every post before anything is read or written (refusal: a
//!   403 page).
//! - Layout ([`layout`]): one base template (skip link, header, nav by
//!   role, main landmark), inline CSS allowed by its hash, nothing else.
//! - Pages: home ([`home`]), API keys ([`keys`], admins), the audit log
//!   ([`audit`]); flags; trials ([`trials`], their lifecycle buttons
//!   [`trials_actions`], their cached aggregates [`trials_cache`]) and
//!   surveys ([`surveys`]).
//!
//! # How to add a console page
//!
//! 1. **A module per page** in `crates/server/src/console/` (e.g.
//!    `flags.rs`, `flags_edit.rs`), its templates in
//!    `crates/server/templates/console/` (e.g. `flags.html`).
//! 2. **The guard** is the handler's first argument:
//!    [`ConsoleDeveloper`], [`ConsoleResearcher`] or [`ConsoleAdmin`]
//!    (each derefs to the [`Session`]: `session.caller` is the signed-in
//!    key as an [`crate::auth::Caller`], with `actor()` for audit logs).
//!    Without a session the guard answers 303 to
//!    `/console/sign-in?next=PATH`; with a role below the guard's, a 403
//!    page. The route table reads the guard (`Access::Console(role)`).
//!    What a page *shows* by role: `session.caller.role.allows(Role::X)`.
//! 3. **The template** extends the layout and fills `content`:
//!    ```jinja
//!    {% extends "console/base.html" %}
//!    {% block content %}<h1>{{ layout.title }}</h1> {{ page.rows }} …{% endblock %}
//!    ```
//!    `layout` is the [`layout::Frame`] (title, user, nav, `csrf`), `page`
//!    your view (any `Serialize`). Declare it once and render it:
//!    ```ignore
//!    static FLAGS: Template = Template::new("console/flags.html",
//!        include_str!("../../templates/console/flags.html"));
//!    async fn list(ConsoleDeveloper(s): ConsoleDeveloper, State(ctx): State<ConsoleContext>)
//!        -> Response { s.page(&FLAGS, Nav::Flags, "Flags", &view) }
//!    ```
//!    [`ConsoleContext`] has the store, config, clock, key cache and flag
//!    cache; take other substates (`State<TrialsContext>`, …) beside it.
//!    A unit test calling `FLAGS.check()` catches a template that does not
//!    compile.
//!    (`s.page_status(...)` for another status, [`layout::error_page`]
//!    for a refusal, [`layout::see_other`] after a successful post.)
//!    The template may `{% import "console/macros.html" as m %}`:
//!    `{{ m.csrf(layout) }}` is the hidden token field every form needs,
//!    `{{ m.errors(list) }}` an error summary.
//! 4. **A form** posts with `method="post"` and `{{ m.csrf(layout) }}`;
//!    its handler takes [`ConsoleForm<T>`] as its **last** argument
//!    (`T: Deserialize`, fields by name; `_csrf` is checked and need not be
//!    declared, so do not use `deny_unknown_fields`; a body that does not
//!    deserialize is a 422 page). A post without the session's token, with a wrong one, or
//!    sent cross-site is refused with a 403 page before the handler runs.
//!    After a successful change answer `layout::see_other(url)` (303).
//! 5. **Routes** go in the page module's `routes()` (like
//!    [`home::routes`]), added to [`routes`] below: `Route::get`,
//!    `Route::post` with paths under `/console/`.
//! 6. **Tests**: add each route to the console route × role list in
//!    `crates/server/tests/console/routes.rs` (`console_requests()`: the
//!    matrix test fails for a console route of the table without one, and
//!    posts every form without and with a wrong token expecting 403 and
//!    nothing written); add the page's path to `PAGES` in
//!    `tests/browser/src/console.rs` (signed in as admin, axe-core,
//!    screenshot).

pub mod audit;
pub mod csrf;
pub mod flags;
pub mod flags_edit;
pub mod home;
pub mod keys;
pub mod layout;
pub mod session;
pub mod sign_in;
pub mod surveys;
pub mod trials;
pub mod trials_actions;
pub mod trials_cache;

pub use csrf::ConsoleForm;
pub use layout::{Frame, Nav, Template};
pub use session::{ConsoleAdmin, ConsoleDeveloper, ConsoleResearcher, Session};

use crate::auth::KeyCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::flag_set::FlagCache;
use crate::route::Route;
use axum::extract::FromRef;
use commonlab_store::Store;
use std::sync::Arc;

/// Every console route.
pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    [
        sign_in::routes(),
        home::routes(),
        keys::routes(),
        audit::routes(),
        flags::routes(),
        trials::routes(),
        trials_actions::routes(),
        surveys::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The substate of the console's pages.
#[derive(Clone)]
pub struct ConsoleContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    /// The API keys (sign-in checks a key against them).
    pub keys: KeyCache,
    /// The served flag set (counts on the home page).
    pub flags: FlagCache,
    /// The running trials (refreshed after a trial changes here).
    pub trials: crate::trials::TrialCache,
    /// The trial pages' cached aggregates ([`trials_cache`]).
    pub digests: Arc<trials_cache::TrialDigests>,
    /// Sign-in attempts per client address (`console_sign_in_per_ip_per_minute`).
    pub sign_in_limit: Arc<crate::surveys::pages::limits::Keyed<std::net::IpAddr>>,
}
