//! Every metric name and help text sluice exports, in one place (docs/METRICS.md lists them).
//! Counter names are given without the `_total` suffix the encoders add; the registry appends
//! a period to each help text. docs/METRICS.md is checked against them (`docs_tests.rs`).
//! Recording and encoding live in `metrics`; nothing here has behaviour.

// Per frontend (both modes).
pub(super) const FRONTEND_CONNECTIONS: &str = "sluice_frontend_connections";
pub(super) const FRONTEND_CONNECTIONS_HELP: &str = "Connections accepted by the frontend";
pub(super) const FRONTEND_CURRENT: &str = "sluice_frontend_current_connections";
pub(super) const FRONTEND_CURRENT_HELP: &str = "Connections open on the frontend right now";
pub(super) const FRONTEND_RECEIVED: &str = "sluice_frontend_received_bytes";
pub(super) const FRONTEND_RECEIVED_HELP: &str =
    "Bytes from clients (tcp: forwarded to servers, added at connection end; http: read from the socket, TLS included)";
pub(super) const FRONTEND_SENT: &str = "sluice_frontend_sent_bytes";
pub(super) const FRONTEND_SENT_HELP: &str =
    "Bytes to clients (tcp: forwarded from servers, added at connection end; http: written to the socket, TLS included)";
pub(super) const PROXY_REJECTED: &str = "sluice_proxy_rejected";
pub(super) const PROXY_REJECTED_HELP: &str =
    "Connections closed because of their PROXY header, by reason";
pub(super) const LOG_DROPPED: &str = "sluice_log_dropped_lines";
pub(super) const LOG_DROPPED_HELP: &str =
    "Access or connection lines the frontend's syslog target dropped (collector absent or full)";

// Per backend / server (read from the pools at scrape time).
pub(super) const SERVER_STATE: &str = "sluice_server_state";
pub(super) const SERVER_STATE_HELP: &str =
    "1 for the server's current state (up, down, drain, maint), 0 for the others";
pub(super) const SERVER_WEIGHT: &str = "sluice_server_weight";
pub(super) const SERVER_WEIGHT_HELP: &str =
    "Weight of the server as configured or set through the admin API";
pub(super) const SERVER_EFFECTIVE_WEIGHT: &str = "sluice_server_effective_weight";
pub(super) const SERVER_EFFECTIVE_WEIGHT_HELP: &str =
    "Weight selection uses now: the weight times the agent's percentage and the slow-start ramp";
pub(super) const SERVER_ACTIVE: &str = "sluice_server_active_connections";
pub(super) const SERVER_ACTIVE_HELP: &str =
    "Connections (tcp) or requests (http) on the server now";
pub(super) const SERVER_CONNECTIONS: &str = "sluice_server_connections";
pub(super) const SERVER_CONNECTIONS_HELP: &str = "Connections or requests ever sent to the server";
pub(super) const SERVER_CONNECT_FAILURES: &str = "sluice_server_connect_failures";
pub(super) const SERVER_CONNECT_FAILURES_HELP: &str = "Live connections to the server that failed";
pub(super) const HEALTH_CHECKS: &str = "sluice_health_checks";
pub(super) const HEALTH_CHECKS_HELP: &str =
    "Active health checks of the server, by result (ok, failed)";
pub(super) const HEALTH_CHECK_DURATION: &str = "sluice_health_check_duration_seconds";
pub(super) const HEALTH_CHECK_DURATION_HELP: &str = "Duration of active health checks (any result)";
pub(super) const BACKEND_QUEUE: &str = "sluice_backend_queue_length";
pub(super) const BACKEND_QUEUE_HELP: &str = "Connections waiting for a free server slot";

// Edge (mode = "http" frontends).
pub(super) const TLS_HANDSHAKES: &str = "sluice_tls_handshakes";
pub(super) const TLS_HANDSHAKES_HELP: &str =
    "Completed TLS handshakes, by protocol version and kind (full, resumed)";
pub(super) const TLS_HANDSHAKE_FAILURES: &str = "sluice_tls_handshake_failures";
pub(super) const TLS_HANDSHAKE_FAILURES_HELP: &str = "TLS handshakes that failed or timed out";
pub(super) const TICKET_DECRYPT_FAILURES: &str = "sluice_tls_ticket_decrypt_failures";
pub(super) const TICKET_DECRYPT_FAILURES_HELP: &str =
    "Session tickets offered that no current key opens (unknown, expired or another fleet's key)";
pub(super) const HTTP_RESPONSES: &str = "sluice_http_responses";
pub(super) const HTTP_RESPONSES_HELP: &str = "HTTP responses sent to clients, by status class";
pub(super) const SPILLED_BODIES: &str = "sluice_spilled_bodies";
pub(super) const SPILLED_BODIES_HELP: &str =
    "Request or response bodies buffered to a temp file, by direction (request, response)";
pub(super) const UPGRADED: &str = "sluice_upgraded_connections";
pub(super) const UPGRADED_HELP: &str =
    "Requests switched to another protocol (WebSocket) and relayed as a tunnel, by protocol";
pub(super) const UPGRADED_CURRENT: &str = "sluice_upgraded_current_connections";
pub(super) const UPGRADED_CURRENT_HELP: &str = "Upgraded connections open right now, by protocol";
pub(super) const SOCKMAP_CONNECTIONS: &str = "sluice_l4_sockmap_connections";
pub(super) const SOCKMAP_CONNECTIONS_HELP: &str =
    "Connections of forward = \"sockmap\" frontends, by path: sockmap (the kernel forwarded) or fallback (splice/copy)";
pub(super) const UPSTREAM_DURATION: &str = "sluice_upstream_response_duration_seconds";
pub(super) const UPSTREAM_DURATION_HELP: &str =
    "Time from the request to the app server's response head (or the failure)";

// The process (the standard names of Prometheus' client libraries).
pub(super) const BUILD_INFO: &str = "sluice_build_info";
pub(super) const BUILD_INFO_HELP: &str = "Always 1; the version label is the running binary's";
pub(super) const PROCESS_CPU: &str = "process_cpu_seconds";
pub(super) const PROCESS_CPU_HELP: &str = "Total user and system CPU time spent in seconds";
pub(super) const PROCESS_RESIDENT: &str = "process_resident_memory_bytes";
pub(super) const PROCESS_RESIDENT_HELP: &str = "Resident memory size in bytes";
pub(super) const PROCESS_VIRTUAL: &str = "process_virtual_memory_bytes";
pub(super) const PROCESS_VIRTUAL_HELP: &str = "Virtual memory size in bytes";
pub(super) const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub(super) const PROCESS_OPEN_FDS_HELP: &str = "Number of open file descriptors";
pub(super) const PROCESS_MAX_FDS: &str = "process_max_fds";
pub(super) const PROCESS_MAX_FDS_HELP: &str =
    "Maximum number of open file descriptors (the soft RLIMIT_NOFILE)";
pub(super) const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub(super) const PROCESS_START_TIME_HELP: &str =
    "Start time of the process since unix epoch in seconds";
