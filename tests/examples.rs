//! The example configurations: `proxy.toml` in the source tree and
//! `packaging/proxy.toml`, the conffile the Debian package installs. They are
//! one example: both load, and the packaged one is the source tree's with its
//! `[[vrrp]]` table commented out (and its own header), so they cannot drift.

use std::path::PathBuf;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The file from its `[listen]` table on: everything but the header comment.
fn body(text: &str) -> &str {
    let at = text.find("\n[listen]\n").expect("a [listen] table");
    &text[at + 1..]
}

/// `text` with each line of its `[[vrrp]]` table that is not already a
/// comment or blank commented out, as the package ships it.
fn vrrp_off(text: &str) -> String {
    let mut out = String::new();
    let mut in_vrrp = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_vrrp = line == "[[vrrp]]";
        }
        let code = !line.trim().is_empty() && !line.trim_start().starts_with('#');
        if in_vrrp && code {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn packaged_example_is_the_source_example_with_vrrp_off() {
    let source = read("proxy.toml");
    let packaged = read("packaging/proxy.toml");
    assert!(body(&source).contains("\n[[vrrp]]\n"));
    assert_eq!(
        body(&packaged),
        vrrp_off(body(&source)),
        "packaging/proxy.toml has drifted from proxy.toml: make it the same text from [listen] \
         on, with the [[vrrp]] table commented out"
    );
}

#[test]
fn both_examples_load() {
    let packaged_path = root().join("packaging/proxy.toml");
    let packaged = floatlb::config::load(&packaged_path)
        .unwrap_or_else(|e| panic!("packaging/proxy.toml:\n{e}"));
    // Installing the package must not move an address on a NIC.
    assert!(packaged.vrrp.is_empty());

    // `config::load` would check that the example's interface, eth0, exists on
    // this host (`Vrrp::problems`), and a test host need not have one (a
    // container, predictable interface names): parse the same text on lo.
    let text = read("proxy.toml");
    assert_eq!(text.matches("interface = \"eth0\"").count(), 1);
    let on_lo = text.replace("interface = \"eth0\"", "interface = \"lo\"");
    let source = floatlb::config::parse(&root().join("proxy.toml"), &on_lo)
        .unwrap_or_else(|e| panic!("proxy.toml:\n{e}"));
    assert_eq!(source.vrrp.len(), 1);
    let v = &source.vrrp[0];
    assert_eq!((v.vrid, v.priority), (51, 150));
    assert_eq!(v.advert_interval, Duration::from_millis(100));
    assert_eq!(v.virtual_addresses, ["198.18.0.100/24"]);

    assert_eq!(source.backends.len(), 3);
    assert_eq!(source.backends, packaged.backends);
    assert_eq!(source.admin, packaged.admin);
    assert_eq!(source.listen.address, packaged.listen.address);
}
