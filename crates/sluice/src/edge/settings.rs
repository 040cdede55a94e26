//! The edge's knobs as typed values: client timeouts and limits, body and response
//! buffering, where temp files go, header-name policy, upstream read/send timeouts.
//! Built once from the validated config (`EdgeSettings::from_config`); runtime code reads
//! these, never the TOML model. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

use crate::config;

/// Client-side timeouts of one edge frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// TLS handshake.
    pub handshake: Duration,
    /// Request head (nginx `client_header_timeout`).
    pub header: Duration,
    /// Between two successful reads of the request body (nginx `client_body_timeout`).
    pub body: Duration,
    /// Between two successful writes to the client (nginx `send_timeout`).
    pub send: Duration,
    /// Idle keep-alive connection (nginx `keepalive_timeout`).
    pub keepalive: Duration,
}

/// Client-side limits of one edge frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Request head bytes (HTTP/1 read buffer, HTTP/2 header list).
    pub header_bytes: usize,
    /// Header fields in an HTTP/1 request.
    pub headers: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_streams: u32,
    /// Requests on one connection before it is closed.
    pub keepalive_requests: u64,
}

/// Request and response buffering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffering {
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
pub struct UpstreamTimeouts {
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
pub struct EdgeSettings {
    pub client: ClientTimeouts,
    pub limits: ClientLimits,
    pub buffering: Buffering,
    pub upstream: UpstreamTimeouts,
    /// Pass header names containing `_` to the app.
    pub underscores_in_headers: bool,
}

impl EdgeSettings {
    /// From a validated frontend `f` and its backend `b`.
    pub fn from_config(f: &config::Frontend, b: &config::Backend) -> Self {
        let t = &f.timeouts;
        let l = &f.limits;
        EdgeSettings {
            client: ClientTimeouts {
                handshake: t.handshake.get(),
                header: t.header.get(),
                body: t.body.get(),
                send: t.send.get(),
                keepalive: t.keepalive.get(),
            },
            limits: ClientLimits {
                header_bytes: l.header_bytes,
                headers: l.headers,
                h2_streams: l.h2_streams,
                keepalive_requests: l.keepalive_requests,
            },
            buffering: Buffering {
                max_body: f.max_body as u64,
                request: f.request_buffering,
                response: f.response_buffering,
                body_buffer_size: f.body_buffer_size,
                response_buffer_size: f.response_buffer_size,
                max_temp_file_size: f.max_temp_file_size,
                temp_dir: f
                    .temp_dir
                    .as_ref()
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir),
            },
            upstream: UpstreamTimeouts {
                connect: b.timeouts.connect.get(),
                read: b.timeouts.read.get(),
                send: b.timeouts.send.get(),
                queue: b
                    .timeouts
                    .queue
                    .map(|q| q.get())
                    .unwrap_or(b.timeouts.connect.get()),
            },
            underscores_in_headers: f.underscores_in_headers,
        }
    }
}
