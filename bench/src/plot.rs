//! PNG plots of a sweep (plotters, bitmap backend; text drawn with a system TrueType font).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use crate::report::{group, median, scenario_rank};
use crate::sweep::Row;

/// One small chart: lines of (x, y) points, one per scenario.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a TrueType font as "sans-serif" once per process.
fn font() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONTS
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or("no TrueType font found (apt-get install fonts-dejavu-core)")?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| e.to_string())?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path}: not a font plotters can use"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn color(name: &str) -> RGBColor {
    match name {
        "single" => RGBColor(120, 120, 120),
        "floatlb-rr" => RGBColor(214, 39, 40),
        "floatlb-lc" => RGBColor(255, 127, 14),
        "baseline-rr" => RGBColor(140, 86, 75),
        "haproxy-rr" => RGBColor(31, 119, 180),
        "haproxy-lc" => RGBColor(23, 190, 207),
        "nginx-rr" => RGBColor(44, 160, 44),
        "nginx-lc" => RGBColor(148, 103, 189),
        _ => RGBColor(0, 0, 0),
    }
}

pub fn grid(path: &Path, title: &str, cols: usize, panels: &[Panel]) -> Result<()> {
    font()?;
    let rows = panels.len().div_ceil(cols).max(1);
    let (w, h) = (420 * cols as u32, 320 * rows as u32 + 40);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22))?;
    let areas = body.split_evenly((rows, cols));
    for (area, p) in areas.iter().zip(panels) {
        draw(area, p).with_context(|| format!("plot {}", p.title))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>, p: &Panel) -> Result<()> {
    let pts = p.series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x0 == x1 {
        (x0, x1) = (x0 * 0.9, x1 * 1.1 + 1.0);
    }
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let mut b = ChartBuilder::on(area);
    b.caption(&p.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(56);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut c = $chart;
            c.configure_mesh()
                .x_labels(6)
                .y_labels(8)
                .x_label_formatter(&|v| short(*v))
                .y_label_formatter(&|v| short(*v))
                .x_desc(&p.x_label)
                .y_desc(&p.y_label)
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()?;
            for (name, pts) in &p.series {
                let col = color(name);
                c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], col.stroke_width(2))
                    });
                c.draw_series(pts.iter().map(|&pt| Circle::new(pt, 3, col.filled())))?;
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 11))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }};
    }
    if p.log_x {
        finish!(b.build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), 0.0..y1)?);
    } else {
        let pad = (x1 - x0) * 0.05;
        finish!(b.build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y1)?);
    }
    Ok(())
}

