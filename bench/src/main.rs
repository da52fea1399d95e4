//! `bench`: the measuring half of floatlb's lab.
//!
//! - `bench probe`: HTTP probe every N ms on fresh connections, CSV out.
//! - `bench analyze`: downtime and losses from `ping -D`, probe CSV, wrk/ab output and
//!   the largest gap between a master's VRRP adverts in `tcpdump -tt` output.
//! - `bench summarize`: mean/median/min/max over repeated drill rows of a CSV; with
//!   `--table 1`, the whole CSV (or the sessions `--since` .. `--until`) as a markdown table
//!   (median and worst per stack, drill, load).
//! - `bench sweep`: ab and wrk sweeps (GET, and POST with 1 KiB and 64 KiB bodies) against
//!   floatlb, HAProxy, nginx and a bare web server in the lab, with per-host
//!   CPU/memory/network from /proc; CSV, markdown and PNG plots; with routes scenarios
//!   (`floatlb-r10k`, ...: a `Host` per scenario), their ratios (`routes`).
//!   With `--tls 1`, TLS loads instead (HTTPS keep-alive, resumed and full handshakes,
//!   HTTP/2) against the balancers' port 443, and idle TLS connections (`tls`).
//! - `bench report`: the markdown summary and plots again from a sweep's `runs.csv` (or the
//!   lab's former `tls-runs.csv`).
//! - `bench hold`: keeps many idle keep-alive connections open (memory per connection);
//!   `--tls 1`: TLS ones, `--h2 1` too: HTTP/2 ones.
//! - `bench idle`: KB per idle connection (cleartext, TLS + HTTP/1.1, TLS + HTTP/2) of
//!   floatlb, nginx and HAProxy on loopback, each balancer fresh per kind and count, read
//!   after the connections sat idle `--settle-s` (15) seconds.
//! - `bench flows`: many busy keep-alive connections; per connection its port and how it ended.
//! - `bench soak`: each LB node's RSS over a soak (first and last 5 minutes, slopes) from the
//!   soak drill's sampler CSV.
//! - `bench anycast`: an anycast drill run's shares per node, its flows by node and the span
//!   of its failed probes.
//!
//! The lab scripts in `vm-lab/` run these inside the client namespace.

mod anycast;
mod backends;
mod drills;
mod flows;
mod hold;
mod parse;
mod plot;
mod probe;
mod report;
mod routes;
mod sample;
mod soak;
mod stats;
mod sweep;
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            bail!("unexpected argument {k:?}")
        };
        let v = it.next().with_context(|| format!("--{k} needs a value"))?;
        m.insert(k.to_string(), v.clone());
    }
    Ok(m)
}

