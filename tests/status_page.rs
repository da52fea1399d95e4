//! The admin status page in a real browser (Debian's chromium, driven over
//! WebDriver by chromedriver) on a node in the namespace lab: it renders and
//! updates live as a backend goes down and the VRRP role follows. Needs root
//! (see `support::netns::netns_available`) and chromium.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::netns::{http_from, netns_available, Lab};
use support::vrrp_lab::{serial, KillOnDrop, ADMIN, V4};

/// A minimal WebDriver client: one HTTP/1.1 request per call to chromedriver
/// on 127.0.0.1 (inside the host's namespace), returning the answer's body.
/// chromedriver keeps the connection open: the answer ends by its framing.
fn webdriver(lab: &Lab, host: &str, port: u16, method: &str, path: &str, body: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    lab.in_host(host, move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        support::read_answer(&mut s)
            .map(|a| a.text())
            .unwrap_or_default()
    })
}

/// The string value of `"key":"..."` in a JSON text (enough for WebDriver replies).
fn json_field(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_string())
}

#[test]
fn status_page_renders_and_updates_live_in_chromium() {
    if !netns_available("status_page_renders_and_updates_live_in_chromium") {
        return;
    }
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    if let Some(missing) = browser.iter().find(|p| !std::path::Path::new(p).exists()) {
        if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{missing} is missing: run vm-lab/install-deps (FLOATLB_REQUIRE_NETNS=1)");
        }
        eprintln!("SKIPPED status_page_renders_and_updates_live_in_chromium: {missing} is missing");
        return;
    }
    let _g = serial();
    let (lab, web) = V4.lab();
    let _n1 = V4.start_node(&lab, "lb1", &[web.addr], &V4.table(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        V4.has_vip(&lab, "lb1")
    });
    let port = 9515;
    let _driver = KillOnDrop(
        lab.exec("lb1")
            .args(["/usr/bin/chromedriver", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    lab.wait_for("chromedriver", Duration::from_secs(10), || {
        lab.in_host("lb1", move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    });
    let caps = r#"{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--disable-background-networking","--disable-component-update","--window-size=1000,700"]}}}}"#;
    let reply = webdriver(&lab, "lb1", port, "POST", "/session", caps);
    let session = json_field(&reply, "sessionId").unwrap_or_else(|| panic!("no session: {reply}"));
    let base = format!("/session/{session}");
    webdriver(
        &lab,
        "lb1",
        port,
        "POST",
        &format!("{base}/url"),
        &format!(r#"{{"url":"http://{ADMIN}/status"}}"#),
    );
    let source = || webdriver(&lab, "lb1", port, "GET", &format!("{base}/source"), "");
    let wait_source = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let start = std::time::Instant::now();
        loop {
            let s = source();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "page never showed {what}: status.json {:?}\n{s}",
                http_from(&lab, "lb1", ADMIN.parse().unwrap(), "/status.json")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_source("web1 UP and the MASTER role", &|s| {
        s.contains(r#"data-backend=\"web1\""#)
            && s.contains(r#"class=\"health UP\""#)
            && s.contains(r#"class=\"role MASTER\""#)
    });
    // The backend's host drops off the network: the same page (no reload)
    // shows it DOWN once health checks fail.
    lab.link("web", false);
    // No healthy backend and no track-weight: the instance goes to FAULT.
    wait_source("web1 DOWN and the FAULT role", &|s| {
        s.contains(r#"class=\"health DOWN\""#) && s.contains(r#"class=\"role FAULT\""#)
    });
    // Keep the latest screenshot beside the bench results.
    let shot = webdriver(&lab, "lb1", port, "GET", &format!("{base}/screenshot"), "");
    let b64 = json_field(&shot, "value").expect("screenshot");
    let mut dec = std::process::Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        dec.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    }
    let png = dec.wait_with_output().unwrap().stdout;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    // Into the build's scratch folder, not the checkout: the tests leave the tree as they
    // found it. `bench/results/status-page.png` is a copy of one taken this way.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(dir);
    std::fs::write(dir.join("status-page.png"), png).unwrap();
    webdriver(&lab, "lb1", port, "DELETE", &base, "");
}
