//! Configuration: the TOML model (`model`), duration strings (`duration`), parsing address
//! strings (`parsed`), loading with file:line:col errors (`load`, `validate`, `spans`), the
//! edge's role-dependent rules (`edge`), the file-descriptor budget (`limits`), servers from SRV records (`srv`) and the
//! conversion into the runtime's `spec` (`convert`). Imports only `spec` and `addr`.

mod agent;
mod client_tls;
mod convert;
mod duration;
mod edge;
mod fastcgi;
pub mod limits;
pub mod load;
pub mod model;
mod parsed;
mod routes;
mod spans;
mod srv;
mod tlv_headers;
mod upstream_tls;
mod validate;

pub use duration::Dur;
pub use limits::{fds_needed, raise_nofile};
pub use load::{load_file, load_file_with, load_str, load_str_with, ConfigError, LoadOptions};
pub use model::*;
pub use parsed::{parse_bind, parse_cidr, parse_server_addr, parse_source, resolve, ServerAddr};
