//! The process model: a supervisor owns the listening sockets and runs the
//! proxy in a worker it replaces when it dies, and upgrades in place by
//! starting the binary on disk as a new worker (issue: worker crash loses
//! only what was in flight, a binary upgrade loses nothing).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: a signal to a process this test started (or its child).
    unsafe { libc::kill(pid as i32, sig) };
}

fn ctl(lb: &Floatlb, args: &[&str]) -> (i32, String, String) {
    floatlb_cmd("ctl", &lb.config_path, args)
}

fn two_backends(delay: Duration) -> (TestBackend, TestBackend, Floatlb) {
    let a = TestBackend::start_with_delay("a", delay);
    let b = TestBackend::start_with_delay("b", delay);
    let lb = Floatlb::start(&format!(
        "[timeouts]\nhandover = \"2s\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    (a, b, lb)
}

fn field(json: &str, key: &str) -> String {
    json.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        .to_string()
}

/// SIGKILL to the worker under 8 keep-alive clients, with requests in flight
/// (the backends take 20 ms): a new worker serves on the same socket, the
/// supervisor and its pid stay, and each client loses at most the request it
/// had on the dead worker's connection. A connection opened while no worker
/// runs waits in the accept queue and is answered, where a listener owned by
/// the dead process would have refused or reset it.
#[test]
fn a_killed_worker_is_replaced_and_only_its_connections_fail() {
    let (_a, _b, lb) = two_backends(Duration::from_millis(20));
    let supervisor = lb.child.id();
    let old = lb.worker_pid();
    assert_ne!(old, supervisor);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{old}/comm"))
            .unwrap()
            .trim(),
        "floatlb-worker"
    );
    let clients = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let load = load(
        lb.addr,
        clients,
        100_000,
        Duration::from_secs(20),
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(400));
    kill(old, libc::SIGKILL);
    // At once, while the worker is dying or gone.
    let during = std::thread::spawn({
        let addr = lb.addr;
        move || http_get(addr, "/").0
    });
    lb.wait_status("a new worker", |s| {
        s.contains("\"worker_restarts\":1") && !s.contains(&format!("\"worker_pid\":{old},"))
    });
    assert_eq!(during.join().unwrap(), 200, "{}", lb.log());
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::SeqCst);
    let r = load.join().unwrap();
    assert!(
        r.failures.len() <= clients,
        "{} failed (at most one per connection on the dead worker): {:?}",
        r.failures.len(),
        r.failures
    );
    assert!(r.ok > 0);
    let new = lb.worker_pid();
    assert!(new != old && pid_alive(new));
    assert_eq!(
        field(&lb.status_json(), "supervisor_pid"),
        supervisor.to_string()
    );
    let metrics = http_get(lb.admin, "/metrics").2;
    assert!(
        metrics.contains("floatlb_worker_restarts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("floatlb_worker_pid {new}")),
        "{metrics}"
    );
    assert!(
        lb.log().contains("worker died (signal: 9 (SIGKILL))"),
        "{}",
        lb.log()
    );
}

/// `floatlb ctl upgrade` under 8 keep-alive clients: a new worker serves on
/// the same sockets, the old one answers what it has with `Connection:
/// close`, closes its idle connections and exits, and no request fails.
#[test]
fn upgrade_under_load_loses_no_request() {
    let (_a, _b, lb) = two_backends(Duration::from_millis(2));
    let old = lb.worker_pid();
    let stop = Arc::new(AtomicBool::new(false));
    let load = load(lb.addr, 8, 100_000, Duration::from_secs(20), stop.clone());
    std::thread::sleep(Duration::from_millis(400));
    let (code, out, err) = ctl(&lb, &["upgrade"]);
    assert_eq!(code, 0, "{out}{err}\n{}", lb.log());
    assert!(out.contains("upgraded: worker"), "{out}");
    let new = lb.worker_pid();
    assert_ne!(new, old);
    let start = Instant::now();
    while pid_alive(old) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old worker did not exit\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let r = load.join().unwrap();
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, lb.log());
    assert!(r.ok > 0);
    let s = lb.status_json();
    assert_eq!(field(&s, "upgrades"), "1", "{s}");
    assert_eq!(field(&s, "worker_restarts"), "0", "{s}");
    // SIGUSR2 does the same.
    lb.signal(libc::SIGUSR2);
    lb.wait_status("a second upgrade", |s| s.contains("\"upgrades\":2,"));
    assert_eq!(http_get(lb.addr, "/").0, 200);
}

/// An upgrade to a binary that exits, or one that never serves, is refused
/// with the reason; the old worker goes on serving. Restoring the good binary
/// then upgrades.
#[test]
fn a_new_binary_that_fails_leaves_the_old_worker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("floatlb");
    std::fs::copy(env!("CARGO_BIN_EXE_floatlb"), &bin).unwrap();
    let a = TestBackend::start("a");
    let lb = Floatlb::start_from(&backend_tables(&[(&a, 1)]), &bin);
    let old = lb.worker_pid();
    // Replaced the way a package manager does: a new file renamed over it.
    let replace = |script: &str| {
        let tmp = dir.path().join("floatlb.new");
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::rename(&tmp, &bin).unwrap();
    };
    replace("#!/bin/sh\necho 'floatlb worker: this build is broken' >&2\nexit 3\n");
    let (code, _, err) = ctl(&lb, &["upgrade"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("exited (exit status: 3) before it served")
            && err.contains(&format!("worker {old} goes on serving")),
        "{err}"
    );
    assert!(lb.log().contains("this build is broken"), "{}", lb.log());
    assert_eq!(lb.worker_pid(), old);
    assert_eq!(http_get(lb.addr, "/").0, 200);

    replace("#!/bin/sh\nexec sleep 60\n");
    let (code, _, err) = ctl(&lb, &["upgrade"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not serve within 10s (killed)"), "{err}");
    assert_eq!(lb.worker_pid(), old);
    assert_eq!(http_get(lb.addr, "/").0, 200);
    let s = lb.status_json();
    assert_eq!(field(&s, "upgrades_failed"), "2", "{s}");

    let tmp = dir.path().join("floatlb.good");
    std::fs::copy(env!("CARGO_BIN_EXE_floatlb"), &tmp).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    let (code, out, err) = ctl(&lb, &["upgrade"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(lb.worker_pid(), old);
    assert_eq!(http_get(lb.addr, "/").0, 200);
}

/// Three deaths within 10 s: the supervisor reports the crash loop (it
/// would force FAULT on its VRRP instances; `tests/handover.rs` checks that part)
/// and keeps starting workers, backing off; the proxy serves again.
#[test]
fn repeated_deaths_are_reported_as_a_crash_loop() {
    let (_a, _b, lb) = two_backends(Duration::ZERO);
    for n in 1..=3 {
        let pid = lb.worker_pid();
        kill(pid, libc::SIGKILL);
        lb.wait_status("the next worker", |s| {
            !s.contains(&format!("\"worker_pid\":{pid},"))
        });
        if n < 3 {
            assert!(lb.status_json().contains("\"crash_loop\":false"));
        }
    }
    lb.wait_status("the crash loop", |s| s.contains("\"crash_loop\":true"));
    assert!(lb.log().contains("3 deaths within 10s"), "{}", lb.log());
    let metrics = |lb: &Floatlb| http_get(lb.admin, "/metrics").2;
    // The next worker comes after a 1 s back-off.
    lb.wait_status("a worker after the back-off", |s| {
        s.contains("\"worker_restarts\":3")
    });
    assert_eq!(http_get(lb.addr, "/").0, 200);
    assert!(metrics(&lb).contains("floatlb_worker_crash_loop 1"));
}
