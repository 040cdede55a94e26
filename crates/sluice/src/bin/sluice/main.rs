//! The `sluice` binary: parses arguments (`cli`), sets up tracing to stderr and the tokio
//! runtime, and hands over to `cli` or, with the `demo` feature (on by default), `demo`.
//! The balancer and edge themselves are the `sluice` library; nothing here serves traffic.
#![forbid(unsafe_code)]

mod cli;
mod ctl;
#[cfg(feature = "demo")]
mod demo;
mod generate;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

// jemalloc, not glibc malloc: the edge makes ~40 short-lived allocations per proxied request
// and holds a few 8-16 KiB buffers per idle connection; jemalloc is faster at the first and
// keeps fewer pages resident for the second (A/B in docs/BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        // One flat JSON object per line: {"timestamp":..,"level":..,"target":..,"message":..,
        // fields..}; access and connection records with their own fields.
        LogFormat::Json => {
            sluice::set_json_records(true);
            tracing_subscriber::fmt()
                .event_format(sluice::FlatJson)
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .init()
        }
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // Colour only on a terminal: logs redirected to files or journald stay plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init(),
    }
    match cli.command {
        Command::Check { config } => match cli::check(&config) {
            Ok((_, summary)) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Reload { config, pid } => match cli::reload(&config, pid) {
            Ok(line) => {
                println!("{line}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Upgrade { config, binary } => match cli::upgrade(&config, binary.as_deref()) {
            Ok(line) => {
                println!("{line}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        #[cfg(feature = "demo")]
        Command::Demo(opts) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match rt.block_on(demo::run_until_signal(&opts)) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("sluice demo: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Ctl(opts) => {
            let (text, ok) = ctl::run(opts);
            if ok {
                println!("{text}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{text}");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Generate(opts) => match generate::generate(&opts.out_dir) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("sluice generate: {}: {e}", opts.out_dir.display());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Run {
            config,
            upgrade_from,
        } => {
            let opts = cli::RunOpts { upgrade_from };
            // The control thread (signals, reloads, health checks, admin); connections run on
            // the server's own worker threads (global.threads).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(async {
                let shutdown = cli::shutdown_signal().map_err(cli::CliError::Signal)?;
                cli::run(&config, shutdown, opts).await
            });
            match result {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    // The bare message (e.g. "FILE:LINE:COL: key: message"), as `check` prints it.
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
