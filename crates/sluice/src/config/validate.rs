//! Cross-checks on a deserialized `Config`: names that must exist or be unique, strings that
//! must parse, combinations that cannot work, files that must be readable, and the fd budget.
//! Each problem is an `Issue` naming a key path; `config::load` turns paths into line:col.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::limits;
use super::model::{Config, HealthKind, Mode, Protocol, SendProxy};
use super::parsed::{
    bind_problem, parse_bind, parse_cidr, parse_server_addr, parse_source, ServerAddr,
};
use super::spans::{At, KeyPath, Located};
use super::LoadOptions;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    pub path: KeyPath,
    pub at: At,
    pub message: String,
}

struct Issues(Vec<Issue>);

impl Issues {
    fn value(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(Issue {
            path,
            at: At::Value,
            message: message.into(),
        });
    }

    fn key(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(Issue {
            path,
            at: At::Key,
            message: message.into(),
        });
    }
}

/// The name a server gets when it has none: "srvN", N its 1-based position.
pub(super) fn default_server_name(index: usize) -> String {
    format!("srv{}", index + 1)
}

/// Every problem found, in no particular order (the caller sorts by position). `doc`, the
/// parsed file, tells keys written in it from defaults (for keys refused where they do not
/// apply); without it only values are checked.
pub(super) fn check(cfg: &Config, opts: &LoadOptions, doc: Option<&Located<'_>>) -> Vec<Issue> {
    let mut out = Issues(Vec::new());
    super::edge::check(cfg, doc, &mut out.0);
    super::upstream_tls::check(cfg, &mut out.0);
    super::fastcgi::check(cfg, &mut out.0);
    check_global(cfg, opts, &mut out);
    check_admin(cfg, &mut out);
    super::agent::check(cfg, &mut out.0);
    check_frontends(cfg, opts, &mut out);
    for (k, _) in cfg.backends.iter().enumerate() {
        check_backend(cfg, k, &mut out);
    }
    check_unique(
        cfg.backends.iter().map(|b| b.name.as_str()),
        &KeyPath::root().key("backend"),
        "backend",
        &mut out,
    );
    out.0
}

/// Most worker threads `global.threads` may ask for.
const MAX_THREADS: usize = 256;

fn check_global(cfg: &Config, opts: &LoadOptions, out: &mut Issues) {
    if let Some(n) = cfg.global.threads {
        if !(1..=MAX_THREADS).contains(&n) {
            let p = KeyPath::root().key("global").key("threads");
            out.value(p, format!("must be between 1 and {MAX_THREADS}"));
        }
    }
    for (i, r) in cfg.global.resolvers.iter().enumerate() {
        if r.parse::<std::net::SocketAddr>().is_err() {
            out.value(
                KeyPath::root().key("global").key("resolvers").index(i),
                format!("{r:?} is not a DNS server address such as \"127.0.0.1:53\""),
            );
        }
    }
    if cfg.global.max_temp_files == 0 {
        let p = KeyPath::root().key("global").key("max_temp_files");
        out.value(p, "must be at least 1");
    }
    let p = KeyPath::root().key("global").key("max_connections");
    if cfg.global.max_connections == 0 {
        out.value(p, "must be at least 1");
        return;
    }
    if opts.check_fd_limit {
        let needed = limits::fds_needed(cfg);
        if let Err(why) = limits::check_nofile(needed) {
            let ceiling = limits::nofile_ceiling().unwrap_or(0);
            out.value(p, format!("{why}, or {}", limits::advice(cfg, ceiling)));
        }
    }
}

