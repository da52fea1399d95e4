//! `bench sweep`: ab and wrk load against each scenario in the lab, interleaved round by round,
//! with every host's CPU, memory and network read from /proc while the load runs.
//!
//! The lab (`vm-lab/lab sweep`) makes the hosts and starts the daemons; this drives the load
//! from the client namespace and writes `runs.csv`, `samples.csv`, `idle.csv`, `summary.md` and
//! PNG plots into the output folder. GET points ask for the page at `/`; POST points send a
//! body of a given size to `/post`, which the web servers read whole before answering 200.
//! TLS points (`--tls`) load the balancers' port 443 instead: HTTPS keep-alive, resumed and
//! full handshakes, and HTTP/2.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::parse;
use crate::sample::{self, Snapshot};

/// A load balancer (or the bare web server) under test, on a host of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The lab host (namespace suffix) whose processes are "the LB".
    pub host: String,
    pub addr: String,
    /// The `Host` field the load tools send (a routes scenario names one of its sites); None:
    /// the address, as the tools do by themselves.
    pub vhost: Option<String>,
    /// Where GET points go instead of [`GET_PATH`].
    pub get_path: Option<String>,
}

/// "single:web1:198.18.0.11,floatlb-rr:flrr:198.18.0.21"; a fourth field is the `Host` to
/// ask for and a fifth the GET points' path:
/// "floatlb-r1k:flr1k:198.18.0.33:site999.example:/index.html".
pub fn parse_scenarios(s: &str) -> Result<Vec<Scenario>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let f: Vec<&str> = x.split(':').collect();
            let ok = |v: &&str| !v.is_empty();
            let (name, host, addr, vhost, path) = match f[..] {
                [name, host, addr] => (name, host, addr, None, None),
                [name, host, addr, vhost] if ok(&vhost) => (name, host, addr, Some(vhost), None),
                [name, host, addr, vhost, path] if ok(&vhost) && path.starts_with('/') => {
                    (name, host, addr, Some(vhost), Some(path))
                }
                _ => bail!("scenario {x:?}: want name:host:address[:http-host[:/path]]"),
            };
            Ok(Scenario {
                name: name.into(),
                host: host.into(),
                addr: addr.into(),
                vhost: vhost.map(String::from),
                get_path: path.map(String::from),
            })
        })
        .collect()
}

/// One load point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `ab -n n -c c [-k]`; with a body, `ab -p FILE -T application/octet-stream` (POST).
    Ab {
        n: u64,
        c: u64,
        keepalive: bool,
        /// Request body bytes: 0 for a GET of the page, more for a POST.
        body: u64,
    },
    /// `wrk -t1 -c c -d secs`; with a body, a Lua script making every request a POST of it.
    Wrk { c: u64, secs: u64, body: u64 },
    /// A load over TLS to port 443, `c` clients (connections) for `secs` seconds.
    Tls { kind: TlsKind, c: u64, secs: u64 },
}

/// The loads of a TLS sweep (`vm-lab/lab sweep --tls`), each against the balancer terminating
/// TLS itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// HTTPS keep-alive: `wrk -t1`.
    KeepAlive,
    /// A new connection per request (`wrk -H 'Connection: close'`). wrk keeps its TLS session
    /// across reconnects (SSL_clear), so these handshakes are resumed, as a browser's are
    /// (checked: floatlb counted 2388 of 2392 handshakes as resumed).
    Resumed,
    /// Full handshakes: `openssl s_time -new` clients at once, each a new session per
    /// connection.
    Full,
    /// HTTP/2: `h2load -m 10`, ten streams per connection.
    H2,
}

impl TlsKind {
    /// In sweep order.
    pub const ALL: [TlsKind; 4] = [
        TlsKind::KeepAlive,
        TlsKind::Resumed,
        TlsKind::Full,
        TlsKind::H2,
    ];

    /// The name in load labels (and in the `load` column of the lab's former tls-runs.csv).
    pub fn name(self) -> &'static str {
        match self {
            TlsKind::KeepAlive => "keepalive",
            TlsKind::Resumed => "resumed",
            TlsKind::Full => "full",
            TlsKind::H2 => "h2",
        }
    }

    pub fn from_name(name: &str) -> Option<TlsKind> {
        TlsKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of a TLS point from its label ("TLS keepalive wrk -c 50 -d 5s"); None for a
    /// cleartext point.
    pub fn of_label(label: &str) -> Option<TlsKind> {
        TlsKind::from_name(label.strip_prefix("TLS ")?.split_whitespace().next()?)
    }

    /// Clients per run: 50 connections, or 8 `openssl s_time` processes.
    pub fn clients(self) -> u64 {
        match self {
            TlsKind::Full => 8,
            _ => 50,
        }
    }
}

/// The TLS points of a sweep: every kind once, `secs` seconds each.
pub fn tls_plan(secs: u64) -> Vec<Load> {
    TlsKind::ALL
        .into_iter()
        .map(|kind| Load::Tls {
            kind,
            c: kind.clients(),
            secs,
        })
        .collect()
}

