//! `shifter demo`: the whole system on one machine with nothing else installed — the embedded API
//! server, the controller, a gateway proxy, built-in versions of a web service and users sending
//! requests through the proxy. A healthy release is rolled out and promoted, then a bad one is rolled
//! back, with live progress and a summary. Everything it starts runs in this process and everything
//! it writes lives in one temporary directory, removed on exit and on Ctrl-C.

mod backends;
mod load;
mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use shifter::cli::wait::{self, WaitState};
use shifter_crds::canary::Canary;

use crate::serve;
use backends::{DemoBackend, Profile};
use load::Load;
use view::{Outcome, RolloutReport, View};

const NAMESPACE: &str = "demo";
const SERVICE: &str = "web";
const FIELD_MANAGER: &str = "shifter-demo";
/// A rollout that has not ended by then is reported as stuck (the Canary's own deadline is shorter).
const ROLLOUT_LIMIT: Duration = Duration::from_secs(600);

/// What the demo's second version does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// It is as good as the first: promoted.
    Healthy,
    /// It fails 8% of requests: rolled back.
    Errors,
    /// It is 150 ms slower on every request: rolled back.
    Latency,
}

impl Scenario {
    fn profile(self) -> Profile {
        match self {
            Scenario::Healthy => Profile::HEALTHY,
            Scenario::Errors => Profile::ERRORS,
            Scenario::Latency => Profile::SLOW,
        }
    }

    fn expected(self) -> Outcome {
        match self {
            Scenario::Healthy => Outcome::Promoted,
            Scenario::Errors | Scenario::Latency => Outcome::RolledBack,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Healthy => "as healthy as web-v1",
            Scenario::Errors => "fails 8% of requests",
            Scenario::Latency => "150 ms slower on every request",
        }
    }
}

/// See shifter roll a healthy release forward and a bad one back, on this machine.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Run one rollout of web-v2 behaving this way, instead of the full story (a healthy web-v2 is
    /// promoted, then web-v3, which fails 8% of requests, is rolled back).
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Judge with this Prometheus instead of the mesh's own telemetry. It must scrape the demo
    /// proxy's metrics, served then on 127.0.0.1:4191/metrics.
    #[arg(long, value_name = "URL", value_parser = parse_prometheus_url)]
    pub prometheus: Option<String>,
}

fn parse_prometheus_url(raw: &str) -> Result<String, String> {
    let url = raw.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
        return Err(format!("{raw:?}: give the Prometheus base URL, e.g. http://127.0.0.1:9090"));
    }
    Ok(url.to_string())
}

/// One rollout of the story: the version to roll out, how it behaves, and what should happen.
struct Release {
    version: &'static str,
    profile: Profile,
    expected: Outcome,
    describe: &'static str,
}

fn releases(scenario: Option<Scenario>) -> Vec<Release> {
    match scenario {
        Some(s) => {
            vec![Release { version: "web-v2", profile: s.profile(), expected: s.expected(), describe: s.describe() }]
        }
        None => vec![
            Release {
                version: "web-v2",
                profile: Profile::HEALTHY,
                expected: Outcome::Promoted,
                describe: Scenario::Healthy.describe(),
            },
            Release {
                version: "web-v3",
                profile: Profile::ERRORS,
                expected: Outcome::RolledBack,
                describe: Scenario::Errors.describe(),
            },
        ],
    }
}

/// Users' requests per second through the gateway.
const LOAD_RPS: u32 = 600;

/// Runs the demo on a multi-threaded runtime; Ctrl-C stops it and cleans up.
pub fn run_blocking(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("shifter-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut stack = Stack::default();
    let result = tokio::select! {
        result = story(&args, &dir, &mut stack) => result,
        _ = tokio::signal::ctrl_c() => {
            println!("\nCtrl-C: stopping everything the demo started");
            Ok(ExitCode::from(130))
        }
    };
    stack.stop().await;
    let removed = std::fs::remove_dir_all(&dir);
    match removed {
        Ok(()) => println!("removed {}", dir.display()),
        Err(e) => eprintln!("could not remove {}: {e}", dir.display()),
    }
    result
}

/// Everything the demo started, stopped in reverse order whatever happened.
#[derive(Default)]
struct Stack {
    served: Option<serve::Served>,
    proxy: Option<shifter_proxy::Proxy>,
    backends: Vec<DemoBackend>,
    load: Option<Load>,
}

impl Stack {
    async fn stop(&mut self) {
        self.load = None;
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown().await;
        }
        self.backends.clear();
        if let Some(served) = self.served.take() {
            served.controller.shutdown().await;
            served.api.shutdown().await;
        }
    }
}

