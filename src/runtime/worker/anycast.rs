//! Route health injection: the `[[anycast]]` VIPs.
//!
//! Every node of an active/active group keeps each VIP as a /32 on a local
//! interface (a dummy, or lo) while it can serve — the listener accepting and
//! at least one backend up — and removes it when it cannot. floatlb speaks no
//! routing protocol: the node's routing daemon (BIRD's `protocol direct` on
//! that interface) announces the /32 over BGP while it exists, and the router
//! spreads flows over every node that announces it (ECMP).
//!
//! The address carries a valid lifetime (`lease`) that a thread renews while
//! the node serves, so a floatlb that dies without cleaning up stops being
//! announced when the lease runs out. A planned removal (SIGTERM,
//! `POST /admin/handover`) moves clients off first, as the VRRP handover does
//! (`proxy::handover`), then withdraws. Not for: BGP, BFD or the router's
//! multipath, which belong to the routing daemons.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use vrrp::address::{Lifetime, Netlink};

use crate::config::{self, Config};
use crate::observe::json::json_str;
use crate::observe::metrics::Families;
use crate::proxy::state::Shared;
use crate::runtime::admin::hooks::AdminHooks;

/// How often the thread looks at the proxy's health and the interface.
const TICK: Duration = Duration::from_millis(50);

/// Why a VIP is, or is not, announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Serving,
    ListenerClosed,
    NoBackendUp,
    /// Able to serve for less than `announce-delay`.
    Settling,
    /// Withdrawn on purpose by a planned handover or shutdown.
    HandedOver,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Serving => "serving",
            Reason::ListenerClosed => "listener closed",
            Reason::NoBackendUp => "no backend up",
            Reason::Settling => "announce-delay",
            Reason::HandedOver => "handed over",
        }
    }
}

/// Whether to announce, from what the node knows now (pure, for tests).
/// `able_since` is how long the node has been able to serve without a break.
pub fn decide(
    accepting: bool,
    backend_up: bool,
    held: bool,
    able_for: Duration,
    announce_delay: Duration,
) -> (bool, Reason) {
    if held {
        (false, Reason::HandedOver)
    } else if !accepting {
        (false, Reason::ListenerClosed)
    } else if !backend_up {
        (false, Reason::NoBackendUp)
    } else if able_for < announce_delay {
        (false, Reason::Settling)
    } else {
        (true, Reason::Serving)
    }
}

/// One VIP and what was last done with it.
struct Route {
    vip: Ipv4Addr,
    /// `vip` as text, the metrics' label.
    label: String,
    interface: String,
    lease: Duration,
    announce_delay: Duration,
    announced: AtomicBool,
    changes: AtomicU64,
    errors: AtomicU64,
    state: Mutex<RouteState>,
}

struct RouteState {
    reason: Reason,
    since: Instant,
    renewed: Option<Instant>,
    last_error: Option<String>,
}

/// The anycast VIPs of this node and the thread that keeps them.
pub struct Anycast {
    routes: Vec<Route>,
    shared: Arc<Shared>,
    held: AtomicBool,
    stop: AtomicBool,
    /// One writer at a time: the thread's tick, a handover's withdrawal, shutdown.
    apply: Mutex<()>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Anycast {
    /// Starts the thread that keeps the `[[anycast]]` VIPs; None when there are none.
    pub fn start(cfg: &Config, shared: Arc<Shared>) -> anyhow::Result<Option<Arc<Anycast>>> {
        if cfg.anycast.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        let routes = cfg
            .anycast
            .iter()
            .map(|a: &config::Anycast| Route {
                vip: a.vip().unwrap_or(Ipv4Addr::UNSPECIFIED),
                label: a.address.clone(),
                interface: a.interface.clone(),
                lease: a.lease,
                announce_delay: a.announce_delay,
                announced: AtomicBool::new(false),
                changes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                state: Mutex::new(RouteState {
                    reason: Reason::NoBackendUp,
                    since: now,
                    renewed: None,
                    last_error: None,
                }),
            })
            .collect();
        let a = Arc::new(Anycast {
            routes,
            shared,
            held: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            apply: Mutex::new(()),
            thread: Mutex::new(None),
        });
        let nl = Netlink::open().context("opening netlink for [[anycast]]")?;
        // A thread of its own, like a VRRP instance: a saturated proxy runtime
        // must not delay a withdrawal.
        let me = a.clone();
        let t = std::thread::Builder::new()
            .name("floatlb-anycast".into())
            .spawn(move || me.run(nl))
            .context("starting the anycast thread")?;
        *a.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(Some(a))
    }

    fn run(&self, nl: Netlink) {
        let mut able_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            let accepting = self.shared.stats.accepting();
            let up = self.shared.live.load().any_backend_up();
            let now = Instant::now();
            able_since = match (accepting && up, able_since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(now),
                (false, _) => None,
            };
            let able_for = able_since.map_or(Duration::ZERO, |t| now - t);
            {
                let _g = self.apply.lock().unwrap_or_else(|e| e.into_inner());
                let held = self.held.load(Ordering::Acquire);
                for r in &self.routes {
                    let (want, why) = decide(accepting, up, held, able_for, r.announce_delay);
                    self.apply(&nl, r, want, why);
                }
            }
            std::thread::sleep(TICK);
        }
    }

