//! Loading a configuration: read the file, parse TOML into `Config`, run the cross-checks of
//! `config::validate`, and report the first problem (in file order) as `file:line:col: key:
//! message`. It does not open listeners, resolve host names or load certificates.

use std::fmt;
use std::path::Path;

use super::model::Config;
use super::parsed::parse_bind;
use super::spans::{line_col, At, KeyPath, Located};
use super::validate;

/// Largest configuration file read (a config is a few kilobytes; this stops a mistaken path
/// such as a log file or /dev/zero from eating memory).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// What to check beyond the file's own content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// TLS cert/key/ticket-key files are readable and access-log directories exist.
    pub check_files: bool,
    /// `global.max_connections` fits under the hard RLIMIT_NOFILE.
    pub check_fd_limit: bool,
}

impl Default for LoadOptions {
    /// Everything: what `sluice check` and `sluice run` use.
    fn default() -> Self {
        LoadOptions {
            check_files: true,
            check_fd_limit: true,
        }
    }
}

impl LoadOptions {
    /// Only the file's content: for tests and for configs meant for another machine.
    pub fn content_only() -> Self {
        LoadOptions {
            check_files: false,
            check_fd_limit: false,
        }
    }
}

/// A problem in a configuration file, positioned at the offending key or value.
/// `line`/`col` are 1-based; both are 0 when the file itself could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Key path such as `frontend[0].backend`; empty for syntax and I/O errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `{file}:{line}:{col}: {key}: {message}`; without `{key}: ` when there is no key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    /// A problem with the value of `key` (a key path as printed in errors, e.g.
    /// `frontend[0].tls.cert`) in the configuration file `path`, found outside `config` (a
    /// certificate that does not parse): positioned at that value, or at the nearest ancestor
    /// written in the file; at 0:0 when the file cannot be read again.
    pub fn at_key(path: &Path, key: &str, message: String) -> ConfigError {
        let (line, col) = read_limited(path)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                let doc = Located::parse(&text).ok()?;
                let offset = doc.offset_of(&KeyPath::parse(key)?, At::Value);
                Some(line_col(&text, offset))
            })
            .unwrap_or((0, 0));
        ConfigError {
            file: path.display().to_string(),
            line,
            col,
            key: key.to_string(),
            message,
        }
    }
}

/// Reads, parses and fully validates `path` (including files it names and the fd limit).
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load_file_with(path, &LoadOptions::default())
}

/// Parses and fully validates `text`; `origin` names it in messages (usually the file name).
/// Relative file paths inside are checked against the current directory.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    load_str_with(text, origin, &LoadOptions::default())
}

/// `load_file` with a choice of the checks that look outside the file.
pub fn load_file_with(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let io_err = |message: String| ConfigError {
        file: origin.clone(),
        line: 0,
        col: 0,
        key: String::new(),
        message,
    };
    let text = read_limited(path).map_err(|e| io_err(format!("cannot read file: {e}")))?;
    let text = String::from_utf8(text).map_err(|e| {
        io_err(format!(
            "file is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    load_str_with(&text, &origin, opts)
}

/// Positions `message` about frontend `frontend`'s bind `addr` (as the runtime reports it,
/// e.g. a bind that failed at `run` or on a reload) at that address in `path`, which `cfg`
/// was loaded from: `FILE:LINE:COL: frontend[i].bind[j]: message`. `None` when the
/// frontend or the address is not in `cfg`, or the file no longer parses.
pub fn locate_bind(
    path: &Path,
    cfg: &Config,
    frontend: &str,
    addr: &str,
    message: String,
) -> Option<ConfigError> {
    let i = cfg.frontends.iter().position(|f| f.name == frontend)?;
    let want = parse_bind(addr).ok()?;
    let j = cfg.frontends[i]
        .bind
        .iter()
        .position(|b| parse_bind(b) == Ok(want))?;
    let text = String::from_utf8(read_limited(path).ok()?).ok()?;
    let doc = Located::parse(&text).ok()?;
    let key = KeyPath::root()
        .key("frontend")
        .index(i)
        .key("bind")
        .index(j);
    let (line, col) = line_col(&text, doc.offset_of(&key, At::Value));
    Some(ConfigError {
        file: path.display().to_string(),
        line,
        col,
        key: key.to_string(),
        message,
    })
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

/// `load_str` with a choice of the checks that look outside the file.
pub fn load_str_with(text: &str, origin: &str, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let at = |offset: usize, key: String, message: String| {
        let (line, col) = line_col(text, offset);
        ConfigError {
            file: origin.to_string(),
            line,
            col,
            key,
            message,
        }
    };
    let doc = Located::parse(text)
        .map_err(|(span, message)| at(span.map_or(0, |r| r.start), String::new(), message))?;
    let mut cfg: Config = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |r| r.start);
        let key = if e.span().is_some() {
            doc.path_at(offset).to_string()
        } else {
            String::new()
        };
        at(offset, key, e.message().trim().to_string())
    })?;
    let issues = validate::check(&cfg, opts, Some(&doc));
    let first = issues
        .into_iter()
        .map(|i| (doc.offset_of(&i.path, i.at), i))
        .min_by_key(|(offset, _)| *offset);
    if let Some((offset, issue)) = first {
        return Err(at(offset, issue.path.to_string(), issue.message));
    }
    fill_defaults(&mut cfg);
    Ok(cfg)
}

/// Defaults that depend on position: unnamed servers become "srvN"; servers get the
/// `max_connections` of their backend's role when unset (`config::edge`).
fn fill_defaults(cfg: &mut Config) {
    super::edge::fill_caps(cfg);
    for b in &mut cfg.backends {
        for (j, s) in b.servers.iter_mut().enumerate() {
            if s.name.is_none() {
                s.name = Some(validate::default_server_name(j));
            }
        }
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "load_edge_tests.rs"]
mod edge_tests;
