//! Sets `COMMONLAB_GIT_COMMIT` (the report's reproducibility footer,
//! `commonlab_report::GIT_COMMIT`):
//!
//! 1. building in a git checkout: `git rev-parse HEAD`, with `-dirty` when
//!    a tracked file differs from HEAD (`git status --porcelain
//!    --untracked-files=no`);
//! 2. else the `COMMONLAB_GIT_COMMIT` environment variable, if set (a
//!    build from a source archive);
//! 3. else `unknown`.
//!
//! Never fails (no git, no `.git`, a detached HEAD are all fine), and
//! never makes every build rebuild: it reruns only when `HEAD`, the ref
//! it points to, `packed-refs` or the variable change (for a worktree,
//! whose `.git` is a file naming its git dir, the worktree's `HEAD` and
//! the shared refs). So `-dirty` is as of the last time one of those
//! changed: commit before a release build.

use std::path::{Path, PathBuf};
use std::process::Command;

const VAR: &str = "COMMONLAB_GIT_COMMIT";

/// The checkout's top and its (git dir, common dir).
fn git_dirs(start: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let dot_git = d.join(".git");
        if dot_git.is_dir() {
            return Some((d.to_path_buf(), dot_git.clone(), dot_git));
        }
        if dot_git.is_file() {
            let text = std::fs::read_to_string(&dot_git).ok()?;
            let git_dir = d.join(text.strip_prefix("gitdir:")?.trim());
            let common = match std::fs::read_to_string(git_dir.join("commondir")) {
                Ok(c) => git_dir.join(c.trim()),
                Err(_) => git_dir.clone(),
            };
            return Some((d.to_path_buf(), git_dir, common));
        }
        dir = d.parent();
    }
    None
}

fn watch(path: &Path) {
    // Only existing files: cargo reruns a script on every build when a
    // watched path is missing.
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(top: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(top)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn from_git(start: &Path) -> Option<String> {
    let (top, git_dir, common) = git_dirs(start)?;
    let head = git_dir.join("HEAD");
    watch(&head);
    if let Some(r) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref:").map(|r| r.trim().to_string()))
    {
        watch(&git_dir.join(&r));
        watch(&common.join(&r));
    }
    watch(&common.join("packed-refs"));
    let commit = git(&top, &["rev-parse", "HEAD"])?;
    if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let dirty = git(&top, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VAR}");
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let commit = manifest
        .as_deref()
        .and_then(from_git)
        .or_else(|| std::env::var(VAR).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env={VAR}={commit}");
}
