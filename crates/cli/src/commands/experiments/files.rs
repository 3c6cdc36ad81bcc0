//! Trial files and metric libraries on disk: `experiments validate`, and
//! reading a trial file with the metric library beside it inlined.

use crate::commands::with_store;
use crate::output::{errln, outln};
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::experiments::{MetricLibrary, SpecError};
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_server::service;
use commonlab_server::settings::Settings;
use std::path::{Path, PathBuf};

/// Validates trial files offline: every error of every file, then exit 1
/// if there was any.
pub async fn validate(settings: &Settings, paths: &[PathBuf], flags: Option<&Path>) -> Result<()> {
    let default_flags = PathBuf::from("experiments/flags.json");
    let flag_file = flags
        .map(Path::to_path_buf)
        .or_else(|| default_flags.exists().then_some(default_flags));
    let (flag_set, against) = match &flag_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (fs, _) = FlagSet::from_json_str(&text, LoadMode::Lenient)
                .map_err(|e| anyhow!("{}:{e}", path.display()))?;
            (fs, path.display().to_string())
        }
        None => {
            let url = &settings.database_url;
            let (_, doc) = with_store(url, async |store| {
                Ok(service::head(store, &settings.flag_set).await?)
            })
            .await?;
            let (fs, _) = FlagSet::from_value(&doc, LoadMode::Lenient)?;
            (fs, format!("the flag set in {url}"))
        }
    };
    let files = toml_files(paths)?;
    if files.is_empty() {
        bail!("no trial files (*.toml) found");
    }
    let mut errors = 0usize;
    let (libraries, files): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.file_name().is_some_and(|n| n == "metrics.toml"));
    for lib in &libraries {
        match load_library(lib) {
            Ok(l) => outln!(
                "ok  {} (metric library, {} metrics)",
                lib.display(),
                l.metrics.len()
            )?,
            Err(e) => {
                errln!("{e}");
                errors += e.to_string().lines().count();
            }
        }
    }
    for file in &files {
        let source = match trial_source(file) {
            Ok(s) => s,
            Err(e) => {
                errln!("{e}");
                errors += e.to_string().lines().count();
                continue;
            }
        };
        let name = file.display().to_string();
        match commonlab_server::trial_service::check(&source, &name, &flag_set) {
            Ok(spec) => outln!(
                "ok  {} (trial {}, {} design)",
                file.display(),
                spec.key,
                spec.design.kind()
            )?,
            Err(errs) => {
                for e in &errs {
                    errln!("{e}");
                }
                errors += errs.len();
            }
        }
    }
    if errors > 0 {
        bail!(
            "{errors} error(s) in {} file(s) (flags checked against {against})",
            files.len()
        );
    }
    outln!(
        "{} trial file(s) valid (flags checked against {against})",
        files.len()
    )
}

/// The `*.toml` files named, or in the directories named (default
/// `experiments/`), sorted within each directory.
fn toml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from("experiments")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if root.exists() {
            files.push(root);
        } else {
            bail!("{}: no such file or directory", root.display());
        }
    }
    Ok(files)
}

/// The metric library beside a trial file: `metrics.toml` in its directory.
fn library_beside(file: &Path) -> Result<Option<MetricLibrary>> {
    let path = file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("metrics.toml");
    if !path.exists() {
        return Ok(None);
    }
    load_library(&path).map(Some)
}

/// A metric library file; every error on a line of its own.
pub fn load_library(path: &Path) -> Result<MetricLibrary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    commonlab_core::experiments::parse_metric_library(&text, &path.display().to_string())
        .map_err(|errs| anyhow!(join_errors(&errs, "\n")))
}

/// The errors of a file, each with its place, joined by `separator`.
pub fn join_errors(errs: &[SpecError], separator: &str) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(separator)
}

/// A trial file's text with its metric references inlined from the
/// library beside it (unchanged when it has none).
pub fn trial_source(file: &Path) -> Result<String> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match library_beside(file)? {
        Some(lib) => commonlab_core::experiments::inline_metric_refs(
            &source,
            &file.display().to_string(),
            &lib,
        )
        .map_err(|errs| anyhow!(join_errors(&errs, "\n"))),
        None => Ok(source),
    }
}
