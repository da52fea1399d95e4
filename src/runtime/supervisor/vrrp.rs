//! HA glue: runs the `[[vrrp]]` instances in the supervisor process.
//!
//! Each instance lives on its own OS thread (see the `vrrp` crate) in the
//! supervisor, never in the worker that runs the proxy, so neither a saturated
//! nor a crashed proxy can delay adverts. The worker reports one fact — "this
//! node can serve" (listener accepting and at least one backend up) — with
//! its requests in flight, over the control socket (see `control`); the
//! supervisor feeds it to a [`vrrp::TrackHandle`]. Not for: packet or
//! state-machine logic, which belongs to the crate.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use std::sync::atomic::AtomicU64;

use crate::config::{self, Config};
use crate::observe::json::json_str;
use crate::observe::metrics::{Families, HistogramRow};

/// The running VRRP instances of this node.
pub struct Ha {
    instances: Vec<vrrp::Instance>,
    /// The VRID of each instance, in the same order.
    vrids: Vec<u8>,
    track: vrrp::TrackHandle,
    /// The worker's requests in flight, as last reported.
    in_flight: Arc<AtomicU64>,
    transition_load: TransitionLoad,
}

/// Requests in flight on this node each time a VRRP instance changes state:
/// what a failover put at risk (entering BACKUP or FAULT) or took on
/// (entering MASTER). A histogram per instance and state entered.
#[derive(Clone)]
pub struct TransitionLoad(prometheus::HistogramVec);

impl Default for TransitionLoad {
    fn default() -> Self {
        let opts = prometheus::HistogramOpts::new(
            "floatlb_vrrp_transition_in_flight_requests",
            "Requests in flight to backends on this node when a VRRP instance changed state, by state entered.",
        )
        .buckets(vec![
            0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            10000.0,
        ]);
        let v = prometheus::HistogramVec::new(opts, &["instance", "vrid", "state"])
            .expect("transition histogram options are valid");
        TransitionLoad(v)
    }
}

impl TransitionLoad {
    /// Records one transition of `instance` into `to` with `in_flight` requests.
    pub fn record(&self, instance: &str, vrid: u8, to: vrrp::State, in_flight: u64) {
        self.0
            .with_label_values(&[instance, &vrid.to_string(), &to.as_str().to_lowercase()])
            .observe(in_flight as f64);
    }

    /// The family, for an exposition.
    pub fn family(&self) -> prometheus::HistogramVec {
        self.0.clone()
    }
}

fn instance_config(
    i: usize,
    v: &config::Vrrp,
    sync_group: Option<vrrp::SyncGroup>,
) -> vrrp::InstanceConfig {
    vrrp::InstanceConfig {
        name: v
            .name
            .clone()
            .unwrap_or_else(|| format!("vrrp{}-{}", i, v.vrid)),
        interface: v.interface.clone(),
        vrid: v.vrid as u8,
        priority: v.priority as u8,
        advert_interval: v.advert_interval,
        virtual_addresses: v.vips(),
        preempt: v.preempt,
        preempt_delay: v.preempt_delay,
        unicast_peers: v.unicast_peers.clone(),
        track_weight: v.track_weight.map(|w| w as u8),
        track_scripts: v.track_scripts(),
        track_interfaces: v.track_interfaces(),
        notify: v.notify.clone(),
        notify_commands: v.notify_commands(),
        vmac: v.vmac(),
        garp_count: v.garp_count,
        garp_interval: v.garp_interval,
        garp_refresh: (!v.garp_refresh.is_zero()).then_some(v.garp_refresh),
        checksum_mode: if v.v2_checksum {
            vrrp::ChecksumMode::V2Compat
        } else {
            vrrp::ChecksumMode::Rfc5798
        },
        check_ttl: true,
        realtime: v.realtime,
        on_transition: None,
        sync_group,
    }
}

