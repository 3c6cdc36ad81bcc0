//! `GET /console/` (and `/console`, sent there): what there is, for the signed-in role: flags (served
//! revision, enabled and disabled), trials by state, and, for researchers
//! and admins, survey instruments and campaigns. Counts come from the
//! replica's flag cache and two small listings (trials, surveys), never
//! from raw events.

use super::layout::{self, Nav, Template};
use super::session::ConsoleDeveloper;
use super::ConsoleContext;
use crate::route::Route;
use axum::extract::{FromRef, State};
use axum::response::Response;
use commonlab_core::auth::Role;
use commonlab_core::flags::FlagState;
use commonlab_store::TrialStatus;
use serde::Serialize;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/", home),
        Route::get("/console", to_home),
    ]
}

static HOME: Template = Template::new(
    "console/home.html",
    include_str!("../../templates/console/home.html"),
);

#[derive(Serialize)]
struct Count {
    label: &'static str,
    count: usize,
}

#[derive(Serialize)]
struct HomeView {
    revision: i64,
    flags: Vec<Count>,
    trials: Vec<Count>,
    surveys: Option<Vec<Count>>,
}

async fn home(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
) -> Response {
    let loaded = ctx.flags.snapshot();
    let enabled = loaded
        .set
        .flags()
        .filter(|f| f.state() == FlagState::Enabled)
        .count();
    let flags = vec![
        Count {
            label: "Flags",
            count: loaded.set.len(),
        },
        Count {
            label: "Enabled",
            count: enabled,
        },
        Count {
            label: "Disabled",
            count: loaded.set.len() - enabled,
        },
    ];
    let trials = match ctx.store.list_trials(None).await {
        Ok(t) => t,
        Err(e) => return layout::store_failed(&s, e),
    };
    let trials = TrialStatus::ALL
        .iter()
        .map(|status| Count {
            label: status_label(*status),
            count: trials.iter().filter(|t| t.status == *status).count(),
        })
        .collect();
    let surveys = if s.caller.role.allows(Role::Researcher) {
        let (instruments, campaigns) =
            match tokio::try_join!(ctx.store.list_instruments(), ctx.store.list_campaigns()) {
                Ok(x) => x,
                Err(e) => return layout::store_failed(&s, e),
            };
        let mut keys: Vec<&str> = instruments.iter().map(|i| i.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        Some(vec![
            Count {
                label: "Instruments",
                count: keys.len(),
            },
            Count {
                label: "Published versions",
                count: instruments.len(),
            },
            Count {
                label: "Campaigns",
                count: campaigns.len(),
            },
        ])
    } else {
        None
    };
    let view = HomeView {
        revision: loaded.revision,
        flags,
        trials,
        surveys,
    };
    s.page(&HOME, Nav::Home, "Overview", &view)
}

/// `/console` without its slash: to the overview (or, signed out, to sign
/// in and back).
async fn to_home(_: ConsoleDeveloper) -> Response {
    layout::see_other("/console/")
}

fn status_label(s: TrialStatus) -> &'static str {
    match s {
        TrialStatus::Draft => "Draft",
        TrialStatus::Running => "Running",
        TrialStatus::Stopped => "Stopped",
        TrialStatus::Concluded => "Concluded",
        TrialStatus::Archived => "Archived",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_template_compiles() {
        super::HOME.check().unwrap();
    }
}