/// `[admin]`: a parseable bind, never a public address by accident, a non-empty token.
fn check_admin(cfg: &Config, out: &mut Issues) {
    let Some(a) = &cfg.admin else { return };
    let p = KeyPath::root().key("admin");
    if let Some(t) = &a.token {
        if t.trim().is_empty() {
            out.value(p.key("token"), "must not be empty (omit it for no token)");
        }
    }
    for (i, n) in a.server_names.iter().enumerate() {
        let bad = n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if bad {
            out.value(
                p.key("server_names").index(i),
                format!("{n:?} is not a host name (letters, digits, '-' and '.'; no port)"),
            );
        }
    }
    match parse_bind(&a.bind) {
        Err(e) => out.value(p.key("bind"), e),
        Ok(sa) if !sa.ip().to_canonical().is_loopback() && a.token.is_none() && !a.allow_public => {
            out.value(
                p.key("bind"),
                format!(
                    "{} is not a loopback address: set admin.token (write calls then need it) \
                     or admin.allow_public = true",
                    sa.ip()
                ),
            )
        }
        Ok(_) => {}
    }
}

/// Reports the second and later uses of each name under `list[i].name`.
fn check_unique<'a>(
    names: impl Iterator<Item = &'a str>,
    list: &KeyPath,
    what: &str,
    out: &mut Issues,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        let p = list.index(i).key("name");
        if name.is_empty() {
            out.value(p, format!("{what} name must not be empty"));
        } else if let Some(first) = seen.get(name) {
            out.value(
                p,
                format!("duplicate {what} name {name:?} (also {list}[{first}])"),
            );
        } else {
            seen.insert(name, i);
        }
    }
}

fn defined_backends(cfg: &Config) -> String {
    if cfg.backends.is_empty() {
        return "no backends are defined".into();
    }
    let names: Vec<String> = cfg
        .backends
        .iter()
        .map(|b| format!("{:?}", b.name))
        .collect();
    format!("defined: {}", names.join(", "))
}