async fn story(args: &Args, dir: &Path, stack: &mut Stack) -> anyhow::Result<ExitCode> {
    let view = View::for_stdout();
    let started = Instant::now();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let serve_args = serve::Args {
        data_dir: dir.to_path_buf(),
        api_listen: loopback,
        grpc_listen: loopback,
        admin_listen: loopback,
    };
    let served = stack.served.insert(serve::start(&serve_args).await?);
    let kubeconfig = served.api.kubeconfig_path().to_path_buf();
    let (grpc_port, ca_path, token_path) =
        (served.controller.grpc_addr.port(), served.controller.ca_path.clone(), served.controller.token_path.clone());
    let client = served.controller.client.clone();

    let releases = releases(args.scenario);
    stack.backends.push(DemoBackend::start("web-v1", Profile::HEALTHY).await?);
    for release in &releases {
        stack.backends.push(DemoBackend::start(release.version, release.profile).await?);
    }
    install_services(&client, &stack.backends).await?;

    let admin = if args.prometheus.is_some() { "127.0.0.1:4191" } else { "127.0.0.1:0" };
    let proxy = start_proxy(grpc_port, &ca_path, &token_path, admin).await?;
    let gateway = proxy.gateway_addrs()[0];
    let proxy_admin = proxy.admin_addr();
    stack.proxy = Some(proxy);

    view.banner(&kubeconfig, gateway, proxy_admin, args.prometheus.as_deref(), &releases_line(&releases));
    wait_for_gateway(gateway).await?;
    let load = stack.load.insert(Load::start(gateway, LOAD_RPS));
    // A few seconds of web-v1 alone: the stable history the latency comparison starts from.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let canaries: Api<Canary> = Api::namespaced(client.clone(), NAMESPACE);
    let mut reports = Vec::new();
    let mut stable = "web-v1".to_string();
    for release in &releases {
        view.rollout_header(&stable, release.version, release.describe);
        apply(&canaries, "web", canary_manifest(release.version, args.prometheus.as_deref())).await?;
        let report = follow(&canaries, load, &stable, release, &view).await?;
        if report.outcome == Outcome::Promoted {
            stable = release.version.to_string();
        }
        reports.push(report);
    }
    let all_expected = view.summary(&reports, load, started.elapsed());
    Ok(if all_expected { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn releases_line(releases: &[Release]) -> String {
    releases.iter().map(|r| format!("{} ({})", r.version, r.describe)).collect::<Vec<_>>().join(", then ")
}

/// The apex Service `web` (served by web-v1 until a split says otherwise) and one Service per
/// version, each with an EndpointSlice pointing at its backend on loopback.
async fn install_services(client: &Client, backends: &[DemoBackend]) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply(&namespaces, NAMESPACE, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let stable = &backends[0];
    let apex = std::iter::once((SERVICE, stable.addr));
    for (name, addr) in apex.chain(backends.iter().map(|b| (b.name.as_str(), b.addr))) {
        apply(
            &services,
            name,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": addr.port()}]}
            }),
        )
        .await?;
        let slice = format!("{name}-loopback");
        apply(
            &slices,
            &slice,
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
                "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}]
            }),
        )
        .await?;
    }
    Ok(())
}