/// Runs `$1` `openssl s_time -new` clients against `$2` for `$3` seconds at once, their
/// outputs in files beside `$4`, then prints them one after another.
const S_TIME_SCRIPT: &str = r#"n=$1 addr=$2 secs=$3 out=$4 i=1
while [ "$i" -le "$n" ]; do
    openssl s_time -connect "$addr" -new -time "$secs" -www / > "$out.$i" 2>&1 &
    i=$((i + 1))
done
wait
i=1
while [ "$i" -le "$n" ]; do cat "$out.$i"; rm -f "$out.$i"; i=$((i + 1)); done
"#;

/// Where GET points go: the page.
pub const GET_PATH: &str = "/";
/// Where POST points go: a location the web servers answer 200 after reading the whole body.
pub const POST_PATH: &str = "/post";

/// A body size as the load labels show it: "1k" for 1024 bytes, "64k", "1500B".
pub fn size_label(bytes: u64) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}k", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

/// The wrk script for POST points: the method and a body of `bytes` bytes, sent the same on
/// every request (wrk builds the request once, so the script costs nothing per request).
pub fn wrk_post_script(bytes: u64) -> String {
    format!(
        "-- bench sweep: every request a POST with a {bytes}-byte body\n\
         wrk.method = \"POST\"\n\
         wrk.body = string.rep(\"x\", {bytes})\n\
         wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
    )
}

impl Load {
    pub fn label(&self) -> String {
        let mut l = match *self {
            Load::Ab {
                n, c, keepalive, ..
            } => {
                format!("ab -n {n} -c {c}{}", if keepalive { " -k" } else { "" })
            }
            Load::Wrk { c, secs, .. } => format!("wrk -c {c} -d {secs}s"),
            Load::Tls { kind, c, secs } => format!(
                "TLS {} {}",
                kind.name(),
                match kind {
                    TlsKind::KeepAlive => format!("wrk -c {c} -d {secs}s"),
                    TlsKind::Resumed => format!("wrk -c {c} -d {secs}s close"),
                    TlsKind::Full => format!("s_time -new x{c} -time {secs}s"),
                    TlsKind::H2 => format!("h2load -c {c} -m 10 -D {secs}s"),
                }
            ),
        };
        if self.body() > 0 {
            l += &format!(" POST {}", size_label(self.body()));
        }
        l
    }
    pub fn tool(&self) -> &'static str {
        match self {
            Load::Ab { .. } => "ab",
            Load::Wrk { .. } => "wrk",
            Load::Tls { kind, .. } => match kind {
                TlsKind::KeepAlive | TlsKind::Resumed => "wrk",
                TlsKind::Full => "s_time",
                TlsKind::H2 => "h2load",
            },
        }
    }
    pub fn concurrency(&self) -> u64 {
        match *self {
            Load::Ab { c, .. } | Load::Wrk { c, .. } | Load::Tls { c, .. } => c,
        }
    }
    pub fn keepalive(&self) -> bool {
        match *self {
            Load::Ab { keepalive, .. } => keepalive,
            Load::Wrk { .. } => true,
            Load::Tls { kind, .. } => matches!(kind, TlsKind::KeepAlive | TlsKind::H2),
        }
    }
    /// Requests asked for (ab), 0 for a timed run (wrk).
    pub fn requested(&self) -> u64 {
        match *self {
            Load::Ab { n, .. } => n,
            Load::Wrk { .. } | Load::Tls { .. } => 0,
        }
    }
    /// Request body bytes; 0 for a GET.
    pub fn body(&self) -> u64 {
        match *self {
            Load::Ab { body, .. } | Load::Wrk { body, .. } => body,
            Load::Tls { .. } => 0,
        }
    }
    pub fn method(&self) -> &'static str {
        if self.body() > 0 {
            "POST"
        } else {
            "GET"
        }
    }
    pub fn path(&self) -> &'static str {
        if self.body() > 0 {
            POST_PATH
        } else {
            GET_PATH
        }
    }
    fn slug(&self) -> String {
        self.label().replace(" -", "_").replace([' ', '-'], "")
    }
}

/// The GET points of a sweep: ab at every (-k or not, -c, -n) with c <= n, then wrk at every
/// connection count.
pub fn plan(ab_n: &[u64], ab_c: &[u64], wrk_c: &[u64], wrk_secs: u64) -> Vec<Load> {
    let mut v = Vec::new();
    for keepalive in [false, true] {
        for &c in ab_c {
            for &n in ab_n.iter().filter(|&&n| n >= c) {
                v.push(Load::Ab {
                    n,
                    c,
                    keepalive,
                    body: 0,
                });
            }
        }
    }
    v.extend(wrk_c.iter().map(|&c| Load::Wrk {
        c,
        secs: wrk_secs,
        body: 0,
    }));
    v
}

