//! What each lab host uses, read from /proc the way psutil does, but per network namespace:
//! a "host" is every process whose `/proc/<pid>/ns/net` is the host's namespace.
//!
//! - CPU: the sum over the process's threads of `/proc/<pid>/task/<tid>/schedstat` (nanoseconds
//!   on CPU; far finer than the 10 ms ticks of `/proc/<pid>/stat`), falling back to stat's
//!   utime+stime for processes whose tasks cannot be read.
//!   The user/kernel split comes from stat's utime and stime (ticks): kernel time includes the
//!   network stack's softirq work that ran on the process's time (this kernel does not
//!   account IRQ time separately).
//! - Memory: VmRSS and VmHWM from `/proc/<pid>/status`.
//! - The whole machine: busy ticks (every CPU's time outside idle, iowait and steal) from the
//!   `cpu` line of `/proc/stat`. On a saturated machine, requests/s is the machine's cores
//!   divided by this per request, whoever spent it.
//! - Network: eth0's byte counters from `/proc/<pid>/net/dev` of any process in the namespace.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Nanoseconds on CPU from a schedstat line ("<run ns> <wait ns> <slices>").
pub fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// (utime, stime) in clock ticks from a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last ')'.
pub fn stat_user_sys(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' field 3 (state) is f[0]; utime is field 14 and stime field 15.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// utime + stime in clock ticks from a `/proc/<pid>/stat` line.
pub fn stat_ticks(text: &str) -> Option<u64> {
    stat_user_sys(text).map(|(u, s)| u + s)
}

/// Busy ticks of the whole machine from `/proc/stat`: the `cpu` line's user, nice, system,
/// irq and softirq (guest time is already inside user); idle, iowait and steal are not busy.
pub fn machine_busy_ticks(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?)
}

/// A "Key:   123 kB" field of `/proc/<pid>/status`, in KiB.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (received, transmitted) bytes of `dev` in a `/proc/net/dev` table.
pub fn net_dev_bytes(text: &str, dev: &str) -> Option<(u64, u64)> {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(dev)?.strip_prefix(':'))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some((*f.first()?, *f.get(8)?))
}

/// Nanoseconds per clock tick (USER_HZ is 100 on Linux).
const TICK_NS: u64 = 10_000_000;

fn cpu_ns(pid: u32, stat: &str) -> Option<u64> {
    let mut sum = 0;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path().join("schedstat");
            if let Some(ns) = std::fs::read_to_string(p)
                .ok()
                .as_deref()
                .and_then(schedstat_ns)
            {
                sum += ns;
                any = true;
            }
        }
    }
    if any {
        return Some(sum);
    }
    Some(stat_ticks(stat)? * TICK_NS)
}

/// The inode that identifies a named network namespace (`ip netns add` bind-mounts it here).
pub fn netns_inode(name: &str) -> std::io::Result<u64> {
    Ok(std::fs::metadata(Path::new("/run/netns").join(name))?.ino())
}

fn pid_netns_inode(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    // "net:[4026532283]"
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proc {
    pub cpu_ns: u64,
    pub rss_kib: u64,
    /// utime and stime in ticks, for the user/kernel split.
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

/// One reading of every process in each of the hosts' namespaces.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// host -> pid -> reading
    pub hosts: HashMap<String, HashMap<u32, Proc>>,
    pub at: Option<std::time::Instant>,
    /// The whole machine's busy ticks (`/proc/stat`).
    pub machine_busy_ticks: u64,
}

impl Snapshot {
    pub fn take(hosts: &[(String, u64)]) -> Snapshot {
        let mut snap = Snapshot {
            at: Some(std::time::Instant::now()),
            machine_busy_ticks: std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(machine_busy_ticks)
                .unwrap_or(0),
            ..Default::default()
        };
        for (h, _) in hosts {
            snap.hosts.insert(h.clone(), HashMap::new());
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return snap;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(ino) = pid_netns_inode(pid) else {
                continue;
            };
            let Some((h, _)) = hosts.iter().find(|(_, i)| *i == ino) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some(cpu) = cpu_ns(pid, &stat) else {
                continue;
            };
            let (user_ticks, sys_ticks) = stat_user_sys(&stat).unwrap_or((0, 0));
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| status_kib(&s, "VmRSS"))
                .unwrap_or(0);
            snap.hosts.get_mut(h).unwrap().insert(
                pid,
                Proc {
                    cpu_ns: cpu,
                    rss_kib: rss,
                    user_ticks,
                    sys_ticks,
                },
            );
        }
        snap
    }

    pub fn rss_kib(&self, host: &str) -> u64 {
        self.hosts
            .get(host)
            .map(|m| m.values().map(|p| p.rss_kib).sum())
            .unwrap_or(0)
    }

    /// Some process of the host, to read its namespace's /proc/<pid>/net/dev.
    pub fn any_pid(&self, host: &str) -> Option<u32> {
        self.hosts.get(host)?.keys().min().copied()
    }
}

/// CPU nanoseconds a host used between two snapshots: for processes in both, the difference;
/// for processes that appeared, all they used (they started after the first snapshot).
/// Processes that vanished are missing their last moments, so callers sample often and add
/// the load tool's own rusage.
pub fn cpu_between(a: &Snapshot, b: &Snapshot, host: &str) -> u64 {
    let (Some(a), Some(b)) = (a.hosts.get(host), b.hosts.get(host)) else {
        return 0;
    };
    b.iter()
        .map(|(pid, p)| p.cpu_ns.saturating_sub(a.get(pid).map_or(0, |q| q.cpu_ns)))
        .sum()
}

