//! The two exposition formats of `/metrics`: choosing one from a scrape's `Accept` header (as
//! Prometheus' own client libraries do) and rewriting prometheus-client's OpenMetrics text
//! into the Prometheus text format 0.0.4. It reads no sockets and knows no metric names.

/// An exposition format `/metrics` can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0` (what prometheus-client writes).
    OpenMetrics,
    /// `text/plain; version=0.0.4`, the Prometheus text format (the default).
    Text004,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics when it lists
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) with a q-value above 0
    /// and not below that of any other range it accepts; otherwise the 0.0.4 text format,
    /// which is also the answer to no or an unreadable header.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let mut best_om: Option<f32> = None;
        let mut best_other: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "version" => version = Some(v.to_string()),
                    _ => {}
                }
            }
            // A NaN, negative or zero q-value refuses the range.
            if q.is_nan() || q <= 0.0 {
                continue;
            }
            if media == "application/openmetrics-text" {
                if matches!(version.as_deref(), None | Some("1.0.0") | Some("0.0.1")) {
                    best_om = Some(best_om.map_or(q, |b| b.max(q)));
                }
            } else {
                best_other = best_other.max(q);
            }
        }
        match best_om {
            Some(q) if q >= best_other => Format::OpenMetrics,
            _ => Format::Text004,
        }
    }
}

/// prometheus-client's OpenMetrics text rewritten as Prometheus text 0.0.4: a counter family
/// `x` (samples `x_total`) becomes family `x_total`, `info` families become gauges named
/// `x_info`, `# UNIT` lines, counters' `_created` samples and `# EOF` are dropped. Histogram
/// and gauge families are the same in both formats. sluice records no exemplars.
pub(super) fn openmetrics_to_text004(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut lines = om.lines().peekable();
    // The current family's OpenMetrics name and type.
    let mut family = String::new();
    let mut kind = String::new();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let ty = lines
                .peek()
                .and_then(|l| l.strip_prefix("# TYPE "))
                .and_then(|l| l.split_once(' '))
                .filter(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
                .unwrap_or_else(|| "untyped".to_string());
            if ty != "untyped" {
                lines.next();
            }
            family = name.to_string();
            kind = ty;
            let (name, ty) = match kind.as_str() {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "gaugehistogram" | "stateset" | "unknown" => (family.clone(), "untyped"),
                other => (family.clone(), other),
            };
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {ty}\n"));
        } else if line.starts_with("# ") {
            // `# UNIT`, `# EOF`: not part of the 0.0.4 format.
        } else if kind == "counter"
            && sample_name(line).strip_suffix("_created") == Some(family.as_str())
        {
            // Creation timestamps have no 0.0.4 equivalent.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The metric name of a sample line (up to the labels or the value).
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Text004);
        assert_eq!(Format::negotiate(Some("*/*")), Text004);
        assert_eq!(Format::negotiate(Some("text/plain")), Text004);
        assert_eq!(
            Format::negotiate(Some("text/plain; version=0.0.4")),
            Text004
        );
        assert_eq!(Format::negotiate(Some("garbage;;;,")), Text004);
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; Version=1.0.0")),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Text004
        );
        for refused in ["q=0", "q=NaN", "q=-1", "q=x"] {
            let accept = format!("application/openmetrics-text;{refused}");
            assert_eq!(Format::negotiate(Some(&accept)), Text004, "{accept}");
        }
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Text004
        );
    }

    #[test]
    fn rewrite() {
        let om = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\na_bytes_total{x=\"1\"} 3\n\
                  a_bytes_created{x=\"1\"} 1.5\n\
                  # HELP g Gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n\
                  # HELP b Build.\n# TYPE b info\nb_info{version=\"1\"} 1\n\
                  # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n\
                  # EOF\n";
        let want = "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\n\
                    a_bytes_total{x=\"1\"} 3\n\
                    # HELP g Gauge.\n# TYPE g gauge\ng 1\n\
                    # HELP b_info Build.\n# TYPE b_info gauge\nb_info{version=\"1\"} 1\n\
                    # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
        assert_eq!(openmetrics_to_text004(om), want);
    }
}
