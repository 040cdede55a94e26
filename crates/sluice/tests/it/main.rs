//! sluice's black-box integration tests in one binary (one link of the library, one
//! `support` tree): one module per area, each the former `tests/<name>.rs`. Tests run as
//! threads of one process, so none may assert on process-wide state another test changes (the
//! RLIMIT_NOFILE check in `config_check` runs alone in a child process of this binary).

mod support;

mod accept_threads;
mod admin;
mod admin_browser;
mod admin_export;
mod agent;
mod check_tls;
mod config_check;
mod ctl;
#[cfg(feature = "demo")]
mod demo;
mod dns_discovery;
mod dns_srv;
mod edge_curl;
mod edge_http;
mod edge_idle;
mod edge_interop;
mod edge_limits;
mod edge_mtls;
mod fastcgi_php;
mod fault_down;
mod fault_exhaustion;
mod fault_servers;
mod fault_tls_slowloris;
mod forward;
mod forwarded;
mod fuzz_corpus;
mod hash_balance;
mod hostile_config;
mod hostile_http;
mod hostile_proxy;
mod interop_l4;
mod interop_matrix;
mod l4_forward;
mod l4_health;
mod l4_lifecycle;
mod l4_limits;
mod l4_proxy;
mod l4_sockmap;
mod logs;
mod metrics_format;
mod module_tree;
mod packaging;
mod ports;
mod process_conventions;
mod proxy_tlv;
mod reload;
mod reload_control;
mod reload_load;
mod request_id;
mod sni_routing;
mod ticket_secret;
mod tls_resume;
mod upgrade;
mod upstream_grpc;
mod upstream_uwsgi_interop;
mod upstream_workers;
mod websocket;
mod websocket_rules;