/// The Canary the demo applies: the defaults, with a faster rhythm so the story fits two minutes.
/// Prometheus is asked for one-minute windows (a few scrapes each), so with it there are fewer
/// steps and more time per step.
fn canary_manifest(canary: &str, prometheus: Option<&str>) -> serde_json::Value {
    let mut analysis = json!({"interval": "2s", "minRequests": 100, "minDuration": "10s"});
    let (steps, deadline) = match prometheus {
        Some(url) => {
            analysis["provider"] = json!({"type": "prometheus", "address": url});
            (json!([{"weight": 20}, {"weight": 50}]), "4m")
        }
        None => (json!([{"weight": 10}, {"weight": 25}, {"weight": 50}]), "90s"),
    };
    json!({
        "apiVersion": "shifter.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "service": SERVICE, "stable": "web-v1", "canary": canary,
            "steps": steps,
            "progressDeadline": deadline,
            "analysis": analysis
        }
    })
}

async fn apply<K>(api: &Api<K>, name: &str, object: serde_json::Value) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .with_context(|| format!("applying {} {name}", object["kind"].as_str().unwrap_or("object")))
}

/// The gateway proxy, configured exactly as `shifter proxy` flags would configure it.
async fn start_proxy(grpc_port: u16, ca: &Path, token: &Path, admin: &str) -> anyhow::Result<shifter_proxy::Proxy> {
    #[derive(Parser)]
    struct ProxyCommand {
        #[command(flatten)]
        args: shifter_proxy::Args,
    }
    let flags = [
        "proxy".to_string(),
        format!("--controller=https://localhost:{grpc_port}"),
        format!("--controller-ca={}", ca.display()),
        format!("--controller-token-file={}", token.display()),
        format!("--gateway=127.0.0.1:0={SERVICE}.{NAMESPACE}.svc.cluster.local:80"),
        format!("--admin={admin}"),
        "--id=demo-gateway".to_string(),
        format!("--namespace={NAMESPACE}"),
        "--drain-timeout=2s".to_string(),
    ];
    let command = ProxyCommand::try_parse_from(flags).context("demo proxy flags")?;
    let config = command.args.to_config()?;
    shifter_proxy::Proxy::start(config).await.with_context(|| format!("starting the demo proxy (admin {admin})"))
}

/// Waits until a request through the gateway reaches a version.
async fn wait_for_gateway(gateway: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("http://{gateway}/")).send().await
            && resp.headers().contains_key(backends::VERSION_HEADER)
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway {gateway} did not route to web-v1 within 30s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shows the rollout of `release` live until it is promoted or rolled back.
async fn follow(
    canaries: &Api<Canary>,
    load: &Load,
    stable: &str,
    release: &Release,
    view: &View,
) -> anyhow::Result<RolloutReport> {
    let started = Instant::now();
    let before = load.totals().0;
    let mut last_shown: Option<Instant> = None;
    let mut last_state = None;
    loop {
        let canary = canaries.get("web").await.context("reading Canary demo/web")?;
        let status = canary.status.clone().unwrap_or_default();
        // `wait`'s judgement: the outcome of this spec.canary's rollout once the controller saw it.
        let outcome = match wait::judge(&canary) {
            WaitState::Promoted => Some((Outcome::Promoted, view::promoted_message(&canary))),
            WaitState::RolledBack(why) => Some((Outcome::RolledBack, why)),
            WaitState::Pending if started.elapsed() > ROLLOUT_LIMIT => Some((Outcome::Stuck, wait::progress(&canary))),
            WaitState::Pending => None,
        };
        let state = (status.phase, status.current_step);
        let due = last_shown.is_none_or(|t| t.elapsed() >= Duration::from_secs(3));
        let started_here = status.canary.as_deref() == Some(release.version);
        if outcome.is_none() && started_here && (due || last_state != Some(state)) {
            view.progress(started.elapsed(), &canary, &load.recent());
            last_shown = Some(Instant::now());
            last_state = Some(state);
        }
        if let Some((outcome, why)) = outcome {
            let after = load.totals().0;
            let (requests, failures) = match (after.get(release.version), before.get(release.version)) {
                (Some(a), b) => (a.0 - b.map_or(0, |b| b.0), a.1 - b.map_or(0, |b| b.1)),
                (None, _) => (0, 0),
            };
            let report = RolloutReport {
                from: stable.to_string(),
                to: release.version.to_string(),
                outcome,
                expected: release.expected,
                took: started.elapsed(),
                canary_requests: requests,
                canary_failures: failures,
                why,
            };
            view.rollout_end(&report);
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
