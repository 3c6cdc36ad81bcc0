//! Who makes a change from the command line, for the audit logs.

use anyhow::{anyhow, bail, Result};

/// Who makes a change, as the audit logs name it: `cli:` and `--actor`
/// (`COMMONLAB_ACTOR`), else the operating system's user running the
/// command (its account name, not `$USER`, which cron and containers may
/// leave unset), else `$USER` or `$LOGNAME`; an error when none is known.
pub fn actor(given: Option<&str>) -> Result<String> {
    let name = given
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| whoami::username().ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| {
            ["USER", "LOGNAME"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        })
        .ok_or_else(|| {
            anyhow!("cannot tell who makes this change: pass --actor NAME or set COMMONLAB_ACTOR")
        })?;
    if name.chars().any(char::is_control) || name.len() > 100 {
        bail!("--actor: 1 to 100 printable characters");
    }
    Ok(format!("cli:{name}"))
}
