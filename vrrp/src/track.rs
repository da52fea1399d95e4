//! Tracking: what moves an instance's priority or forces it into FAULT.
//!
//! Two kinds. The local proxy's health ([`TrackHandle`]): the proxy sets one flag ("I can serve": listener accepting and at least one
//! backend up); the instance reads it on every loop turn, which is an atomic
//! load, and feeds changes to the state machine. A second flag forces FAULT
//! whatever the track-weight says: a supervisor whose proxy keeps crashing
//! uses it to give the VIP away and stay out of the election.
//!
//! And keepalived's trackers ([`Tracker`]): `track_script` commands run every
//! interval with rise/fall counting, and `track_interface` links, each with
//! a weight (priority arithmetic as keepalived's, [`contribution`] and
//! [`effective_priority`]) or none (FAULT while failing). The instance loop
//! polls the tracker and hands the state machine one [`Tracking`] input.
//! Not for: deciding what a priority means (that is `fsm`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared health flag; clones see the same value.
#[derive(Debug, Clone)]
pub struct TrackHandle(Arc<Flags>);

#[derive(Debug)]
struct Flags {
    healthy: AtomicBool,
    fault: AtomicBool,
}

impl TrackHandle {
    pub fn new(healthy: bool) -> Self {
        TrackHandle(Arc::new(Flags {
            healthy: AtomicBool::new(healthy),
            fault: AtomicBool::new(false),
        }))
    }

    pub fn set(&self, healthy: bool) {
        if self.0.healthy.load(Ordering::Relaxed) != healthy {
            self.0.healthy.store(healthy, Ordering::Release);
        }
    }

    pub fn healthy(&self) -> bool {
        self.0.healthy.load(Ordering::Acquire)
    }

    /// Forces FAULT (priority-0 advert and VIPs removed if master) until cleared.
    pub fn set_fault(&self, on: bool) {
        self.0.fault.store(on, Ordering::Release);
    }

    pub fn fault(&self) -> bool {
        self.0.fault.load(Ordering::Acquire)
    }
}

impl Default for TrackHandle {
    fn default() -> Self {
        Self::new(true)
    }
}

// ---------------------------------------------------------------------------
// keepalived's tracking: scripts and other interfaces.
// ---------------------------------------------------------------------------

/// A command run every `interval` whose exit status is tracked
/// (keepalived's `vrrp_script` with `track_script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// For logs.
    pub name: String,
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
    pub interval: Duration,
    /// A run still going after this long is killed and counts as a failure.
    pub timeout: Duration,
    /// Successes in a row that make a failing script OK.
    pub rise: u32,
    /// Failures in a row that make an OK script failing.
    pub fall: u32,
    /// See [`contribution`]; None (or 0) = FAULT while failing.
    pub weight: Option<i32>,
}

/// Another interface whose link is tracked (keepalived's `track_interface`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    /// See [`contribution`]; None (or 0) = FAULT while the link is down.
    pub weight: Option<i32>,
}

/// What the tracked objects of one instance say together: a priority
/// offset and whether one of them forces FAULT. The state machine's input
/// (`fsm::Input::Tracking`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    pub delta: i32,
    pub fault: bool,
}

/// One tracked object's share, as keepalived's `vrrp_track.c` counts it: a
/// positive weight is added while the object is OK, a negative weight is
/// added (so subtracted) while it fails, and no weight (or 0) means FAULT
/// while it fails.
pub fn contribution(weight: Option<i32>, ok: bool) -> Tracking {
    match weight {
        None | Some(0) => Tracking {
            delta: 0,
            fault: !ok,
        },
        Some(w) if w > 0 && ok => Tracking {
            delta: w,
            fault: false,
        },
        Some(w) if w < 0 && !ok => Tracking {
            delta: w,
            fault: false,
        },
        Some(_) => Tracking::default(),
    }
}

/// Sum of the shares; FAULT if any share says so.
pub fn combine(parts: impl IntoIterator<Item = Tracking>) -> Tracking {
    parts
        .into_iter()
        .fold(Tracking::default(), |a, b| Tracking {
            delta: a.delta + b.delta,
            fault: a.fault || b.fault,
        })
}

/// The priority advertised: `base + delta` limited to 1..=254, except that
/// the address owner (255) is never changed by tracking. This is
/// keepalived's `vrrp_set_effective_priority` (keepalived/vrrp/vrrp_track.c:
/// "Don't change priority if address owner"; total_priority < 1 gives 1,
/// >= 255 gives 254).
pub fn effective_priority(base: u8, delta: i32) -> u8 {
    if base == 255 {
        return 255;
    }
    (i32::from(base) + delta).clamp(1, 254) as u8
}

