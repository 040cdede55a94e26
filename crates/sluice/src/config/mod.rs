//! Configuration: the TOML model (`model`), duration strings (`duration`), and loading with
//! file:line:col errors plus cross-checks (`load`). No runtime state lives here.

pub mod duration;
pub mod model;

pub use duration::Dur;
pub use model::*;