/// The POST points of a sweep, all keep-alive: per body size (0 skipped), wrk at every
/// connection count, then `ab -k` at every (-c, -n) with c <= n.
pub fn post_plan(
    bodies: &[u64],
    ab_n: &[u64],
    ab_c: &[u64],
    wrk_c: &[u64],
    wrk_secs: u64,
) -> Vec<Load> {
    let mut v = Vec::new();
    for &body in bodies.iter().filter(|&&b| b > 0) {
        v.extend(wrk_c.iter().map(|&c| Load::Wrk {
            c,
            secs: wrk_secs,
            body,
        }));
        for &c in ab_c {
            for &n in ab_n.iter().filter(|&&n| n >= c) {
                v.push(Load::Ab {
                    n,
                    c,
                    keepalive: true,
                    body,
                });
            }
        }
    }
    v
}

/// The figures of one run: one load point against one scenario in one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub round: u32,
    pub scenario: String,
    pub tool: String,
    pub requested: u64,
    pub concurrency: u64,
    pub keepalive: bool,
    pub label: String,
    pub seconds: f64,
    /// Responses that came back 2xx/3xx and whole.
    pub ok: u64,
    /// Requests asked for but not answered well: failed, non-2xx, socket errors, never sent.
    pub lost: u64,
    pub rps: f64,
    pub mb_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub cpu_client_pct: f64,
    pub cpu_lb_pct: f64,
    pub cpu_lb_peak_pct: f64,
    pub cpu_webs_pct: f64,
    pub lb_cpu_us_per_req: f64,
    pub lb_peak_rss_kib: u64,
    pub lb_net_mb_per_s: f64,
    /// The part of `lb_cpu_us_per_req` spent in user space: the balancer's own code.
    pub lb_user_us_per_req: f64,
    /// CPU the whole machine spent per request: client, balancer, web servers and the kernel
    /// work between them.
    pub machine_us_per_req: f64,
    /// "GET" or "POST" (empty reads as GET).
    pub method: String,
    /// Request body bytes of a POST point; 0 for GET.
    pub body_bytes: u64,
}

pub const CSV_HEADER: &str = "round,scenario,tool,requested,concurrency,keepalive,load,seconds,ok,lost,rps,mb_per_s,p50_ms,p90_ms,p99_ms,cpu_client_pct,cpu_lb_pct,cpu_lb_peak_pct,cpu_webs_pct,lb_cpu_us_per_req,lb_peak_rss_kib,lb_net_mb_per_s,lb_user_us_per_req,machine_us_per_req,method,body_bytes";

/// Columns of runs.csv written before the user/kernel split and the machine's CPU were added;
/// such files still load, with those two figures at 0.
const OLD_CSV_FIELDS: usize = 22;
/// Columns of runs.csv written before POST points: every row is a GET.
const GET_ONLY_CSV_FIELDS: usize = 24;

impl Row {
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{:.3},{},{},{:.1},{:.2},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.2},{},{:.2},{:.2},{:.2},{},{}",
            self.round,
            self.scenario,
            self.tool,
            self.requested,
            self.concurrency,
            self.keepalive as u8,
            self.label,
            self.seconds,
            self.ok,
            self.lost,
            self.rps,
            self.mb_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.cpu_client_pct,
            self.cpu_lb_pct,
            self.cpu_lb_peak_pct,
            self.cpu_webs_pct,
            self.lb_cpu_us_per_req,
            self.lb_peak_rss_kib,
            self.lb_net_mb_per_s,
            self.lb_user_us_per_req,
            self.machine_us_per_req,
            self.method(),
            self.body_bytes
        )
    }

    pub fn from_csv(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split(',').collect();
        let post = f.len() == CSV_HEADER.split(',').count();
        let full = post || f.len() == GET_ONLY_CSV_FIELDS;
        if !full && f.len() != OLD_CSV_FIELDS {
            return None;
        }
        let n = |i: usize| f[i].parse::<f64>().ok();
        Some(Row {
            round: f[0].parse().ok()?,
            scenario: f[1].into(),
            tool: f[2].into(),
            requested: f[3].parse().ok()?,
            concurrency: f[4].parse().ok()?,
            keepalive: f[5] == "1",
            label: f[6].into(),
            seconds: n(7)?,
            ok: f[8].parse().ok()?,
            lost: f[9].parse().ok()?,
            rps: n(10)?,
            mb_per_s: n(11)?,
            p50_ms: n(12)?,
            p90_ms: n(13)?,
            p99_ms: n(14)?,
            cpu_client_pct: n(15)?,
            cpu_lb_pct: n(16)?,
            cpu_lb_peak_pct: n(17)?,
            cpu_webs_pct: n(18)?,
            lb_cpu_us_per_req: n(19)?,
            lb_peak_rss_kib: f[20].parse().ok()?,
            lb_net_mb_per_s: n(21)?,
            lb_user_us_per_req: if full { n(22)? } else { 0.0 },
            machine_us_per_req: if full { n(23)? } else { 0.0 },
            method: if post { f[24].into() } else { "GET".into() },
            body_bytes: if post { f[25].parse().ok()? } else { 0 },
        })
    }

    /// "GET" or "POST".
    pub fn method(&self) -> &str {
        if self.method.is_empty() {
            "GET"
        } else {
            &self.method
        }
    }

    pub fn is_post(&self) -> bool {
        self.method() == "POST"
    }
}