fn get<T: std::str::FromStr>(
    f: &HashMap<String, String>,
    k: &str,
    default: Option<T>,
) -> Result<T> {
    match f.get(k) {
        Some(v) => v
            .parse()
            .ok()
            .with_context(|| format!("--{k}: cannot parse {v:?}")),
        None => default.with_context(|| format!("--{k} is required")),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: bench probe|analyze|summarize|sweep|report|hold|idle|flows|soak|anycast [--flag value]...");
    };
    let f = flags(&args[1..])?;
    match cmd.as_str() {
        "probe" => {
            let addr: std::net::SocketAddr = get(&f, "addr", None)?;
            // An IPv6 literal in Host goes in brackets (RFC 3986 §3.2.2);
            // floatlb answers a bare one with 400, as it should.
            let host = f.get("host").cloned().unwrap_or_else(|| match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
            let path = f.get("path").cloned().unwrap_or_else(|| "/".into());
            let probes = probe::run(
                addr,
                &host,
                &path,
                Duration::from_millis(get(&f, "interval-ms", Some(5))?),
                Duration::from_secs_f64(get(&f, "duration-s", Some(4.0))?),
                Duration::from_millis(get(&f, "timeout-ms", Some(1000))?),
            );
            let mut out = String::from("start,end,status,error,connect_ms\n");
            for p in &probes {
                out.push_str(&p.to_csv());
                out.push('\n');
            }
            match f.get("out") {
                Some(path) => {
                    std::fs::write(path, out).with_context(|| format!("writing {path}"))?
                }
                None => print!("{out}"),
            }
        }
        "analyze" => {
            let read = |k: &str| -> Result<Option<String>> {
                f.get(k)
                    .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {p}")))
                    .transpose()
            };
            let probes = read("probes")?
                .map(|t| parse::probes(&t))
                .unwrap_or_default();
            let replies = read("ping")?
                .map(|t| parse::ping_replies(&t))
                .unwrap_or_default();
            // The window: the probes' span, or the pings' if there are no probes.
            let from = get(
                &f,
                "from",
                probes.first().map(|p| p.start).or(replies.first().copied()),
            )?;
            let to = get(
                &f,
                "to",
                probes.last().map(|p| p.start).or(replies.last().copied()),
            )?;
            let icmp = parse::longest_gap_ms(&replies, from, to);
            let ok_starts: Vec<f64> = probes.iter().filter(|p| p.ok()).map(|p| p.start).collect();
            let http = parse::longest_gap_ms(&ok_starts, from, to);
            let failed = probes.iter().filter(|p| !p.ok()).count();
            // Successful probes in a row at the end: the service is back.
            let tail_ok = probes.iter().rev().take_while(|p| p.ok()).count();
            let mut line = format!("icmp_downtime_ms={icmp:.1}");
            if !probes.is_empty() {
                let (slowest_connect, slow) = parse::slow_connects(&probes, 200.0);
                line += &format!(
                    " http_downtime_ms={http:.1} failed_probes={failed} probes={} tail_ok={tail_ok} slowest_probe_ms={:.1} slowest_connect_ms={slowest_connect:.1} slow_connects={slow}",
                    probes.len(),
                    parse::slowest_probe_ms(&probes)
                );
                // --takeover T: the new master's first advert (Unix seconds).
                if f.contains_key("takeover") {
                    let t: f64 = get(&f, "takeover", None)?;
                    line += &format!(
                        " slowest_after_takeover_ms={:.1}",
                        parse::slowest_probe_since_ms(&probes, t)
                    );
                }
            }
            if let Some(w) = read("wrk")? {
                match parse::wrk(&w) {
                    Some(w) => {
                        line += &format!(
                            " wrk_requests={} wrk_failed={} wrk_rps={:.0}",
                            w.requests,
                            w.failed(),
                            w.requests_per_sec
                        )
                    }
                    None => line += " wrk_requests=0 wrk_failed=-1 wrk_rps=0",
                }
            }
            if let Some(a) = read("ab")? {
                // ab without -r stops at the first socket error and prints no summary.
                match parse::ab(&a) {
                    Some(a) => {
                        line += &format!(
                            " ab_requests={} ab_failed={} ab_rps={:.0}",
                            a.complete,
                            a.failed + a.non_2xx,
                            a.requests_per_sec
                        )
                    }
                    None => line += " ab_requests=0 ab_failed=-1 ab_rps=0",
                }
            }
            if let Some(t) = read("adverts")? {
                let src = f.get("master").map(String::as_str).unwrap_or("198.18.0.3");
                let times: Vec<f64> = parse::vrrp_adverts(&t, src)
                    .into_iter()
                    .map(|a| a.0)
                    .collect();
                line += &format!(
                    " adverts={} advert_max_gap_ms={:.1}",
                    times.len(),
                    parse::max_interval_ms(&times)
                );
            }
            println!("{line}");
        }
        "summarize" => {
            let path: String = get(&f, "csv", None)?;
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            if f.get("table").map(String::as_str) == Some("1") {
                // --since / --until: sessions (yyyymmddThhmmss) in that span only.
                let since = f.get("since").map(String::as_str).unwrap_or("");
                let until = f.get("until").map(String::as_str).unwrap_or("~");
                let mut rows = text.lines();
                let mut kept = format!("{}\n", rows.next().unwrap_or(""));
                for l in rows.filter(|l| {
                    let s = l.split(',').next().unwrap_or("");
                    s >= since && s <= until
                }) {
                    kept += l;
                    kept.push('\n');
                }
                print!("{}", drills::table(&kept));
                return Ok(());
            }
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
            let want: Vec<(usize, String)> = ["session", "stack", "kind", "advert"]
                .iter()
                .filter_map(|k| Some((header.iter().position(|h| h == k)?, f.get(*k)?.clone())))
                .collect();
            let rows: Vec<Vec<&str>> = lines
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|r| want.iter().all(|(i, v)| r.get(*i) == Some(&v.as_str())))
                .collect();
            println!(
                "{:<20} {:>3} {:>9} {:>9} {:>9} {:>9}",
                "figure", "n", "mean", "median", "min", "max"
            );
            for (i, name) in header.iter().enumerate() {
                let vals: Vec<f64> = rows.iter().filter_map(|r| r.get(i)?.parse().ok()).collect();
                if vals.len() != rows.len() || ["run", "advert"].contains(name) {
                    continue;
                }
                if let Some(s) = stats::summarize(&vals) {
                    println!(
                        "{:<20} {:>3} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                        name, s.n, s.mean, s.median, s.min, s.max
                    );
                }
            }
        }
        "sweep" => cmd_sweep(&f)?,
        "report" => {
            let dir = std::path::PathBuf::from(get::<String>(&f, "dir", None)?);
            // A TLS sweep from before it moved into the bench wrote its runs and idle
            // connections under other names, and no setup.tsv.
            let old_tls = !dir.join("runs.csv").exists() && dir.join("tls-runs.csv").exists();
            let (runs, idle_csv) = if old_tls {
                ("tls-runs.csv", "tls-idle.csv")
            } else {
                ("runs.csv", "idle.csv")
            };
            let text = std::fs::read_to_string(dir.join(runs))
                .with_context(|| format!("reading {runs}"))?;
            let rows: Vec<sweep::Row> = text
                .lines()
                .skip(1)
                .filter_map(if old_tls {
                    tls::old_row
                } else {
                    sweep::Row::from_csv
                })
                .collect();
            // What the sweep wrote besides its runs, when it is there.
            let mut setup: Vec<(String, String)> = std::fs::read_to_string(dir.join("setup.tsv"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let (true, Some(pct)) = (old_tls, bound_pct(&dir)) {
                setup.push((
                    report::BOUND_KEY.into(),
                    format!("every balancer's host capped at {pct}% of one core (cgroup CPU quota; bound.tsv says how often each was held back)"),
                ));
            }
            let idle: Vec<sweep::IdleRow> = std::fs::read_to_string(dir.join(idle_csv))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(sweep::IdleRow::from_csv)
                .collect();
            write_report(&dir, &rows, &idle, &setup)?;
        }
        "hold" => {
            let addr: std::net::SocketAddr = get(&f, "addr", None)?;
            let conns: u64 = get(&f, "conns", Some(10_000))?;
            let secs: f64 = get(&f, "hold-s", Some(4.0))?;
            let h2 = f.get("h2").is_some_and(|v| v == "1");
            let tls = match f.get("tls").map(String::as_str) {
                Some("1") => Some(hold::tls_config(h2)?),
                None | Some("0") => None,
                Some(v) => bail!("--tls: 1 or 0, not {v:?}"),
            };
            hold::run(addr, conns, Duration::from_secs_f64(secs), tls, h2);
        }
        "idle" => {
            let list = |k: &str, default: &str| -> Vec<String> {
                let v = f.get(k).map(String::as_str).unwrap_or(default);
                v.split(',').map(str::to_string).collect()
            };
            let kinds = list("kinds", "cleartext,tls-http1,tls-h2")
                .iter()
                .map(|k| hold::Kind::parse(k).with_context(|| format!("--kinds: {k:?}?")))
                .collect::<Result<_>>()?;
            let counts = list("conns", "2000")
                .iter()
                .map(|n| n.parse().with_context(|| format!("--conns: {n:?}?")))
                .collect::<Result<_>>()?;
            let rows = hold::idle(&hold::Idle {
                floatlb: get(&f, "floatlb", Some("target/release/floatlb".into()))?,
                balancers: list("balancers", "floatlb,nginx,haproxy"),
                kinds,
                counts,
                settle: std::time::Duration::from_secs(get(&f, "settle-s", Some(15))?),
            })?;
            let md = hold::idle_markdown(&rows);
            print!("{md}");
            if let Some(out) = f.get("out") {
                let out = std::path::Path::new(out);
                std::fs::create_dir_all(out)?;
                let mut csv = format!("{}\n", hold::IdleRow::CSV_HEAD);
                for r in &rows {
                    csv += &format!("{}\n", r.to_csv());
                }
                std::fs::write(out.join("idle-kinds.csv"), csv)?;
                std::fs::write(out.join("idle-kinds.md"), md)?;
            }
        }
        "flows" => {
            let addr: std::net::SocketAddr = get(&f, "addr", None)?;
            let conns: u64 = get(&f, "conns", Some(60))?;
            let every: u64 = get(&f, "interval-ms", Some(20))?;
            let secs: f64 = get(&f, "duration-s", Some(6.0))?;
            if conns > 5000 || secs > 600.0 {
                bail!("--conns at most 5000, --duration-s at most 600");
            }
            let flows = flows::run(
                addr,
                conns,
                Duration::from_millis(every),
                Duration::from_secs_f64(secs),
            );
            println!("port,requests,failed_ms,error,closed_by_server");
            for fl in &flows {
                let (at, why) = match &fl.failed {
                    Some((at, why)) => (format!("{at:.1}"), why.replace(',', ";")),
                    None => (String::new(), String::new()),
                };
                println!("{},{},{at},{why},{}", fl.port, fl.ok, u8::from(fl.closed));
            }
        }
        "soak" => {
            let path: String = get(&f, "csv", None)?;
            let load_s: f64 = get(&f, "load-s", None)?;
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            print!("{}", soak::lines(&text, load_s));
        }
        "anycast" => {
            let read = |k: &str| -> Result<String> {
                let p: String = get(&f, k, None)?;
                std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))
            };
            let served = anycast::served(
                &anycast::counters(&get::<String>(&f, "before", None)?),
                &anycast::counters(&get::<String>(&f, "after", None)?),
            );
            let shares = anycast::shares(&served);
            let fl = anycast::flows(
                &read("owners")?,
                &read("flows")?,
                &get::<String>(&f, "gone", None)?,
            );
            let probes = parse::probes(&read("probes")?);
            println!(
                "shares={} max_share_dev_pct={:.1} flows={} flows_on_gone={} flows_on_gone_failed={} flows_on_stayed_failed={} failed_probe_span_ms={:.0}",
                shares.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(","),
                anycast::max_share_dev_pct(&shares),
                fl.flows,
                fl.on_gone,
                fl.on_gone_failed,
                fl.on_stayed_failed,
                anycast::failed_probe_span_ms(&probes)
            );
        }
        other => {
            bail!("unknown command {other:?}: use probe, analyze, summarize, sweep, report, hold, idle, flows, soak or anycast")
        }
    }
    Ok(())
}

