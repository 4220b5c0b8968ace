//! `shifter init` in network namespaces the test creates: the rules it installs with iptables-nft
//! and iptables-legacy, that a second run leaves one set, that `--dry-run` changes nothing, and
//! that without NET_ADMIN it says which capability to add.

use shifter_tests::netns::Netns;
use shifter_tests::shifter_bin;

fn shifter() -> String {
    shifter_bin().to_string_lossy().into_owned()
}

/// The nat table as `mode`'s iptables-save prints it, without its comments and counters.
fn nat_rules(ns: &Netns, mode: &str) -> Vec<String> {
    ns.exec_ok(&[&format!("iptables-{mode}-save"), "-t", "nat"])
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with(":SHIFTER"))
        .map(str::to_string)
        .collect()
}

fn count(rules: &[String], line: &str) -> usize {
    rules.iter().filter(|r| r.as_str() == line).count()
}

#[test]
fn init_installs_one_set_of_rules_with_nft_and_with_legacy() {
    for mode in ["nft", "legacy"] {
        let ns = Netns::new("init");
        let bin = shifter();
        let args = [bin.as_str(), "init", "--iptables", mode, "--skip-outbound-ports", "5432,6000-6010"];
        let said = ns.exec_ok(&args);
        assert!(said.contains(&format!("iptables-{mode}")), "{said}");
        let first = nat_rules(&ns, mode);
        for line in [
            "-A PREROUTING -p tcp -j SHIFTER_INBOUND",
            "-A OUTPUT -p tcp -j SHIFTER_OUTBOUND",
            "-A SHIFTER_INBOUND -p tcp -m multiport --dports 4191 -j RETURN",
            "-A SHIFTER_INBOUND -p tcp -j REDIRECT --to-ports 4143",
            "-A SHIFTER_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
            "-A SHIFTER_OUTBOUND -o lo -j RETURN",
            "-A SHIFTER_OUTBOUND -p tcp -m multiport --dports 5432,6000:6010 -j RETURN",
            "-A SHIFTER_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
        ] {
            assert_eq!(count(&first, line), 1, "{mode}: {line:?} once in {first:#?}");
        }
        // Twice: the same rules, once each. Then with other settings: replaced, not added to.
        ns.exec_ok(&args);
        assert_eq!(nat_rules(&ns, mode), first, "{mode}: a second run changed the rules");
        ns.exec_ok(&[&bin, "init", "--iptables", mode, "--outbound-port", "4150"]);
        let changed = nat_rules(&ns, mode);
        assert_eq!(count(&changed, "-A SHIFTER_OUTBOUND -p tcp -j REDIRECT --to-ports 4150"), 1, "{changed:#?}");
        assert!(!changed.iter().any(|l| l.contains("4140") || l.contains("5432")), "{changed:#?}");
        assert_eq!(count(&changed, "-A OUTPUT -p tcp -j SHIFTER_OUTBOUND"), 1, "{changed:#?}");
    }
}

#[test]
fn auto_mode_keeps_to_the_iptables_that_holds_the_rules() {
    let ns = Netns::new("init-auto");
    let bin = shifter();
    ns.exec_ok(&[&bin, "init", "--iptables", "legacy"]);
    let said = ns.exec_ok(&[&bin, "init"]);
    assert!(said.contains("iptables-legacy"), "auto mode should find the legacy rules: {said}");
    let nft = ns.exec_ok(&["iptables-nft-save", "-t", "nat"]);
    assert!(!nft.contains("SHIFTER"), "auto mode wrote a second set with nft:\n{nft}");
}

#[test]
fn dry_run_prints_the_rules_and_changes_nothing() {
    let ns = Netns::new("init-dry");
    let out = ns.exec_ok(&[&shifter(), "init", "--dry-run", "--skip-outbound-cidrs", "10.96.0.0/12"]);
    assert!(out.contains("-A SHIFTER_OUTBOUND -d 10.96.0.0/12 -j RETURN"), "{out}");
    assert!(out.starts_with("*nat\n") && out.ends_with("COMMIT\n"), "{out}");
    for mode in ["nft", "legacy"] {
        assert!(nat_rules(&ns, mode).is_empty(), "--dry-run changed {mode}'s rules");
    }
}

#[test]
fn without_net_admin_init_says_which_capability_to_add() {
    let ns = Netns::new("init-cap");
    let out = ns.exec(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        &shifter(),
        "init",
        "--iptables",
        "nft",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "init without NET_ADMIN succeeded: {stderr}");
    assert!(stderr.contains("NET_ADMIN") && stderr.contains("securityContext"), "{stderr}");
}

#[test]
fn bad_settings_are_refused_with_the_fix() {
    let out = std::process::Command::new(shifter())
        .args(["init", "--dry-run", "--skip-outbound-ports", "70000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("1-65535") && stderr.contains("--skip-outbound-ports"),
        "{stderr}"
    );
}
