//! `sluice demo`: both tiers in one process (on loopback unless told otherwise with
//! `--listen`/`--edge`/`--source`), no files needed. It writes a
//! certificate, ticket keys and a generated config (`topology`) into a temporary directory,
//! starts one built-in uwsgi app per edge (`app`), loads the config through the same path as
//! `sluice run`, and serves until SIGINT/SIGTERM, then removes the directory. Nothing is faked.

pub mod app;
pub mod topology;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use app::AppIdentity;
use sluice::config::{self, ConfigError};
use sluice::runtime::{BuildError, Server};
use topology::{Files, Topology, BALANCER, BALANCER_SOURCE, MAX_EDGES};

/// The flags of `sluice demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOpts {
    /// The balancer's address and port, e.g. 127.0.0.1:9443 or [::1]:0 (port 0 = any free
    /// port, printed at start). Default: --bind-ip and --port.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["port", "bind_ip"])]
    pub listen: Option<SocketAddr>,
    /// The balancer's port (0 = any free port, printed at start).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// The port both edges listen on, on 127.0.0.11 and 127.0.0.12.
    #[arg(long, default_value_t = 8443)]
    pub edge_port: u16,
    /// The balancer's address.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind_ip: IpAddr,
    /// An edge's address and port (repeat for more edges, up to 16; each gets its own app).
    /// Default: 127.0.0.11 and 127.0.0.12 on --edge-port.
    #[arg(long = "edge", value_name = "ADDR", conflicts_with = "edge_port")]
    pub edges: Vec<SocketAddr>,
    /// The address the balancer connects to the edges from: the only one they trust for PROXY
    /// headers. It must be an address of this machine, of the edges' family.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(BALANCER_SOURCE))]
    pub source: IpAddr,
    /// Also print the generated configuration (it is what runs; `sluice check` accepts it
    /// while the demo runs, its files being in the demo's temporary directory).
    #[arg(long)]
    pub print_config: bool,
}

impl Default for DemoOpts {
    fn default() -> Self {
        DemoOpts {
            listen: None,
            port: 8443,
            edge_port: 8443,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            edges: Vec::new(),
            source: IpAddr::V4(BALANCER_SOURCE),
            print_config: false,
        }
    }
}

/// Why the demo could not start (or stopped badly). Messages are meant for the user as-is.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot prepare the demo's temporary files: {0}")]
    Files(io::Error),
    #[error("cannot listen on the app socket {path}: {source}")]
    AppSocket { path: String, source: io::Error },
    /// The generated config did not load: a bug in the demo, shown with its position.
    #[error("the generated configuration does not load: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Bind(String),
    #[error(transparent)]
    Server(BuildError),
    #[error("cannot install signal handlers: {0}")]
    Signal(io::Error),
}

/// The first line printed once everything listens; tests wait for it.
pub const READY: &str = "sluice demo ready:";

/// `sluice demo` as the command line runs it: stops on the first SIGINT (Ctrl-C) or SIGTERM,
/// through the same handler as `sluice run` ([`crate::cli::shutdown_signal`]).
pub async fn run_until_signal(opts: &DemoOpts) -> Result<(), DemoError> {
    let shutdown = crate::cli::shutdown_signal().map_err(DemoError::Signal)?;
    run(opts, shutdown).await
}

/// The balancer's address, the edges and the source address the flags ask for, or why not.
fn addresses(opts: &DemoOpts) -> Result<(SocketAddr, Vec<topology::Edge>), DemoError> {
    let balancer = opts
        .listen
        .unwrap_or(SocketAddr::new(opts.bind_ip, opts.port));
    if opts.edges.is_empty() {
        if opts.edge_port == 0 {
            return Err(DemoError::Usage(
                "--edge-port 0 is not possible: the balancer's config must name the edges' \
                 port; pick a free port"
                    .into(),
            ));
        }
        if !opts.source.is_ipv4() {
            return Err(DemoError::Usage(format!(
                "--source {}: the default edges are IPv4 (127.0.0.11, 127.0.0.12); give IPv6 \
                 edges with --edge or an IPv4 source",
                opts.source
            )));
        }
        return Ok((balancer, topology::default_edges(opts.edge_port)));
    }
    if opts.edges.len() > MAX_EDGES {
        return Err(DemoError::Usage(format!(
            "{} --edge flags: the demo runs at most {MAX_EDGES} edges",
            opts.edges.len()
        )));
    }
    for (i, e) in opts.edges.iter().enumerate() {
        if e.port() == 0 {
            return Err(DemoError::Usage(format!(
                "--edge {e}: port 0 is not possible: the balancer's config must name each \
                 edge's port; pick a free port"
            )));
        }
        if opts.edges[..i].contains(e) {
            return Err(DemoError::Usage(format!("--edge {e} is given twice")));
        }
        if e.is_ipv4() != opts.source.is_ipv4() {
            return Err(DemoError::Usage(format!(
                "--edge {e} and --source {}: the balancer connects to the edges from the source \
                 address, so they must be of one family",
                opts.source
            )));
        }
    }
    Ok((balancer, topology::edges_at(&opts.edges)))
}