/// A comma-separated list of counts; zeros are dropped, so `--wrk-c 0` means no such points.
fn list(f: &HashMap<String, String>, k: &str, default: &[u64]) -> Result<Vec<u64>> {
    let v: Vec<u64> = match f.get(k) {
        None => default.to_vec(),
        Some(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .with_context(|| format!("--{k}: {x:?} is not a number"))
            })
            .collect::<Result<_>>()?,
    };
    Ok(v.into_iter().filter(|&x| x > 0).collect())
}

fn cmd_sweep(f: &HashMap<String, String>) -> Result<()> {
    let quick = f.get("quick").is_some_and(|v| v == "1");
    // The full sweep: ab -n 1000..10000 at -c 10/100/1000 with and without -k, then wrk up to
    // 9000 connections (the LBs run with 20000 descriptors, 9000 maxconn); then POST with
    // 1 KiB and 64 KiB bodies, keep-alive: wrk -c 50 and ab -n 10000 -c 100 -k. --quick: the
    // smallest sweep that still exercises every part (POST with the 1 KiB body only).
    // With --bound, ab's points are longer: at a capped balancer's 3-10k req/s, 1000 or 2000
    // requests are over in a few of the cap's 100 ms periods, before the quota holds the
    // balancer back (report::HELD_SECONDS).
    let bound = f.contains_key("bound");
    let (ab_n, ab_c, wrk_c, secs, rounds, idle) = if quick {
        (vec![1000], vec![10], vec![50], 1, 1, 200)
    } else {
        (
            if bound {
                vec![10000, 20000]
            } else {
                vec![1000, 2000, 5000, 10000]
            },
            vec![10, 100, 1000],
            vec![50, 1000, 9000],
            5,
            3,
            // Below the balancers' maxconn (9000): past it, connections wait unaccepted
            // until the held ones hit the 60 s idle timeout.
            8_000,
        )
    };
    let (post_bytes, post_wrk_c, post_ab_n, post_ab_c) = if quick {
        (vec![1024], vec![50], vec![1000], vec![10])
    } else {
        (
            vec![1024, 65536],
            vec![50],
            vec![if bound { 20000 } else { 10000 }],
            vec![100],
        )
    };
    let ab_n = list(f, "ab-n", &ab_n)?;
    let ab_c = list(f, "ab-c", &ab_c)?;
    let wrk_c = list(f, "wrk-c", &wrk_c)?;
    let secs: u64 = get(f, "wrk-duration", Some(secs))?;
    // --post-bytes 0: no POST points.
    let post_bytes = list(f, "post-bytes", &post_bytes)?;
    let post_wrk_c = list(f, "post-wrk-c", &post_wrk_c)?;
    let post_ab_n = list(f, "post-ab-n", &post_ab_n)?;
    let post_ab_c = list(f, "post-ab-c", &post_ab_c)?;
    // --tls 1: the TLS loads alone, each balancer terminating TLS on port 443.
    let tls = f.get("tls").is_some_and(|v| v == "1");
    let loads = if tls {
        sweep::tls_plan(secs)
    } else {
        let mut l = sweep::plan(&ab_n, &ab_c, &wrk_c, secs);
        l.extend(sweep::post_plan(
            &post_bytes,
            &post_ab_n,
            &post_ab_c,
            &post_wrk_c,
            secs,
        ));
        l
    };
    let out = std::path::PathBuf::from(get::<String>(f, "out", None)?);
    let mut setup = vec![
        (
            "date".to_string(),
            command_line(&["date", "-u", "+%F %H:%M UTC"]),
        ),
        (
            "machine".into(),
            format!(
                "{} cores, {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                command_line(&["uname", "-r"])
            ),
        ),
        (
            "web servers".into(),
            format!(
                "{} (nginx, {} B page)",
                f.get("webs").map_or("?", String::as_str),
                f.get("page-size").map_or("?", String::as_str)
            ),
        ),
        (
            "LB workers".into(),
            f.get("workers").cloned().unwrap_or_else(|| "1".into()),
        ),
        (
            "versions".into(),
            format!(
                "floatlb {}; {}; {}",
                env!("CARGO_PKG_VERSION"),
                command_line(&["haproxy", "-v"])
                    .lines()
                    .next()
                    .unwrap_or(""),
                command_line(&["nginx", "-v"])
            ),
        ),
    ];
    setup.push((
        "backend keep-alive".into(),
        "floatlb's pool, HAProxy `http-reuse always`, nginx `keepalive 512`: idle backend connections are shared by all clients".into(),
    ));
    if loads.iter().any(|l| l.body() > 0) {
        setup.push((
            "POST points".into(),
            format!(
                "keep-alive, `Content-Type: application/octet-stream`, to `{}` (wrk: a Lua script sets `wrk.method` and `wrk.body`; ab: `-p FILE -k`); the web servers read the whole body (nginx `mirror_request_body`) before answering 200 with 3 bytes; floatlb and HAProxy stream the body to the backend, nginx buffers it first (in memory: `client_body_buffer_size 128k`)",
                sweep::POST_PATH
            ),
        ));
    }
    if let Some(pct) = f.get("bound") {
        setup.push((
            report::BOUND_KEY.into(),
            format!(
                "every balancer's host (all its processes) capped at {pct}% of one core by a cgroup v1 CPU quota (`cpu.cfs_quota_us` over a 100 ms period), so the balancer saturates before the client and web servers do and req/s follows its own CPU per request; the bare web server (`single`) is not capped"
            ),
        ));
    }
    if tls {
        setup.push((
            "TLS".into(),
            "one ECDSA P-256 certificate for all; floatlb: rustls 0.23 with aws-lc-rs, HAProxy 2.6 and nginx 1.22: OpenSSL 3.0; TLS 1.3 offered by every client and server here; loads: HTTPS keep-alive (`wrk -t1 -c50`), a new connection per request (`wrk -H 'Connection: close'`, which resumes its session), full handshakes (8 `openssl s_time -new` at once), HTTP/2 (`h2load -c50 -m10`); idle connections: `bench hold --tls 1`, HTTP/1.1 by ALPN".into(),
        ));
    }
    if let Some(v) = f.get("routes") {
        setup.push(("routes".into(), v.clone()));
    }
    if let Some(v) = f.get("backends") {
        setup.push(("backends".into(), v.clone()));
    }
    setup.push(("LB limits".into(), "20000 descriptors each (prlimit), maxconn 9000 (floatlb, HAProxy), worker_connections 18000 (nginx: counts both sides)".into()));
    let sw = sweep::Sweep {
        prefix: get(f, "prefix", None)?,
        client: get(f, "client", Some("client".to_string()))?,
        webs: get::<String>(f, "webs", None)?
            .split(',')
            .map(String::from)
            .collect(),
        scenarios: sweep::parse_scenarios(&get::<String>(f, "scenarios", None)?)?,
        loads,
        rounds: get(f, "rounds", Some(rounds))?,
        out: out.clone(),
        idle_conns: get(
            f,
            "idle-conns",
            Some(if tls && !quick { 2000 } else { idle }),
        )?,
        tls,
        setup,
    };
    let setup_tsv: String = sw
        .setup
        .iter()
        .map(|(k, v)| format!("{k}\t{v}\n"))
        .collect();
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("setup.tsv"), setup_tsv)?;
    // Idle-connection memory first, on processes no load has grown yet: after a burst, an
    // allocator's (or HAProxy's pools') retained memory would absorb the new connections.
    let idle = if sw.idle_conns > 0 {
        sw.idle_memory()?
    } else {
        Vec::new()
    };
    let rows = sw.run()?;
    write_report(&out, &rows, &idle, &sw.setup)?;
    Ok(())
}

