//! `shifter init`: the job of a meshed pod's init container. It installs iptables `nat` rules in
//! the pod's network namespace that send the pod's TCP traffic through its sidecar proxy:
//! inbound connections to the proxy's inbound port, outbound ones to its outbound port, where the
//! proxy recovers each connection's original destination.
//!
//! What is left alone: the proxy's own connections (by its UID, so they are not sent back to it),
//! loopback, the proxy's admin port (probes and metrics scrapes reach it directly), and any ports
//! or networks the user names. The rules live in two chains of shifter's own, rebuilt on every
//! run, and are jumped to once from `PREROUTING` and `OUTPUT`, so running twice leaves one set.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;

/// Chain for inbound connections (jumped to from `PREROUTING`).
pub const INBOUND_CHAIN: &str = "SHIFTER_INBOUND";
/// Chain for the pod's outbound connections (jumped to from `OUTPUT`).
pub const OUTBOUND_CHAIN: &str = "SHIFTER_OUTBOUND";
/// The UID the sidecar proxy runs as, unless told otherwise.
pub const DEFAULT_PROXY_UID: u32 = 2102;
/// The sidecar's listener for redirected outbound connections.
pub const DEFAULT_OUTBOUND_PORT: u16 = 4140;
/// The sidecar's listener for redirected inbound connections.
pub const DEFAULT_INBOUND_PORT: u16 = 4143;
/// The sidecar's admin port (readiness, metrics): never redirected.
pub const DEFAULT_ADMIN_PORT: u16 = 4191;

/// `multiport` takes at most 15 ports per rule, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;

/// Redirect a pod's TCP traffic through its sidecar proxy (run in the pod's init container; needs
/// the NET_ADMIN capability).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The sidecar's port for redirected inbound connections.
    #[arg(long, default_value_t = DEFAULT_INBOUND_PORT)]
    pub inbound_port: u16,
    /// The sidecar's port for redirected outbound connections.
    #[arg(long, default_value_t = DEFAULT_OUTBOUND_PORT)]
    pub outbound_port: u16,
    /// The UID the sidecar runs as: its own connections are never redirected.
    #[arg(long, default_value_t = DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,
    /// Inbound ports that reach the application directly (comma-separated; ranges as 8000-8100).
    /// The sidecar's admin port is always among them.
    #[arg(long, value_name = "PORTS", value_delimiter = ',', value_parser = parse_ports)]
    pub skip_inbound_ports: Vec<PortRange>,
    /// Outbound destination ports that bypass the sidecar (e.g. a database's 5432).
    #[arg(long, value_name = "PORTS", value_delimiter = ',', value_parser = parse_ports)]
    pub skip_outbound_ports: Vec<PortRange>,
    /// Outbound destination networks that bypass the sidecar (comma-separated CIDRs).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub skip_outbound_cidrs: Vec<Ipv4Net>,
    /// The sidecar's admin port, never redirected.
    #[arg(long, default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
    /// Which iptables to drive: `nft` (iptables-nft), `legacy` (iptables-legacy), or `auto` — the
    /// one already holding shifter's rules, else nft where the kernel has it, else legacy.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub iptables: Mode,
    /// Print the rules that would be applied, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            inbound_port: DEFAULT_INBOUND_PORT,
            outbound_port: DEFAULT_OUTBOUND_PORT,
            proxy_uid: DEFAULT_PROXY_UID,
            skip_inbound_ports: Vec::new(),
            skip_outbound_ports: Vec::new(),
            skip_outbound_cidrs: Vec::new(),
            admin_port: DEFAULT_ADMIN_PORT,
            iptables: Mode::Auto,
            dry_run: false,
        }
    }
}

/// Which iptables front end to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Auto,
    Nft,
    Legacy,
}

impl Mode {
    fn restore(self) -> &'static str {
        match self {
            Mode::Nft => "iptables-nft-restore",
            Mode::Legacy | Mode::Auto => "iptables-legacy-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Mode::Nft => "iptables-nft-save",
            Mode::Legacy | Mode::Auto => "iptables-legacy-save",
        }
    }
}

/// One port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    fn slots(self) -> usize {
        if self.first == self.last { 1 } else { 2 }
    }

    fn iptables(self) -> String {
        if self.first == self.last { self.first.to_string() } else { format!("{}:{}", self.first, self.last) }
    }
}

