//! `units erase`: everything stored about a member, in one transaction,
//! logged with who and why.

use super::{change, with_store};
use crate::args::UnitsCmd;
use crate::audit::actor;
use crate::output::outln;
use crate::study_key;
use anyhow::Result;
use commonlab_server::settings::Settings;

pub async fn run(settings: &Settings, given_actor: Option<&str>, cmd: UnitsCmd) -> Result<()> {
    let UnitsCmd::Erase { id, reason, .. } = cmd;
    let actor = actor(given_actor)?;
    let (unit, counts) = with_store(&settings.database_url, async |store| {
        let key = study_key::existing(&settings.study_key_file, store).await?;
        let meta = change(&actor, &reason);
        Ok(commonlab_server::units::erase_unit(store, &key, &id, &meta).await?)
    })
    .await?;
    outln!(
        "erased unit {unit}: {} events, {} exposures, {} assignments, {} consent records (logged)",
        counts.events,
        counts.exposures,
        counts.assignments,
        counts.consents
    )
}