    /// Brings one VIP to `want`: added (or its lease renewed) or removed.
    fn apply(&self, nl: &Netlink, r: &Route, want: bool, why: Reason) {
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        let present = vrrp::address::interface_addresses(&r.interface)
            .map(|a| a.contains(&IpAddr::V4(r.vip)))
            .unwrap_or(false);
        let renew_due = !r.lease.is_zero() && st.renewed.is_none_or(|t| t.elapsed() >= r.lease / 3);
        let result = if want && (!present || renew_due) {
            vrrp::address::interface_index(&r.interface)
                .and_then(|i| nl.replace(i, IpAddr::V4(r.vip), 32, Lifetime::lease(r.lease)))
                .map(|()| st.renewed = Some(Instant::now()))
        } else if !want && present {
            vrrp::address::interface_index(&r.interface)
                .and_then(|i| nl.remove(i, IpAddr::V4(r.vip), 32))
        } else {
            Ok(())
        };
        match result {
            Ok(()) => {
                st.last_error = None;
                let was = r.announced.swap(want, Ordering::AcqRel);
                if was != want || st.reason != why {
                    if was != want {
                        r.changes.fetch_add(1, Ordering::Relaxed);
                        if want {
                            tracing::info!(vip = %r.vip, interface = %r.interface, "anycast: announcing");
                        } else {
                            tracing::warn!(vip = %r.vip, interface = %r.interface, reason = why.as_str(), "anycast: withdrawn");
                        }
                    }
                    st.reason = why;
                    st.since = Instant::now();
                }
            }
            Err(e) => {
                r.errors.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "{} {}/32 on {}: {e}",
                    if want { "adding" } else { "removing" },
                    r.vip,
                    r.interface
                );
                if st.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("anycast: {msg}");
                }
                st.last_error = Some(msg);
            }
        }
    }

    /// Withdraws every VIP now and keeps them withdrawn until [`Self::resume`].
    pub fn withdraw(&self) -> String {
        let _g = self.apply.lock().unwrap_or_else(|e| e.into_inner());
        self.held.store(true, Ordering::Release);
        let nl = match Netlink::open() {
            Ok(n) => n,
            Err(e) => return format!("anycast: cannot open netlink: {e}"),
        };
        let mut out = Vec::new();
        for r in &self.routes {
            self.apply(&nl, r, false, Reason::HandedOver);
            out.push(format!(
                "{}/32 on {} {}",
                r.vip,
                r.interface,
                if r.announced.load(Ordering::Acquire) {
                    "STILL PRESENT"
                } else {
                    "withdrawn"
                }
            ));
        }
        out.join(", ")
    }

    /// Announces again (while the node can serve) after a handover.
    pub fn resume(&self) -> Result<String, String> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err("anycast: not handed over: nothing to resume".into());
        }
        self.shared.handover.finish();
        Ok("anycast: announcing again while the node can serve".into())
    }

    /// The planned handover (`proxy::handover`): clients moved off their
    /// connections, then the routes withdrawn. Blocking.
    pub fn hand_over(&self) -> Result<String, String> {
        if self.held.load(Ordering::Acquire) {
            return Err("anycast: already handed over".into());
        }
        let t = self.shared.live.load().config.timeouts.clone();
        if !self.shared.handover.steered() {
            return self
                .shared
                .handover
                .hand_over(t.handover, || self.withdraw());
        }
        // Steered (issue 35): the peers pass this node's flows back to it until it has
        // drained, and it takes the VIP's packets without the address meanwhile.
        let vips: Vec<IpAddr> = self.routes.iter().map(|r| IpAddr::V4(r.vip)).collect();
        let msg = self.shared.handover.hand_over(t.handover, || {
            super::peers::tell(&self.shared, crate::peers::Kind::Leaving, &vips);
            for &vip in &vips {
                if let Err(e) = crate::net::steer::accept_locally(vip, true) {
                    tracing::warn!(%vip, "anycast: {e}");
                }
            }
            self.withdraw()
        })?;
        let local = vips.clone();
        super::peers::tell_drained_later(
            self.shared.clone(),
            vips,
            Some(Box::new(move || {
                for vip in local {
                    let _ = crate::net::steer::accept_locally(vip, false);
                }
            })),
        );
        Ok(msg)
    }

    /// Stops the thread and removes every VIP.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        self.withdraw();
    }

    pub fn hooks(self: &Arc<Self>) -> Arc<dyn AdminHooks> {
        Arc::new(AnycastHooks(self.clone()))
    }
}