/// A script's result counter, as keepalived's `vrrp_script_child_thread`
/// keeps it: `result` runs from 0 to rise + fall - 1 and the script is OK
/// while it is at least `rise`. Before the first run the counter sits at
/// rise - 1, so the first result decides either way ("one success is
/// enough"; one failure makes it failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    result: u32,
    reported: bool,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32) -> Self {
        let (rise, fall) = (rise.max(1), fall.max(1));
        RiseFall {
            rise,
            fall,
            result: rise - 1,
            reported: false,
        }
    }

    /// OK, failing, or None before the first result.
    pub fn ok(&self) -> Option<bool> {
        self.reported.then_some(self.result >= self.rise)
    }

    /// Counts one run; returns the new state when it changed (or was first known).
    pub fn record(&mut self, success: bool) -> Option<bool> {
        let before = self.ok();
        let top = self.rise + self.fall - 1;
        if success {
            if self.result < self.rise - 1 {
                self.result += 1;
            } else {
                self.result = top;
            }
        } else if self.result > self.rise {
            self.result -= 1;
        } else {
            self.result = 0;
        }
        self.reported = true;
        let after = self.ok();
        (after != before).then_some(after == Some(true))
    }
}

struct ScriptRun {
    cfg: TrackScript,
    counter: RiseFall,
    next_run: Instant,
    running: Option<(Child, Instant)>,
    spawn_failed: bool,
}

struct LinkWatch {
    cfg: TrackInterface,
    up: bool,
}

/// Runs an instance's track scripts and watches its tracked interfaces,
/// without blocking: [`Tracker::poll`] starts what is due, reaps what has
/// finished and kills what overran, on every turn of the instance loop.
/// Each run is its own process group, so a timeout also kills what the
/// script started.
pub struct Tracker {
    instance: String,
    scripts: Vec<ScriptRun>,
    links: Vec<LinkWatch>,
}

impl Tracker {
    /// Scripts are first run at once; interfaces count as up until looked at.
    pub fn new(
        instance: &str,
        scripts: &[TrackScript],
        interfaces: &[TrackInterface],
        now: Instant,
    ) -> Self {
        Tracker {
            instance: instance.into(),
            scripts: scripts
                .iter()
                .map(|s| ScriptRun {
                    counter: RiseFall::new(s.rise, s.fall),
                    cfg: s.clone(),
                    next_run: now,
                    running: None,
                    spawn_failed: false,
                })
                .collect(),
            links: interfaces
                .iter()
                .map(|i| LinkWatch {
                    cfg: i.clone(),
                    up: true,
                })
                .collect(),
        }
    }

    /// Whether every script has a first result (until then the instance
    /// stays in INIT, as keepalived waits for its scripts' first run).
    pub fn ready(&self) -> bool {
        self.scripts.iter().all(|s| s.counter.ok().is_some())
    }

    /// The combined share of every script and interface.
    pub fn tracking(&self) -> Tracking {
        combine(
            self.scripts
                .iter()
                .filter_map(|s| s.counter.ok().map(|ok| contribution(s.cfg.weight, ok)))
                .chain(self.links.iter().map(|l| contribution(l.cfg.weight, l.up))),
        )
    }

