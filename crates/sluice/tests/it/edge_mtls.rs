//! Client certificates on the edge (mTLS) with openssl s_client and a real uWSGI app: SUCCESS
//! with the DN/serial/fingerprint as OpenSSL renders them, refusals (none under required,
//! untrusted, revoked, a CRL replaced while running, too deep), NONE under optional, headers,
//! resumption, ticket binding, `check` errors. Skips loudly without openssl (or uwsgi python3).

mod pki;

use std::net::SocketAddr;
use std::path::Path;

use pki::{Ca, Client};

use crate::support::edge::*;
use crate::support::*;

fn openssl() -> Option<std::path::PathBuf> {
    tool("openssl", &["/usr/bin/openssl", "openssl"])
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// One http frontend `web` over a fresh server certificate, `tls_extra` appended to its
/// `[frontend.tls]` table, a uwsgi (or HTTP) backend at `app`, its access log in `dir`.
fn config(dir: &Path, tls_extra: &str, app: SocketAddr, protocol: &str) -> String {
    let (c, k, _) = cert(dir);
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/web.log\"\n\
         log_format = \"$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|$ssl_client_fingerprint|$request_uri\"\n\
         [frontend.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n{tls_extra}\n\
         [[backend]]\nname = \"app\"\nprotocol = \"{protocol}\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        d = dir.display(),
        c = c.display(),
        k = k.display()
    )
}

