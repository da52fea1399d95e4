//! The Prometheus alert rules (grafana/alerts.yml) as Prometheus's own tool
//! sees them: `promtool check rules` and `promtool test rules` on the synthetic
//! series of grafana/alerts.test.yml, where each rule fires once and stays
//! quiet once. Needs Debian's `prometheus` package (vm-lab/install-deps);
//! skipped without it, failing instead under FLOATLB_REQUIRE_NETNS=1 (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn grafana() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

/// Whether promtool is installed; prints why not, or panics under CI.
fn promtool_available(test: &str) -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{test}: promtool is missing (install Debian's prometheus: vm-lab/install-deps)");
    }
    eprintln!("SKIPPED {test}: promtool is missing (Debian package prometheus)");
    false
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `- alert: Name` entries of a rule file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn promtool_checks_the_alert_rules() {
    if !promtool_available("promtool_checks_the_alert_rules") {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], &grafana());
    assert!(ok, "promtool check rules:\n{out}");
    let rules = std::fs::read_to_string(grafana().join("alerts.yml")).unwrap();
    let names = alert_names(&rules);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );
    // What issue 24 asks for, by name.
    for want in [
        "FloatlbSplitBrain",
        "FloatlbNoMaster",
        "FloatlbVrrpTransition",
        "FloatlbVrrpFault",
        "FloatlbBackendDown",
        "FloatlbAllBackendsDown",
        "FloatlbHigh5xxRatio",
        "FloatlbFileDescriptorsNearLimit",
        "FloatlbCertificateExpiresSoon",
        // Issue 30: backend names.
        "FloatlbBackendNameUnresolvable",
        "FloatlbBackendNameEmpty",
    ] {
        assert!(names.iter().any(|n| n == want), "no rule {want}");
    }
    // Every rule tells a human what happened and what to do.
    let blocks: Vec<&str> = rules.split("- alert:").skip(1).collect();
    for b in blocks {
        let name = b.lines().next().unwrap_or("").trim();
        assert!(b.contains("summary:"), "{name} has no summary annotation");
        assert!(
            b.contains("description:"),
            "{name} has no description annotation"
        );
        assert!(b.contains("severity:"), "{name} has no severity label");
    }
}

#[test]
fn promtool_unit_tests_fire_and_stay_quiet_for_every_rule() {
    if !promtool_available("promtool_unit_tests_fire_and_stay_quiet_for_every_rule") {
        return;
    }
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yml"], &grafana());
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Each rule has a case where it fires (non-empty exp_alerts) and one where it does not.
    let rules = std::fs::read_to_string(grafana().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(grafana().join("alerts.test.yml")).unwrap();
    for name in alert_names(&rules) {
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|c| c.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{name}: no case where it stays quiet"
        );
        assert!(
            cases.iter().any(|c| c.contains("- exp_labels:")),
            "{name}: no case where it fires"
        );
    }
}

/// The unit tests have teeth: the same tests against a rule file whose split-brain
/// rule needs three masters instead of two fail.
#[test]
fn promtool_unit_tests_catch_a_broken_rule() {
    if !promtool_available("promtool_unit_tests_catch_a_broken_rule") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(grafana().join("alerts.yml")).unwrap();
    let good = "count by (job, vrid) (floatlb_vrrp_master == 1) > 1";
    assert!(rules.contains(good));
    let broken = rules.replace(good, "count by (job, vrid) (floatlb_vrrp_master == 1) > 2");
    std::fs::write(dir.path().join("alerts.yml"), broken).unwrap();
    std::fs::copy(
        grafana().join("alerts.test.yml"),
        dir.path().join("alerts.test.yml"),
    )
    .unwrap();
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yml"], dir.path());
    assert!(!ok, "promtool passed a broken split-brain rule:\n{out}");
    assert!(out.contains("FloatlbSplitBrain"), "{out}");
}