/// The CPU cap of a bound sweep from the `bound.tsv` the lab writes beside it.
fn bound_pct(dir: &std::path::Path) -> Option<String> {
    let t = std::fs::read_to_string(dir.join("bound.tsv")).ok()?;
    let mut lines = t.lines();
    let col = lines.next()?.split('\t').position(|h| h == "pct")?;
    Some(lines.next()?.split('\t').nth(col)?.to_string())
}

fn command_line(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s += &String::from_utf8_lossy(&o.stderr);
            s.trim().to_string()
        })
        .unwrap_or_default()
}

fn write_report(
    dir: &std::path::Path,
    rows: &[sweep::Row],
    idle: &[sweep::IdleRow],
    setup: &[(String, String)],
) -> Result<()> {
    // TLS points have a summary of their own (a TLS sweep has no other points).
    let (tls_rows, rows): (Vec<sweep::Row>, Vec<sweep::Row>) =
        rows.iter().cloned().partition(tls::is_tls);
    if !tls_rows.is_empty() {
        std::fs::write(
            dir.join("summary.md"),
            tls::markdown(&tls_rows, idle, setup),
        )?;
        print!("{}", tls::lines(&tls_rows));
        println!("bench: results in {}", dir.display());
        return Ok(());
    }
    let rows = &rows[..];
    let plots = match plot::all(rows, dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: no plots: {e:#}");
            Vec::new()
        }
    };
    let mut md = report::markdown(rows, idle, setup, &plots);
    if routes::present(rows) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        md += &routes::markdown(
            rows,
            read("routes-memory.tsv").as_deref(),
            read("routes-reload.tsv").as_deref(),
        );
    }
    if backends::present(rows) {
        md += &backends::markdown(rows);
    }
    std::fs::write(dir.join("summary.md"), &md)?;
    if setup.iter().any(|(k, _)| k == report::BOUND_KEY) {
        print!("{}", report::bound_lines(rows));
    }
    if routes::present(rows) {
        print!("{}", routes::lines(rows));
    }
    if backends::present(rows) {
        print!("{}", backends::lines(rows));
    }
    println!("{}", report::ratio_lines(rows));
    println!("bench: results in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_drop_zeros_and_reject_words() {
        let f: HashMap<String, String> = [
            ("post-bytes", "1024, 0,65536"),
            ("wrk-c", "0"),
            ("ab-c", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(list(&f, "post-bytes", &[1]).unwrap(), [1024, 65536]);
        assert!(list(&f, "wrk-c", &[50]).unwrap().is_empty());
        assert_eq!(list(&f, "ab-n", &[1000]).unwrap(), [1000]);
        assert!(list(&f, "ab-c", &[10]).is_err());
    }
}
