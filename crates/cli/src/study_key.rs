//! The study key file, bound to its database: the key's fingerprint is
//! recorded in the database at first use, and a command that would
//! pseudonymise with another key (a `serve` started elsewhere, a replica
//! with a key of its own, an import or an erasure with the wrong file) is
//! refused, since its pseudonyms would match nothing stored. A key is
//! created only by `serve`, only where no pseudonymised data and no other
//! key's fingerprint exist.

use crate::output::errln;
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::privacy::StudyKey;
use commonlab_store::Store;
use std::path::Path;

/// For `serve`: the key in `path`, or a new one written there (readable by
/// its owner only) when the database has no pseudonymised data and no
/// recorded key.
pub async fn for_serve(path: &Path, store: &Store) -> Result<StudyKey> {
    if let Some(key) = read(path)? {
        bind(path, &key, store).await?;
        return Ok(key);
    }
    let state = store.study_key_state().await?;
    if let Some(recorded) = state.fingerprint {
        bail!(
            "study key file {} not found, and this database's units were pseudonymised with the key of fingerprint {recorded}: restore that key file from your backup, or point --study-key-file (COMMONLAB_STUDY_KEY_FILE) at it; every replica needs the same key",
            path.display()
        );
    }
    if state.pseudonymised_data {
        bail!(
            "study key file {} not found, and this database holds pseudonymised data: restore the key they were pseudonymised with, or point --study-key-file (COMMONLAB_STUDY_KEY_FILE) at it; a new key would leave them out of erasure and consent",
            path.display()
        );
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let key = StudyKey::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
    write_private(path, &key.to_key_file())
        .with_context(|| format!("cannot create the study key file {}", path.display()))?;
    let fingerprint = key.fingerprint();
    let recorded = match store
        .record_study_key(&fingerprint, chrono::Utc::now())
        .await
    {
        Ok(recorded) => recorded,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
    };
    if recorded != fingerprint {
        // Another replica started first with a key of its own.
        let _ = std::fs::remove_file(path);
        bail!(
            "another process recorded the study key of fingerprint {recorded} for this database while this one created {}: copy that key file here (every replica needs the same key)",
            path.display()
        );
    }
    errln!(
        "Created a study key in {} (fingerprint {fingerprint}, recorded in the database). Keep it secret and back it up apart from the database: units are pseudonymised with it, every replica needs a copy, and destroying every copy makes the stored data anonymous.",
        path.display()
    );
    Ok(key)
}

/// For commands that read or write pseudonymised data: the key in `path`
/// (never created), refused unless it is the database's.
pub async fn existing(path: &Path, store: &Store) -> Result<StudyKey> {
    let Some(key) = read(path)? else {
        bail!(
            "study key file {} not found: units must be pseudonymised with the key the server uses (--study-key-file, COMMONLAB_STUDY_KEY_FILE)",
            path.display()
        );
    };
    bind(path, &key, store).await?;
    Ok(key)
}

/// The key in `path` (`None` when there is no such file), with a warning
/// when other users may read or change the file.
fn read(path: &Path) -> Result<Option<StudyKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("cannot read the study key file {}: {e}", path.display()),
    };
    let key = StudyKey::from_key_file(&text)
        .map_err(|e| anyhow!("study key file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            errln!(
                "warning: the study key file {} can be read or changed by other users (mode {mode:03o}); make it private: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok(Some(key))
}

/// Records the key's fingerprint if the database has none; refuses a key
/// that is not the recorded one.
async fn bind(path: &Path, key: &StudyKey, store: &Store) -> Result<()> {
    let fingerprint = key.fingerprint();
    let state = store.study_key_state().await?;
    let recorded = match state.fingerprint {
        Some(recorded) => recorded,
        None => {
            let recorded = store
                .record_study_key(&fingerprint, chrono::Utc::now())
                .await?;
            if recorded == fingerprint && state.pseudonymised_data {
                errln!(
                    "notice: recorded the study key of {} (fingerprint {fingerprint}) for data stored before fingerprints were kept; from now on only this key is accepted",
                    path.display()
                );
            }
            recorded
        }
    };
    if recorded != fingerprint {
        bail!(
            "study key file {} (fingerprint {fingerprint}) is not the key this database's units were pseudonymised with (fingerprint {recorded}): use that key file; every replica and command on one database needs the same key",
            path.display()
        );
    }
    Ok(())
}

pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
