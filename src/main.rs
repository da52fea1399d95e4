//! `floatlb run -c proxy.toml` runs the load balancer; `floatlb check -c
//! proxy.toml` validates a config like `haproxy -c` / `nginx -t`.

mod ctl;

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
    /// Run the load balancer: a supervisor holding the listening sockets and
    /// the VRRP instances, and a worker process serving the proxy (restarted
    /// if it dies). SIGHUP reloads, SIGTERM hands over, drains and exits,
    /// SIGUSR2 upgrades the worker to the binary on disk.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
        /// Log filter, e.g. "info" or "floatlb=debug" (overrides RUST_LOG).
        #[arg(long)]
        log: Option<String>,
    },
    /// The worker process `floatlb run` starts, with the sockets it passes.
    #[command(hide = true)]
    Worker {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        log: Option<String>,
    },
    /// Validate a configuration file and exit 0 if it is valid, 1 if not.
    Check {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Show which [[route]] a request takes, the pool and the backend it would
    /// get, and why each earlier route does not match (with every backend up).
    Route {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
        /// The request's method, e.g. GET.
        method: String,
        /// The request's URL, e.g. http://shop.example/api/cart?id=1.
        url: String,
        /// A request field, "Name: value" (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client's address, for `source` matchers.
        #[arg(long, default_value = "127.0.0.1")]
        source: std::net::IpAddr,
        /// The listener it comes in on, by name (default: the first).
        #[arg(long)]
        listener: Option<String>,
    },
    /// Remove the config's virtual addresses from their interfaces: after a crash
    /// (SIGKILL) they stay configured. For a supervisor's stop hook, e.g. systemd
    /// `ExecStopPost=floatlb release -c /etc/floatlb/proxy.toml`.
    Release {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Write the man pages and shell completions, made from this CLI's own
    /// definition, into a directory (for packaging; see packaging/build-deb).
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a proxy.toml from HAProxy and keepalived configuration files. Each
    /// directive that cannot be carried over is printed on standard error as
    /// `file:line: directive: reason` and left as a comment in the output.
    /// Exit codes: 0 all imported, 1 a file could not be read, 2 written with
    /// directives not imported (see docs/migrating.md).
    Import {
        /// haproxy.cfg, or a folder of *.cfg files as `haproxy -f DIR` (repeatable).
        #[arg(long)]
        haproxy: Vec<PathBuf>,
        /// keepalived.conf; its `include`s are followed.
        #[arg(long)]
        keepalived: Option<PathBuf>,
        /// Where to write proxy.toml (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Talk to a running floatlb through its admin listener's runtime API.
    /// Exit codes: 0 done, 1 refused by floatlb, 2 usage or configuration,
    /// 3 floatlb not reachable.
    Ctl {
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
        #[command(subcommand)]
        call: CtlCall,
    },
}

#[derive(Subcommand)]
enum CtlCall {
    /// Print /status.json: backends with health and state, VRRP roles.
    Status,
    /// Set one backend's state or weight.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
    },
    /// Hand the VIP over to a backup (planned, no request lost); the node stays up.
    /// With [[anycast]]: move clients off, then withdraw the route.
    Handover,
    /// [[anycast]]: announce the VIP again after a handover.
    Resume,
    /// Re-read the configuration file, as SIGHUP does; says why if it is refused.
    Reload,
    /// Start the binary floatlb was started from as a new worker on the same
    /// sockets; the old worker finishes its connections. The VIP stays.
    Upgrade,
    /// The [[tls.acme]] certificates and OCSP staples: state, expiry, errors.
    Certificates {
        /// Renew every [[tls.acme]] certificate now (a node that may order).
        #[arg(long)]
        renew: bool,
    },
}

#[derive(Subcommand)]
enum BackendAction {
    /// No new requests; those in flight finish.
    Drain { name: String },
    /// Out of service: no requests, no health checks.
    Maint { name: String },
    /// Back in service.
    Ready { name: String },
    /// Set the weight (0..=256), or "config" for the configured one.
    Weight { name: String, weight: String },
}

/// `floatlb route`: the route, pool and backend a request would get.
fn route(
    config: &std::path::Path,
    method: &str,
    url: &str,
    headers: &[String],
    source: std::net::IpAddr,
    listener: Option<&str>,
) -> ExitCode {
    let cfg = match floatlb::config::load_without_tls_files(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut fields = Vec::new();
    for h in headers {
        let Some((n, v)) = h.split_once(':') else {
            eprintln!("{h:?} is not a header: write \"Name: value\"");
            return ExitCode::from(2);
        };
        fields.push((n.trim().to_string(), v.trim().to_string()));
    }
    let names = cfg.listener_names();
    let listener = match listener.map(|l| names.iter().position(|n| n == l)) {
        None => 0,
        Some(Some(id)) => id as u16,
        Some(None) => {
            eprintln!(
                "no listener named {listener:?} (listeners: {})",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    let snap = floatlb::proxy::state::Snapshot::build(cfg, None);
    match floatlb::proxy::dispatch::explain(&snap, method, url, &fields, source, listener) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match floatlb::config::load(&config) {
            Ok(c) => {
                let tls = c.tls.as_ref().and_then(|t| t.material());
                for w in tls.iter().flat_map(|m| &m.warnings) {
                    eprintln!("warning: {w}");
                }
                let r = &c.resolved;
                println!(
                    "{}: configuration is valid ({} backends in {} pools, {} routes, {} VRRP instances)",
                    config.display(),
                    // A backend given by name counts once, unresolved.
                    r.pools.iter().map(|p| p.backends.len()).sum::<usize>() + r.names.len(),
                    r.pools.len(),
                    r.routes.len(),
                    c.vrrp.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Route {
            config,
            method,
            url,
            headers,
            source,
            listener,
        } => route(
            &config,
            &method,
            &url,
            &headers,
            source,
            listener.as_deref(),
        ),
        Command::Release { config } => {
            // Broken certificate files must not keep a node from letting go of its VIPs.
            let cfg = match floatlb::config::load_without_tls_files(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let released = floatlb::runtime::supervisor::vrrp::release(&cfg).and_then(|mut r| {
                r.extend(floatlb::runtime::worker::anycast::release(&cfg)?);
                Ok(r)
            });
            match released {
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
        Command::Import {
            haproxy,
            keepalived,
            output,
        } => import(&haproxy, keepalived.as_deref(), output.as_deref()),
        Command::Generate { out } => match generate(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("floatlb generate: {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
        Command::Ctl { config, call } => {
            use crate::ctl::{admin_of, call as ctl_call, Outcome};
            let admin = match admin_of(&config) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("floatlb ctl: {e}");
                    return ExitCode::from(2);
                }
            };
            let (method, path) = match call {
                CtlCall::Status => ("GET", "/status.json".to_string()),
                CtlCall::Handover => ("POST", "/admin/handover".to_string()),
                CtlCall::Reload => ("POST", "/admin/reload".to_string()),
                CtlCall::Resume => ("POST", "/admin/resume".to_string()),
                CtlCall::Upgrade => ("POST", "/admin/upgrade".to_string()),
                CtlCall::Certificates { renew: false } => ("GET", "/certificates".to_string()),
                CtlCall::Certificates { renew: true } => {
                    ("POST", "/admin/certificates/renew".to_string())
                }
                CtlCall::Backend { action } => (
                    "POST",
                    match action {
                        BackendAction::Drain { name } => format!("/admin/backend/{name}/drain"),
                        BackendAction::Maint { name } => format!("/admin/backend/{name}/maint"),
                        BackendAction::Ready { name } => format!("/admin/backend/{name}/ready"),
                        BackendAction::Weight { name, weight } => {
                            format!("/admin/backend/{name}/weight/{weight}")
                        }
                    },
                ),
            };
            let outcome = ctl_call(&admin, method, &path);
            match &outcome {
                Outcome::Done(text) => print!("{text}"),
                Outcome::Refused(status, text) => eprint!("floatlb ctl: {status}: {text}"),
                Outcome::Unreachable(why) => eprintln!("floatlb ctl: {why}"),
            }
            ExitCode::from(outcome.code())
        }
        Command::Run { config, log } => {
            init_logging(log.clone());
            let cfg = match floatlb::config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match floatlb::runtime::supervisor::run(cfg, &config, log) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("floatlb: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Worker { config, log } => {
            init_logging(log);
            let fds = std::env::var(floatlb::runtime::supervisor::control::FDS_ENV)
                .map_err(|_| "not started by `floatlb run`".to_string())
                .and_then(|v| floatlb::runtime::supervisor::control::Inherited::parse(&v));
            let run = fds.map_err(anyhow::Error::msg).and_then(|fds| {
                let sup = floatlb::runtime::worker::connect(&fds)?;
                // Before the config is loaded: it makes the TLS ticketer.
                let keys = sup.ticket_keys().map_err(anyhow::Error::msg)?;
                floatlb::tls::tickets::adopt(&keys).map_err(anyhow::Error::msg)?;
                let cfg = floatlb::config::load(&config)?;
                floatlb::runtime::worker::run(cfg, &config, fds, sup)
            });
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("floatlb worker: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `floatlb import`: 0 all imported, 1 unreadable input, 2 written with problems.
fn import(
    haproxy: &[PathBuf],
    keepalived: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use floatlb::import::{self as imp, files};
    if haproxy.is_empty() && keepalived.is_none() {
        eprintln!("floatlb import: give --haproxy FILE and/or --keepalived FILE");
        return ExitCode::FAILURE;
    }
    let read = || -> Result<(Vec<imp::Source>, Option<imp::Source>), String> {
        let mut h = Vec::new();
        for p in haproxy {
            h.extend(files::haproxy(p)?);
        }
        Ok((h, keepalived.map(files::one).transpose()?))
    };
    let (h, k) = match read() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floatlb import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = imp::import(&h, k.as_ref(), &mut files::include, imp::Keys::CURRENT);
    for p in &out.problems {
        eprintln!("{p}");
    }
    let written = match output {
        Some(o) => std::fs::write(o, &out.toml).map_err(|e| format!("{}: {e}", o.display())),
        None => {
            print!("{}", out.toml);
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("floatlb import: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "floatlb import: {} directives imported, {} not imported",
        out.mapped,
        out.problems.len()
    );
    if out.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `floatlb.1` and one page per subcommand (`floatlb-run.1`, ...), and the
/// bash, zsh and fish completions, under `out`.
fn generate(out: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    std::fs::create_dir_all(out)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), out)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "floatlb", out)?;
    }
    Ok(())
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
