//! Black-box tests of configuration loading with real files: the seed examples, TLS files
//! that must be readable, unreadable config files, and the file-descriptor limit.

use std::path::{Path, PathBuf};

use sluice::config::model::{Balance, Mode, Protocol, SendProxy};
use sluice::config::{limits, load_file, load_file_with, load_str, load_str_with, LoadOptions};

use crate::support::skip;

fn content(text: &str) -> Result<sluice::config::Config, sluice::config::ConfigError> {
    load_str_with(text, "t.toml", &LoadOptions::content_only())
}

/// An http frontend with TLS files under `dir`.
fn tls_config(dir: &Path, cert: &str, log: &str) -> String {
    let p = |f: &str| dir.join(f).display().to_string();
    format!(
        "[[frontend]]\nname = \"edge\"\nbind = [\"127.0.0.1:8443\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{}\"\n[frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\nticket_keys = [\"{}\"]\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\nservers = [{{ addr = \"unix:/tmp/app.sock\" }}]\n\n\
         [global]\nmax_connections = 100\n",
        p(log),
        p(cert),
        p("key.pem"),
        p("ticket")
    )
}

#[test]
fn tls_files_must_exist_and_be_readable() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem", "ticket"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let good = tls_config(dir.path(), "cert.pem", "edge.log");
    load_str(&good, "t.toml").unwrap();

    let missing = tls_config(dir.path(), "nope.pem", "edge.log");
    let err = load_str(&missing, "t.toml").unwrap_err();
    assert_eq!(
        (err.line, err.col, err.key.as_str()),
        (8, 8, "frontend[0].tls.cert"),
        "{err}"
    );
    assert!(
        err.message.contains("nope.pem") && err.message.contains("No such file"),
        "{err}"
    );
    assert!(
        content(&missing).is_ok(),
        "content-only loading skips the files"
    );

    let is_dir = tls_config(dir.path(), "", "edge.log");
    let err = load_str(&is_dir, "t.toml").unwrap_err();
    assert!(err.message.contains("not a regular file"), "{err}");

    let bad_log = tls_config(dir.path(), "cert.pem", "no/such/dir/edge.log");
    let err = load_str(&bad_log, "t.toml").unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (6, "frontend[0].access_log"),
        "{err}"
    );
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

#[test]
fn seed_lb_example_loads() {
    let cfg = load_file_with(&example("lb.toml"), &LoadOptions::content_only()).unwrap();
    assert_eq!(cfg.global.max_connections, 20_000);
    let f = &cfg.frontends[0];
    assert_eq!(
        (f.name.as_str(), f.bind.as_slice(), f.mode),
        ("https-in", &["0.0.0.0:443".to_string()][..], Mode::Tcp)
    );
    let b = &cfg.backends[0];
    assert_eq!(
        (b.name.as_str(), b.balance, b.send_proxy),
        ("https-servers", Balance::Roundrobin, SendProxy::V1)
    );
    assert!(b.health.is_some());
    let servers: Vec<_> = b
        .servers
        .iter()
        .map(|s| (s.name.clone().unwrap(), s.addr.clone()))
        .collect();
    assert_eq!(
        servers,
        [
            ("srv1".into(), "10.0.0.11:443".into()),
            ("srv2".into(), "10.0.0.12:443".into())
        ]
    );
    // Its content needs no files: the full check passes wherever 20000 connections fit.
    if limits::check_nofile(limits::fds_needed(&cfg)).is_ok() {
        load_file(&example("lb.toml")).unwrap();
    }
}

#[test]
fn seed_app_example_loads() {
    let cfg = load_file_with(&example("app.toml"), &LoadOptions::content_only()).unwrap();
    let f = &cfg.frontends[0];
    assert_eq!(f.mode, Mode::Http);
    let pp = f.proxy_protocol.as_ref().unwrap();
    assert_eq!(pp.trusted, ["10.0.0.10/32"]);
    assert_eq!(f.tls.as_ref().unwrap().cert, "/etc/ssl/example/ssl.crt");
    let b = &cfg.backends[0];
    assert_eq!(
        (b.protocol, b.servers[0].addr.as_str()),
        (Protocol::Uwsgi, "unix:/tmp/app.sock")
    );
    if !Path::new("/etc/ssl/example/ssl.crt").exists() {
        let err = load_file(&example("app.toml")).unwrap_err();
        assert!(err.file.ends_with("app.toml") && err.line > 0, "{err}");
    }
}

