//! `sluice demo`: both tiers in one process on loopback, no files needed. It writes a
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
use topology::{Files, Topology, BALANCER, EDGES};

/// The flags of `sluice demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOpts {
    /// The balancer's port (0 = any free port, printed at start).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// The port both edges listen on, on 127.0.0.11 and 127.0.0.12.
    #[arg(long, default_value_t = 8443)]
    pub edge_port: u16,
    /// The balancer's address.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind_ip: IpAddr,
    /// Also print the generated configuration (it is what runs; `sluice check` accepts it
    /// while the demo runs, its files being in the demo's temporary directory).
    #[arg(long)]
    pub print_config: bool,
}

impl Default for DemoOpts {
    fn default() -> Self {
        DemoOpts {
            port: 8443,
            edge_port: 8443,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
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

/// Runs the demo until `shutdown` completes, then drains like `sluice run`, stops the apps
/// and removes the temporary directory.
pub async fn run(opts: &DemoOpts, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    if opts.edge_port == 0 {
        return Err(DemoError::Usage(
            "--edge-port 0 is not possible: the balancer's config must name the edges' port; \
             pick a free port"
                .into(),
        ));
    }
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
        balancer: SocketAddr::new(opts.bind_ip, opts.port),
        edge_port: opts.edge_port,
        files: Files::in_dir(dir.path()),
    };
    topology::write_material(&topo.files).map_err(DemoError::Files)?;
    let text = topology::config_toml(&topo);
    topology::write_private(&topo.files.config, text.as_bytes()).map_err(DemoError::Files)?;
    // The same loader and checks as `sluice run --config FILE`.
    let cfg = config::load_file(&topo.files.config)?;

    let stop_apps = CancellationToken::new();
    let mut apps = Vec::new();
    for (name, ip) in EDGES {
        let path = topo.files.app_socket(name);
        let listener = UnixListener::bind(&path).map_err(|source| DemoError::AppSocket {
            path: path.display().to_string(),
            source,
        })?;
        let id = AppIdentity {
            name: name.to_string(),
            edge_addr: topo.edge_addr(ip).to_string(),
        };
        apps.push(tokio::spawn(app::serve(listener, id, stop_apps.clone())));
    }

    let server = match Server::bind(cfg).await {
        Ok(s) => s,
        Err(e) => {
            stop_apps.cancel();
            return Err(explain_bind(e));
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
fn explain_bind(e: BuildError) -> DemoError {
    match e {
        BuildError::Bind {
            frontend,
            addr,
            source,
        } => {
            let hint = if frontend == BALANCER {
                "choose another balancer port with --port (or its address with --bind-ip)"
                    .to_string()
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
    for (name, ip) in EDGES {
        edges.push_str(&format!(
            "    edge      {name} on {} (TLS for localhost, PROXY trusted from {}/32) -> uwsgi app at {}\n",
            t.edge_addr(ip),
            topology::BALANCER_SOURCE,
            t.files.app_socket(name).display()
        ));
    }
    format!(
        "{READY} balancer on {balancer}\n\
         \n\
         \x20   balancer  {balancer} (tcp, roundrobin, TLS health checks, PROXY v2 from {src})\n\
         {edges}\
         \x20   files     {dir} (removed on exit)\n\
         \n\
         Try:\n\
         \x20   curl -k {url}\n\
         \x20   curl -k --interface 127.0.0.2 {url}        # the app sees client 127.0.0.2\n\
         \x20   curl -k --http1.1 -H 'Connection: close' {url} {url}\n\
         \x20                                     # two connections: both edges, the 2nd resumed\n\
         Each request is logged below with the real client address. Ctrl-C stops the demo.",
        src = topology::BALANCER_SOURCE,
        dir = t.files.dir.display(),
    )
}
