//! `bench`: the measuring half of floatlb's lab.
//!
//! - `bench probe`: HTTP probe every N ms on fresh connections, CSV out.
//! - `bench analyze`: downtime and losses from `ping -D`, probe CSV, wrk/ab output and
//!   the largest gap between a master's VRRP adverts in `tcpdump -tt` output.
//! - `bench summarize`: mean/median/min/max over repeated drill rows of a CSV.
//!
//! The lab scripts in `vm-lab/` run these inside the client namespace.

mod parse;
mod probe;
mod stats;

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
        bail!("usage: bench probe|analyze|summarize [--flag value]...");
    };
    let f = flags(&args[1..])?;
    match cmd.as_str() {
        "probe" => {
            let addr: std::net::SocketAddr = get(&f, "addr", None)?;
            let host = f
                .get("host")
                .cloned()
                .unwrap_or_else(|| addr.ip().to_string());
            let path = f.get("path").cloned().unwrap_or_else(|| "/".into());
            let probes = probe::run(
                addr,
                &host,
                &path,
                Duration::from_millis(get(&f, "interval-ms", Some(5))?),
                Duration::from_secs_f64(get(&f, "duration-s", Some(4.0))?),
                Duration::from_millis(get(&f, "timeout-ms", Some(1000))?),
            );
            let mut out = String::from("start,end,status,error\n");
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
                line += &format!(
                    " http_downtime_ms={http:.1} failed_probes={failed} probes={} tail_ok={tail_ok}",
                    probes.len()
                );
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
        other => bail!("unknown command {other:?}: use probe, analyze or summarize"),
    }
    Ok(())
}
