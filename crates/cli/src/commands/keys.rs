//! `keys`: create, list and revoke API keys.

use super::{change, with_store};
use crate::args::KeysCmd;
use crate::audit::actor;
use crate::output::{self, outln};
use anyhow::Result;
use commonlab_core::auth::Role;
use commonlab_server::settings::Settings;

pub async fn run(settings: &Settings, given_actor: Option<&str>, cmd: KeysCmd) -> Result<()> {
    with_store(&settings.database_url, async |store| match cmd {
        KeysCmd::Create { role, name, reason } => {
            let role: Role = role.parse()?;
            let actor = actor(given_actor)?;
            let meta = change(&actor, &reason);
            let k = commonlab_server::keys::create_key_because(store, &name, role, &meta).await?;
            outln!(
                "Created {} key '{}' (id {}). It is shown only now:",
                k.role,
                k.name,
                k.id
            )?;
            outln!("{}", k.key)
        }
        KeysCmd::List { all } => {
            let list = store.list_api_keys(all).await?;
            outln!(
                "{:<14} {:<11} {:<26} {:<10} NAME",
                "ID",
                "ROLE",
                "CREATED",
                "STATUS"
            )?;
            for k in list {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                outln!(
                    "{:<14} {:<11} {:<26} {:<10} {}",
                    k.id,
                    k.role,
                    output::time(&k.created_at),
                    status,
                    k.name
                )?;
            }
            Ok(())
        }
        KeysCmd::Revoke { id_or_name, reason } => {
            if reason.trim().is_empty() {
                return Err(commonlab_server::Error::ReasonRequired.into());
            }
            let actor = actor(given_actor)?;
            let k = store
                .revoke_api_key_by(&id_or_name, Some(&actor), Some(&reason), chrono::Utc::now())
                .await?;
            outln!("revoked key '{}' ({})", k.name, k.id)
        }
    })
    .await
}