/// Fills a row's load figures from the tool's output (and ab's `-e` percentile table).
pub fn load_figures(load: &Load, output: &str, ab_csv: Option<&str>, row: &mut Row) {
    match load {
        Load::Ab { n, .. } => {
            if let Some(a) = parse::ab(output) {
                let bad = a.failed + a.non_2xx;
                row.ok = a.complete.saturating_sub(bad);
                row.lost = n.saturating_sub(row.ok);
                row.seconds = a.seconds;
                row.rps = a.requests_per_sec;
                row.mb_per_s = a.kib_per_sec * 1024.0 / 1e6;
            } else {
                // ab stops without a summary at a connect error: nothing it sent counts.
                row.lost = *n;
            }
            if let Some(p) = ab_csv.and_then(parse::ab_percentiles) {
                (row.p50_ms, row.p90_ms, row.p99_ms) = (p[50], p[90], p[99]);
            }
        }
        Load::Wrk { .. }
        | Load::Tls {
            kind: TlsKind::KeepAlive | TlsKind::Resumed,
            ..
        } => wrk_figures(output, row),
        Load::Tls {
            kind: TlsKind::H2, ..
        } => match parse::h2load(output) {
            Some(h) => {
                row.ok = h.succeeded;
                // A timed run stops with streams open, and h2load counts them as errored
                // ("Process Request Failure"): those are the tool's, not the balancer's.
                row.lost = h.failed.saturating_sub(h.errored);
                row.seconds = h.seconds;
                row.rps = h.requests_per_sec;
                row.mb_per_s = h.bytes_per_sec / 1e6;
            }
            None => row.lost = 1,
        },
        Load::Tls {
            kind: TlsKind::Full,
            secs,
            ..
        } => match parse::s_time_connections(output) {
            // s_time counts only the connections it completed, in whole seconds of its own.
            Some(n) => {
                row.ok = n;
                row.seconds = *secs as f64;
                row.rps = n as f64 / *secs as f64;
            }
            None => row.lost = 1,
        },
    }
}

fn wrk_figures(output: &str, row: &mut Row) {
    if let Some(w) = parse::wrk(output) {
        row.ok = w.requests.saturating_sub(w.non_2xx_3xx);
        row.lost = w.failed();
        row.seconds = w.seconds;
        row.rps = w.requests_per_sec;
        row.mb_per_s = w.bytes_per_sec / 1e6;
        row.p50_ms = w.percentile_ms(50.0).unwrap_or(0.0);
        row.p90_ms = w.percentile_ms(90.0).unwrap_or(0.0);
        row.p99_ms = w.percentile_ms(99.0).unwrap_or(0.0);
    } else {
        row.lost = 1;
    }
}

pub struct Sweep {
    pub prefix: String,
    pub client: String,
    pub webs: Vec<String>,
    pub scenarios: Vec<Scenario>,
    pub loads: Vec<Load>,
    pub rounds: u32,
    pub out: PathBuf,
    pub idle_conns: u64,
    /// The idle connections are TLS ones, to port 443.
    pub tls: bool,
    /// Free-form facts for the summary's header (page size, workers, versions).
    pub setup: Vec<(String, String)>,
}

struct Hosts {
    /// (host, netns inode) for the client, every web and every scenario's LB host.
    all: Vec<(String, u64)>,
}

impl Sweep {
    fn ns(&self, host: &str) -> String {
        format!("{}{}", self.prefix, host)
    }

    fn hosts(&self) -> Result<Hosts> {
        let mut names = vec![self.client.clone()];
        names.extend(self.webs.iter().cloned());
        for s in &self.scenarios {
            if !names.contains(&s.host) {
                names.push(s.host.clone());
            }
        }
        let all = names
            .into_iter()
            .map(|h| {
                let ino = sample::netns_inode(&self.ns(&h))
                    .with_context(|| format!("namespace {} (is the lab up?)", self.ns(&h)))?;
                Ok((h, ino))
            })
            .collect::<Result<_>>()?;
        Ok(Hosts { all })
    }