/// Axis numbers without noise: "10000", "2.5", "0.25".
fn short(v: f64) -> String {
    if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Series per scenario of `f` against `x` over the rows matching `keep`.
fn series(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    x: impl Fn(&Row) -> f64,
    f: impl Fn(&Row) -> f64 + Copy,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let kept: Vec<Row> = rows.iter().filter(|r| keep(r)).cloned().collect();
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (_, by) in group(&kept) {
        for (sc, v) in by {
            let pt = (x(v[0]), median(&v, f));
            match out.iter_mut().find(|(s, _)| *s == sc) {
                Some((_, p)) => p.push(pt),
                None => out.push((sc, vec![pt])),
            }
        }
    }
    for (_, p) in &mut out {
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.sort_by_key(|(s, _)| scenario_rank(s));
    out
}

/// Writes the sweep's plots into `dir`; returns their file names. The ab and wrk plots show
/// the GET points; `post.png` the POST points against their body size.
pub fn all(rows: &[Row], dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let (post, get): (Vec<Row>, Vec<Row>) = rows.iter().cloned().partition(Row::is_post);
    let rows = &get[..];
    let mut ab_c: Vec<u64> = rows
        .iter()
        .filter(|r| r.tool == "ab")
        .map(|r| r.concurrency)
        .collect();
    ab_c.sort_unstable();
    ab_c.dedup();
    type Metric = (&'static str, &'static str, fn(&Row) -> f64);
    let metrics: [Metric; 3] = [
        ("ab-rps.png", "requests/s", |r| r.rps),
        ("ab-cpu.png", "LB CPU µs per request", |r| {
            r.lb_cpu_us_per_req
        }),
        ("ab-lost.png", "requests lost", |r| r.lost as f64),
    ];
    if !ab_c.is_empty() {
        for (file, what, f) in metrics {
            let mut panels = Vec::new();
            for keepalive in [false, true] {
                for &c in &ab_c {
                    let s = series(
                        rows,
                        |r| r.tool == "ab" && r.keepalive == keepalive && r.concurrency == c,
                        |r| r.requested as f64,
                        f,
                    );
                    panels.push(Panel {
                        title: format!("ab -c {c}{}", if keepalive { " -k" } else { "" }),
                        x_label: "requests (-n)".into(),
                        y_label: what.into(),
                        log_x: false,
                        series: s,
                    });
                }
            }
            grid(
                &dir.join(file),
                &format!("ab: {what} vs load (median over rounds)"),
                ab_c.len(),
                &panels,
            )?;
            written.push(file.to_string());
        }
    }
    let wrk: Vec<Row> = rows.iter().filter(|r| r.tool == "wrk").cloned().collect();
    if !wrk.is_empty() {
        let conns = |r: &Row| r.concurrency as f64;
        let all = |_: &Row| true;
        let many = wrk
            .iter()
            .map(|r| r.concurrency)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 2;
        let panels = vec![
            Panel {
                title: "requests/s".into(),
                x_label: "connections".into(),
                y_label: "req/s".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.rps),
            },
            Panel {
                title: "LB CPU per request".into(),
                x_label: "connections".into(),
                y_label: "µs".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.lb_cpu_us_per_req),
            },
            Panel {
                title: "LB host CPU".into(),
                x_label: "connections".into(),
                y_label: "% of one core".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.cpu_lb_pct),
            },
            Panel {
                title: "p99 latency".into(),
                x_label: "connections".into(),
                y_label: "ms".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.p99_ms),
            },
            Panel {
                title: "requests lost".into(),
                x_label: "connections".into(),
                y_label: "requests".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.lost as f64),
            },
            Panel {
                title: "LB peak RSS".into(),
                x_label: "connections".into(),
                y_label: "MiB".into(),
                log_x: many,
                series: series(&wrk, all, conns, |r| r.lb_peak_rss_kib as f64 / 1024.0),
            },
        ];
        grid(
            &dir.join("wrk.png"),
            "wrk -t1: figures vs connections (median over rounds)",
            3,
            &panels,
        )?;
        written.push("wrk.png".into());
        // Latency percentiles per connection count.
        let mut cs: Vec<u64> = wrk.iter().map(|r| r.concurrency).collect();
        cs.sort_unstable();
        cs.dedup();
        let mut panels = Vec::new();
        for c in cs {
            let at: Vec<Row> = wrk.iter().filter(|r| r.concurrency == c).cloned().collect();
            let mut s = Vec::new();
            for (pct, f) in [
                (50.0, (|r: &Row| r.p50_ms) as fn(&Row) -> f64),
                (90.0, |r| r.p90_ms),
                (99.0, |r| r.p99_ms),
            ] {
                for (sc, pts) in series(&at, |_| true, |_| pct, f) {
                    match s
                        .iter_mut()
                        .find(|(n, _): &&mut (String, Vec<(f64, f64)>)| *n == sc)
                    {
                        Some((_, p)) => p.extend(pts),
                        None => s.push((sc, pts)),
                    }
                }
            }
            panels.push(Panel {
                title: format!("wrk -c {c}"),
                x_label: "percentile".into(),
                y_label: "latency ms".into(),
                log_x: false,
                series: s,
            });
        }
        let cols = panels.len().min(3);
        grid(
            &dir.join("latency.png"),
            "wrk latency percentiles (median over rounds)",
            cols,
            &panels,
        )?;
        written.push("latency.png".into());
    }
    if !post.is_empty() {
        post_plot(&post, &dir.join("post.png"))?;
        written.push("post.png".into());
    }
    Ok(written)
}

