//! Drives the real `commonlab` binary, on SQLite and PostgreSQL. One module
//! per area; this file holds what they share: running the binary without
//! the caller's `COMMONLAB_` variables, and [`Scratch`], a temporary folder
//! owned by one test.

use commonlab_store::testing::both_backends;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commonlab");

mod analyze;
mod config;
mod demo;
mod events;
mod flags;
mod guides;
mod loadtest;
mod output;
mod power;
mod privacy;
mod report;
mod secrets;
mod serve;
mod simulate;
mod surveys;
mod trials;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `commonlab` binary, with none of the `COMMONLAB_` variables of the
/// environment the tests run in (each test sets what it means).
fn commonlab() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    command
}

fn run(db: &str, args: &[&str]) -> Output {
    commonlab()
        .args(args)
        .env("COMMONLAB_DATABASE_URL", db)
        .env("COMMONLAB_ACTOR", "cli-test")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run commonlab")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary folder owned by one test: removed with everything in
/// it when dropped, so also when the test panics (the value is dropped
/// while unwinding). Use it as a `Path`.
struct Scratch(tempfile::TempDir);

impl Scratch {
    /// A new folder named `commonlab-NAME-` and a random suffix.
    fn new(name: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("commonlab-{name}-"))
            .tempdir()
            .expect("create a temporary folder");
        Scratch(dir)
    }

    /// Writes `text` to the file `name` in this folder; its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `commonlab` run in this folder ([`commonlab`]).
    fn command(&self) -> Command {
        let mut command = commonlab();
        command.current_dir(self.0.path());
        command
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// The fixture removes its folder even when its test panics.
#[test]
fn scratch_folders_are_removed_even_on_panic() {
    let kept = std::sync::Mutex::new(PathBuf::new());
    let panicked = std::panic::catch_unwind(|| {
        let dir = Scratch::new("panics");
        dir.write("file", "x");
        *kept.lock().unwrap() = dir.to_path_buf();
        panic!("a deliberate panic: the Scratch folder must still be removed");
    });
    assert!(panicked.is_err());
    let path = kept.into_inner().unwrap();
    assert!(path.starts_with(std::env::temp_dir()), "{}", path.display());
    assert!(!path.exists(), "{} was left behind", path.display());
    let dir = Scratch::new("drops");
    let path = dir.to_path_buf();
    assert!(path.is_dir());
    drop(dir);
    assert!(!path.exists());
}