    pub fn run(&self) -> Result<Vec<Row>> {
        let hosts = self.hosts()?;
        let raw = self.out.join("raw");
        std::fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;
        // Absolute: the tools get these paths and may not share our working directory.
        let raw = raw.canonicalize()?;
        for body in self.loads.iter().map(Load::body).filter(|&b| b > 0) {
            let (file, lua) = post_files(&raw, body);
            std::fs::write(&file, "x".repeat(body as usize))
                .with_context(|| format!("writing {}", file.display()))?;
            std::fs::write(&lua, wrk_post_script(body))
                .with_context(|| format!("writing {}", lua.display()))?;
        }
        let mut csv = String::from(CSV_HEADER);
        csv.push('\n');
        let mut samples = String::from("round,scenario,load,t_s,host,cpu_pct,rss_kib\n");
        let mut rows = Vec::new();
        let total = self.rounds as usize * self.loads.len() * self.scenarios.len();
        let started = Instant::now();
        for round in 1..=self.rounds {
            for load in &self.loads {
                // Rotate the order each round so no scenario always runs first (warm caches,
                // TIME_WAIT left by the one before).
                let k = self.scenarios.len();
                for i in 0..k {
                    let sc = &self.scenarios[(i + round as usize - 1) % k];
                    let (row, s) = self.run_one(&hosts, sc, load, round, &raw)?;
                    eprintln!(
                        "bench: [{}/{} {:.0}s] round {round} {:<11} {:<30} {:>9.0} req/s lost {:>5} p99 {:>7.2} ms  LB {:>5.1}% {:>6.1} us/req",
                        rows.len() + 1,
                        total,
                        started.elapsed().as_secs_f64(),
                        sc.name,
                        load.label(),
                        row.rps,
                        row.lost,
                        row.p99_ms,
                        row.cpu_lb_pct,
                        row.lb_cpu_us_per_req
                    );
                    csv += &row.to_csv();
                    csv.push('\n');
                    samples += &s;
                    rows.push(row);
                    // Let the last run's connections finish closing.
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            // Written after every round: an interrupted sweep keeps what it measured.
            std::fs::write(self.out.join("runs.csv"), &csv)?;
            std::fs::write(self.out.join("samples.csv"), &samples)?;
        }
        Ok(rows)
    }

    fn run_one(
        &self,
        hosts: &Hosts,
        sc: &Scenario,
        load: &Load,
        round: u32,
        raw: &Path,
    ) -> Result<(Row, String)> {
        let base = raw.join(format!("r{round}-{}-{}", sc.name, load.slug()));
        let out_path = base.with_extension("txt");
        let ab_csv = base.with_extension("csv");
        let path = match &sc.get_path {
            Some(p) if load.body() == 0 => p.as_str(),
            _ => load.path(),
        };
        let url = format!("http://{}{path}", sc.addr);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(&self.client)]);
        let limit = match *load {
            Load::Ab {
                n,
                c,
                keepalive,
                body,
            } => {
                // -r: count receive errors instead of stopping; -s: per-request timeout.
                cmd.args(["ab", "-q", "-r", "-s", "10", "-n", &n.to_string()]);
                cmd.args(["-c", &c.to_string()]);
                if keepalive {
                    cmd.arg("-k");
                }
                if body > 0 {
                    cmd.arg("-p").arg(post_files(raw, body).0);
                    cmd.args(["-T", "application/octet-stream"]);
                }
                // ab sends a Host field given with -H instead of its own.
                if let Some(h) = &sc.vhost {
                    cmd.arg("-H").arg(format!("Host: {h}"));
                }
                cmd.arg("-e").arg(&ab_csv).arg(&url);
                Duration::from_secs(120)
            }
            Load::Wrk { c, secs, body } => {
                cmd.args([
                    "wrk",
                    "-t1",
                    "-c",
                    &c.to_string(),
                    "-d",
                    &format!("{secs}s"),
                ]);
                if body > 0 {
                    cmd.arg("-s").arg(post_files(raw, body).1);
                }
                if let Some(h) = &sc.vhost {
                    cmd.arg("-H").arg(format!("Host: {h}"));
                }
                cmd.args(["--latency", "--timeout", "5s", &url]);
                Duration::from_secs(secs + 30)
            }
            Load::Tls { kind, c, secs } => {
                let url = format!("https://{}/", sc.addr);
                let (c, d) = (c.to_string(), secs.to_string());
                match kind {
                    TlsKind::KeepAlive | TlsKind::Resumed => {
                        cmd.args(["wrk", "-t1", "-c", &c, "-d", &format!("{secs}s")]);
                        if kind == TlsKind::Resumed {
                            cmd.args(["-H", "Connection: close"]);
                        }
                        cmd.args(["--latency", "--timeout", "2s", &url]);
                    }
                    TlsKind::Full => {
                        let each = base.with_extension("s_time");
                        cmd.args(["sh", "-c", S_TIME_SCRIPT, "sh", &c])
                            .arg(format!("{}:443", sc.addr))
                            .arg(&d)
                            .arg(each);
                    }
                    TlsKind::H2 => {
                        cmd.args(["h2load", "-c", &c, "-m", "10", "-D", &d, "-T", "2", &url]);
                    }
                }
                Duration::from_secs(secs + 30)
            }
        };
        let file = File::create(&out_path)?;
        cmd.stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null());