fn parse_ports(raw: &str) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port: use 1-65535, or a range like 8000-8100")),
            Ok(n) => Ok(n),
        }
    };
    let (first, last) = match raw.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(raw)?, port(raw)?),
    };
    if first > last {
        return Err(format!("{raw:?}: a range goes from the lower port to the higher, like {last}-{first}"));
    }
    Ok(PortRange { first, last })
}

fn parse_cidr(raw: &str) -> Result<Ipv4Net, String> {
    let raw = raw.trim();
    let net = if raw.contains('/') {
        raw.parse::<Ipv4Net>().ok()
    } else {
        raw.parse::<std::net::Ipv4Addr>().ok().map(Ipv4Net::from)
    };
    net.map(|n| n.trunc()).ok_or_else(|| format!("{raw:?} is not an IPv4 network: use a CIDR like 10.96.0.0/12"))
}

/// The rules for `args`, as `iptables-restore --noflush` input for the `nat` table. Declaring
/// shifter's chains flushes them; the jumps into them are added unless `existing` (the table as
/// `iptables-save` prints it) already has them.
pub fn rules(args: &Args, existing: &str) -> String {
    let mut out = String::from("*nat\n");
    let _ = writeln!(out, ":{INBOUND_CHAIN} - [0:0]");
    let _ = writeln!(out, ":{OUTBOUND_CHAIN} - [0:0]");
    let mut skip_in = vec![PortRange { first: args.admin_port, last: args.admin_port }];
    skip_in.extend(args.skip_inbound_ports.iter().copied());
    for group in multiport_groups(&skip_in) {
        let _ = writeln!(out, "-A {INBOUND_CHAIN} -p tcp -m multiport --dports {group} -j RETURN");
    }
    let _ = writeln!(out, "-A {INBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {}", args.inbound_port);
    let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -m owner --uid-owner {} -j RETURN", args.proxy_uid);
    let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -o lo -j RETURN");
    let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -d 127.0.0.0/8 -j RETURN");
    for group in multiport_groups(&args.skip_outbound_ports) {
        let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -p tcp -m multiport --dports {group} -j RETURN");
    }
    for net in &args.skip_outbound_cidrs {
        let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -d {net} -j RETURN");
    }
    let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {}", args.outbound_port);
    for jump in jumps() {
        if !existing.lines().any(|l| l.trim() == jump) {
            let _ = writeln!(out, "{jump}");
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// The two rules that send traffic into shifter's chains, as `iptables-save` prints them.
fn jumps() -> [String; 2] {
    [format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}"), format!("-A OUTPUT -p tcp -j {OUTBOUND_CHAIN}")]
}

/// Ports packed into `multiport` lists of at most [`MULTIPORT_SLOTS`] slots.
fn multiport_groups(ports: &[PortRange]) -> Vec<String> {
    let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
    let mut seen = Vec::new();
    for p in ports {
        if seen.contains(p) {
            continue;
        }
        seen.push(*p);
        match groups.last_mut() {
            Some((used, list)) if *used + p.slots() <= MULTIPORT_SLOTS => {
                *used += p.slots();
                list.push(p.iptables());
            }
            _ => groups.push((p.slots(), vec![p.iptables()])),
        }
    }
    groups.into_iter().map(|(_, list)| list.join(",")).collect()
}

/// Runs `shifter init`: prints the rules with `--dry-run`, else applies them.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.dry_run {
        print!("{}", rules(args, ""));
        return Ok(());
    }
    let mode = match args.iptables {
        Mode::Auto => detect_mode(),
        mode => mode,
    };
    let existing = save(mode)?;
    let input = rules(args, &existing);
    let mut child = Command::new(mode.restore())
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(mode.restore(), e))?;
    child.stdin.take().context("iptables-restore's stdin")?.write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(explain(mode.restore(), &String::from_utf8_lossy(&output.stderr)));
    }
    println!(
        "shifter init: inbound TCP → {}, outbound TCP → {} (UID {} and loopback skipped), with {}",
        args.inbound_port,
        args.outbound_port,
        args.proxy_uid,
        mode.restore().trim_end_matches("-restore")
    );
    Ok(())
}