    /// The nearest time something is due (a run to start or to time out).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.scripts
            .iter()
            .map(|s| match &s.running {
                Some((_, started)) => *started + s.cfg.timeout,
                None => s.next_run,
            })
            .min()
    }

    /// Starts due runs, collects finished ones, kills overdue ones, and
    /// looks at each tracked link with `link_up`. Returns whether anything
    /// changed state.
    pub fn poll(&mut self, now: Instant, link_up: impl Fn(&str) -> bool) -> bool {
        let mut changed = false;
        for s in &mut self.scripts {
            changed |= poll_script(&self.instance, s, now);
        }
        for l in &mut self.links {
            let up = link_up(&l.cfg.name);
            if up != l.up {
                l.up = up;
                changed = true;
                tracing::warn!(instance = %self.instance, interface = %l.cfg.name, up,
                    weight = ?l.cfg.weight, "tracked interface link changed");
            }
        }
        changed
    }

    /// Kills runs still going (the instance is stopping).
    pub fn stop(&mut self) {
        for s in &mut self.scripts {
            if let Some((mut child, _)) = s.running.take() {
                kill_group(&mut child);
            }
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: the child is its own process group leader (process_group(0)),
    // and is not reaped yet, so the id still names our process group.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

fn poll_script(instance: &str, s: &mut ScriptRun, now: Instant) -> bool {
    let mut outcome = None;
    if let Some((child, started)) = &mut s.running {
        match child.try_wait() {
            Ok(Some(status)) => outcome = Some((status.success(), "exited")),
            Ok(None) if now >= *started + s.cfg.timeout => {
                kill_group(child);
                outcome = Some((false, "timed out"));
            }
            Ok(None) => {}
            Err(_) => outcome = Some((false, "could not be waited for")),
        }
        if outcome.is_some() {
            s.running = None;
        }
    }
    if s.running.is_none() && outcome.is_none() && now >= s.next_run {
        use std::os::unix::process::CommandExt;
        let spawned = Command::new(&s.cfg.argv[0])
            .args(&s.cfg.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        // Scheduled from the start of the run, as keepalived does.
        s.next_run = now + s.cfg.interval;
        match spawned {
            Ok(child) => {
                s.spawn_failed = false;
                s.running = Some((child, now));
            }
            Err(e) => {
                if !s.spawn_failed {
                    tracing::warn!(instance, script = %s.cfg.name, command = %s.cfg.argv[0], error = %e,
                        "track script could not be started (counts as a failure)");
                }
                s.spawn_failed = true;
                outcome = Some((false, "could not start"));
            }
        }
    }
    let Some((success, how)) = outcome else {
        return false;
    };
    match s.counter.record(success) {
        Some(ok) => {
            tracing::warn!(instance, script = %s.cfg.name, ok, how, weight = ?s.cfg.weight,
                "track script changed state");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(weight: i32, ok: bool) -> Tracking {
        contribution(Some(weight), ok)
    }

    /// keepalived's doc/samples/keepalived.conf.vrrp.localcheck, VI_1 at
    /// priority 100: track_interface eth1 weight 2 ("prio = +2 if UP"), eth2
    /// weight -2 ("prio = -2 if DOWN"), eth3 with no weight ("fault if
    /// down"); track_script chk_sshd weight -4 ("-4 if KO"), chk_haproxy
    /// weight 2 ("+2 if process is present"), three ports at weight -2
    /// ("-2 if connect fails").
    #[test]
    fn keepalived_localcheck_sample() {
        let prio = |eth1, eth2, sshd, haproxy, ports: [bool; 3]| {
            let t = combine(
                [w(2, eth1), w(-2, eth2), w(-4, sshd), w(2, haproxy)]
                    .into_iter()
                    .chain(ports.map(|p| w(-2, p))),
            );
            assert!(!t.fault);
            effective_priority(100, t.delta)
        };
        assert_eq!(prio(true, true, true, true, [true; 3]), 104);
        assert_eq!(prio(false, true, true, true, [true; 3]), 102);
        assert_eq!(prio(true, false, true, true, [true; 3]), 102);
        assert_eq!(prio(true, true, false, true, [true; 3]), 100);
        assert_eq!(prio(true, true, true, false, [true; 3]), 102);
        assert_eq!(prio(false, false, false, false, [false; 3]), 88);
        // eth3: no weight, so a down link is FAULT whatever the others say.
        let eth3 = combine([w(2, true), contribution(None, false)]);
        assert!(eth3.fault);
        // keepalived's weight 0 means the same.
        assert!(contribution(Some(0), false).fault);
        assert_eq!(contribution(None, true), Tracking::default());
    }

    /// keepalived.conf(5): "the effective priority will be limited to the
    /// range [1,254]"; vrrp_set_effective_priority leaves an address owner
    /// (255) alone.
    #[test]
    fn effective_priority_is_clamped_and_owner_untouched() {
        assert_eq!(effective_priority(100, -150), 1);
        assert_eq!(effective_priority(200, 100), 254);
        assert_eq!(effective_priority(254, 1), 254);
        assert_eq!(effective_priority(1, -1), 1);
        assert_eq!(effective_priority(255, -254), 255);
        assert_eq!(effective_priority(255, 10), 255);
        assert_eq!(effective_priority(150, -60), 90);
    }

    /// keepalived's counter: the first result decides; after that `fall`
    /// failures in a row make an OK script failing and `rise` successes in
    /// a row make it OK again; a success in between resets the count.
    #[test]
    fn rise_and_fall_count_like_keepalived() {
        let mut c = RiseFall::new(2, 3);
        assert_eq!(c.ok(), None);
        assert_eq!(c.record(true), Some(true), "one success is enough at first");
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), None, "a success resets the fall count");
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), Some(false), "third failure in a row");
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(true), "second success in a row");
        let mut first_fail = RiseFall::new(3, 3);
        assert_eq!(
            first_fail.record(false),
            Some(false),
            "one failure at first"
        );
        let mut once = RiseFall::new(1, 1);
        assert_eq!(once.record(true), Some(true));
        assert_eq!(once.record(false), Some(false));
    }

    /// A script that overruns its timeout is killed (with what it started)
    /// and counts as a failure; one that exits 0 is OK.
    #[test]
    fn scripts_run_time_out_and_count() {
        let script = |name: &str, argv: &[&str]| TrackScript {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(200),
            rise: 1,
            fall: 1,
            weight: Some(-10),
        };
        let scripts = [
            script("ok", &["true"]),
            script("slow", &["sleep", "5"]),
            script("missing", &["/nonexistent/floatlb-test"]),
        ];
        let t0 = Instant::now();
        let mut t = Tracker::new("t", &scripts, &[], t0);
        assert!(!t.ready());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.ready() {
            assert!(Instant::now() < deadline, "scripts never reported");
            t.poll(Instant::now(), |_| true);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "the slow run was not killed"
        );
        assert_eq!(
            t.tracking(),
            Tracking {
                delta: -20,
                fault: false
            }
        );
        let links = [TrackInterface {
            name: "eth9".into(),
            weight: None,
        }];
        let mut l = Tracker::new("t", &[], &links, t0);
        assert!(l.ready());
        assert!(l.poll(t0, |n| n != "eth9"));
        assert!(l.tracking().fault);
    }
}
