//! Look-ups through hickory-resolver: A/AAAA for a host name and SRV records (each target's
//! first address), with the TTL of the answer. `[global] resolvers` become name servers asked
//! over UDP with TCP on truncation; without them /etc/resolv.conf (search list, ndots) and
//! /etc/hosts apply. It keeps no cache of its own (`Discovery` does) and parses no DNS bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// How long one DNS server gets to answer one query.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a whole look-up (an SRV name and its targets, every server and retry) may take.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// SRV records used at most per name (the rest are ignored, with a warning).
pub(crate) const MAX_SRV_RECORDS: usize = 256;

/// One SRV record with its target resolved: the server it becomes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SrvTarget {
    pub(crate) priority: u16,
    /// The target host, lower case, without the trailing dot.
    pub(crate) target: String,
    pub(crate) port: u16,
    pub(crate) weight: u16,
    /// The target's first address (sorted: IPv4 before IPv6).
    pub(crate) ip: IpAddr,
}

/// Builds the resolver: `servers` (UDP, TCP on truncation), or the system's configuration.
pub(crate) fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system's resolver configuration: {e}"))?
    } else {
        let ns = servers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(ns),
            TokioRuntimeProvider::default(),
        );
        // Configured servers are the only source, as with HAProxy's `resolvers` section.
        b.options_mut().use_hosts_file = ResolveHosts::Never;
        b
    };
    let opts = builder.options_mut();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // `Discovery` asks again on its own schedule: a cached answer would hide a change.
    opts.cache_size = 0;
    builder
        .build()
        .map_err(|e| format!("building the resolver: {e}"))
}

/// A failed look-up in words (NXDOMAIN named as such).
fn describe(e: &NetError) -> String {
    if e.is_nx_domain() {
        "no such name (NXDOMAIN)".into()
    } else if e.is_no_records_found() {
        "no records of that type".into()
    } else {
        e.to_string()
    }
}

/// The shortest TTL of `ttls` (None: no record, e.g. /etc/hosts answers).
fn min_ttl(ttls: impl Iterator<Item = u32>) -> Option<Duration> {
    ttls.min().map(|t| Duration::from_secs(u64::from(t)))
}

/// The addresses of `host` (sorted, deduplicated, never empty) and the answer's TTL.
pub(crate) async fn ips(
    r: &TokioResolver,
    host: &str,
) -> Result<(Vec<IpAddr>, Option<Duration>), String> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, r.lookup_ip(host))
        .await
        .map_err(|_| format!("no answer within {LOOKUP_TIMEOUT:?}"))?
        .map_err(|e| describe(&e))?;
    let ttl = min_ttl(found.as_lookup().answers().iter().map(|rec| rec.ttl));
    let mut ips: Vec<IpAddr> = found.iter().collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err("the resolver returned no addresses".into());
    }
    Ok((ips, ttl))
}

/// The SRV records of `name` with each target's first address, sorted (priority, target,
/// port), and the shortest TTL of the records and the targets' addresses. A target without
/// an address is left out (logged by the caller from `skipped`); none left is an error.
pub(crate) async fn srv(
    r: &TokioResolver,
    name: &str,
) -> Result<(Vec<SrvTarget>, Option<Duration>, Vec<String>), String> {
    let look = async {
        let answer = r.srv_lookup(name).await.map_err(|e| describe(&e))?;
        let mut ttl = min_ttl(answer.answers().iter().map(|rec| rec.ttl));
        let records: Vec<_> = answer
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::SRV(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if records.len() > MAX_SRV_RECORDS {
            tracing::warn!(
                "dns: SRV {name} has {} records; using the first {MAX_SRV_RECORDS}",
                records.len()
            );
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for s in records.into_iter().take(MAX_SRV_RECORDS) {
            let target = s.target.to_ascii().to_ascii_lowercase();
            let target = target.strip_suffix('.').unwrap_or(&target).to_string();
            // RFC 2782: a target of "." means the service is not available here.
            if target.is_empty() {
                continue;
            }
            // Fully qualified: the target is never tried against the search list.
            match ips(r, &format!("{target}.")).await {
                Ok((found, t)) => {
                    ttl = match (ttl, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    out.push(SrvTarget {
                        priority: s.priority,
                        target,
                        port: s.port,
                        weight: s.weight,
                        ip: found[0],
                    });
                }
                Err(e) => skipped.push(format!("{target}: {e}")),
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.target == b.target && a.port == b.port);
        if out.is_empty() {
            return Err(if skipped.is_empty() {
                "no SRV records".to_string()
            } else {
                format!("no SRV target resolves ({})", skipped.join("; "))
            });
        }
        Ok((out, ttl, skipped))
    };
    tokio::time::timeout(LOOKUP_TIMEOUT, look)
        .await
        .map_err(|_| format!("no answer within {LOOKUP_TIMEOUT:?}"))?
}
