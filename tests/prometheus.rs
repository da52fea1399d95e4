//! A real Prometheus (Debian's `prometheus`) in its own network namespace
//! scrapes two floatlb nodes that share a VIP over VRRPv3, and runs
//! grafana/alerts.yml: every query of the Grafana dashboard must return data
//! through the HTTP API, a planned handover must fire FloatlbVrrpTransition,
//! and cutting the nodes off from each other (not from the client) must fire
//! FloatlbSplitBrain. Needs root and the prometheus package; skipped without
//! them, failing instead under FLOATLB_REQUIRE_NETNS=1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::netns::{netns_available, Lab};
use support::TestBackend;

const VIP: &str = "198.18.0.100";
const LB1: &str = "198.18.0.3";
const LB2: &str = "198.18.0.4";
const TOKEN: &str = "prometheus-test-token";
/// Scrape and rule-evaluation interval of the test's Prometheus.
const EVAL: Duration = Duration::from_secs(1);

/// A process the test started; killed (by its pid) on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}

/// One floatlb node: admin listener on every address (token for POSTs), so
/// Prometheus in another namespace can scrape it.
fn start_node(lab: &Lab, host: &str, priority: u8, web: &TestBackend, dir: &Path) -> Proc {
    let token = dir.join(format!("{host}.token"));
    std::fs::write(&token, TOKEN).unwrap();
    let cfg = format!(
        "[listen]\naddress = \"0.0.0.0:80\"\nworkers = 1\n\
         [health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n\
         [[backend]]\nname = \"web1\"\naddress = \"{}\"\n\
         [[route]]\nname = \"all\"\npool = \"default\"\n\
         [admin]\naddress = \"0.0.0.0:9100\"\ntoken-file = \"{}\"\n\
         [[vrrp]]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert-interval = \"100ms\"\nvirtual-addresses = [\"{VIP}/24\"]\n",
        web.addr,
        token.display()
    );
    let path = dir.join(format!("{host}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = lab.exec(host);
    cmd.arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["run", "-c"])
        .arg(&path)
        .args(["--log", "info"]);
    spawn(cmd, dir.join(format!("{host}.log")))
}

fn start_prometheus(lab: &Lab, dir: &Path) -> Proc {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/alerts.yml");
    let secs = EVAL.as_secs();
    let cfg = format!(
        "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  evaluation_interval: {secs}s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: pair\n    static_configs:\n      - targets: ['{LB1}:9100', '{LB2}:9100']\n",
        rules.display()
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = lab.exec("prom");
    cmd.arg("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"]);
    spawn(cmd, dir.join("prometheus.log"))
}

/// curl inside a namespace; (body, HTTP status).
fn curl(lab: &Lab, host: &str, args: &[&str]) -> (String, u16) {
    let out = lab
        .exec(host)
        .args(["curl", "-s", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (body.to_string(), code.trim().parse().unwrap_or(0))
}

/// An instant query through Prometheus's HTTP API; the JSON answer.
fn query(lab: &Lab, expr: &str) -> String {
    let q = format!("query={expr}");
    curl(
        lab,
        "prom",
        &[
            "-G",
            "--data-urlencode",
            &q,
            "http://127.0.0.1:9090/api/v1/query",
        ],
    )
    .0
}

fn has_data(answer: &str) -> bool {
    answer.contains("\"status\":\"success\"") && !answer.contains("\"result\":[]")
}

fn firing(lab: &Lab, alert: &str, matchers: &str) -> String {
    query(
        lab,
        &format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"{matchers}}}"),
    )
}

/// Polls until `pred` holds; panics with `what` and the last answer after `limit`.
fn poll(what: &str, limit: Duration, mut pred: impl FnMut() -> (bool, String)) -> Duration {
    let start = Instant::now();
    loop {
        let (ok, last) = pred();
        if ok {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every `"expr"` of the Grafana dashboard, JSON-unescaped, with its template
/// variables replaced by what Grafana would put there.
fn dashboard_exprs() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/floatlb-dashboard.json");
    let json = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (i, _) in json.match_indices("\"expr\"") {
        let rest = &json[i + "\"expr\"".len()..];
        let rest = rest.trim_start().strip_prefix(':').unwrap().trim_start();
        let mut chars = rest.strip_prefix('"').unwrap().chars();
        let mut expr = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => expr.push('\n'),
                    Some('t') => expr.push('\t'),
                    Some(e) => expr.push(e),
                    None => break,
                },
                c => expr.push(c),
            }
        }
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("${__rate_interval}", "1m")
            .replace("$__interval", "1s")
            .replace("$__range", "5m");
        assert!(!expr.contains('$'), "unknown template variable in {expr}");
        out.push(expr);
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

#[test]
fn prometheus_scrapes_the_pair_answers_the_dashboard_and_fires_failover_alerts() {
    let name = "prometheus_scrapes_the_pair_answers_the_dashboard_and_fires_failover_alerts";
    if !netns_available(name) {
        return;
    }
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{name}: prometheus is missing (vm-lab/install-deps installs it)");
        }
        eprintln!("SKIPPED {name}: prometheus is missing (Debian package prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new();
    lab.host("client", "198.18.0.2/24");
    lab.host("lb1", &format!("{LB1}/24"));
    lab.host("lb2", &format!("{LB2}/24"));
    lab.host("prom", "198.18.0.5/24");
    lab.host("web", "198.18.0.11/24");
    let web = lab.in_host("web", || TestBackend::start_on("web1", "198.18.0.11:80"));
    let holders = || (lab.has_addr("lb1", VIP), lab.has_addr("lb2", VIP));

    let n1 = start_node(&lab, "lb1", 150, &web, dir.path());
    let n2 = start_node(&lab, "lb2", 100, &web, dir.path());
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(10), || {
        holders() == (true, false)
    });
    // Prometheus starts once the pair has settled: the transitions of start-up
    // happen before its first scrape, so FloatlbVrrpTransition starts quiet.
    let prom = start_prometheus(&lab, dir.path());
    poll("Prometheus ready", Duration::from_secs(30), || {
        let (body, code) = curl(&lab, "prom", &["http://127.0.0.1:9090/-/ready"]);
        (code == 200, format!("{code} {body}\n{}", prom.log()))
    });
    poll("both nodes scraped", Duration::from_secs(30), || {
        let a = query(&lab, "count(up{job=\"pair\"} == 1) == 2");
        (has_data(&a), a)
    });

    // Traffic through the VIP, bounded in count, so rates and quantiles have data.
    let traffic = lab
        .exec("client")
        .args(["bash", "-c"])
        .arg(format!(
            "for i in $(seq 60); do curl -s -m 2 -o /dev/null http://{VIP}/; sleep 0.05; done"
        ))
        .status()
        .unwrap();
    assert!(traffic.success());

    // Every dashboard query returns series through the API (rates need two
    // scrapes inside their window: poll); the nodes' one route gives the
    // route panel its series.
    for expr in dashboard_exprs() {
        poll(
            &format!("dashboard query {expr}"),
            Duration::from_secs(30),
            || {
                let a = query(&lab, &expr);
                (has_data(&a), a)
            },
        );
    }
    // The failover figures: lb2 (backup) has seen lb1's advert gaps; each node
    // recorded its transitions with the requests in flight then; descriptors.
    for expr in [
        format!("floatlb_vrrp_advert_interval_seconds_count{{instance=\"{LB2}:9100\",vrid=\"51\"}} > 0"),
        format!("floatlb_vrrp_transition_in_flight_requests_count{{instance=\"{LB1}:9100\",state=\"master\"}} == 1"),
        "process_open_fds / process_max_fds > 0".to_string(),
    ] {
        let a = query(&lab, &expr);
        assert!(has_data(&a), "{expr}: {a}");
    }

    // Settled pair: neither alert fires (three evaluations after both were scraped).
    std::thread::sleep(3 * EVAL);
    for alert in [
        "FloatlbSplitBrain",
        "FloatlbVrrpTransition",
        "FloatlbNoMaster",
    ] {
        let a = query(&lab, &format!("ALERTS{{alertname=\"{alert}\"}}"));
        assert!(!has_data(&a), "{alert} before any failover: {a}");
    }

    // The handover drill: lb1 steps down, lb2 takes over; both transitions alert.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (body, code) = curl(
        &lab,
        "lb1",
        &[
            "-m",
            "10",
            "-X",
            "POST",
            "-H",
            &auth,
            "http://127.0.0.1:9100/admin/handover",
        ],
    );
    assert_eq!(code, 200, "handover: {body}\n{}", n1.log());
    lab.wait_for("lb2 holds the VIP", Duration::from_secs(10), || {
        holders() == (false, true)
    });
    for node in [LB1, LB2] {
        poll(
            &format!("FloatlbVrrpTransition for {node}"),
            Duration::from_secs(20),
            || {
                let a = firing(
                    &lab,
                    "FloatlbVrrpTransition",
                    &format!(",instance=\"{node}:9100\""),
                );
                // floatlb's own `instance` label (the VRRP instance) is kept as exported_instance.
                (
                    has_data(&a) && a.contains("\"exported_instance\":\"vrrp0-51\""),
                    a,
                )
            },
        );
    }

    // Split brain: the nodes stop hearing each other, the client still reaches both.
    lab.isolate("lb1", true);
    lab.isolate("lb2", true);
    lab.wait_for("both nodes hold the VIP", Duration::from_secs(10), || {
        holders() == (true, true)
    });
    let took = poll("FloatlbSplitBrain fires", Duration::from_secs(20), || {
        let a = firing(&lab, "FloatlbSplitBrain", ",job=\"pair\",vrid=\"51\"");
        (has_data(&a), a)
    });
    eprintln!(
        "FloatlbSplitBrain firing {took:?} after both nodes held the VIP (scrape and evaluation every {EVAL:?})"
    );
    // The link between them is back: one master again, and the alert clears.
    lab.isolate("lb1", false);
    lab.isolate("lb2", false);
    lab.wait_for("one holder again", Duration::from_secs(10), || {
        let h = holders();
        h.0 != h.1
    });
    poll(
        "FloatlbSplitBrain resolves",
        Duration::from_secs(20),
        || {
            let a = firing(&lab, "FloatlbSplitBrain", "");
            (!has_data(&a), a)
        },
    );
    drop((n1, n2, prom));
}