fn check_frontends(cfg: &Config, opts: &LoadOptions, out: &mut Issues) {
    let list = KeyPath::root().key("frontend");
    check_unique(
        cfg.frontends.iter().map(|f| f.name.as_str()),
        &list,
        "frontend",
        out,
    );
    let mut binds: HashMap<SocketAddr, KeyPath> = HashMap::new();
    // backend index -> (mode, frontend name) of its first user.
    let mut users: HashMap<usize, (Mode, &str)> = HashMap::new();
    for (i, f) in cfg.frontends.iter().enumerate() {
        let p = list.index(i);
        if f.bind.is_empty() {
            out.value(
                p.key("bind"),
                "needs at least one address such as \"0.0.0.0:443\"",
            );
        }
        for (j, b) in f.bind.iter().enumerate() {
            let bp = p.key("bind").index(j);
            match parse_bind(b) {
                Err(e) => out.value(bp, e),
                Ok(sa) => match bind_problem(sa) {
                    Some(why) => out.value(bp, why),
                    None if sa.port() == 0 => {}
                    None => {
                        if let Some(first) = binds.get(&sa) {
                            out.value(bp, format!("address {sa} is already bound by {first}"));
                        } else {
                            binds.insert(sa, bp);
                        }
                    }
                },
            }
        }
        match cfg.backends.iter().position(|b| b.name == f.backend) {
            None => out.value(
                p.key("backend"),
                format!(
                    "no backend named {:?} ({})",
                    f.backend,
                    defined_backends(cfg)
                ),
            ),
            Some(k) => {
                check_pairing(cfg, i, k, out);
                match users.get(&k) {
                    Some((mode, by)) if *mode != f.mode => out.value(
                        p.key("backend"),
                        format!(
                            "backend {:?} is already used by {}-mode frontend {by:?}; a backend \
                             serves frontends of one mode",
                            f.backend,
                            mode_name(*mode)
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        users.insert(k, (f.mode, f.name.as_str()));
                    }
                }
            }
        }
        if let Some(t) = &f.tls {
            super::client_tls::check(t, &p.key("tls"), &mut out.0);
        }
        super::routes::check(cfg, i, &p, &mut out.0);
        if f.forward == crate::spec::Forward::Sockmap && f.mode != Mode::Tcp {
            out.value(
                p.key("forward"),
                "forward = \"sockmap\" is for tcp-mode frontends (the edge reads the bytes)",
            );
        }
        if f.tls.is_some() && f.mode == Mode::Tcp {
            out.key(
                p.key("tls"),
                "a tcp-mode frontend forwards TLS bytes unmodified and cannot terminate TLS; \
                 remove the tls table or set mode = \"http\"",
            );
        }
        if let Some(pp) = &f.proxy_protocol {
            let pp_path = p.key("proxy_protocol");
            for (j, c) in pp.trusted.iter().enumerate() {
                if let Err(e) = parse_cidr(c) {
                    out.value(pp_path.key("trusted").index(j), e);
                }
            }
            if pp.trusted.is_empty() && pp.untrusted == super::model::Untrusted::Reject {
                out.value(
                    pp_path.key("trusted"),
                    "is empty and untrusted = \"reject\", so every connection would be refused; \
                     list the balancers' addresses",
                );
            }
            if pp.timeout.get().is_zero() {
                out.value(pp_path.key("timeout"), "must be longer than 0s");
            }
        }
        let tp = p.key("proxy_protocol_tlv_headers");
        for (k, why) in super::tlv_headers::problems(&f.proxy_protocol_tlv_headers) {
            out.value(tp.key(&k), why);
        }
        if let Some(fw) = &f.forwarded {
            let fw_path = p.key("forwarded");
            for (j, c) in fw.trusted.iter().enumerate() {
                if let Err(e) = parse_cidr(c) {
                    out.value(fw_path.key("trusted").index(j), e);
                }
            }
            if fw.trusted.is_empty() && fw.real_ip_header != crate::spec::RealIpHeader::None {
                out.value(
                    fw_path.key("trusted"),
                    "is empty, so real_ip_header would never be used; list the proxies \
                     (CDN, load balancer) whose header names the client",
                );
            }
        }
        if opts.check_files {
            check_files_of(f, &p, out);
        }
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Tcp => "tcp",
        Mode::Http => "http",
    }
}

/// A frontend's mode against what its backend `k` speaks.
fn check_pairing(cfg: &Config, i: usize, k: usize, out: &mut Issues) {
    let f = &cfg.frontends[i];
    let b = &cfg.backends[k];
    let bp = KeyPath::root().key("backend").index(k);
    match f.mode {
        Mode::Tcp => {
            let app = match b.protocol {
                Protocol::Http => None,
                Protocol::Uwsgi => Some("uwsgi"),
                Protocol::Fastcgi => Some("fastcgi"),
                Protocol::H2c => Some("h2c"),
                Protocol::Grpc => Some("grpc"),
            };
            if let Some(app) = app {
                out.value(
                    bp.key("protocol"),
                    format!(
                        "protocol = \"{app}\" needs an http-mode frontend, but tcp-mode frontend \
                         {:?} forwards bytes unmodified to this backend",
                        f.name
                    ),
                );
            }
        }
        Mode::Http if b.protocol == Protocol::Uwsgi => {
            if b.send_proxy != SendProxy::None {
                out.value(
                    bp.key("send_proxy"),
                    "uwsgi servers do not read PROXY headers; the client address reaches the app \
                     as REMOTE_ADDR (use send_proxy = \"none\")",
                );
            }
            if let Some(h) = &b.health {
                if h.kind != HealthKind::Tcp {
                    out.value(
                        bp.key("health").key("kind"),
                        "a uwsgi server speaks neither HTTP nor TLS; use kind = \"tcp\"",
                    );
                }
            }
        }
        Mode::Http => {
            if b.send_proxy != SendProxy::None {
                out.value(
                    bp.key("send_proxy"),
                    "an http-mode frontend passes the client address in X-Forwarded-For/Forwarded, \
                     not in a PROXY header (use send_proxy = \"none\")",
                );
            }
        }
    }
}

/// Readable TLS material and a directory for the access log.
fn check_files_of(f: &super::model::Frontend, p: &KeyPath, out: &mut Issues) {
    if let Some(tls) = &f.tls {
        let tp = p.key("tls");
        readable(&tls.cert, tp.key("cert"), out);
        readable(&tls.key, tp.key("key"), out);
        for (j, pair) in tls.certs.iter().enumerate() {
            readable(&pair.cert, tp.key("certs").index(j).key("cert"), out);
            readable(&pair.key, tp.key("certs").index(j).key("key"), out);
        }
        for (j, t) in tls.ticket_keys.iter().enumerate() {
            readable(t, tp.key("ticket_keys").index(j), out);
        }
        for (file, key) in [
            (&tls.ticket_secret, "ticket_secret"),
            (&tls.client_ca, "client_ca"),
            (&tls.client_crl, "client_crl"),
        ] {
            if let Some(file) = file {
                readable(file, tp.key(key), out);
            }
        }
    }
    if let Some(dir) = f.temp_dir.as_deref().filter(|_| f.mode == Mode::Http) {
        writable_temp_dir(dir, p.key("temp_dir"), out);
    }
    if let Err(e) = super::convert::log_format(f) {
        out.value(p.key("log_format"), e);
    }
    let target = f.access_log.as_deref().map(crate::spec::LogTarget::parse);
    if let Some(Err(e)) = &target {
        out.value(p.key("access_log"), e.clone());
    }
    if let Some(Ok(crate::spec::LogTarget::File(log))) = &target {
        let dir = Path::new(log)
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        if !dir.is_dir() {
            out.value(
                p.key("access_log"),
                format!("directory {} does not exist", dir.display()),
            );
        }
    }
}

/// An edge's `temp_dir` must take a temp file: spilled request bodies would get 500 and
/// responses would stream otherwise. Tried for real (the file is created unlinked).
fn writable_temp_dir(dir: &str, at: KeyPath, out: &mut Issues) {
    if let Err(e) = tempfile::tempfile_in(dir) {
        out.value(at, format!("cannot create a temp file in {dir:?}: {e}"));
    }
}

fn readable(path: &str, at: KeyPath, out: &mut Issues) {
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Err(e) => out.value(at, format!("cannot read {path:?}: {e}")),
        Ok(m) if !m.is_file() => out.value(at, format!("{path:?} is not a regular file")),
        Ok(_) => {}
    }
}