        let lb = &sc.host;
        let before = Snapshot::take(&hosts.all);
        let net0 = before.any_pid(lb).and_then(sample::net_bytes);
        let child = cmd.spawn().context("spawning the load tool")?;
        let pid = child.id() as libc::pid_t;
        let t0 = Instant::now();
        let mut prev = before.clone();
        let mut peak_pct: f64 = 0.0;
        let mut peak_rss = before.rss_kib(lb);
        let mut samples = String::new();
        let mut next = t0 + Duration::from_secs(1);
        let tool_cpu_ns = loop {
            if let Some(ns) = reap(pid)? {
                break ns;
            }
            if t0.elapsed() > limit {
                // Bounded: a stuck tool is killed and its run counted as lost.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                continue;
            }
            let now = Instant::now();
            if now >= next {
                let snap = Snapshot::take(&hosts.all);
                let dt = snap.at.unwrap() - prev.at.unwrap();
                for (h, _) in &hosts.all {
                    let pct =
                        sample::cpu_between(&prev, &snap, h) as f64 / dt.as_nanos() as f64 * 100.0;
                    let _ = writeln!(
                        samples,
                        "{round},{},{},{:.1},{h},{pct:.1},{}",
                        sc.name,
                        load.label(),
                        (snap.at.unwrap() - t0).as_secs_f64(),
                        snap.rss_kib(h)
                    );
                    if h == lb {
                        peak_pct = peak_pct.max(pct);
                    }
                }
                peak_rss = peak_rss.max(snap.rss_kib(lb));
                prev = snap;
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let after = Snapshot::take(&hosts.all);
        let wall = t0.elapsed().as_secs_f64();
        let net1 = after.any_pid(lb).and_then(sample::net_bytes);

        let mut row = Row {
            round,
            scenario: sc.name.clone(),
            tool: load.tool().into(),
            requested: load.requested(),
            concurrency: load.concurrency(),
            keepalive: load.keepalive(),
            label: load.label(),
            method: load.method().into(),
            body_bytes: load.body(),
            ..Default::default()
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let pct = std::fs::read_to_string(&ab_csv).ok();
        load_figures(load, &output, pct.as_deref(), &mut row);

        let cpu = |h: &str| sample::cpu_between(&before, &after, h) as f64;
        let lb_ns = cpu(lb);
        row.cpu_client_pct = (cpu(&self.client) + tool_cpu_ns as f64) / (wall * 1e9) * 100.0;
        row.cpu_lb_pct = lb_ns / (wall * 1e9) * 100.0;
        row.cpu_lb_peak_pct = peak_pct.max(row.cpu_lb_pct);
        row.cpu_webs_pct = self.webs.iter().map(|w| cpu(w)).sum::<f64>() / (wall * 1e9) * 100.0;
        if row.ok > 0 {
            row.lb_cpu_us_per_req = lb_ns / 1000.0 / row.ok as f64;
            let user = sample::user_share_between(&before, &after, lb).unwrap_or(0.0);
            row.lb_user_us_per_req = row.lb_cpu_us_per_req * user;
            row.machine_us_per_req =
                sample::machine_ns_between(&before, &after) as f64 / 1000.0 / row.ok as f64;
        }
        row.lb_peak_rss_kib = peak_rss.max(after.rss_kib(lb));
        if let (Some((r0, t0b)), Some((r1, t1b))) = (net0, net1) {
            row.lb_net_mb_per_s = ((r1 - r0) + (t1b - t0b)) as f64 / wall / 1e6;
        }
        Ok((row, samples))
    }

    /// Memory each LB spends on idle keep-alive client connections: its host's RSS before,
    /// and while `bench hold` keeps `idle_conns` connections open after one request each.
    pub fn idle_memory(&self) -> Result<Vec<IdleRow>> {
        let hosts = self.hosts()?;
        let me = std::env::current_exe()?;
        let mut rows = Vec::new();
        for sc in self.scenarios.iter().filter(|s| s.name != "single") {
            let before = Snapshot::take(&hosts.all);
            let port = if self.tls { 443 } else { 80 };
            let mut child = Command::new("ip")
                .args(["netns", "exec", &self.ns(&self.client)])
                .arg(&me)
                .args(["hold", "--addr", &format!("{}:{port}", sc.addr)])
                .args(["--conns", &self.idle_conns.to_string(), "--hold-s", "4"])
                .args(["--tls", if self.tls { "1" } else { "0" }])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
            // "held 10000 opened 10000"
            let held: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // A second for TLS, as the lab's own holder gave it before this moved here.
            std::thread::sleep(Duration::from_millis(if self.tls { 1000 } else { 500 }));
            let during = Snapshot::take(&hosts.all);
            let _ = child.wait();
            let (r0, r1) = (before.rss_kib(&sc.host), during.rss_kib(&sc.host));
            let row = IdleRow {
                scenario: sc.name.clone(),
                conns: held,
                rss_before_kib: r0,
                rss_during_kib: r1,
            };
            eprintln!(
                "bench: idle {:<11} {} connections held: RSS {} -> {} KiB = {:.0} bytes/connection",
                sc.name,
                held,
                r0,
                r1,
                row.bytes_per_conn()
            );
            rows.push(row);
            // The LBs' idle timeout is 60 s; the holder closed its sockets when it exited.
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut csv = String::from(
            "scenario,connections,rss_before_kib,rss_during_kib,bytes_per_connection\n",
        );
        for r in &rows {
            let _ = writeln!(
                csv,
                "{},{},{},{},{:.0}",
                r.scenario,
                r.conns,
                r.rss_before_kib,
                r.rss_during_kib,
                r.bytes_per_conn()
            );
        }
        std::fs::write(self.out.join("idle.csv"), csv)?;
        Ok(rows)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdleRow {
    pub scenario: String,
    pub conns: u64,
    pub rss_before_kib: u64,
    pub rss_during_kib: u64,
}

impl IdleRow {
    /// A row of `idle.csv` as written by [`Sweep::idle_memory`].
    pub fn from_csv(line: &str) -> Option<IdleRow> {
        let f: Vec<&str> = line.split(',').collect();
        Some(IdleRow {
            scenario: f.first()?.to_string(),
            conns: f.get(1)?.parse().ok()?,
            rss_before_kib: f.get(2)?.parse().ok()?,
            rss_during_kib: f.get(3)?.parse().ok()?,
        })
    }

    pub fn bytes_per_conn(&self) -> f64 {
        if self.conns == 0 {
            return 0.0;
        }
        (self.rss_during_kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.conns as f64
    }
}

/// The body file (for `ab -p`) and the wrk script of a POST point, in the sweep's `raw/`
/// folder (beside the tools' output, kept out of git with it).
fn post_files(raw: &Path, body: u64) -> (PathBuf, PathBuf) {
    let name = format!("post-{}", size_label(body));
    (
        raw.join(format!("{name}.body")),
        raw.join(format!("{name}.lua")),
    )
}

/// Reaps `pid` if it has exited: Some(CPU ns it and its children used), None while it runs.
fn reap(pid: libc::pid_t) -> Result<Option<u64>> {
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Ok(Some(tv(ru.ru_utime) + tv(ru.ru_stime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_skips_concurrency_above_requests() {
        let p = plan(&[1000, 10000], &[100, 5000], &[50], 5);
        let labels: Vec<String> = p.iter().map(Load::label).collect();
        assert_eq!(
            labels,
            [
                "ab -n 1000 -c 100",
                "ab -n 10000 -c 100",
                "ab -n 10000 -c 5000",
                "ab -n 1000 -c 100 -k",
                "ab -n 10000 -c 100 -k",
                "ab -n 10000 -c 5000 -k",
                "wrk -c 50 -d 5s"
            ]
        );
        assert_eq!(p[2].slug(), "ab_n10000_c5000");
        assert_eq!(p[5].slug(), "ab_n10000_c5000_k");
        assert!(p.iter().all(|l| l.method() == "GET" && l.path() == "/"));
    }

    #[test]
    fn post_plan_is_keep_alive_per_body_size() {
        let p = post_plan(&[1024, 0, 65536], &[1000, 10000], &[100, 5000], &[50], 5);
        let labels: Vec<String> = p.iter().map(Load::label).collect();
        assert_eq!(
            labels,
            [
                "wrk -c 50 -d 5s POST 1k",
                "ab -n 1000 -c 100 -k POST 1k",
                "ab -n 10000 -c 100 -k POST 1k",
                "ab -n 10000 -c 5000 -k POST 1k",
                "wrk -c 50 -d 5s POST 64k",
                "ab -n 1000 -c 100 -k POST 64k",
                "ab -n 10000 -c 100 -k POST 64k",
                "ab -n 10000 -c 5000 -k POST 64k",
            ]
        );
        assert!(p.iter().all(|l| l.keepalive() && l.method() == "POST"));
        assert!(p.iter().all(|l| l.path() == POST_PATH));
        assert_eq!((p[0].body(), p[4].body()), (1024, 65536));
        // Slugs name the raw files: distinct per point.
        let mut slugs: Vec<String> = p.iter().map(Load::slug).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), p.len());
        assert!(post_plan(&[0], &[1000], &[10], &[50], 1).is_empty());
    }

    #[test]
    fn body_sizes_read_as_kib_when_whole() {
        assert_eq!(size_label(1024), "1k");
        assert_eq!(size_label(65536), "64k");
        assert_eq!(size_label(1500), "1500B");
        assert_eq!(size_label(512), "512B");
    }

    #[test]
    fn wrk_script_posts_the_body_size_asked_for() {
        let s = wrk_post_script(65536);
        assert!(s.contains("wrk.method = \"POST\"\n"), "{s}");
        assert!(s.contains("wrk.body = string.rep(\"x\", 65536)\n"), "{s}");
        assert!(s.contains("application/octet-stream"), "{s}");
        let (body, lua) = post_files(Path::new("/r"), 1024);
        assert_eq!(body, Path::new("/r/post-1k.body"));
        assert_eq!(lua, Path::new("/r/post-1k.lua"));
    }

    #[test]
    fn scenarios_parse_and_reject() {
        let s = parse_scenarios("single:web1:198.18.0.11,floatlb-rr:flrr:198.18.0.21").unwrap();
        assert_eq!(s[1].host, "flrr");
        assert_eq!(s[1].vhost, None);
        let s = parse_scenarios("floatlb-r1k:flr1k:198.18.0.33:site999.example").unwrap();
        assert_eq!(s[0].addr, "198.18.0.33");
        assert_eq!(s[0].vhost.as_deref(), Some("site999.example"));
        assert_eq!(s[0].get_path, None);
        let s = parse_scenarios("nginx-r1:ngxr1:198.18.0.38:site0.example:/index.html").unwrap();
        assert_eq!(s[0].get_path.as_deref(), Some("/index.html"));
        assert!(parse_scenarios("floatlb-rr:flrr").is_err());
        assert!(parse_scenarios("floatlb-rr:flrr:198.18.0.21:").is_err());
        assert!(parse_scenarios("floatlb-rr:flrr:198.18.0.21:a.example:index.html").is_err());
    }

    #[test]
    fn csv_row_round_trips() {
        let r = Row {
            round: 2,
            scenario: "haproxy-lc".into(),
            tool: "ab".into(),
            requested: 5000,
            concurrency: 100,
            keepalive: true,
            label: "ab -n 5000 -c 100 -k".into(),
            seconds: 0.5,
            ok: 4990,
            lost: 10,
            rps: 9980.0,
            mb_per_s: 17.5,
            p50_ms: 0.5,
            p90_ms: 1.25,
            p99_ms: 3.0,
            cpu_client_pct: 50.0,
            cpu_lb_pct: 70.5,
            cpu_lb_peak_pct: 80.0,
            cpu_webs_pct: 30.0,
            lb_cpu_us_per_req: 24.5,
            lb_peak_rss_kib: 12000,
            lb_net_mb_per_s: 36.25,
            lb_user_us_per_req: 6.25,
            machine_us_per_req: 120.5,
            method: "POST".into(),
            body_bytes: 65536,
        };
        let line = r.to_csv();
        assert!(line.ends_with(",120.50,POST,65536"), "{line}");
        assert_eq!(Row::from_csv(&line), Some(r.clone()));
        assert!(Row::from_csv(&line).unwrap().is_post());
        assert_eq!(Row::from_csv("1,2,3"), None);
        // A runs.csv from before POST points: every row a GET.
        let get_only = line.rsplitn(3, ',').last().unwrap();
        let want = Row {
            method: "GET".into(),
            body_bytes: 0,
            ..r.clone()
        };
        assert_eq!(Row::from_csv(get_only), Some(want.clone()));
        assert!(!Row::from_csv(get_only).unwrap().is_post());
        // And from before the CPU split: without those two either.
        let old = get_only.rsplitn(3, ',').last().unwrap();
        let want = Row {
            lb_user_us_per_req: 0.0,
            machine_us_per_req: 0.0,
            ..want
        };
        assert_eq!(Row::from_csv(old), Some(want));
        // A row built in code without a method is a GET, and says so in the CSV.
        assert!(Row::default().to_csv().ends_with(",GET,0"));
    }

    #[test]
    fn ab_losses_count_failed_non_2xx_and_unsent() {
        let load = Load::Ab {
            n: 2000,
            c: 10,
            keepalive: true,
            body: 0,
        };
        let out = include_str!("../tests/data/ab_keepalive.txt");
        let pct = include_str!("../tests/data/ab_percentiles.csv");
        let mut r = Row::default();
        load_figures(&load, out, Some(pct), &mut r);
        assert_eq!((r.ok, r.lost), (2000, 0));
        assert_eq!((r.p50_ms, r.p99_ms), (0.457, 0.643));
        // Two failed and three non-2xx, and ab cut short at 1990 complete.
        let bad = out
            .replace(
                "Complete requests:      2000",
                "Complete requests:      1990",
            )
            .replace(
                "Failed requests:        0",
                "Failed requests:        2\nNon-2xx responses:      3",
            );
        let mut r = Row::default();
        load_figures(&load, &bad, None, &mut r);
        assert_eq!((r.ok, r.lost), (1985, 15));
        // No summary at all (ab exits at a connect error): all of it is lost.
        let mut r = Row::default();
        load_figures(
            &load,
            "apr_socket_connect(): Connection refused (111)",
            None,
            &mut r,
        );
        assert_eq!((r.ok, r.lost), (0, 2000));
    }

    #[test]
    fn wrk_losses_are_socket_errors_and_non_2xx() {
        let load = Load::Wrk {
            c: 20,
            secs: 1,
            body: 0,
        };
        let mut r = Row::default();
        load_figures(
            &load,
            include_str!("../tests/data/wrk_latency.txt"),
            None,
            &mut r,
        );
        assert_eq!((r.ok, r.lost, r.p99_ms), (15475, 0, 2.10));
        let mut r = Row::default();
        load_figures(
            &load,
            include_str!("../tests/data/wrk_errors.txt"),
            None,
            &mut r,
        );
        assert_eq!(r.lost, 16 + 67726);
    }

    #[test]
    fn idle_bytes_per_connection() {
        let r = IdleRow {
            scenario: "x".into(),
            conns: 10_000,
            rss_before_kib: 10_000,
            rss_during_kib: 30_000,
        };
        assert!((r.bytes_per_conn() - 2048.0).abs() < 1e-9);
        assert_eq!(IdleRow::from_csv("x,10000,10000,30000,2048"), Some(r));
        assert_eq!(IdleRow::from_csv("x,ten"), None);
    }
}
