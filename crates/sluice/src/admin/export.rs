//! The stats report as JSON (`/stats.json`, `/;json`; what the page reads) and as HAProxy's
//! CSV (`/;csv`: the `show stat` columns up to `last_chk`, in HAProxy's order, a `# ` header,
//! a trailing comma, RFC 4180 quoting). Rendering only; gathering is `report`'s.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::report::{Backend, Frontend, Report, Server};
use crate::metrics::HTTP_CLASSES;

/// HAProxy's `show stat` fields 0..=56, in its order.
pub(crate) const CSV_FIELDS: [&str; 57] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
];

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn frontend_json(f: &Frontend) -> Value {
    let g = &f.figures;
    let http: serde_json::Map<String, Value> = HTTP_CLASSES
        .iter()
        .zip(g.http)
        .map(|(c, v)| ((*c).to_string(), json!(v)))
        .collect();
    json!({
        "name": f.name,
        "mode": f.mode,
        "backend": f.backend,
        "addrs": f.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "status": "OPEN",
        "current": g.current,
        "max": g.max_current,
        "total": g.total,
        "rate": g.rate,
        "rate_max": g.rate_max,
        "bytes_in": g.bytes_in,
        "bytes_out": g.bytes_out,
        "denied": g.denied,
        "proxy_errors": g.proxy_errors,
        "tls_failures": g.tls_failures,
        "http_responses": if f.mode == "http" { Value::Object(http) } else { Value::Null },
    })
}

fn server_json(s: &Server) -> Value {
    let v = &s.snap;
    let check = v.last_check.as_ref().map(|c| {
        json!({
            "status": c.status,
            "code": c.code,
            "duration_ms": ms(c.took),
            "detail": c.detail,
            "age_s": s.checked_ago.map(|d| d.as_secs()),
        })
    });
    json!({
        "name": v.name,
        "addr": v.addr.to_string(),
        "status": s.status,
        "state": crate::metrics::display_state(v),
        "admin": v.admin.as_str(),
        "weight": v.weight,
        "effective_weight": v.effective_weight,
        "agent_weight_pct": v.agent_pct,
        "slow_start_pct": v.ramp_pct,
        "backup": v.backup,
        "max_connections": v.max_connections,
        "active": v.active,
        "total": v.total,
        "connect_failures": v.connect_failures,
        "checks_ok": v.checks_ok,
        "checks_failed": v.checks_failed,
        "downs": v.downs,
        "since_s": s.since.as_secs(),
        "check": check,
    })
}

fn backend_json(b: &Backend) -> Value {
    let (act, bck) = b.usable();
    json!({
        "name": b.name,
        "balance": b.balance,
        "status": b.status(),
        "queue": b.queue,
        "backup_active": b.backup_active,
        "checked": b.checked,
        "active_servers": act,
        "backup_servers": bck,
        "current": b.servers.iter().map(|s| s.snap.active).sum::<usize>(),
        "total": b.servers.iter().map(|s| s.snap.total).sum::<u64>(),
        "connect_failures": b.servers.iter().map(|s| s.snap.connect_failures).sum::<u64>(),
        "servers": b.servers.iter().map(server_json).collect::<Vec<_>>(),
    })
}

/// The whole report as JSON.
pub(crate) fn json(r: &Report) -> Value {
    let p = &r.process;
    json!({
        "process": {
            "version": p.version,
            "pid": p.pid,
            "uptime_s": p.uptime.map(|d| d.as_secs()),
            "max_connections": p.max_connections,
            "current_connections": p.current_connections,
            "fd_limit": p.fd_limit,
            "open_fds": p.open_fds,
            "threads": p.threads,
        },
        "frontends": r.frontends.iter().map(frontend_json).collect::<Vec<_>>(),
        "backends": r.backends.iter().map(backend_json).collect::<Vec<_>>(),
    })
}

/// One CSV row: field name to value, the rest empty.
struct Row(Vec<String>);

impl Row {
    fn new(pxname: &str, svname: &str, kind: u8, iid: usize, sid: usize) -> Row {
        let mut row = Row(vec![String::new(); CSV_FIELDS.len()]);
        row.set("pxname", pxname);
        row.set("svname", svname);
        row.set("type", kind);
        row.set("pid", 1);
        row.set("iid", iid);
        row.set("sid", sid);
        row
    }

    fn set(&mut self, field: &str, v: impl ToString) {
        if let Some(i) = CSV_FIELDS.iter().position(|f| *f == field) {
            self.0[i] = v.to_string();
        }
    }

    fn write(&self, out: &mut String) {
        for v in &self.0 {
            out.push_str(&csv_escape(v));
            out.push(',');
        }
        out.push('\n');
    }
}