/// The share of a host's CPU time between two snapshots spent in user space (utime over
/// utime + stime, new processes counted whole); None when no tick fell in between.
pub fn user_share_between(a: &Snapshot, b: &Snapshot, host: &str) -> Option<f64> {
    let (a, b) = (a.hosts.get(host)?, b.hosts.get(host)?);
    let (mut user, mut all) = (0, 0);
    for (pid, p) in b {
        let (u0, s0) = a.get(pid).map_or((0, 0), |q| (q.user_ticks, q.sys_ticks));
        let u = p.user_ticks.saturating_sub(u0);
        user += u;
        all += u + p.sys_ticks.saturating_sub(s0);
    }
    (all > 0).then(|| user as f64 / all as f64)
}

/// Nanoseconds the whole machine was busy between two snapshots (tick resolution).
pub fn machine_ns_between(a: &Snapshot, b: &Snapshot) -> u64 {
    b.machine_busy_ticks.saturating_sub(a.machine_busy_ticks) * TICK_NS
}

/// eth0's (rx, tx) bytes in the namespace of `pid`.
pub fn net_bytes(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    net_dev_bytes(&text, "eth0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn schedstat_and_stat_of_recorded_processes() {
        // Recorded from a long-running process.
        assert_eq!(schedstat_ns(&data("proc_schedstat.txt")), Some(197_920_923));
        // A comm with a space and a ')' in it must not shift the fields.
        assert_eq!(stat_ticks(&data("proc_stat.txt")), Some(74 + 1));
        assert_eq!(stat_user_sys(&data("proc_stat.txt")), Some((74, 1)));
        assert_eq!(stat_ticks("12 (x) S"), None);
    }

    #[test]
    fn status_fields() {
        let s = data("proc_status.txt");
        assert_eq!(status_kib(&s, "VmRSS"), Some(8_124));
        assert_eq!(status_kib(&s, "VmHWM"), Some(9_828));
        assert_eq!(status_kib(&s, "VmSwap"), Some(0));
        assert_eq!(status_kib(&s, "Nope"), None);
    }

    #[test]
    fn net_dev_of_recorded_namespace() {
        let s = data("proc_net_dev.txt");
        assert_eq!(net_dev_bytes(&s, "eth0"), Some((90, 90)));
        assert_eq!(net_dev_bytes(&s, "lo"), Some((336, 336)));
        assert_eq!(net_dev_bytes(&s, "eth1"), None);
    }

    #[test]
    fn cpu_between_counts_new_processes_whole() {
        let mut a = Snapshot::default();
        let mut b = Snapshot::default();
        let p = |cpu_ns| Proc {
            cpu_ns,
            rss_kib: 1,
            ..Default::default()
        };
        a.hosts
            .insert("lb".into(), [(1, p(100)), (2, p(50))].into());
        b.hosts
            .insert("lb".into(), [(1, p(400)), (2, p(50)), (3, p(70))].into());
        assert_eq!(cpu_between(&a, &b, "lb"), 300 + 70);
        assert_eq!(cpu_between(&a, &b, "web1"), 0);
        assert_eq!(b.rss_kib("lb"), 3);
    }

    #[test]
    fn machine_busy_of_recorded_proc_stat() {
        // user 1000, nice 20, system 300, idle 5000, iowait 7, irq 1, softirq 400, steal 9.
        let s = data("proc_stat_machine.txt");
        assert_eq!(machine_busy_ticks(&s), Some(1000 + 20 + 300 + 1 + 400));
        assert_eq!(machine_busy_ticks("cpu0 1 2 3 4 5 6 7"), None);
        let a = Snapshot {
            machine_busy_ticks: 100,
            ..Default::default()
        };
        let b = Snapshot {
            machine_busy_ticks: 350,
            ..Default::default()
        };
        assert_eq!(machine_ns_between(&a, &b), 250 * 10_000_000);
    }

    #[test]
    fn user_share_counts_ticks_of_old_and_new_processes() {
        let p = |user_ticks, sys_ticks| Proc {
            user_ticks,
            sys_ticks,
            ..Default::default()
        };
        let mut a = Snapshot::default();
        let mut b = Snapshot::default();
        a.hosts.insert("lb".into(), [(1, p(10, 90))].into());
        b.hosts
            .insert("lb".into(), [(1, p(30, 150)), (2, p(5, 15))].into());
        // (20 + 5) user of (20 + 60 + 5 + 15) ticks.
        assert_eq!(user_share_between(&a, &b, "lb"), Some(0.25));
        a.hosts.insert("web1".into(), [(1, p(1, 1))].into());
        b.hosts.insert("web1".into(), [(1, p(1, 1))].into());
        assert_eq!(user_share_between(&a, &b, "web1"), None);
    }

    #[test]
    fn this_process_is_sampled_in_its_own_namespace() {
        let me = std::process::id();
        let ino = pid_netns_inode(me).expect("own netns inode");
        let snap = Snapshot::take(&[("here".into(), ino)]);
        let mine = snap.hosts["here"][&me];
        assert!(mine.rss_kib > 0);
        assert!(mine.cpu_ns > 0);
        assert!(snap.machine_busy_ticks > 0);
    }
}
