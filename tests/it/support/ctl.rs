//! Short forms for etcdctl calls the tests compare: outcome and output,
//! "must succeed", and the error line etcdctl prints last.

use super::etcdctl;

/// `etcdctl` against `endpoint`: (succeeded, stdout, stderr).
pub fn run(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = etcdctl(endpoint, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `etcdctl` that must succeed; its stdout.
pub fn ok(endpoint: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(endpoint, args);
    assert!(ok, "etcdctl {args:?}: {err}");
    out
}

/// The header revision in `etcdctl -w json` output.
pub fn json_revision(json: &str) -> i64 {
    json.split("\"revision\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {json}"))
}

/// The last `Error:` line of etcdctl's stderr, the error itself (etcdctl
/// prints retry noise before it).
pub fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rfind(|l| l.starts_with("Error:"))
        .unwrap_or("")
        .to_string()
}

/// Through `endpoint`: user `root` (password `rootpw`), role `ra` reading and
/// writing `/a/` for user `alice` (`pa`), role `rb` on `/b/` for `bob` (`pb`),
/// then `auth enable`.
pub fn enable_auth_with_alice_and_bob(endpoint: &str) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "ra"],
        &[
            "role",
            "grant-permission",
            "ra",
            "--prefix=true",
            "readwrite",
            "/a/",
        ],
        &["role", "add", "rb"],
        &[
            "role",
            "grant-permission",
            "rb",
            "--prefix=true",
            "readwrite",
            "/b/",
        ],
        &["user", "add", "alice:pa"],
        &["user", "grant-role", "alice", "ra"],
        &["user", "add", "bob:pb"],
        &["user", "grant-role", "bob", "rb"],
        &["auth", "enable"],
    ] {
        ok(endpoint, args);
    }
}