/// `openssl s_client` with `args` sending `input`: its stdout.
async fn s_client_out(openssl: &Path, addr: SocketAddr, args: &[&str], input: &[u8]) -> String {
    let out = s_client(openssl, addr, args, input).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn with_cert(c: &Client) -> Vec<&str> {
    vec![
        "-servername",
        HOST,
        "-cert",
        c.cert.to_str().unwrap(),
        "-key",
        c.key.to_str().unwrap(),
    ]
}

/// OpenSSL's own rendering of a certificate: (subject, issuer, serial, sha1 fingerprint),
/// the fingerprint as nginx prints it (lower case, no colons).
fn openssl_fields(openssl: &Path, cert: &Path) -> (String, String, String, String) {
    let out = std::process::Command::new(openssl)
        .args([
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-serial",
            "-fingerprint",
            "-sha1",
        ])
        .args(["-nameopt", "RFC2253", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                k.eq_ignore_ascii_case(name).then(|| v.to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let fp = field("sha1 fingerprint").replace(':', "").to_lowercase();
    (field("subject"), field("issuer"), field("serial"), fp)
}

fn assert_refused(out: &str, what: &str) {
    assert!(
        !out.contains("HTTP/1.1 200") && !out.contains("SSL_CLIENT"),
        "{what} was served:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificate_reaches_the_app_and_survives_resumption() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let alice = ca.client(
        d,
        "alice",
        "Example, Inc.",
        "Jöhn Doe",
        &[0x00, 0xc0, 0xff, 0xee],
    );
    let rogue =
        Ca::root(d, "rogue-ca.pem", "Test Client CA").client(d, "rogue", "X", "rogue", &[1]);
    let extra = format!(
        "client_ca = \"{}\"\nclient_verify = \"required\"\n",
        ca.pem.display()
    );
    let sl = Sluice::start(&config(d, &extra, uwsgi_app().await, "uwsgi")).await;
    let fe = sl.addr("web");
    let (s_dn, i_dn, serial, fp) = openssl_fields(&openssl, &alice.cert);
    assert_eq!(
        s_dn, "CN=J\\C3\\B6hn Doe,O=Example\\, Inc.",
        "openssl's own rendering"
    );

    let out = s_client_out(&openssl, fe, &with_cert(&alice), &get("/first", "")).await;
    for want in [
        "SSL_CLIENT_VERIFY=SUCCESS\n".to_string(),
        format!("SSL_CLIENT_S_DN={s_dn}\n"),
        format!("SSL_CLIENT_I_DN={i_dn}\n"),
        format!("SSL_CLIENT_SERIAL={serial}\n"),
        format!("SSL_CLIENT_FINGERPRINT={fp}\n"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    assert!(
        !out.contains("SSL_CLIENT_CERT="),
        "PEM passed without pass_client_cert"
    );
    let line = wait_for_log_line(&d.join("web.log"), &["/first"]).await;
    let logged_dn = s_dn.replace('\\', "\\x5C");
    assert_eq!(
        line.trim_end(),
        format!("SUCCESS|{logged_dn}|{i_dn}|{serial}|{fp}|/first")
    );

    let none = s_client_out(&openssl, fe, &["-servername", HOST], &get("/none", "")).await;
    assert_refused(&none, "a client without a certificate");
    let out = s_client_out(&openssl, fe, &with_cert(&rogue), &get("/rogue", "")).await;
    assert_refused(
        &out,
        "a certificate from an untrusted CA with the same name",
    );

    for (flag, ver) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let sess = d.join(format!("sess{flag}.pem"));
        let sess = sess.to_str().unwrap();
        let first = [&with_cert(&alice)[..], &[flag, "-sess_out", sess]].concat();
        let out = s_client_out(&openssl, fe, &first, &get("/full", "")).await;
        assert!(out.contains(&format!("New, {ver}")), "{out}");
        assert!(out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"), "{out}");
        // No -cert now: the identity comes from the resumed session only.
        let resumed = ["-servername", HOST, flag, "-sess_in", sess];
        let out = s_client_out(&openssl, fe, &resumed, &get("/resumed", "")).await;
        assert!(
            out.contains(&format!("Reused, {ver}")),
            "{ver} not resumed:\n{out}"
        );
        for want in [
            "SSL_SESSION_REUSED=r\n".to_string(),
            "SSL_CLIENT_VERIFY=SUCCESS\n".to_string(),
            format!("SSL_CLIENT_S_DN={s_dn}\n"),
            format!("SSL_CLIENT_FINGERPRINT={fp}\n"),
        ] {
            assert!(
                out.contains(&want),
                "{ver} resumed without {want:?}:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_gives_none_and_http_apps_get_headers_never_the_clients() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let bob = ca.client(d, "bob", "Example", "bob", &[0x42]);
    let extra = format!(
        "client_ca = \"{}\"\nclient_verify = \"optional\"\npass_client_cert = true\n",
        ca.pem.display()
    );
    let sl = Sluice::start(&config(d, &extra, http_echo_app().await, "http")).await;
    let fe = sl.addr("web");
    let forged = "X-SSL-Client-Verify: SUCCESS\r\nX-SSL-Client-S-DN: CN=admin\r\n\
                  X-SSL-Client-Cert: forged\r\n";

    let out = s_client_out(&openssl, fe, &["-servername", HOST], &get("/anon", forged)).await;
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let lower = out.to_lowercase();
    assert!(lower.contains("x-ssl-client-verify: none\r\n"), "{out}");
    assert!(
        !out.contains("CN=admin") && !out.contains("forged"),
        "client copies reached the app:\n{out}"
    );
    let line = wait_for_log_line(&d.join("web.log"), &["/anon"]).await;
    assert_eq!(line.trim_end(), "NONE|-|-|-|-|/anon");

    let out = s_client_out(&openssl, fe, &with_cert(&bob), &get("/bob", forged)).await;
    let lower = out.to_lowercase();
    assert!(lower.contains("x-ssl-client-verify: success\r\n"), "{out}");
    assert!(
        lower.contains("x-ssl-client-s-dn: cn=bob,o=example\r\n"),
        "{out}"
    );
    assert!(lower.contains("x-ssl-client-serial: 42\r\n"), "{out}");
    assert!(
        !out.contains("CN=admin") && !out.contains("forged"),
        "{out}"
    );
    let pem = std::fs::read_to_string(&bob.cert)
        .unwrap()
        .replace("\r\n", "\n");
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    assert!(
        out.contains(&format!("X-SSL-Client-Cert: {escaped}\r\n"))
            || out.contains(&format!("x-ssl-client-cert: {escaped}\r\n")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificates_and_chains_deeper_than_the_limit_are_refused() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Ca::root(d, "root.pem", "Test Root");
    let inter = root.intermediate(d, "inter.pem", "Test Intermediate");
    let good = inter.client(d, "good", "Example", "good", &[0x10]);
    let revoked = inter.client(d, "revoked", "Example", "revoked", &[0x11]);
    let direct = root.client(d, "direct", "Example", "direct", &[0x12]);
    // The whole chain must be covered, as OpenSSL's CRL_CHECK_ALL (nginx ssl_crl).
    let crls = format!(
        "{}{}",
        std::fs::read_to_string(root.crl(d, "root.crl", &[])).unwrap(),
        std::fs::read_to_string(inter.crl(d, "inter.crl", &[&[0x11]])).unwrap()
    );
    let crl = write_file(d, "all.crl", &crls);
    let app = uwsgi_app().await;
    let inter_pem = inter.pem.to_str().unwrap();
    let chained = |c: &Client| -> Vec<String> {
        let mut a: Vec<String> = with_cert(c).into_iter().map(String::from).collect();
        a.extend(["-cert_chain".to_string(), inter_pem.to_string()]);
        a
    };
    for (depth, inter_ok) in [(0, false), (1, true)] {
        let extra = format!(
            "client_ca = \"{}\"\nclient_verify = \"required\"\nclient_crl = \"{}\"\n\
             client_verify_depth = {depth}\n",
            root.pem.display(),
            crl.display()
        );
        let sl = Sluice::start(&config(d, &extra, app, "uwsgi")).await;
        let fe = sl.addr("web");
        let out = s_client_out(&openssl, fe, &with_cert(&direct), &get("/direct", "")).await;
        assert!(
            out.contains("SSL_CLIENT_S_DN=CN=direct,O=Example\n"),
            "depth {depth}:\n{out}"
        );
        let args = chained(&good);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s_client_out(&openssl, fe, &args, &get("/good", "")).await;
        if inter_ok {
            assert!(
                out.contains("SSL_CLIENT_I_DN=CN=Test Intermediate\n"),
                "{out}"
            );
        } else {
            assert_refused(
                &out,
                "a chain with an intermediate under client_verify_depth = 0",
            );
        }
        let args = chained(&revoked);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s_client_out(&openssl, fe, &args, &get("/revoked", "")).await;
        assert_refused(&out, "a revoked certificate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_a_frontend_without_client_auth_does_not_resume_with_it() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let carol = ca.client(d, "carol", "Example", "carol", &[0x07]);
    let keys = d.join("tickets.key");
    std::fs::write(&keys, [7u8; 80]).unwrap();
    let (c, k, _) = cert(d);
    let app = uwsgi_app().await;
    let frontend = |name: &str, extra: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
             [frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\nticket_keys = [\"{}\"]\n{extra}\n",
            c.display(),
            k.display(),
            keys.display()
        )
    };
    let toml = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        frontend("open", ""),
        frontend(
            "mtls",
            &format!("client_ca = \"{}\"\nclient_verify = \"required\"\n", ca.pem.display())
        ),
    );
    let sl = Sluice::start(&toml).await;
    for flag in ["-tls1_3", "-tls1_2"] {
        let sess = d.join(format!("open{flag}.pem"));
        let sess = sess.to_str().unwrap();
        let base = ["-servername", HOST, flag];
        let out = s_client_out(
            &openssl,
            sl.addr("open"),
            &[&base[..], &["-sess_out", sess]].concat(),
            &get("/", ""),
        )
        .await;
        assert!(out.contains("New,"), "{out}");
        // Same ticket keys, but the session was never client-authenticated: no resumption,
        // so no way around `required`.
        let out = s_client_out(
            &openssl,
            sl.addr("mtls"),
            &[&base[..], &["-sess_in", sess]].concat(),
            &get("/", ""),
        )
        .await;
        assert_refused(&out, "a session from the frontend without client auth");
        let args = [&with_cert(&carol)[..], &[flag, "-sess_in", sess]].concat();
        let out = s_client_out(&openssl, sl.addr("mtls"), &args, &get("/", "")).await;
        assert!(
            out.contains("New,") && out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"),
            "{flag}:\n{out}"
        );
    }
}

#[test]
fn check_positions_bad_client_ca_and_crl_files_and_refuses_half_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, k, _) = cert(d);
    let garbage = write_file(d, "garbage.pem", "not a certificate\n");
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let run = |extra: &str| {
        let text = format!(
            "[global]\nmax_connections = 100\n\n\
             [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
             [frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n\
             [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n",
            c.display(),
            k.display()
        );
        let path = write_file(d, "sluice.toml", &text);
        let out = sluice_cli(&["check"], &path);
        (out.status.success(), output_text(&out), path)
    };
    let cases = [
        (
            format!(
                "client_ca = \"{}\"\nclient_verify = \"required\"\n",
                garbage.display()
            ),
            "no CERTIFICATE block",
        ),
        (
            format!(
                "client_ca = \"{}\"\nclient_verify = \"optional\"\nclient_crl = \"{}\"\n",
                ca.pem.display(),
                garbage.display()
            ),
            "no X509 CRL block",
        ),
        (
            format!("client_ca = \"{}\"\n", ca.pem.display()),
            "client_verify is not",
        ),
        (
            "client_verify = \"required\"\n".to_string(),
            "needs client_ca",
        ),
        (
            format!(
                "client_ca = \"{}\"\nclient_verify = \"required\"\nclient_verify_depth = 7\n",
                ca.pem.display()
            ),
            "must be 0 to 6",
        ),
    ];
    for (extra, why) in &cases {
        let (ok, text, path) = run(extra);
        assert!(!ok, "{extra} accepted");
        assert!(text.contains(why), "{extra}: {text}");
        assert!(
            text.contains(&format!("{}:", path.display())),
            "no file:line:col: {text}"
        );
    }
    // The CA error points at client_ca, the CRL error at client_crl.
    let (_, text, path) = run(&cases[0].0);
    let at = |n: usize| format!("{}:{n}:", path.display());
    assert!(text.contains(&at(12)), "client_ca not at line 12: {text}");
    let (_, text, _) = run(&cases[1].0);
    assert!(text.contains(&at(14)), "client_crl not at line 14: {text}");
    let (ok, text, _) = run(&format!(
        "client_ca = \"{}\"\nclient_verify = \"required\"\n",
        ca.pem.display()
    ));
    assert!(ok, "{text}");
}

/// A WSGI app (no framework) answering with its `SSL_*` and `HTTP_X_SSL*` environ, one
/// `KEY=VALUE` per line;
/// `/cert` answers `SSL_CLIENT_CERT` alone.
const WSGI_APP: &str = r#"
def application(environ, start_response):
    if environ.get("PATH_INFO") == "/cert":
        body = environ.get("SSL_CLIENT_CERT", "missing")
    else:
        body = "".join("%s=%s\n" % (k, v) for k, v in sorted(environ.items()) if k.startswith(("SSL_", "HTTP_X_SSL")))
    data = body.encode("utf-8", "surrogateescape")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_uwsgi_app_sees_the_identity_and_the_pem() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((_peer, sock)) = start_uwsgi_wsgi(d, WSGI_APP, &["--buffer-size", "32768"]).await
    else {
        return;
    };
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let dave = ca.client(d, "dave", "Example, Inc.", "Jöhn Doe", &[0x7f, 0x01]);
    let extra = format!(
        "client_ca = \"{}\"\nclient_verify = \"required\"\npass_client_cert = true\n",
        ca.pem.display()
    );
    let toml = config(d, &extra, "127.0.0.1:9".parse().unwrap(), "uwsgi").replace(
        "addr = \"127.0.0.1:9\"",
        &format!("addr = \"unix:{}\"", sock.display()),
    );
    let sl = Sluice::start(&toml).await;
    let fe = sl.addr("web");
    let (s_dn, i_dn, serial, fp) = openssl_fields(&openssl, &dave.cert);
    let forged = "X-SSL-Client-S-DN: CN=admin\r\nX-SSL-Client-Verify: SUCCESS\r\n";
    let out = s_client_out(&openssl, fe, &with_cert(&dave), &get("/", forged)).await;
    assert!(
        !out.contains("HTTP_X_SSL") && !out.contains("CN=admin"),
        "a client's X-SSL-Client-* reached the uwsgi app:\n{out}"
    );
    for want in [
        "SSL_CLIENT_VERIFY=SUCCESS\n".to_string(),
        format!("SSL_CLIENT_S_DN={s_dn}\n"),
        format!("SSL_CLIENT_I_DN={i_dn}\n"),
        format!("SSL_CLIENT_SERIAL={serial}\n"),
        format!("SSL_CLIENT_FINGERPRINT={fp}\n"),
        "SSL_PROTOCOL=TLSv1.3\n".to_string(),
    ] {
        assert!(out.contains(&want), "the app lacks {want:?}:\n{out}");
    }
    let out = s_client_out(&openssl, fe, &with_cert(&dave), &get("/cert", "")).await;
    let pem = std::fs::read_to_string(&dave.cert)
        .unwrap()
        .replace("\r\n", "\n");
    assert!(
        out.contains(&pem),
        "the app's SSL_CLIENT_CERT is not the PEM:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crl_file_applies_without_a_reload_and_ends_resumption() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::root(d, "ca.pem", "Test Client CA");
    let erin = ca.client(d, "erin", "Example", "erin", &[0x21]);
    let crl = ca.crl(d, "ca.crl", &[]);
    let extra = format!(
        "client_ca = \"{}\"\nclient_verify = \"required\"\nclient_crl = \"{}\"\n",
        ca.pem.display(),
        crl.display()
    );
    let sl = Sluice::start(&config(d, &extra, uwsgi_app().await, "uwsgi")).await;
    let fe = sl.addr("web");
    let sess = d.join("erin.sess");
    let sess = sess.to_str().unwrap();
    let args = [&with_cert(&erin)[..], &["-sess_out", sess]].concat();
    let out = s_client_out(&openssl, fe, &args, &get("/before", "")).await;
    assert!(out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"), "{out}");

    // Published as operators do: written beside, then renamed over the watched file.
    let next = ca.crl(d, "ca.crl.new", &[&[0x21]]);
    std::fs::rename(&next, &crl).unwrap();
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = s_client_out(&openssl, fe, &with_cert(&erin), &get("/after", "")).await;
        if !out.contains("SSL_CLIENT_VERIFY") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the revoked certificate is still accepted 30 s after the CRL changed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Her session from before the CRL does not resume either.
    let resumed = ["-servername", HOST, "-sess_in", sess];
    let out = s_client_out(&openssl, fe, &resumed, &get("/resumed", "")).await;
    assert_refused(&out, "a session from before the CRL");
}
