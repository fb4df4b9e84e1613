//! Strings are bytes: etcd never checks its API's `string` fields for UTF-8,
//! so user names, role names and passwords may be any bytes. Through the
//! proxy they must pass as they do to the member (before the proxy declared
//! them `bytes`, prost refused them with `Internal`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::support::ctl::ok;
use crate::support::{etcdctl, Cluster, TestProxy};

const USER: &[u8] = b"u\xff";
const ROLE: &[u8] = b"r\xfe";
const PASSWORD: &[u8] = b"p\xfd";

/// `etcdctl` with arguments that need not be UTF-8: (succeeded, stdout, stderr).
fn ctl(endpoint: &str, args: &[&[u8]]) -> (bool, Vec<u8>, String) {
    let args: Vec<&OsStr> = args.iter().map(|a| OsStr::from_bytes(a)).collect();
    let out = etcdctl(endpoint, &args);
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `args` as a readable command line, for failure messages.
fn shown(args: &[&[u8]]) -> String {
    String::from_utf8_lossy(&args.join(&b' ')).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_user_and_role_names_pass_through() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    // Written through the proxy.
    let password = [b"--new-user-password=", PASSWORD].concat();
    for args in [
        &[b"user".as_slice(), b"add", USER, &password][..],
        &[b"role", b"add", ROLE],
        &[b"user", b"grant-role", USER, ROLE],
        &[
            b"role",
            b"grant-permission",
            ROLE,
            b"--prefix=true",
            b"readwrite",
            b"/s/",
        ],
    ] {
        let (done, _, err) = ctl(&via, args);
        assert!(done, "{} through the proxy: {err}", shown(args));
    }

    // Read through the proxy and from the member: the same bytes.
    for args in [
        &[b"user".as_slice(), b"list"][..],
        &[b"user", b"get", USER],
        &[b"role", b"list"],
        &[b"role", b"get", ROLE],
    ] {
        let (d_ok, d_out, d_err) = ctl(&direct, args);
        let (p_ok, p_out, p_err) = ctl(&via, args);
        assert!(d_ok, "{} on the member: {d_err}", shown(args));
        assert!(p_ok, "{} through the proxy: {p_err}", shown(args));
        assert!(
            p_out == d_out,
            "{}: proxy {:?}, member {:?}",
            shown(args),
            String::from_utf8_lossy(&p_out),
            String::from_utf8_lossy(&d_out)
        );
    }

    // With auth on, the user logs in (Authenticate) with its name and password.
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        ok(&via, args);
    }
    let login = [b"--user=", USER, b":", PASSWORD].concat();
    let (put_ok, _, err) = ctl(&via, &[&login, b"put", b"/s/1", b"x"]);
    assert!(put_ok, "put as the non-UTF-8 user through the proxy: {err}");
    let get = [&login[..], b"get", b"/s/1"];
    let (d_ok, d_out, d_err) = ctl(&direct, &get);
    let (p_ok, p_out, p_err) = ctl(&via, &get);
    assert!(
        d_ok && p_ok,
        "get as the non-UTF-8 user: member: {d_err} proxy: {p_err}"
    );
    assert_eq!(p_out, d_out);
}