/// Removes every `[[vrrp]]` virtual address found on its interface; returns
/// what was removed ("198.18.0.100/24 on eth0").
pub fn release(cfg: &Config) -> anyhow::Result<Vec<String>> {
    let netlink = vrrp::address::Netlink::open().context("opening netlink")?;
    let mut removed = Vec::new();
    for v in &cfg.vrrp {
        // With use-vmac the VIPs live on the VMAC interface, if it is there.
        let vmac = v
            .vmac()
            .filter(|n| vrrp::address::interface_index(n).is_ok());
        let interface = vmac.as_deref().unwrap_or(&v.interface);
        let ifindex = vrrp::address::interface_index(interface)
            .with_context(|| format!("interface {interface}"))?;
        let present = vrrp::address::interface_addresses(interface)
            .with_context(|| format!("addresses of {interface}"))?;
        for (vip, prefix) in v.vips() {
            if present.contains(&vip) {
                netlink
                    .remove(ifindex, vip, prefix)
                    .with_context(|| format!("removing {vip}/{prefix} from {interface}"))?;
                removed.push(format!("{vip}/{prefix} on {interface}"));
            }
        }
    }
    Ok(removed)
}

impl Ha {
    /// Starts one thread per `[[vrrp]]` table; None when there are none. The
    /// tracked service counts as healthy until the worker reports otherwise.
    pub fn start(cfg: &Config) -> anyhow::Result<Option<Ha>> {
        if cfg.vrrp.is_empty() {
            return Ok(None);
        }
        let track = vrrp::TrackHandle::new(true);
        let in_flight = Arc::new(AtomicU64::new(0));
        let mut instances = Vec::new();
        let transition_load = TransitionLoad::default();
        let mut groups: std::collections::HashMap<&str, vrrp::SyncGroup> = Default::default();
        for (i, v) in cfg.vrrp.iter().enumerate() {
            let group = v.group.as_deref().map(|g| {
                groups
                    .entry(g)
                    .or_insert_with(|| vrrp::SyncGroup::new(g))
                    .clone()
            });
            let mut ic = instance_config(i, v, group);
            let (load, busy, name, vrid) = (
                transition_load.clone(),
                in_flight.clone(),
                ic.name.clone(),
                ic.vrid,
            );
            ic.on_transition = Some(vrrp::TransitionHook(Arc::new(move |_from, to| {
                load.record(&name, vrid, to, busy.load(Ordering::Relaxed));
            })));
            let inst = vrrp::spawn(ic, track.clone()).with_context(|| {
                format!(
                    "cannot start VRRP instance VRID {} on {}",
                    v.vrid, v.interface
                )
            })?;
            instances.push(inst);
        }
        let vrids = cfg.vrrp.iter().map(|v| v.vrid as u8).collect();
        Ok(Some(Ha {
            instances,
            vrids,
            track,
            in_flight,
            transition_load,
        }))
    }

