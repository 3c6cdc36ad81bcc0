//! The user guides (`docs/guide-*.md`) run as written: every ```sh block,
//! in order, in a fresh folder holding copies of `experiments/` and
//! `surveys/` (a fresh checkout's), with `commonlab` on the `PATH` and a
//! fresh SQLite database. A block whose first line is `# needs ...` (a
//! running server, PostgreSQL) is not run; a block that is only
//! `commonlab serve` starts the server in the background (on a free
//! port, so that the guide's later blocks find the study key it creates)
//! until the guide ends. Other languages' blocks are not run.

use super::*;
use std::process::Child;

/// The ```sh blocks of a Markdown text, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None if line.trim_start() == "```sh" => current = Some(String::new()),
            None => {}
            Some(block) if line.trim_start() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// Stops a server the guide started (SIGTERM: a graceful stop) and waits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn run_guide(name: &str) -> usize {
    let md = std::fs::read_to_string(workspace().join("docs").join(name)).unwrap();
    let scratch = Scratch::new("guide");
    copy_dir(
        &workspace().join("experiments"),
        &scratch.join("experiments"),
    );
    copy_dir(&workspace().join("surveys"), &scratch.join("surveys"));
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("commonlab")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server: Option<Server> = None;
    let mut ran = 0;
    for block in sh_blocks(&md) {
        let first = block.lines().next().unwrap_or_default().trim();
        if first.starts_with("# needs") {
            continue;
        }
        if block.trim() == "commonlab serve" {
            assert!(server.is_none(), "{name}: a second server");
            let child = scratch
                .command()
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env("PATH", &path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            server = Some(Server(child));
            // The server is up once it has created the study key (a guard
            // against a hang, not a timing assertion).
            let deadline = Instant::now() + Duration::from_secs(120);
            while !scratch.join("commonlab.study-key").exists() {
                assert!(Instant::now() < deadline, "{name}: serve made no study key");
                std::thread::sleep(Duration::from_millis(50));
            }
            ran += 1;
            continue;
        }
        let mut bash = Command::new("bash");
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("COMMONLAB_") {
                bash.env_remove(var);
            }
        }
        let o = bash
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(&*scratch)
            .env("PATH", &path)
            .env("COMMONLAB_ACTOR", "guide-test")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: this block failed:\n{block}\nstdout:\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        );
        ran += 1;
    }
    drop(server);
    ran
}

#[test]
fn the_guides_sh_blocks_are_found_and_skipped_as_marked() {
    let md = "a\n```sh\ncommonlab flags list\n```\n```python\nx\n```\n```sh\n# needs a running server\ncurl x\n```\n";
    let blocks = sh_blocks(md);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0], "commonlab flags list\n");
    assert!(blocks[1].starts_with("# needs"));
}

#[test]
fn guide_for_researchers_runs_as_written() {
    assert!(run_guide("guide-researchers.md") >= 5);
}

#[test]
fn guide_for_developers_runs_as_written() {
    assert!(run_guide("guide-developers.md") >= 3);
}

#[test]
fn guide_for_survey_authors_runs_as_written() {
    assert!(run_guide("guide-survey-authors.md") >= 5);
}

#[test]
fn guide_for_operators_runs_as_written() {
    assert!(run_guide("guide-operators.md") >= 4);
}
