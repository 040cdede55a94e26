//! sockmap forwarding (`forward = "sockmap"` on a tcp frontend): both sockets of a
//! forwarded connection go into BPF SOCKHASH maps whose stream-verdict program redirects
//! each side's bytes to the other inside the kernel, so sluice is not woken per message.
//! `prog` is the program, `diag` the kernel's socket counters, `conn` one connection.

mod conn;
mod diag;
mod prog;
mod watch;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};

use aya::maps::{HashMap, MapData, SockHash};
use aya::programs::SkSkb;
use aya::{Ebpf, EbpfLoader};

pub(crate) use conn::forward;

/// The loaded program and its maps, shared by every sockmap connection of the process.
pub(crate) struct Kernel {
    maps: Mutex<Maps>,
    /// Holds the program (and its attachment to `SRC_MAP`) for the life of the process.
    _ebpf: Mutex<Ebpf>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").finish_non_exhaustive()
    }
}

struct Maps {
    src: SockHash<MapData, u64>,
    dst: SockHash<MapData, u64>,
    peer: HashMap<MapData, u64, [u64; 2]>,
}

/// The process's sockmap support: loaded on first use, once. `Err` says why it is not
/// usable here (no privileges, a kernel without `CONFIG_BPF_STREAM_PARSER`, ...).
pub(crate) fn kernel() -> Result<&'static Kernel, &'static str> {
    static KERNEL: OnceLock<Result<Kernel, String>> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            let got = load();
            match &got {
                Ok(_) => tracing::info!("sockmap forwarding ready (BPF stream verdict loaded)"),
                Err(why) => tracing::warn!(
                    "sockmap forwarding unavailable, tcp frontends with forward = \"sockmap\" \
                     copy/splice instead: {why}"
                ),
            }
            got
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Whether sockmap forwarding works here (`sluice check`).
pub fn usable() -> Result<(), String> {
    kernel().map(drop).map_err(str::to_owned)
}

fn load() -> Result<Kernel, String> {
    let object = prog::object().map_err(|e| format!("building the BPF object: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .load(&object)
        .map_err(|e| format!("loading the BPF object: {e}"))?;
    let take = |ebpf: &mut Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| format!("BPF map {name} missing"))
    };
    let src = SockHash::try_from(take(&mut ebpf, prog::SRC_MAP)?).map_err(|e| e.to_string())?;
    let dst = SockHash::try_from(take(&mut ebpf, prog::DST_MAP)?).map_err(|e| e.to_string())?;
    let peer = HashMap::try_from(take(&mut ebpf, prog::PEER_MAP)?).map_err(|e| e.to_string())?;
    let program: &mut SkSkb = ebpf
        .program_mut(prog::PROG)
        .ok_or("BPF program missing")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    program
        .load()
        .map_err(|e| format!("loading the verdict program: {e}"))?;
    program
        .attach(src.fd())
        .map_err(|e| format!("attaching the verdict program: {e}"))?;
    Ok(Kernel {
        maps: Mutex::new(Maps { src, dst, peer }),
        _ebpf: Mutex::new(ebpf),
    })
}

fn map_err(e: aya::maps::MapError) -> io::Error {
    io::Error::other(e.to_string())
}

impl Kernel {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `a` and `b` peers and puts both in the redirect target map (no program: their
    /// bytes still arrive as usual). Undone by `unlink`.
    fn pair(&self, a: (u64, &impl AsRawFd), b: (u64, &impl AsRawFd)) -> io::Result<()> {
        let mut m = self.maps();
        m.peer.insert(a.0, [b.0, 0], 0).map_err(map_err)?;
        m.peer.insert(b.0, [a.0, 0], 0).map_err(map_err)?;
        m.dst.insert(a.0, a.1.as_raw_fd(), 0).map_err(map_err)?;
        m.dst.insert(b.0, b.1.as_raw_fd(), 0).map_err(map_err)
    }

    /// Starts (or, with `on = false`, stops) the verdict program on one socket.
    fn verdict(&self, cookie: u64, sock: &impl AsRawFd, on: bool) -> io::Result<()> {
        let mut m = self.maps();
        if on {
            m.src.insert(cookie, sock.as_raw_fd(), 0).map_err(map_err)
        } else {
            m.src.remove(&cookie).map_err(map_err)
        }
    }

    /// Bytes the program redirected away from the socket `cookie`.
    fn redirected(&self, cookie: u64) -> u64 {
        self.maps().peer.get(&cookie, 0).map(|v| v[1]).unwrap_or(0)
    }

    /// Takes both sockets out of every map (whatever of them is there).
    fn unlink(&self, a: u64, b: u64) {
        let mut m = self.maps();
        for c in [a, b] {
            let _ = m.src.remove(&c);
        }
        for c in [a, b] {
            let _ = m.dst.remove(&c);
            let _ = m.peer.remove(&c);
        }
    }
}