/// RFC 4180: a field holding a comma, quote or line break is quoted, quotes doubled.
pub(crate) fn csv_escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\"")).into()
    } else {
        v.into()
    }
}

/// The report as HAProxy's CSV: frontends, then each backend's servers and its BACKEND row.
pub(crate) fn csv(r: &Report) -> String {
    let mut out = String::from("# ");
    for f in CSV_FIELDS {
        let _ = write!(out, "{f},");
    }
    out.push('\n');
    let slim = r.process.max_connections;
    for (i, f) in r.frontends.iter().enumerate() {
        let g = &f.figures;
        let mut row = Row::new(&f.name, "FRONTEND", 0, i + 1, 0);
        row.set("scur", g.current);
        row.set("smax", g.max_current);
        row.set("slim", slim);
        row.set("stot", g.total);
        row.set("bin", g.bytes_in);
        row.set("bout", g.bytes_out);
        row.set("dreq", g.denied);
        row.set("ereq", g.proxy_errors + g.tls_failures);
        row.set("status", "OPEN");
        row.set("rate", g.rate);
        row.set("rate_max", g.rate_max);
        if f.mode == "http" {
            for (c, v) in HTTP_CLASSES.iter().zip(g.http) {
                row.set(&format!("hrsp_{c}"), v);
            }
            row.set("req_tot", g.http.iter().sum::<u64>());
        }
        row.write(&mut out);
    }
    let base = r.frontends.len();
    for (i, b) in r.backends.iter().enumerate() {
        let iid = base + i + 1;
        for (j, s) in b.servers.iter().enumerate() {
            server_row(b, s, iid, j + 1).write(&mut out);
        }
        let mut row = Row::new(&b.name, "BACKEND", 1, iid, 0);
        let (act, bck) = b.usable();
        row.set("qcur", b.queue);
        row.set(
            "scur",
            b.servers.iter().map(|s| s.snap.active).sum::<usize>(),
        );
        let total: u64 = b.servers.iter().map(|s| s.snap.total).sum();
        row.set("stot", total);
        row.set("lbtot", total);
        row.set(
            "econ",
            b.servers
                .iter()
                .map(|s| s.snap.connect_failures)
                .sum::<u64>(),
        );
        row.set("status", b.status());
        let weight: u32 = b
            .servers
            .iter()
            .filter(|s| s.status == "UP" || s.status == "no check")
            .map(|s| csv_weight(&s.snap))
            .sum();
        row.set("weight", weight);
        row.set("act", act);
        row.set("bck", bck);
        row.write(&mut out);
    }
    out
}

/// The effective weight as the CSV's integer column (rounded, at least 1 while the
/// configured, agent and ramp weights are all above zero, as the server still gets traffic).
fn csv_weight(v: &crate::balance::ServerSnapshot) -> u32 {
    let w = v.effective_weight.round() as u32;
    if w == 0 && v.effective_weight > 0.0 {
        1
    } else {
        w
    }
}

fn server_row(b: &Backend, s: &Server, iid: usize, sid: usize) -> Row {
    let v = &s.snap;
    let mut row = Row::new(&b.name, &v.name, 2, iid, sid);
    row.set("scur", v.active);
    if v.max_connections > 0 {
        row.set("slim", v.max_connections);
    }
    row.set("stot", v.total);
    row.set("lbtot", v.total);
    row.set("econ", v.connect_failures);
    row.set("status", s.status);
    // HAProxy's `weight` column is the effective weight (agent and slow start applied) and
    // `throttle` the slow-start percentage while it ramps.
    row.set("weight", csv_weight(v));
    if v.ramp_pct < 100 {
        row.set("throttle", v.ramp_pct);
    }
    row.set("act", u8::from(!v.backup));
    row.set("bck", u8::from(v.backup));
    row.set("lastchg", s.since.as_secs());
    if b.checked {
        row.set("chkfail", v.checks_failed);
        row.set("chkdown", v.downs);
    }
    if let Some(c) = &v.last_check {
        row.set("check_status", c.status);
        if let Some(code) = c.code {
            row.set("check_code", code);
        }
        row.set("check_duration", ms(c.took));
        row.set("last_chk", &c.detail);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_escape("srv1"), "srv1");
        assert_eq!(
            csv_escape("HTTP status 503, expected 200"),
            "\"HTTP status 503, expected 200\""
        );
        assert_eq!(csv_escape("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(csv_escape("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_header_is_haproxys() {
        assert_eq!(CSV_FIELDS[17], "status");
        assert_eq!(CSV_FIELDS[36], "check_status");
        assert_eq!(CSV_FIELDS[56], "last_chk");
    }
}
