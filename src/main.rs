//! `floatlb run -c proxy.toml` runs the load balancer; `floatlb check -c
//! proxy.toml` validates a config like `haproxy -c` / `nginx -t`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "floatlb",
    version,
    about = "High-availability HTTP load balancer with a built-in VRRPv3 peer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the load balancer (SIGHUP reloads, SIGTERM drains and exits).
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
        /// Log filter, e.g. "info" or "floatlb=debug" (overrides RUST_LOG).
        #[arg(long)]
        log: Option<String>,
    },
    /// Validate a configuration file and exit 0 if it is valid, 1 if not.
    Check {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Remove the config's virtual addresses from their interfaces: after a crash
    /// (SIGKILL) they stay configured. For a supervisor's stop hook, e.g. systemd
    /// `ExecStopPost=floatlb release -c /etc/floatlb/proxy.toml`.
    Release {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match floatlb::config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: configuration is valid ({} backends, {} VRRP instances)",
                    config.display(),
                    c.backends.len(),
                    c.vrrp.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Release { config } => {
            let cfg = match floatlb::config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match floatlb::runtime::ha::release(&cfg) {
                Ok(removed) => {
                    for r in &removed {
                        println!("removed {r}");
                    }
                    if removed.is_empty() {
                        println!(
                            "no virtual address of {} is configured here",
                            config.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("floatlb: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, log } => {
            init_logging(log);
            let cfg = match floatlb::config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match floatlb::runtime::daemon::run(cfg, &config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("floatlb: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(filter: Option<String>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter.map(EnvFilter::new).unwrap_or_else(|| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
