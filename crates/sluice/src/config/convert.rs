//! A loaded `Config` into the runtime's typed `Spec`, once: bind addresses, CIDRs, source and
//! server addresses parsed, durations unwrapped, `timeouts.queue` defaulted to `connect`,
//! unnamed servers named "srvN", the fd budget computed. Validation has already proved every
//! string parses; a hand-built `Config` that does not gets a `ConfigError` naming the key.

use super::limits;
use super::load::ConfigError;
use super::model::{self as m, Config};
use super::parsed::{parse_bind, parse_cidr, parse_server_addr, parse_source};
use super::validate::default_server_name;
use crate::spec;

/// The error of a value that does not parse: the key path, no position (the text is gone).
fn unparsed(key: String, message: String) -> ConfigError {
    ConfigError {
        file: "(configuration)".into(),
        line: 0,
        col: 0,
        key,
        message,
    }
}

impl Config {
    /// The typed spec of this configuration (see the module doc). Infallible for a `Config`
    /// from `config::load`.
    pub fn spec(&self) -> Result<spec::Spec, ConfigError> {
        let frontends = self
            .frontends
            .iter()
            .enumerate()
            .map(|(i, f)| frontend(f).map_err(|(k, e)| unparsed(format!("frontend[{i}].{k}"), e)))
            .collect::<Result<_, _>>()?;
        let backends = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| backend(b).map_err(|(k, e)| unparsed(format!("backend[{i}].{k}"), e)))
            .collect::<Result<_, _>>()?;
        let admin = match &self.admin {
            Some(a) => Some(spec::Admin {
                bind: parse_bind(&a.bind).map_err(|e| unparsed("admin.bind".into(), e))?,
                token: a.token.clone(),
                allow_public: a.allow_public,
                server_names: a
                    .server_names
                    .iter()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            }),
            None => None,
        };
        let agent = match &self.agent {
            Some(a) => Some(spec::AgentEndpoint {
                bind: parse_bind(&a.bind).map_err(|e| unparsed("agent.bind".into(), e))?,
                capacity: a.capacity,
            }),
            None => None,
        };
        let g = &self.global;
        let resolvers = g
            .resolvers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.parse().map_err(|_| {
                    let key = format!("global.resolvers[{i}]");
                    unparsed(key, format!("{r:?} is not a DNS server address"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(spec::Spec {
            global: spec::Global {
                max_connections: g.max_connections,
                grace: g.grace.get(),
                pid_file: g.pid_file.as_ref().map(Into::into),
                resolvers,
                threads: g.threads,
                max_temp_files: g.max_temp_files,
                fds_needed: limits::fds_needed(self),
            },
            frontends,
            backends,
            admin,
            agent,
        })
    }
}

/// A parse failure: (key path below the frontend or backend, message).
type Unparsed = (String, String);

fn frontend(f: &m::Frontend) -> Result<spec::Frontend, Unparsed> {
    let bind = f
        .bind
        .iter()
        .enumerate()
        .map(|(i, b)| parse_bind(b).map_err(|e| (format!("bind[{i}]"), e)))
        .collect::<Result<_, _>>()?;
    let proxy_protocol = match &f.proxy_protocol {
        Some(p) => Some(spec::ProxyProtocol {
            trusted: p
                .trusted
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    parse_cidr(c).map_err(|e| (format!("proxy_protocol.trusted[{i}]"), e))
                })
                .collect::<Result<_, _>>()?,
            timeout: p.timeout.get(),
            untrusted: p.untrusted,
        }),
        None => None,
    };
    Ok(spec::Frontend {
        name: f.name.clone(),
        bind,
        mode: f.mode,
        backend: f.backend.clone(),
        access_log: f
            .access_log
            .as_deref()
            .map(spec::LogTarget::parse)
            .transpose()
            .map_err(|e| ("access_log".to_string(), e))?,
        log_format: log_format(f).map_err(|e| ("log_format".to_string(), e))?,
        access_log_stderr: f.access_log_stderr,
        proxy_protocol,
        tls: f.tls.as_ref().map(tls),
        edge: spec::Edge {
            forwarded: forwarded(f)?,
            ..edge(f)
        },
        routes: super::routes::convert(f)?,
        forward: f.forward,
    })
}

/// `[frontend.forwarded]`, or the default policy (nobody trusted, today's fields).
fn forwarded(f: &m::Frontend) -> Result<spec::Forwarded, Unparsed> {
    let Some(fw) = &f.forwarded else {
        return Ok(spec::Forwarded::default());
    };
    let trusted = fw
        .trusted
        .iter()
        .enumerate()
        .map(|(i, c)| parse_cidr(c).map_err(|e| (format!("forwarded.trusted[{i}]"), e)))
        .collect::<Result<_, _>>()?;
    let mut emit = fw.emit.clone();
    let mut seen = std::collections::HashSet::new();
    emit.retain(|e| seen.insert(*e));
    Ok(spec::Forwarded {
        trusted,
        real_ip_header: fw.real_ip_header,
        recursive: fw.recursive,
        emit,
        forwarded_for: fw.forwarded_for,
    })
}

/// `log_format` when set, else `access_log_format` (`combined`: the mode's default).
pub(super) fn log_format(f: &m::Frontend) -> Result<spec::LineFormat, String> {
    match (&f.log_format, f.access_log_format) {
        (Some(_), spec::AccessLogFormat::Json) => {
            Err("set log_format or access_log_format = \"json\", not both".into())
        }
        (Some(t), _) => spec::LineFormat::parse(t, f.mode),
        (None, spec::AccessLogFormat::Json) => Ok(spec::LineFormat::Json),
        (None, spec::AccessLogFormat::Combined) => Ok(spec::LineFormat::default_for(f.mode)),
    }
}

/// The TLS files of a `[frontend.tls]` section.
fn tls(t: &m::Tls) -> spec::Tls {
    spec::Tls {
        cert: t.cert.clone(),
        key: t.key.clone(),
        certs: t
            .certs
            .iter()
            .map(|p| spec::CertPair {
                cert: p.cert.clone(),
                key: p.key.clone(),
            })
            .collect(),
        ticket_keys: t.ticket_keys.clone(),
        ticket_secret: t.ticket_secret.clone(),
        ticket_rotation: t
            .ticket_rotation
            .map_or(spec::DEFAULT_TICKET_ROTATION, |d| d.0),
        session_cache: t.session_cache,
        client: match (t.client_verify.unwrap_or_default(), &t.client_ca) {
            (spec::ClientVerify::Off, _) | (_, None) => None,
            (verify, Some(ca)) => Some(spec::ClientAuth {
                ca: ca.clone(),
                verify,
                depth: t.client_verify_depth,
                crl: t.client_crl.clone(),
                pass_cert: t.pass_client_cert,
            }),
        },
    }
}

fn edge(f: &m::Frontend) -> spec::Edge {
    let t = &f.timeouts;
    let l = &f.limits;
    spec::Edge {
        max_body: f.max_body,
        request_buffering: f.request_buffering,
        response_buffering: f.response_buffering,
        body_buffer_size: f.body_buffer_size,
        response_buffer_size: f.response_buffer_size,
        max_temp_file_size: f.max_temp_file_size,
        temp_dir: f.temp_dir.as_ref().map(Into::into),
        underscores_in_headers: f.underscores_in_headers,
        proxy_tlv_headers: super::tlv_headers::convert(&f.proxy_protocol_tlv_headers),
        forwarded: spec::Forwarded::default(),
        upgrade_protocols: f
            .upgrade_protocols
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect(),
        timeouts: spec::ClientTimeouts {
            handshake: t.handshake.get(),
            header: t.header.get(),
            body: t.body.get(),
            send: t.send.get(),
            keepalive: t.keepalive.get(),
            tunnel: t.tunnel.get(),
        },
        limits: spec::ClientLimits {
            header_bytes: l.header_bytes,
            headers: l.headers,
            h2_streams: l.h2_streams,
            keepalive_requests: l.keepalive_requests,
        },
    }
}

fn backend(b: &m::Backend) -> Result<spec::Backend, Unparsed> {
    let source = match &b.source {
        Some(s) => Some(parse_source(s).map_err(|e| ("source".to_string(), e))?),
        None => None,
    };
    let servers =
        b.servers
            .iter()
            .enumerate()
            .map(|(j, s)| {
                Ok(spec::Server {
                    name: s.name.clone().unwrap_or_else(|| default_server_name(j)),
                    addr: match &s.srv {
                        Some(name) => super::srv::server_addr(name),
                        None => parse_server_addr(&s.addr)
                            .map_err(|e| (format!("servers[{j}].addr"), e))?,
                    },
                    weight: s.weight,
                    backup: s.backup,
                    max_connections: s.cap(),
                    slow_start: s.slow_start.map_or(std::time::Duration::ZERO, |d| d.get()),
                })
            })
            .collect::<Result<_, Unparsed>>()?;
    let t = &b.timeouts;
    let agent = match b
        .health
        .as_ref()
        .and_then(|h| h.agent.as_ref().map(|a| (h, a)))
    {
        Some((h, a)) => Some(spec::Agent {
            addr: match &a.addr {
                Some(ip) => Some(ip.parse().map_err(|_| {
                    (
                        "health.agent.addr".to_string(),
                        format!("{ip:?} is not an IP address"),
                    )
                })?),
                None => None,
            },
            port: a.port,
            interval: a.interval.get(),
            timeout: a.timeout.map_or(h.timeout.get(), |d| d.get()),
            send: a.send.clone(),
        }),
        None => None,
    };
    Ok(spec::Backend {
        name: b.name.clone(),
        balance: b.balance,
        hash_key: b.hash_key.unwrap_or_default(),
        send_proxy: b.send_proxy,
        proxy_v2_unique_id: b.proxy_v2_unique_id,
        proxy_v2_crc32c: b.proxy_v2_crc32c,
        proxy_v2_authority: b.proxy_v2_authority,
        proxy_v2_alpn: b.proxy_v2_alpn,
        proxy_v2_pass_tlvs: b.proxy_v2_pass_tlvs,
        source,
        retries: b.retries,
        timeouts: spec::Timeouts {
            connect: t.connect.get(),
            idle: t.idle.get(),
            read: t.read.get(),
            send: t.send.get(),
            queue: t.queue.map_or(t.connect.get(), |q| q.get()),
            preread: t.preread.get(),
        },
        health: b.health.as_ref().map(|h| spec::Health {
            kind: h.kind,
            interval: h.interval.get(),
            timeout: h.timeout.get(),
            rise: h.rise,
            fall: h.fall,
            path: h.path.clone(),
            expect_status: h.expect_status,
            agent: agent.clone(),
        }),
        protocol: b.protocol,
        tls: b.tls.clone(),
        fastcgi: super::fastcgi::spec(b),
        resolve_interval: b.resolve_interval.get(),
        max_queue: b.max_queue,
        servers,
    })
}

impl m::Backend {
    /// The typed spec of this backend alone (as `Config::spec` builds it), for tests and
    /// benchmarks that build a pool from a `[backend]` table.
    pub fn spec(&self) -> Result<spec::Backend, ConfigError> {
        backend(self).map_err(|(k, e)| unparsed(format!("backend.{k}"), e))
    }
}

impl m::Tls {
    /// The typed spec of this `[frontend.tls]` section.
    pub fn spec(&self) -> spec::Tls {
        tls(self)
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