/// Runs the demo until `shutdown` completes, then drains like `sluice run`, stops the apps
/// and removes the temporary directory.
pub async fn run(opts: &DemoOpts, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let (balancer, edges) = addresses(opts)?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-demo-")
        .tempdir()
        .map_err(DemoError::Files)?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Owner only: it holds a private key and ticket keys.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(DemoError::Files)?;
    }
    let topo = Topology {
        balancer,
        edges,
        source: opts.source,
        files: Files::in_dir(dir.path()),
    };
    topology::write_material(&topo.files).map_err(DemoError::Files)?;
    let text = topology::config_toml(&topo);
    topology::write_private(&topo.files.config, text.as_bytes()).map_err(DemoError::Files)?;
    // The same loader and checks as `sluice run --config FILE`.
    let cfg = config::load_file(&topo.files.config)?;

    let stop_apps = CancellationToken::new();
    let mut apps = Vec::new();
    for edge in &topo.edges {
        let name = edge.name.as_str();
        let path = topo.files.app_socket(name);
        let listener = UnixListener::bind(&path).map_err(|source| DemoError::AppSocket {
            path: path.display().to_string(),
            source,
        })?;
        let id = AppIdentity {
            name: name.to_string(),
            edge_addr: edge.addr.to_string(),
        };
        apps.push(tokio::spawn(app::serve(listener, id, stop_apps.clone())));
    }

    let server = match Server::bind(cfg).await {
        Ok(s) => s,
        Err(e) => {
            stop_apps.cancel();
            return Err(explain_bind(e, opts));
        }
    };
    let balancer = server
        .local_addrs()
        .into_iter()
        .find(|(name, _)| name == BALANCER)
        .map_or(topo.balancer, |(_, a)| a);
    if opts.print_config {
        println!("# ---- {} ----", topo.files.config.display());
        print!("{text}");
        println!("# ---- end of configuration ----");
    }
    println!("{}", banner(&topo, balancer));

    let result = server.run(shutdown).await.map_err(DemoError::Server);
    stop_apps.cancel();
    for a in apps {
        let _ = a.await;
    }
    let path = dir.path().display().to_string();
    match dir.close() {
        Ok(()) => println!("sluice demo stopped; removed {path}"),
        Err(e) => println!("sluice demo stopped; could not remove {path}: {e}"),
    }
    result
}

/// A bind failure says which address and which flag changes it.
fn explain_bind(e: BuildError, opts: &DemoOpts) -> DemoError {
    match e {
        BuildError::Bind {
            frontend,
            addr,
            source,
        } => {
            let hint = if frontend == BALANCER {
                if opts.listen.is_some() {
                    "choose another balancer address with --listen".to_string()
                } else {
                    "choose another balancer port with --port (or its address with --bind-ip, \
                     or both with --listen)"
                        .to_string()
                }
            } else if !opts.edges.is_empty() {
                let mut h = "choose another address for this edge with --edge".to_string();
                if source.kind() == io::ErrorKind::AddrNotAvailable {
                    h.push_str(" (it must be an address of this machine)");
                }
                h
            } else {
                let mut h = "choose another port for both edges with --edge-port (they listen on \
                     127.0.0.11 and 127.0.0.12)"
                    .to_string();
                if source.kind() == io::ErrorKind::AddrNotAvailable {
                    h.push_str(
                        "; this system does not route all of 127.0.0.0/8 to loopback (on macOS: \
                         `sudo ifconfig lo0 alias 127.0.0.11 up` and the same for 127.0.0.12)",
                    );
                }
                h
            };
            DemoError::Bind(format!(
                "cannot listen on {addr} ({frontend}): {source}; {hint}"
            ))
        }
        other => DemoError::Server(other),
    }
}

/// What to run, printed once everything listens. Its first line starts with [`READY`].
pub fn banner(t: &Topology, balancer: SocketAddr) -> String {
    let url = format!("https://{balancer}/");
    let mut edges = String::new();
    for e in &t.edges {
        edges.push_str(&format!(
            "    edge      {} on {} (TLS for localhost, PROXY trusted from {}) -> uwsgi app at {}\n",
            e.name,
            e.addr,
            t.trusted(),
            t.files.app_socket(&e.name).display()
        ));
    }
    // Sending from 127.0.0.2 shows the real client address crossing; only on IPv4 loopback.
    let from_client = if balancer.ip().is_loopback() && balancer.is_ipv4() {
        format!(
            "\x20   curl -k --interface 127.0.0.2 {url}        # the app sees client 127.0.0.2\n"
        )
    } else {
        String::new()
    };
    let two = match t.edges.len() {
        1 => "two connections to the one edge, the 2nd resumed",
        2 => "two connections: both edges, the 2nd resumed",
        _ => "two connections: two edges in turn, the 2nd resumed",
    };
    format!(
        "{READY} balancer on {balancer}\n\
         \n\
         \x20   balancer  {balancer} (tcp, roundrobin, TLS health checks, PROXY v2 from {src})\n\
         {edges}\
         \x20   files     {dir} (removed on exit)\n\
         \n\
         Try:\n\
         \x20   curl -k {url}\n\
         {from_client}\
         \x20   curl -k --http1.1 -H 'Connection: close' {url} {url}\n\
         \x20                                     # {two}\n\
         Each request is logged below with the real client address. Ctrl-C stops the demo.",
        src = t.source,
        dir = t.files.dir.display(),
    )
}
