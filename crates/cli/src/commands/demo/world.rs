//! The demo's simulated world: the communities of the example trials, the
//! arms' effects (combined when a member is in both trials), and how the
//! simulator's events are named on the platform the trials measure.

use anyhow::{anyhow, bail, Result};
use commonlab_sim::params::CONTRIBUTIONS;
use commonlab_sim::{ArmEffect, SimParams};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The pilot communities both example trials name, in the order the sizes
/// of `--members` are given.
pub const COMMUNITIES: [&str; 4] = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];

/// The effects when none is given: the banner helps more than the heart
/// (the thanks-button trial's hypothesis), the dashboard a little.
pub const DEFAULT_EFFECTS: [&str; 3] = ["heart:*=1.3", "banner:*=1.6", "on:*=1.3"];

/// `ARM:EVENT=MULTIPLIER` into `(arm, event, multiplier)`.
pub fn parse_effect(e: &str) -> Result<(String, String, f64)> {
    let (arm, rest) = e.split_once(':').ok_or_else(|| {
        anyhow!("--effect '{e}': expected ARM:EVENT=MULTIPLIER, e.g. heart:*=1.5")
    })?;
    let (event, mult) = rest
        .split_once('=')
        .ok_or_else(|| anyhow!("--effect '{e}': expected ARM:EVENT=MULTIPLIER"))?;
    let mult: f64 = mult
        .parse()
        .map_err(|_| anyhow!("--effect '{e}': '{mult}' is not a number"))?;
    if !(mult.is_finite() && mult >= 0.0) {
        bail!("--effect '{e}': the multiplier must be a number of at least 0");
    }
    Ok((arm.to_string(), event.to_string(), mult))
}

/// The communities (named after the trials' own) with the effects of each
/// single arm, then of every combination of one arm of each trial
/// (`heart+on`: the product of the multipliers), as the driver names a
/// member's arms ([`commonlab_sim::drive::Target::also_flags`]).
pub fn params(
    members: &[u32],
    effects: &[String],
    spillover: f64,
    arms: &[Vec<String>; 2],
) -> Result<SimParams> {
    if members.is_empty() || members.len() > COMMUNITIES.len() {
        bail!(
            "--members: 1 to {} community sizes ({})",
            COMMUNITIES.len(),
            COMMUNITIES.join(", ")
        );
    }
    let mut p = SimParams::with_sizes(members);
    for (c, name) in p.communities.iter_mut().zip(COMMUNITIES) {
        c.name = name.to_string();
    }
    let given: Vec<String> = if effects.is_empty() {
        DEFAULT_EFFECTS.iter().map(|s| s.to_string()).collect()
    } else {
        effects.to_vec()
    };
    let mut single: BTreeMap<String, ArmEffect> = BTreeMap::new();
    for e in &given {
        let (arm, event, mult) = parse_effect(e)?;
        if !arms.iter().flatten().any(|a| *a == arm) {
            bail!(
                "--effect '{e}': '{arm}' is not an arm of the example trials ({})",
                arms.iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        single
            .entry(arm)
            .or_default()
            .rate_multipliers
            .insert(event, mult);
    }
    for a in &arms[0] {
        for b in &arms[1] {
            let parts: Vec<&ArmEffect> = [a, b].iter().filter_map(|x| single.get(*x)).collect();
            if parts.is_empty() {
                continue;
            }
            p.effects.insert(format!("{a}+{b}"), combine(&parts));
        }
    }
    p.effects.extend(single);
    p.spillover = spillover;
    p.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(p)
}

/// A member's multiplier of `name` under `effect`, as the simulator reads it.
fn multiplier(effect: &ArmEffect, name: &str) -> f64 {
    match effect.rate_multipliers.get(name) {
        Some(m) => *m,
        None if CONTRIBUTIONS.contains(&name) => {
            effect.rate_multipliers.get("*").copied().unwrap_or(1.0)
        }
        None => 1.0,
    }
}

/// The effect of being in several arms at once: multipliers multiply,
/// survey shifts add.
fn combine(parts: &[&ArmEffect]) -> ArmEffect {
    let mut names: Vec<String> = CONTRIBUTIONS.iter().map(|s| s.to_string()).collect();
    names.extend(
        parts
            .iter()
            .flat_map(|p| p.rate_multipliers.keys().cloned()),
    );
    names.sort();
    names.dedup();
    let rate_multipliers = names
        .into_iter()
        .filter(|n| n != "*")
        .map(|n| {
            let m = parts.iter().map(|p| multiplier(p, &n)).product();
            (n, m)
        })
        .collect();
    ArmEffect {
        rate_multipliers,
        retention_multiplier: parts.iter().map(|p| p.retention_multiplier).product(),
        survey_shift: parts.iter().map(|p| p.survey_shift).sum(),
    }
}

/// The platform's name for a simulated event, as the example trials'
/// metrics count them: edits, reviews and completed tasks are
/// `contribution_created` (with `kind`), comments are replies by other
/// members (`reply_created`, `self_reply = false`), `session_start` is
/// `session_started`, `thanks_sent` is `thanks_given`.
pub fn vocabulary(name: &'static str) -> Option<(String, Map<String, Value>)> {
    let mut props = Map::new();
    let platform = match name {
        "edit" | "review" | "task_completed" => {
            props.insert("kind".into(), json!(name));
            "contribution_created"
        }
        "comment" => {
            props.insert("self_reply".into(), json!(false));
            "reply_created"
        }
        "session_start" => "session_started",
        "thanks_sent" => "thanks_given",
        other => other,
    };
    Some((platform.to_string(), props))
}