fn check_backend(cfg: &Config, k: usize, out: &mut Issues) {
    let b = &cfg.backends[k];
    let p = KeyPath::root().key("backend").index(k);
    let source = match b.source.as_deref().map(parse_source) {
        Some(Err(e)) => {
            out.value(p.key("source"), e);
            None
        }
        Some(Ok(ip)) => Some(ip),
        None => None,
    };
    let sp = p.key("servers");
    if b.servers.is_empty() {
        out.value(
            sp.clone(),
            format!("backend {:?} needs at least one server", b.name),
        );
    } else if b.servers.iter().all(|s| s.weight == 0) {
        out.value(
            sp.index(0).key("weight"),
            "every server of this backend has weight 0, so none would get traffic",
        );
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for (j, s) in b.servers.iter().enumerate() {
        let name = s.name.clone().unwrap_or_else(|| default_server_name(j));
        let np = if s.name.is_some() {
            sp.index(j).key("name")
        } else {
            sp.index(j)
        };
        if name.is_empty() {
            out.value(np, "server name must not be empty");
        } else if let Some(first) = names.get(&name) {
            out.value(
                np,
                format!("duplicate server name {name:?} (also {sp}[{first}])"),
            );
        } else {
            names.insert(name, j);
        }
        if s.srv.is_some() || s.addr.is_empty() {
            if let Err((key, e)) = super::srv::check_server(s) {
                out.value(sp.index(j).key(key), e);
            }
            continue;
        }
        match parse_server_addr(&s.addr) {
            Err(e) => out.value(sp.index(j).key("addr"), e),
            Ok(addr) => check_source_fits(source, &addr, sp.index(j).key("addr"), out),
        }
    }
    check_timeouts_and_health(cfg, k, out);
    check_hash_key(cfg, k, out);
}

/// `hash_key` only with `balance = "hash"`; `sni` only for tcp frontends (an edge's
/// requests carry no ClientHello it reads before TLS).
fn check_hash_key(cfg: &Config, k: usize, out: &mut Issues) {
    let b = &cfg.backends[k];
    let p = KeyPath::root().key("backend").index(k).key("hash_key");
    match b.hash_key {
        Some(_) if b.balance != super::model::Balance::Hash => {
            out.key(p, "has no effect without balance = \"hash\"")
        }
        Some(crate::spec::HashKey::Sni)
            if cfg
                .frontends
                .iter()
                .any(|f| f.mode == Mode::Http && f.backend == b.name) =>
        {
            out.value(
                p,
                "\"sni\" needs tcp frontends (the balancer reads the ClientHello); an \
                 http-mode frontend's backend hashes the client address (\"source\")",
            )
        }
        _ => {}
    }
}

fn check_source_fits(source: Option<IpAddr>, addr: &ServerAddr, at: KeyPath, out: &mut Issues) {
    let Some(src) = source else { return };
    match addr {
        ServerAddr::Inet(sa) if sa.is_ipv4() != src.is_ipv4() => out.value(
            at,
            format!("{sa} cannot be reached from backend source {src}: address families differ"),
        ),
        ServerAddr::Unix(_) => out.value(
            at,
            format!("a unix socket server cannot use backend source {src}"),
        ),
        _ => {}
    }
}

fn check_timeouts_and_health(cfg: &Config, k: usize, out: &mut Issues) {
    let b = &cfg.backends[k];
    let p = KeyPath::root().key("backend").index(k);
    let tp = p.key("timeouts");
    if b.timeouts.connect.get().is_zero() {
        out.value(tp.key("connect"), "must be longer than 0s");
    }
    if b.timeouts.idle.get().is_zero() {
        out.value(tp.key("idle"), "must be longer than 0s");
    }
    if b.timeouts.preread.get().is_zero() {
        out.value(tp.key("preread"), "must be longer than 0s");
    }
    for (key, on) in [
        ("proxy_v2_authority", b.proxy_v2_authority),
        ("proxy_v2_alpn", b.proxy_v2_alpn),
        ("proxy_v2_pass_tlvs", b.proxy_v2_pass_tlvs),
    ] {
        if on && b.send_proxy != SendProxy::V2 {
            out.value(
                p.key(key),
                "TLVs travel in PROXY v2 headers only (send_proxy = \"v2\")",
            );
        }
    }
    if b.resolve_interval.get() < std::time::Duration::from_millis(10) {
        out.value(p.key("resolve_interval"), "must be at least 10ms");
    }
    let Some(h) = &b.health else { return };
    let hp = p.key("health");
    if h.rise == 0 {
        out.value(hp.key("rise"), "must be at least 1");
    }
    if h.fall == 0 {
        out.value(hp.key("fall"), "must be at least 1");
    }
    if h.interval.get().is_zero() {
        out.value(hp.key("interval"), "must be longer than 0s");
    }
    if h.timeout.get().is_zero() {
        out.value(hp.key("timeout"), "must be longer than 0s");
    }
    if matches!(h.kind, HealthKind::Http | HealthKind::Https) {
        if !h.path.starts_with('/') || h.path.bytes().any(|c| c <= b' ' || c == 0x7f) {
            out.value(
                hp.key("path"),
                format!("{:?} is not a request path such as \"/health\"", h.path),
            );
        }
        if !(100..=599).contains(&h.expect_status) {
            out.value(
                hp.key("expect_status"),
                "must be an HTTP status code (100-599)",
            );
        }
    }
}
