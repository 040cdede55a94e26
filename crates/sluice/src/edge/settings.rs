//! The edge's knobs as typed values: client timeouts and limits, body and response
//! buffering, where temp files go, header-name and forwarding-header policy, upstream read/send timeouts.
//! Built from a frontend's and its backend's spec (`EdgeSettings::new`); the edge reads
//! these. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

use crate::spec;
pub(super) use crate::spec::{ClientLimits, ClientTimeouts};

/// Request and response buffering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Buffering {
    /// Largest request body, declared or read (413 beyond).
    pub max_body: u64,
    /// Read the whole request body before contacting the app.
    pub request: bool,
    /// Read the app's response as fast as it comes.
    pub response: bool,
    /// Request body bytes in memory before spilling to a temp file.
    pub body_buffer_size: usize,
    /// Response bytes in memory before spilling to a temp file.
    pub response_buffer_size: usize,
    /// Largest response temp file (0 = never spill).
    pub max_temp_file_size: u64,
    /// Directory for unlinked temp files.
    pub temp_dir: PathBuf,
}

/// Timeouts towards the app servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamTimeouts {
    pub connect: Duration,
    /// Response head and between two reads of the response body.
    pub read: Duration,
    /// Between two successful writes of the request.
    pub send: Duration,
    /// Waiting in the backend queue for a free server slot.
    pub queue: Duration,
}

/// Everything configurable about one edge frontend and how it talks to its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EdgeSettings {
    pub client: ClientTimeouts,
    pub limits: ClientLimits,
    pub buffering: Buffering,
    pub upstream: UpstreamTimeouts,
    /// Pass header names containing `_` to the app.
    pub underscores_in_headers: bool,
    /// Forwarding-header policy (`edge::forwarded`).
    pub forwarded: spec::Forwarded,
    /// `Upgrade` protocols passed to the app (`edge::upgrade`).
    pub upgrade_protocols: Vec<String>,
}

impl EdgeSettings {
    /// From frontend `f` and its backend `b`.
    pub(crate) fn new(f: &spec::Frontend, b: &spec::Backend) -> Self {
        let e = &f.edge;
        EdgeSettings {
            client: e.timeouts,
            limits: e.limits,
            buffering: Buffering {
                max_body: e.max_body as u64,
                request: e.request_buffering,
                response: e.response_buffering,
                body_buffer_size: e.body_buffer_size,
                response_buffer_size: e.response_buffer_size,
                max_temp_file_size: e.max_temp_file_size,
                temp_dir: e.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
            },
            upstream: UpstreamTimeouts {
                connect: b.timeouts.connect,
                read: b.timeouts.read,
                send: b.timeouts.send,
                queue: b.timeouts.queue,
            },
            underscores_in_headers: e.underscores_in_headers,
            forwarded: e.forwarded.clone(),
            upgrade_protocols: e.upgrade_protocols.clone(),
        }
    }
}