    /// The worker's report: whether it can serve, and its requests in flight.
    pub fn report(&self, healthy: bool, in_flight: u64) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.track.set(healthy);
    }

    /// FAULT forced on every instance (priority-0 advert, VIPs removed) or lifted.
    pub fn set_fault(&self, on: bool) {
        self.track.set_fault(on);
    }

    /// A reload's `[[vrrp]]` tables, applied to the running instances without
    /// leaving their roles (see `vrrp::Instance::reconfigure`): a master whose
    /// priority, advert interval, VIPs or peers change keeps the VIP. The
    /// instances are the same ones in the same order (interface and VRID name
    /// them); adding, removing or renaming one needs a restart and is refused
    /// before anything changes. Returns what changed.
    pub fn reconfigure(
        &self,
        old: &[config::Vrrp],
        new: &[config::Vrrp],
    ) -> Result<Vec<String>, String> {
        Self::check_same_instances(old, new)?;
        // Every new table is checked before the first instance is touched.
        let mut todo = Vec::new();
        for (i, (o, n)) in old.iter().zip(new).enumerate() {
            if o != n {
                // The group is the running one's (a change of group is
                // refused above): membership is joined once, at spawn.
                let ic = instance_config(i, n, None);
                ic.validate().map_err(|e| format!("vrrp[{i}]: {e}"))?;
                todo.push((i, ic));
            }
        }
        let mut changed = Vec::new();
        for (i, ic) in todo {
            let inst = &self.instances[i];
            inst.reconfigure(ic)
                .map_err(|e| format!("vrrp[{i}]: {e}"))?;
            changed.push(inst.name().to_string());
        }
        Ok(changed)
    }

    /// Refuses a reload that adds, removes or renames an instance: those need
    /// a restart. A node that runs none compares against `&[]`.
    pub fn check_same_instances(old: &[config::Vrrp], new: &[config::Vrrp]) -> Result<(), String> {
        // An instance is named by its interface, VRID and address family
        // (its socket is per family), and belongs to its sync group.
        let ids = |v: &[config::Vrrp]| {
            v.iter()
                .map(|v| {
                    let family = match v.vips().first() {
                        Some((std::net::IpAddr::V6(_), _)) => " IPv6",
                        _ => "",
                    };
                    let group = v
                        .group
                        .as_deref()
                        .map(|g| format!(" group {g}"))
                        .unwrap_or_default();
                    let name = v
                        .name
                        .as_deref()
                        .map(|n| format!(" name {n}"))
                        .unwrap_or_default();
                    let vmac = v.vmac().map(|m| format!(" vmac {m}")).unwrap_or_default();
                    format!("{} VRID {}{family}{group}{name}{vmac}", v.interface, v.vrid)
                })
                .collect::<Vec<_>>()
        };
        let (o, n) = (ids(old), ids(new));
        if o != n {
            return Err(format!(
                "instances changed ([{}] -> [{}]): adding, removing or renaming one (interface, vrid, address family, group, name, use-vmac) needs a restart",
                o.join(", "),
                n.join(", ")
            ));
        }
        Ok(())
    }

    /// Step-down of every instance that is master: priority-0 advert, VIPs
    /// kept for `linger`, then released.
    pub fn step_down(&self, linger: Duration) -> String {
        self.instances
            .iter()
            .map(|i| {
                let before = i.state();
                i.step_down(linger);
                format!("{}: {:?} -> {:?}", i.name(), before, i.state())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether any instance is master.
    pub fn is_master(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.state() == vrrp::State::Master)
    }

    /// Stops every instance: priority-0 advert, VIPs removed, threads joined.
    pub fn shutdown(&self) {
        for i in &self.instances {
            i.shutdown();
        }
    }

    pub fn instances(&self) -> &[vrrp::Instance] {
        &self.instances
    }

    /// The instances' metric families.
    pub fn metrics(&self, f: &Families) {
        let inst = &self.instances;
        let rows = |value: &dyn Fn(&vrrp::Instance) -> u64| {
            inst.iter()
                .map(|i| (vec![i.name()], value(i)))
                .collect::<Vec<_>>()
        };
        let gauge = |name: &str, help: &str, value: &dyn Fn(&vrrp::Instance) -> u64| {
            let r = rows(value).into_iter().map(|(l, v)| (l, v as i64));
            f.gauge_vec(name, help, &["instance"], r);
        };
        // The VRID as a label too, so alert rules can compare the nodes of one
        // virtual router (split brain: two masters for one VRID).
        let vrids: Vec<String> = self.vrids.iter().map(|v| v.to_string()).collect();
        let with_vrid = |value: &dyn Fn(&vrrp::Instance) -> i64| {
            inst.iter()
                .zip(&vrids)
                .map(|(i, v)| (vec![i.name(), v.as_str()], value(i)))
                .collect::<Vec<_>>()
        };
        f.gauge_vec(
            "floatlb_vrrp_master",
            "1 if this node is VRRP master for the instance.",
            &["instance", "vrid"],
            with_vrid(&|i| matches!(i.state(), vrrp::State::Master) as i64),
        );
        f.gauge_vec(
            "floatlb_vrrp_state",
            "VRRP state: 0 init, 1 backup, 2 master, 3 fault.",
            &["instance", "vrid"],
            with_vrid(&|i| match i.state() {
                vrrp::State::Initialize => 0,
                vrrp::State::Backup => 1,
                vrrp::State::Master => 2,
                vrrp::State::Fault => 3,
            }),
        );
        f.histogram_vec(
            "floatlb_vrrp_advert_interval_seconds",
            "As backup: time between consecutive adverts of the master. A gap near Master_Down_Interval (about 3 advert intervals) is a near false failover.",
            &["instance", "vrid"],
            inst.iter()
                .zip(&vrids)
                .map(|(i, v)| {
                    let s = i.stats().advert_gaps.snapshot();
                    HistogramRow {
                        labels: vec![i.name().to_string(), v.clone()],
                        buckets: s.buckets,
                        count: s.count,
                        sum: s.sum_seconds,
                    }
                })
                .collect(),
        );
        f.add(self.transition_load.family());
        gauge(
            "floatlb_vrrp_priority",
            "Priority currently advertised (tracking applied).",
            &|i| i.stats().priority.load(Ordering::Relaxed) as u64,
        );
        let counter = |name: &str, help: &str, value: &dyn Fn(&vrrp::Stats) -> u64| {
            f.counter_vec(name, help, &["instance"], rows(&|i| value(i.stats())));
        };
        counter(
            "floatlb_vrrp_transitions_total",
            "VRRP state transitions.",
            &|s| s.transitions.load(Ordering::Relaxed),
        );
        counter(
            "floatlb_vrrp_adverts_sent_total",
            "VRRP advertisements sent.",
            &|s| s.adverts_sent.load(Ordering::Relaxed),
        );
        counter(
            "floatlb_vrrp_adverts_received_total",
            "Well-formed VRRP advertisements received.",
            &|s| s.adverts_received.load(Ordering::Relaxed),
        );
        counter(
            "floatlb_vrrp_yielded_total",
            "Times this node gave up MASTER to a higher-priority advert (a rogue host claiming priority 254 shows up here).",
            &|s| s.yielded.load(Ordering::Relaxed),
        );
        counter(
            "floatlb_vrrp_garps_sent_total",
            "Gratuitous ARP frames sent.",
            &|s| s.garps_sent.load(Ordering::Relaxed),
        );
        let mut drops = Vec::new();
        for i in inst {
            for (reason, n) in i.stats().all_drops() {
                drops.push((vec![i.name(), reason], n));
            }
        }
        f.counter_vec(
            "floatlb_vrrp_packets_dropped_total",
            "VRRP packets dropped, by reason.",
            &["instance", "reason"],
            drops,
        );
    }

    /// The `"vrrp":[...]` member of `/status.json`.
    pub fn status_json(&self) -> String {
        let mut out = String::from("\"vrrp\":[");
        for (n, i) in self.instances.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let peer = match i.stats().last_peer() {
                Some(p) => format!(
                    "{{\"address\":\"{}\",\"priority\":{},\"interval_ms\":{},\"age_ms\":{}}}",
                    p.src,
                    p.priority,
                    p.interval.as_millis(),
                    p.at.elapsed().as_millis()
                ),
                None => "null".into(),
            };
            let _ = write!(
                out,
                "{{\"instance\":{},\"state\":\"{}\",\"priority\":{},\"transitions\":{},\"last_peer_advert\":{peer}}}",
                json_str(i.name()),
                i.state().as_str(),
                i.stats().priority.load(Ordering::Relaxed),
                i.stats().transitions.load(Ordering::Relaxed),
            );
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_load_counts_requests_in_flight_by_state_entered() {
        let load = TransitionLoad::default();
        load.record("vrrp0-51", 51, vrrp::State::Backup, 0);
        load.record("vrrp0-51", 51, vrrp::State::Master, 7);
        load.record("vrrp0-51", 51, vrrp::State::Master, 3);
        let f = Families::new();
        f.add(load.family());
        let text = f.encode();
        let series = |s: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(s)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {s} in:\n{text}"))
                .to_string()
        };
        let labels = "instance=\"vrrp0-51\",state=\"master\",vrid=\"51\"";
        assert_eq!(
            series(&format!(
                "floatlb_vrrp_transition_in_flight_requests_count{{{labels}}}"
            )),
            "2"
        );
        assert_eq!(
            series(&format!(
                "floatlb_vrrp_transition_in_flight_requests_sum{{{labels}}}"
            )),
            "10"
        );
        // Entering BACKUP with nothing in flight lands in the le="0" bucket.
        assert_eq!(
            series("floatlb_vrrp_transition_in_flight_requests_bucket{instance=\"vrrp0-51\",state=\"backup\",vrid=\"51\",le=\"0\"}"),
            "1"
        );
    }
}