/// Removes every `[[anycast]]` VIP found on its interface (`floatlb release`).
pub fn release(cfg: &Config) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    if cfg.anycast.is_empty() {
        return Ok(removed);
    }
    let nl = Netlink::open().context("opening netlink")?;
    for a in &cfg.anycast {
        let Some(vip) = a.vip().map(IpAddr::V4) else {
            continue;
        };
        let present = vrrp::address::interface_addresses(&a.interface)
            .with_context(|| format!("addresses of {}", a.interface))?;
        if present.contains(&vip) {
            let i = vrrp::address::interface_index(&a.interface)
                .with_context(|| format!("interface {}", a.interface))?;
            nl.remove(i, vip, 32)
                .with_context(|| format!("removing {vip}/32 from {}", a.interface))?;
            removed.push(format!("{vip}/32 on {}", a.interface));
        }
    }
    Ok(removed)
}

struct AnycastHooks(Arc<Anycast>);

impl AdminHooks for AnycastHooks {
    fn metrics(&self, f: &Families) {
        let rows = |v: &dyn Fn(&Route) -> u64| {
            self.0
                .routes
                .iter()
                .map(|r| (vec![r.label.as_str()], v(r)))
                .collect::<Vec<_>>()
        };
        f.gauge_vec(
            "floatlb_anycast_announced",
            "1 while this node keeps the anycast VIP on its interface for the routing daemon to announce.",
            &["address"],
            rows(&|r| r.announced.load(Ordering::Relaxed) as u64)
                .into_iter()
                .map(|(l, v)| (l, v as i64)),
        );
        f.counter_vec(
            "floatlb_anycast_changes_total",
            "Times the anycast VIP was announced or withdrawn.",
            &["address"],
            rows(&|r| r.changes.load(Ordering::Relaxed)),
        );
        f.counter_vec(
            "floatlb_anycast_errors_total",
            "Failed netlink changes of the anycast VIP.",
            &["address"],
            rows(&|r| r.errors.load(Ordering::Relaxed)),
        );
    }

    fn status_json(&self) -> Option<String> {
        let mut out = String::from("\"anycast\":[");
        for (n, r) in self.0.routes.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let st = r.state.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(
                out,
                "{{\"address\":\"{}\",\"interface\":{},\"announced\":{},\"reason\":{},\"since_ms\":{},\"changes\":{},\"error\":{}}}",
                r.vip,
                json_str(&r.interface),
                r.announced.load(Ordering::Relaxed),
                json_str(st.reason.as_str()),
                st.since.elapsed().as_millis(),
                r.changes.load(Ordering::Relaxed),
                st.last_error.as_deref().map_or("null".into(), json_str),
            );
        }
        out.push(']');
        Some(out)
    }

    fn handover(&self) -> Result<String, String> {
        let msg = self.0.hand_over()?;
        // Clients that still reach this node (the router has not heard the
        // withdrawal yet) are served until vip-linger has passed; then the
        // node serves normally but stays withdrawn until /admin/resume.
        self.0.shared.finish_handover_later();
        Ok(msg)
    }

    fn resume(&self) -> Result<String, String> {
        self.0.resume()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_only_while_the_node_can_serve() {
        let d = Duration::ZERO;
        let long = Duration::from_secs(5);
        assert_eq!(decide(true, true, false, long, d), (true, Reason::Serving));
        assert_eq!(
            decide(false, true, false, long, d),
            (false, Reason::ListenerClosed)
        );
        assert_eq!(
            decide(true, false, false, long, d),
            (false, Reason::NoBackendUp)
        );
        // A planned handover wins over health: the route stays withdrawn.
        assert_eq!(
            decide(true, true, true, long, d),
            (false, Reason::HandedOver)
        );
        // announce-delay: not before the node has served that long without a break.
        let delay = Duration::from_secs(2);
        assert_eq!(
            decide(true, true, false, Duration::from_secs(1), delay),
            (false, Reason::Settling)
        );
        assert_eq!(
            decide(true, true, false, delay, delay),
            (true, Reason::Serving)
        );
    }
}