/// The nat table as `iptables-save` prints it.
fn save(mode: Mode) -> anyhow::Result<String> {
    let output = Command::new(mode.save()).args(["-t", "nat"]).output().map_err(|e| missing_tool(mode.save(), e))?;
    if !output.status.success() {
        bail!(explain(mode.save(), &String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The front end already holding shifter's rules; else nft if it can read the nat table; else legacy.
/// The legacy table is only read when the kernel lists it (reading it would create it, and
/// iptables-nft then warns about legacy tables on every call).
fn detect_mode() -> Mode {
    let holds_rules = |m: Mode| save(m).is_ok_and(|s| s.contains(INBOUND_CHAIN));
    let legacy_nat = std::fs::read_to_string("/proc/net/ip_tables_names").is_ok_and(|t| t.lines().any(|l| l == "nat"));
    if holds_rules(Mode::Nft) {
        Mode::Nft
    } else if legacy_nat && holds_rules(Mode::Legacy) {
        Mode::Legacy
    } else if save(Mode::Nft).is_ok() {
        Mode::Nft
    } else {
        Mode::Legacy
    }
}

fn missing_tool(tool: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("{tool} not found: install iptables in the init image (Debian: apt-get install iptables)")
    } else {
        anyhow::anyhow!("could not run {tool}: {error}")
    }
}

/// iptables' complaint, with what to do about the usual one: no NET_ADMIN.
fn explain(tool: &str, stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.contains("Permission denied")
        || stderr.contains("Operation not permitted")
        || stderr.contains("must be root")
    {
        format!(
            "{tool} was refused ({stderr}): shifter init needs the NET_ADMIN capability (and NET_RAW for \
             iptables-legacy) — add them to the init container's securityContext.capabilities.add"
        )
    } else {
        format!("{tool} failed: {stderr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_redirect_both_ways_and_skip_the_proxy_loopback_and_admin() {
        let r = rules(&Args::default(), "");
        for line in [
            "-A SHIFTER_INBOUND -p tcp -m multiport --dports 4191 -j RETURN",
            "-A SHIFTER_INBOUND -p tcp -j REDIRECT --to-ports 4143",
            "-A SHIFTER_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
            "-A SHIFTER_OUTBOUND -o lo -j RETURN",
            "-A SHIFTER_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
            "-A PREROUTING -p tcp -j SHIFTER_INBOUND",
            "-A OUTPUT -p tcp -j SHIFTER_OUTBOUND",
        ] {
            assert!(r.lines().any(|l| l == line), "missing {line:?} in\n{r}");
        }
        // Every skip comes before the redirect it exempts from.
        let at = |needle: &str| r.find(needle).unwrap();
        assert!(at("--uid-owner") < at("--to-ports 4140"));
    }

    #[test]
    fn jumps_already_in_place_are_not_added_again() {
        let existing = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j SHIFTER_INBOUND\n-A OUTPUT -p tcp -j SHIFTER_OUTBOUND\nCOMMIT\n";
        let r = rules(&Args::default(), existing);
        assert!(!r.contains("-A PREROUTING") && !r.contains("-A OUTPUT"), "{r}");
    }

    #[test]
    fn skipped_ports_and_networks_are_packed_and_validated() {
        let mut ports: Vec<PortRange> = (1..=20).map(|p| parse_ports(&(5000 + p).to_string()).unwrap()).collect();
        ports.push(parse_ports("6000-6100").unwrap());
        let args = Args {
            skip_outbound_ports: ports,
            skip_outbound_cidrs: vec![parse_cidr("10.96.3.4/12").unwrap(), parse_cidr("192.168.1.1").unwrap()],
            ..Args::default()
        };
        let r = rules(&args, "");
        let lists: Vec<&str> = r.lines().filter(|l| l.starts_with("-A SHIFTER_OUTBOUND -p tcp -m multiport")).collect();
        assert_eq!(lists.len(), 2, "{r}");
        assert!(lists[1].contains("5016,5017,5018,5019,5020,6000:6100"), "{}", lists[1]);
        assert!(r.contains("-A SHIFTER_OUTBOUND -d 10.96.0.0/12 -j RETURN"));
        assert!(r.contains("-A SHIFTER_OUTBOUND -d 192.168.1.1/32 -j RETURN"));
        assert!(parse_ports("0").unwrap_err().contains("1-65535"));
        assert!(parse_ports("90-80").unwrap_err().contains("80-90"));
        assert!(parse_cidr("10.0.0.0/40").unwrap_err().contains("CIDR"));
    }

    #[test]
    fn a_refusal_names_the_capability_to_add() {
        let e = explain("iptables-nft-restore", "iptables-nft-restore: Permission denied (you must be root)\n");
        assert!(e.contains("NET_ADMIN") && e.contains("securityContext"), "{e}");
    }
}
