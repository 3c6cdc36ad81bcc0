//! What the commands print and log: never a database password, an API key
//! or a member's id; database files readable by their owner only.

use super::*;
use std::process::Child;

const PASSWORD: &str = "s3cret-pw";
const UNIT: &str = "member-secret-77";

/// The test PostgreSQL trusts local connections, so a password in the URL
/// is accepted and ignored: enough to see whether it is printed.
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `serve` on `url` with debug logging, its output captured in files of
/// `dir` (not pipes: a pipe nobody reads while the server runs fills up
/// with debug lines and stalls the server), its key files in `dir`;
/// returns once it answers `/readyz`.
async fn serve(url: &str, port: u16, dir: &Path) -> Served {
    let out = dir.join("serve.out");
    let err = dir.join("serve.err");
    let child = commonlab()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--admin-key-file")
        .arg(dir.join("admin.key"))
        .arg("--study-key-file")
        .arg(dir.join("study.key"))
        .env("COMMONLAB_DATABASE_URL", url)
        .env("COMMONLAB_LOG", "debug")
        .env_remove("COMMONLAB_CONFIG")
        .current_dir(std::env::temp_dir())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served { child, out, err }
}

/// A running `serve` and the files its output goes to.
struct Served {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// Stops the server with SIGTERM; its standard output and error together.
fn stop(served: Served) -> String {
    let Served {
        mut child,
        out,
        err,
    } = served;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}");
    format!(
        "{}{}",
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap()
    )
}

#[tokio::test]
async fn output_and_logs_hold_no_password_key_or_unit_id() {
    both_backends(|db| async move {
        let url = with_password(db.url());
        let o = run(&url, &["migrate"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!stdout(&o).contains(PASSWORD), "{}", stdout(&o));
        let o = run(
            &url,
            &[
                "keys", "create", "--role", "admin", "--name", "ops", "--reason", "test",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let admin = stdout(&o).lines().last().unwrap().to_string();

        let port = free_port();
        let dir = Scratch::new("cli-secrets");
        let child = serve(&url, port, &dir).await;
        let client = reqwest::Client::new();
        let consent = format!("http://127.0.0.1:{port}/api/v1/units/{UNIT}/consent");
        let r = client.get(&consent).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = client
            .get(&consent)
            .bearer_auth("cl_bogus_secret_key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = client
            .get(&consent)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let printed = stop(child);

        assert!(!printed.contains(PASSWORD), "{printed}");
        assert!(!printed.contains(UNIT), "{printed}");
        assert!(!printed.contains(&admin) && !printed.contains("cl_bogus_secret_key"));
        // Logged all the same: the route, and the failed authentications.
        assert!(printed.contains("/api/v1/units/{id}/consent"), "{printed}");
        assert!(printed.contains("authentication failed"), "{printed}");
    })
    .await;
}

#[test]
fn connection_errors_do_not_print_the_password() {
    let o = run(
        &format!("postgres://ops:{PASSWORD}@127.0.0.1:1/x"),
        &["flags", "list"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(err.contains("postgres://ops:***@127.0.0.1:1/x"), "{err}");
}

#[tokio::test]
async fn new_sqlite_databases_are_private() {
    let dir = Scratch::new("cli-secrets");
    let db = dir.join("private.db");
    let url = format!("sqlite://{}", db.display());
    let child = serve(&url, free_port(), &dir).await;
    // While the server runs the WAL and its index exist too.
    let mut modes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            modes.push((suffix, mode));
        }
    }
    stop(child);
    for (suffix, mode) in modes {
        assert_eq!(mode, 0o600, "private.db{suffix}: {mode:o}");
    }
}
