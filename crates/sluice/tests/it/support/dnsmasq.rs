//! Debian's dnsmasq as the test DNS server: on 127.0.0.1 and a free port (UDP and TCP), no
//! upstream, no /etc/hosts, records from its arguments and an addn-hosts file (re-read on
//! SIGHUP), TTL 1s. Restartable on the same port with other records. Missing: a loud SKIP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{free_port, spawn_peer, tool, wait_ready, ChildGuard, Probe};

pub struct Dnsmasq {
    pub addr: SocketAddr,
    /// The addn-hosts file: "IP NAME" lines.
    pub hosts: PathBuf,
    program: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` as its addn-hosts file and `srv` as `--srv-host` values
    /// (`_app._tcp.example.test,TARGET,PORT,PRIORITY,WEIGHT`). None: dnsmasq is missing.
    pub async fn start(dir: &Path, hosts: &str, srv: &[String]) -> Option<Dnsmasq> {
        let program = tool("dnsmasq", &["/usr/sbin/dnsmasq", "dnsmasq"])?;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let path = dir.join("dns-hosts");
        std::fs::write(&path, hosts).expect("write dnsmasq hosts");
        let mut d = Dnsmasq {
            addr: SocketAddr::new(ip, free_port(ip)),
            hosts: path,
            program,
            log: dir.join("dnsmasq.log"),
            child: None,
        };
        d.restart(srv).await;
        Some(d)
    }

    /// Stops dnsmasq (if running) and starts it again on the same port with `srv` records.
    pub async fn restart(&mut self, srv: &[String]) {
        self.child = None;
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--pid-file=".into(),
            "--log-facility=-".into(),
            format!("--port={}", self.addr.port()),
            format!("--listen-address={}", self.addr.ip()),
            "--bind-interfaces".into(),
            "--local-ttl=1".into(),
            format!("--addn-hosts={}", self.hosts.display()),
        ];
        args.extend(srv.iter().map(|s| format!("--srv-host={s}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_peer(&self.program, &args, &self.log);
        wait_ready("dnsmasq", &mut child, &self.log, Probe::Tcp(self.addr)).await;
        self.child = Some(child);
    }

    /// Replaces the addn-hosts file and has dnsmasq re-read it (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("write dnsmasq hosts");
        let pid = self.child.as_ref().expect("dnsmasq running").0.id();
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP dnsmasq");
    }
}