#[test]
fn unreadable_config_file_is_line_zero() {
    let err = load_file(Path::new("/nonexistent/sluice.toml")).unwrap_err();
    assert_eq!((err.line, err.col, err.key.as_str()), (0, 0, ""));
    assert_eq!(
        err.to_string().split(": ").next(),
        Some("/nonexistent/sluice.toml:0:0")
    );
    assert!(err.message.contains("cannot read file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, [0xff, 0xfe, b'\n']).unwrap();
    assert!(load_file(&bin).unwrap_err().message.contains("not UTF-8"));
}

#[test]
fn raise_nofile_raises_the_soft_limit_within_the_hard_one() {
    // RLIMIT_NOFILE is process-wide and other tests of this binary raise it (Server::bind):
    // the check runs alone in a child process of this test binary.
    const CHILD: &str = "SLUICE_TEST_RLIMIT_CHILD";
    const NAME: &str = "config_check::raise_nofile_raises_the_soft_limit_within_the_hard_one";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(
            text.contains("1 passed"),
            "the child did not run the test:\n{text}"
        );
        return;
    }
    let (soft, hard) = limits::nofile_limits();
    let (Some(soft), Some(hard)) = (soft, hard) else {
        skip("a finite RLIMIT_NOFILE (unlimited here: nothing to raise)");
        return;
    };
    if soft < hard {
        assert_eq!(limits::raise_nofile(soft + 1), Ok(soft + 1));
        assert_eq!(limits::nofile_limits(), (Some(soft + 1), Some(hard)));
    }
    // Never lowers it.
    assert_eq!(
        limits::raise_nofile(1),
        Ok(limits::nofile_limits().0.unwrap())
    );
    let err = limits::raise_nofile(hard.saturating_add(1)).unwrap_err();
    assert!(err.contains("hard RLIMIT_NOFILE"), "{err}");
}

/// A tcp frontend to three servers with `per` max_connections each (0 = unlimited).
fn l4_config(max: u64, per: usize) -> String {
    format!(
        "[global]\nmax_connections = {max}\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\nservers = [\
         {{ addr = \"127.0.0.1:1\", max_connections = {per} }}, \
         {{ addr = \"127.0.0.1:2\", max_connections = {per} }}, \
         {{ addr = \"127.0.0.1:3\", max_connections = {per} }}]\n"
    )
}

/// Issue #8: a connection holds a server socket only once forwarded, so with every server
/// limited, client connections up to about the whole hard limit fit; without limits, two
/// descriptors per connection, and the refusal says which backend to limit.
#[test]
fn server_limits_let_more_client_connections_fit() {
    let ceiling = limits::nofile_ceiling().expect("finite RLIMIT_NOFILE ceiling on Linux");
    if ceiling < 8_000 {
        skip(&format!(
            "a hard RLIMIT_NOFILE of 8000 or more (it is {ceiling}: too small to tell the two apart)"
        ));
        return;
    }
    let full = LoadOptions {
        check_files: false,
        check_fd_limit: true,
    };
    let max = ceiling * 2 / 3;
    let bounded = l4_config(max, 100);
    let cfg = load_str_with(&bounded, "t.toml", &full).expect("fits with server limits");
    let b = limits::fd_budget(&cfg);
    assert_eq!((b.clients, b.servers), (max, 300));
    assert!(limits::fds_needed(&cfg) <= ceiling);

    let err = load_str_with(&l4_config(max, 0), "t.toml", &full).unwrap_err();
    assert_eq!(err.key, "global.max_connections", "{err}");
    assert!(err.message.contains("hard RLIMIT_NOFILE"), "{err}");
    assert!(
        err.message
            .contains("set max_connections on every server of backend be"),
        "{err}"
    );
    // The largest max_connections it suggests does fit.
    let most: u64 = err
        .message
        .split("to at most ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("a suggested max_connections");
    assert!(most < max, "{err}");
    load_str_with(&l4_config(most, 0), "t.toml", &full).expect("the suggestion fits");
    assert!(load_str_with(&l4_config(most + 1, 0), "t.toml", &full).is_err());
}