/// POST points: one column per tool and concurrency, req/s, LB CPU per request and p99
/// against the body size.
fn post_plot(post: &[Row], path: &Path) -> Result<()> {
    let mut kinds: Vec<(String, u64)> = post
        .iter()
        .map(|r| (r.tool.clone(), r.concurrency))
        .collect();
    kinds.sort();
    kinds.dedup();
    let sizes = post
        .iter()
        .map(|r| r.body_bytes)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    type Metric = (&'static str, &'static str, fn(&Row) -> f64);
    let metrics: [Metric; 3] = [
        ("requests/s", "req/s", |r| r.rps),
        ("LB CPU per request", "µs", |r| r.lb_cpu_us_per_req),
        ("p99 latency", "ms", |r| r.p99_ms),
    ];
    let mut panels = Vec::new();
    for (title, unit, f) in metrics {
        for (tool, c) in &kinds {
            panels.push(Panel {
                title: format!(
                    "{tool} -c {c}{} POST: {title}",
                    if tool == "ab" { " -k" } else { "" }
                ),
                x_label: "body KiB".into(),
                y_label: unit.into(),
                log_x: sizes > 2,
                series: series(
                    post,
                    |r| r.tool == *tool && r.concurrency == *c,
                    |r| r.body_bytes as f64 / 1024.0,
                    f,
                ),
            });
        }
    }
    grid(
        path,
        "POST, keep-alive: figures vs request body size (median over rounds)",
        kinds.len(),
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_as_png() {
        if font().is_err() {
            eprintln!("SKIPPED plots_are_written_as_png: no TrueType font (fonts-dejavu-core)");
            return;
        }
        let mut rows = Vec::new();
        for (sc, k) in [("floatlb-rr", 1.0), ("haproxy-rr", 1.3)] {
            for n in [1000u64, 5000] {
                for keepalive in [false, true] {
                    rows.push(Row {
                        scenario: sc.into(),
                        tool: "ab".into(),
                        requested: n,
                        concurrency: 10,
                        keepalive,
                        label: format!("ab -n {n} -c 10{}", if keepalive { " -k" } else { "" }),
                        rps: 5000.0 * k,
                        lb_cpu_us_per_req: 30.0 / k,
                        round: 1,
                        ..Default::default()
                    });
                }
            }
            for c in [50u64, 1000] {
                rows.push(Row {
                    scenario: sc.into(),
                    tool: "wrk".into(),
                    concurrency: c,
                    keepalive: true,
                    label: format!("wrk -c {c}"),
                    rps: 9000.0 * k,
                    p50_ms: 1.0,
                    p90_ms: 2.0,
                    p99_ms: 3.0 * k,
                    round: 1,
                    ..Default::default()
                });
            }
        }
        let dir = tempdir();
        let files = all(&rows, &dir).unwrap();
        assert_eq!(
            files,
            [
                "ab-rps.png",
                "ab-cpu.png",
                "ab-lost.png",
                "wrk.png",
                "latency.png"
            ]
        );
        // POST points get a plot of their own and stay out of the GET ones.
        for sc in ["floatlb-rr", "haproxy-rr"] {
            for body in [1024u64, 65536] {
                for (tool, c) in [("wrk", 50u64), ("ab", 100)] {
                    rows.push(Row {
                        scenario: sc.into(),
                        tool: tool.into(),
                        concurrency: c,
                        keepalive: true,
                        label: format!("{tool} -c {c} POST {body}"),
                        method: "POST".into(),
                        body_bytes: body,
                        rps: 1e9 / body as f64,
                        lb_cpu_us_per_req: body as f64 / 1000.0,
                        round: 1,
                        ..Default::default()
                    });
                }
            }
        }
        let files = all(&rows, &dir).unwrap();
        assert_eq!(files.last().map(String::as_str), Some("post.png"));
        assert_eq!(files.len(), 6);
        for f in files {
            let b = std::fs::read(dir.join(&f)).unwrap();
            assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{f}");
            assert!(b.len() > 5000, "{f}: {} bytes", b.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
