//! The standard `process_*` series (CPU seconds, resident and virtual memory, open and
//! maximum fds, start time), read from `/proc/self` at each scrape by a prometheus-client
//! `Collector`. Linux only: elsewhere, or when a file cannot be read, a series is left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::names::*;

/// Reads `/proc/self` when encoded; holds nothing.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) virtual_bytes: Option<f64>,
    pub(crate) open_fds: Option<f64>,
    pub(crate) max_fds: Option<f64>,
    pub(crate) start_time_seconds: Option<f64>,
}

/// `/proc/self/stat`'s fields after the `(comm)` one, which may hold spaces and parentheses.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Computes the stats from the text of `/proc/self/stat` and `/proc/stat` and the system's
/// clock ticks per second and page size (pure, for tests).
pub(super) fn parse(stat: &str, proc_stat: &str, ticks: f64, page: f64) -> Stats {
    let f = stat_fields(stat);
    // Field numbers of proc(5), counted from 1 with pid = 1 and comm = 2; f[0] is field 3.
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = match (num(14), num(15)) {
        (Some(u), Some(s)) if ticks > 0.0 => Some((u + s) / ticks),
        _ => None,
    };
    let start = match (num(22), boot_time(proc_stat)) {
        (Some(t), Some(boot)) if ticks > 0.0 => Some(boot + t / ticks),
        _ => None,
    };
    Stats {
        cpu_seconds: cpu,
        resident_bytes: num(24).map(|p| p * page),
        virtual_bytes: num(23),
        start_time_seconds: start,
        ..Stats::default()
    }
}

/// This process's stats now.
pub(crate) fn read() -> Stats {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let mut s = parse(&stat, &proc_stat, ticks, page);
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    s.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map(|v| v as f64);
    s
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = read();
        if let Some(v) = s.cpu_seconds {
            let help = format!("{PROCESS_CPU_HELP}.");
            let m = encoder.encode_descriptor(PROCESS_CPU, &help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)?;
        }
        let gauges = [
            (PROCESS_RESIDENT, PROCESS_RESIDENT_HELP, s.resident_bytes),
            (PROCESS_VIRTUAL, PROCESS_VIRTUAL_HELP, s.virtual_bytes),
            (PROCESS_OPEN_FDS, PROCESS_OPEN_FDS_HELP, s.open_fds),
            (PROCESS_MAX_FDS, PROCESS_MAX_FDS_HELP, s.max_fds),
            (
                PROCESS_START_TIME,
                PROCESS_START_TIME_HELP,
                s.start_time_seconds,
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                let help = format!("{help}.");
                let m = encoder.encode_descriptor(name, &help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        // A comm with a space and a parenthesis; utime 250, stime 150, starttime 1000 ticks,
        // vsize 8192000 bytes, rss 300 pages.
        let stat = "42 (sl uice)) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 1000 \
                    8192000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let s = parse(stat, proc_stat, 100.0, 4096.0);
        assert_eq!(s.cpu_seconds, Some(4.0));
        assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(s.virtual_bytes, Some(8_192_000.0));
        assert_eq!(s.resident_bytes, Some(300.0 * 4096.0));
        assert_eq!(parse("", "", 100.0, 4096.0), Stats::default());
    }

    #[test]
    fn reads_this_process() {
        let s = read();
        assert!(s.resident_bytes.is_some_and(|v| v > 0.0), "{s:?}");
        assert!(s.open_fds.is_some_and(|v| v >= 1.0), "{s:?}");
        assert!(s.max_fds.is_some_and(|v| v >= 1.0), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.expect("start time");
        assert!(
            start > now - 86_400.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
