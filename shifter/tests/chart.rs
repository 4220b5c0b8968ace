//! The Helm chart in `charts/shifter`, rendered by the real Helm engine (PyPI `helm-python-sdk`,
//! installed by `scripts/install-test-tools.sh`): every object is a valid Kubernetes object, the
//! containers' arguments are accepted by shifter's own command-line parsers and fit the ports,
//! volumes and Secret the chart creates, the certificate covers every name it is dialled by, the RBAC
//! grants exactly what the controller calls, and every value is documented.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::{Value, json};

mod chart_support;

use chart_support::pod::{
    controller_pod, expanded_args, gateway_pod, port_named, probe_port, secret_mount, service_target,
};
use chart_support::{NAMESPACE, Render, chart_dir, documents, render, round_trips, try_render, try_render_request};

/// Every optional feature on.
fn all_options() -> Value {
    json!({
        "controller": {
            "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}, "interval": "15s"},
            "podAntiAffinity": "hard",
            "podAnnotations": {"example.com/team": "platform"},
            "replicas": 3,
        },
        "credentials": {"existingSecret": "shifter-from-cert-manager"},
        "gateways": [
            {"name": "web", "service": "web", "namespace": "shop", "port": 80},
            {"name": "api", "service": "api", "namespace": "shop", "port": 8080, "servicePort": 443,
             "serviceType": "LoadBalancer", "replicas": 3},
        ],
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
        "image": {"repository": "registry.example.com/shifter", "tag": "dev"},
    })
}

fn check_objects(render: &Render) {
    let mut problems = Vec::new();
    for object in &render.objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let checked = match kind {
            "StatefulSet" => round_trips::<StatefulSet>(object),
            "Deployment" => round_trips::<Deployment>(object),
            "PodDisruptionBudget" => {
                round_trips::<PodDisruptionBudget>(object).and_then(|()| check_budget(object, render))
            }
            "Service" => round_trips::<Service>(object),
            "ServiceAccount" => round_trips::<ServiceAccount>(object),
            "Secret" => round_trips::<Secret>(object),
            "ClusterRole" => round_trips::<ClusterRole>(object),
            "ClusterRoleBinding" => round_trips::<ClusterRoleBinding>(object),
            "Role" => round_trips::<Role>(object),
            "RoleBinding" => round_trips::<RoleBinding>(object),
            "ServiceMonitor" => check_service_monitor(object, render),
            other => Err(format!("unexpected kind {other}")),
        };
        if let Err(problem) = checked {
            problems.push(format!("{kind}/{}: {problem}", object["metadata"]["name"]));
        }
        let namespaced = !kind.starts_with("Cluster");
        if namespaced && object["metadata"]["namespace"] != NAMESPACE {
            problems.push(format!("{kind}/{} is not in {NAMESPACE}", object["metadata"]["name"]));
        }
    }
    assert!(problems.is_empty(), "invalid objects:\n{}", problems.join("\n"));
    let findings: Vec<&Value> =
        render.lint["messages"].as_array().unwrap().iter().filter(|m| m["severity"].as_i64() >= Some(2)).collect();
    assert!(findings.is_empty(), "helm lint --strict: {findings:?}");
}

/// A PodDisruptionBudget selects exactly the pods of one workload the chart runs with several replicas.
fn check_budget(budget: &Value, render: &Render) -> Result<(), String> {
    let wanted = budget["spec"]["selector"]["matchLabels"].as_object().ok_or("spec.selector.matchLabels is missing")?;
    let workloads: Vec<&Value> = render
        .objects
        .iter()
        .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
        .filter(|o| wanted.iter().all(|(k, v)| &o["spec"]["template"]["metadata"]["labels"][k] == v))
        .collect();
    let [workload] = workloads.as_slice() else {
        return Err(format!("selects {} workloads, not one", workloads.len()));
    };
    match workload["spec"]["replicas"].as_i64() {
        Some(n) if n > 1 => Ok(()),
        n => Err(format!("guards {} with {n:?} replicas", workload["metadata"]["name"])),
    }
}

/// A ServiceMonitor (no k8s-openapi type) scrapes `/metrics` on a named port of a Service it selects.
fn check_service_monitor(monitor: &Value, render: &Render) -> Result<(), String> {
    let spec = &monitor["spec"];
    let allowed = ["selector", "namespaceSelector", "endpoints"];
    if let Some(extra) = spec.as_object().unwrap().keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("spec.{extra} is not expected"));
    }
    if monitor["apiVersion"] != "monitoring.coreos.com/v1" {
        return Err(format!("apiVersion {}", monitor["apiVersion"]));
    }
    let wanted = spec["selector"]["matchLabels"].as_object().ok_or("spec.selector.matchLabels is missing")?;
    let selected: Vec<&Value> = render
        .of_kind("Service")
        .into_iter()
        .filter(|s| wanted.iter().all(|(k, v)| &s["metadata"]["labels"][k] == v))
        .collect();
    let [service] = selected.as_slice() else { return Err(format!("selects {} Services, not one", selected.len())) };
    if spec["namespaceSelector"]["matchNames"] != json!([NAMESPACE]) {
        return Err("spec.namespaceSelector must name the release namespace".into());
    }
    for endpoint in spec["endpoints"].as_array().ok_or("spec.endpoints is missing")? {
        let port = &endpoint["port"];
        if !service["spec"]["ports"].as_array().unwrap().iter().any(|p| &p["name"] == port) {
            return Err(format!("endpoint port {port} is not a port of {}", service["metadata"]["name"]));
        }
        if endpoint["path"] != "/metrics" {
            return Err(format!("endpoint path {}", endpoint["path"]));
        }
    }
    Ok(())
}

#[test]
fn default_install_renders_valid_kubernetes_objects() {
    let render = render(json!({}));
    check_objects(&render);
    let mut names = render.names();
    names.sort();
    assert_eq!(
        names,
        [
            "ClusterRole/shifter-controller",
            "ClusterRoleBinding/shifter-controller",
            "PodDisruptionBudget/shifter-controller",
            "Role/shifter-controller-lease",
            "RoleBinding/shifter-controller-lease",
            "Secret/shifter-controller-credentials",
            "Service/shifter-controller",
            "Service/shifter-controller-metrics",
            "Service/shifter-controller-peers",
            "ServiceAccount/shifter-controller",
            "StatefulSet/shifter-controller",
        ]
    );
    let pod = controller_pod(&render);
    check_locked_down(&pod);
    assert_eq!(pod.automount_service_account_token, None, "the controller needs its API token");
}

#[test]
fn every_option_renders_valid_objects() {
    let render = render(all_options());
    check_objects(&render);
    assert!(render.of_kind("Secret").is_empty(), "an existing Secret is used, none generated");
    let monitor = render.get("ServiceMonitor", "shifter-controller");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    let controller: StatefulSet = render.typed("StatefulSet", "shifter-controller");
    assert_eq!(controller.spec.as_ref().unwrap().replicas, Some(3));
    let pod = controller_pod(&render);
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_some(), "hard anti-affinity");
    for (name, pod) in [("controller", pod), ("web", gateway_pod(&render, "web")), ("api", gateway_pod(&render, "api"))]
    {
        check_locked_down(&pod);
        let secrets: Vec<&str> =
            pod.volumes.iter().flatten().filter_map(|v| v.secret.as_ref()?.secret_name.as_deref()).collect();
        assert_eq!(secrets, ["shifter-from-cert-manager"], "{name} mounts the existing Secret");
        assert_eq!(pod.node_selector.as_ref().unwrap()["kubernetes.io/os"], "linux", "{name}");
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1, "{name}");
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred", "{name}");
        assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example.com/shifter:dev"), "{name}");
    }
    assert_eq!(render.of_kind("PodDisruptionBudget").len(), 3, "the controller and both gateways run several replicas");
    let api: Deployment = render.typed("Deployment", "shifter-gateway-api");
    assert_eq!(api.spec.unwrap().replicas, Some(3));
    let service: Service = render.typed("Service", "shifter-gateway-api");
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);
}

/// Non-root, read-only root, no capabilities, no privilege escalation, the runtime's seccomp profile.
fn check_locked_down(pod: &PodSpec) {
    let ctx = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(ctx.run_as_non_root, Some(true));
    assert_eq!(ctx.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    for c in &pod.containers {
        let ctx = c.security_context.as_ref().expect("container securityContext");
        assert_eq!(ctx.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(ctx.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(ctx.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]), "{}", c.name);
        assert!(c.resources.as_ref().and_then(|r| r.limits.as_ref()).is_some_and(|l| l.contains_key("memory")));
    }
}

#[derive(Parser)]
struct ControllerCommand {
    #[command(flatten)]
    args: shifter_controller::runtime::Args,
}

#[derive(Parser)]
struct ProxyCommand {
    #[command(flatten)]
    args: shifter_proxy::Args,
}

#[test]
fn controller_arguments_are_accepted_by_shifter_controller_and_fit_the_pod() {
    let render = render(json!({}));
    let pod = controller_pod(&render);
    let container = &pod.containers[0];
    let fields = BTreeMap::from([("metadata.name", "shifter-controller-1"), ("metadata.namespace", NAMESPACE)]);
    let args = expanded_args(container, &fields);
    assert_eq!(args[0], "controller", "the image's entrypoint is shifter; its first argument the subcommand");
    let parsed = ControllerCommand::try_parse_from(&args)
        .unwrap_or_else(|e| panic!("shifter controller rejects {args:?}:\n{e}"))
        .args;

    assert_eq!(port_named(container, "grpc"), parsed.grpc_listen.port());
    assert_eq!(port_named(container, "admin"), parsed.admin_listen.port());
    assert_eq!(
        probe_port(container.liveness_probe.as_ref(), container),
        ("/healthz".into(), parsed.admin_listen.port())
    );
    assert_eq!(
        probe_port(container.readiness_probe.as_ref(), container),
        ("/readyz".into(), parsed.admin_listen.port())
    );
    let env: BTreeMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value_from.as_ref()?.field_ref.as_ref()?.field_path.clone())))
        .collect();
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace", "the Lease lives in the release namespace");
    assert_eq!(env["POD_NAME"], "metadata.name", "each replica has its own Lease identity");

    // With no --tls-cert the controller reads ca.crt, tls.crt and tls.key from <state-dir>/tls, and
    // as leader injects that CA into the CRD's conversion webhook; the Secret is mounted exactly there.
    assert!(parsed.tls_cert.is_none() && parsed.tls_key.is_none(), "credentials come from the state directory");
    let (mount, keys) = secret_mount(&pod);
    assert_eq!(Path::new(&mount), parsed.state_dir.join("tls"));
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key", "token"]);
    assert_eq!(parsed.token_file.as_deref(), Some(Path::new(&mount).join("token").as_path()));
    let state = container.volume_mounts.iter().flatten().find(|m| Path::new(&m.mount_path) == parsed.state_dir);
    let state = state.expect("the state directory is mounted (the root filesystem is read-only)");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == state.name).unwrap();
    assert!(volume.empty_dir.is_some(), "state lives in an emptyDir");

    // Replicas reach the leader at the address it advertises: its name under the headless Service.
    let advertise = parsed.advertise.expect("--advertise");
    let controller: StatefulSet = render.typed("StatefulSet", "shifter-controller");
    let peers = controller.spec.unwrap().service_name.unwrap();
    let headless: Service = render.typed("Service", &peers);
    assert_eq!(headless.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        advertise,
        format!("shifter-controller-1.{peers}.{NAMESPACE}.svc.cluster.local:{}", parsed.grpc_listen.port())
    );

    // Proxies and the CRD conversion webhook reach the gRPC port through the shifter-controller Service.
    let service: Service = render.typed("Service", "shifter-controller");
    let webhook = &render.crds[0]["spec"]["conversion"]["webhook"]["clientConfig"]["service"];
    assert_eq!(
        (webhook["name"].as_str(), webhook["namespace"].as_str()),
        (Some("shifter-controller"), Some(NAMESPACE))
    );
    let webhook_port = webhook["port"].as_u64().unwrap() as u16;
    assert_eq!(service_target(&service, webhook_port, container), parsed.grpc_listen.port());
    assert_eq!(service_target(&service, 8086, container), parsed.grpc_listen.port());
    let metrics: Service = render.typed("Service", "shifter-controller-metrics");
    assert_eq!(service_target(&metrics, parsed.admin_listen.port(), container), parsed.admin_listen.port());
}

#[test]
fn gateway_arguments_are_accepted_by_shifter_proxy_and_fit_the_pod() {
    let render = render(all_options());
    let controller_service: Service = render.typed("Service", "shifter-controller");
    let controller = controller_pod(&render);
    for (name, authority, service_port) in
        [("web", "web.shop.svc.cluster.local:80", 80), ("api", "api.shop.svc.cluster.local:8080", 443)]
    {
        let pod = gateway_pod(&render, name);
        assert_eq!(pod.automount_service_account_token, Some(false), "a proxy calls no Kubernetes API");
        let container = &pod.containers[0];
        let fields = BTreeMap::from([("metadata.name", "gw-0"), ("metadata.namespace", NAMESPACE)]);
        let args = expanded_args(container, &fields);
        assert_eq!(args[0], "proxy");
        let parsed =
            ProxyCommand::try_parse_from(&args).unwrap_or_else(|e| panic!("shifter proxy rejects {args:?}:\n{e}")).args;

        // It dials the controller Service's gRPC port by a name the certificate covers.
        let uri = parsed.controller.as_deref().expect("--controller");
        let (host, port) = uri.strip_prefix("https://").and_then(|a| a.rsplit_once(':')).expect("https://host:port");
        assert_eq!(host, format!("shifter-controller.{NAMESPACE}.svc"));
        let grpc = port_named(&controller.containers[0], "grpc");
        assert_eq!(service_target(&controller_service, port.parse().unwrap(), &controller.containers[0]), grpc);

        // Its CA and token come from the Secret, without the controller's private key.
        let (mount, keys) = secret_mount(&pod);
        assert_eq!(keys, ["ca.crt", "token"]);
        assert_eq!(parsed.controller_ca.as_deref(), Some(Path::new(&mount).join("ca.crt").as_path()));
        assert_eq!(parsed.controller_token_file.as_deref(), Some(Path::new(&mount).join("token").as_path()));

        // One gateway listener for the entry's apex Service, exposed by the gateway's Service.
        let [gateway] = parsed.gateways.as_slice() else { panic!("one --gateway per proxy: {args:?}") };
        assert_eq!(gateway.authority, authority);
        let target: shifter_controller::Authority =
            gateway.authority.parse().expect("an authority the controller routes");
        assert_eq!((target.service.as_str(), target.namespace.as_str()), (name, "shop"));
        assert_eq!(port_named(container, "http"), gateway.listen.port());
        let service: Service = render.typed("Service", &format!("shifter-gateway-{name}"));
        assert_eq!(service_target(&service, service_port, container), gateway.listen.port());
        let selector = service.spec.as_ref().unwrap().selector.clone().unwrap();
        let deployment: Deployment = render.typed("Deployment", &format!("shifter-gateway-{name}"));
        let labels = deployment.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "the Service selects the gateway's pods");

        // Probes and Prometheus find the admin port.
        let admin = parsed.admin.port();
        assert_eq!(probe_port(container.readiness_probe.as_ref(), container), ("/ready".into(), admin));
        assert_eq!(probe_port(container.liveness_probe.as_ref(), container), ("/live".into(), admin));
        let annotations = render.get("Deployment", &format!("shifter-gateway-{name}"))["spec"]["template"]["metadata"]
            ["annotations"]
            .clone();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], admin.to_string());
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        let grace = pod.termination_grace_period_seconds.unwrap() as u64;
        assert!(grace > parsed.drain_timeout.as_secs(), "the kubelet waits for the drain");
    }
}

fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().expect("PEM certificates")
}

#[test]
fn generated_certificate_is_trusted_for_every_name_it_is_dialled_by() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};

    for release in ["shifter", "edge"] {
        let values = json!({"gateways": [{"name": "web", "service": "web", "namespace": "shop", "port": 80}]});
        let request = json!({"chart": chart_dir(), "values": values, "name": release, "namespace": NAMESPACE});
        let render = try_render_request(request).unwrap_or_else(|e| panic!("release {release}: {e}"));
        let secrets = render.of_kind("Secret");
        let [secret] = secrets.as_slice() else { panic!("one generated Secret") };
        let secret: Secret = serde_json::from_value((*secret).clone()).unwrap();
        let data = secret.data.unwrap();
        let (ca, cert, key, token) = (&data["ca.crt"].0, &data["tls.crt"].0, &data["tls.key"].0, &data["token"].0);
        let token = std::str::from_utf8(token).unwrap();
        assert!(token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "a strong token: {token:?}");

        // Every name a client dials, as the rendered objects say: the gateway's --controller, the
        // CRD's conversion webhook Service, and each replica's --advertise.
        let mut dialled = Vec::new();
        let gateway: Deployment = serde_json::from_value((*render.of_kind("Deployment")[0]).clone()).unwrap();
        let args = gateway.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        let controller_uri = args.iter().find_map(|a| a.strip_prefix("--controller=https://")).expect("--controller");
        dialled.push(controller_uri.rsplit_once(':').unwrap().0.to_string());
        let webhook = &render.crds[0]["spec"]["conversion"]["webhook"]["clientConfig"]["service"];
        dialled.push(format!("{}.{}.svc", webhook["name"].as_str().unwrap(), webhook["namespace"].as_str().unwrap()));
        let statefulsets = render.of_kind("StatefulSet");
        let [statefulset] = statefulsets.as_slice() else { panic!("one controller StatefulSet") };
        let statefulset: StatefulSet = serde_json::from_value((*statefulset).clone()).unwrap();
        let name = statefulset.metadata.name.unwrap();
        let container = statefulset.spec.unwrap().template.spec.unwrap().containers.remove(0);
        for ordinal in 0..2 {
            let pod = format!("{name}-{ordinal}");
            let fields = BTreeMap::from([("metadata.name", pod.as_str()), ("metadata.namespace", NAMESPACE)]);
            let args = expanded_args(&container, &fields);
            let advertise = args.iter().find_map(|a| a.strip_prefix("--advertise=")).expect("--advertise");
            dialled.push(advertise.rsplit_once(':').unwrap().0.to_string());
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pem_certs(ca).remove(0)).expect("the CA is a valid trust anchor");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let chain = pem_certs(cert);
        let verify = |name: &str| {
            let name = ServerName::try_from(name.to_string()).unwrap();
            verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        };
        for name in &dialled {
            verify(name).unwrap_or_else(|e| panic!("release {release}: the certificate is not valid for {name}: {e}"));
        }
        assert!(verify("shifter-controller.default.svc").is_err(), "a name outside the chart is refused");

        // The controller can serve with this key and certificate.
        let key = PrivateKeyDer::from_pem_slice(key).expect("a PEM private key");
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the key matches the certificate");
    }
}

/// Every API call the controller makes: (API group, resource, verb, namespaced to the release).
const CONTROLLER_CALLS: &[(&str, &str, &str, bool)] = &[
    // watch.rs: the index's inputs, cluster-wide
    ("", "services", "list", false),
    ("", "services", "watch", false),
    ("discovery.k8s.io", "endpointslices", "list", false),
    ("discovery.k8s.io", "endpointslices", "watch", false),
    ("split.smi-spec.io", "trafficsplits", "list", false),
    ("split.smi-spec.io", "trafficsplits", "watch", false),
    ("specs.smi-spec.io", "httproutegroups", "list", false),
    ("specs.smi-spec.io", "httproutegroups", "watch", false),
    ("gateway.networking.k8s.io", "httproutes", "list", false),
    ("gateway.networking.k8s.io", "httproutes", "watch", false),
    ("gateway.networking.k8s.io", "grpcroutes", "list", false),
    ("gateway.networking.k8s.io", "grpcroutes", "watch", false),
    // status.rs: TrafficSplit and route status by server-side apply
    ("split.smi-spec.io", "trafficsplits/status", "patch", false),
    ("gateway.networking.k8s.io", "httproutes/status", "patch", false),
    ("gateway.networking.k8s.io", "grpcroutes/status", "patch", false),
    // canary/route.rs: the routes Canaries drive (read, weights patched, created when absent),
    // and the port of the Canary's Service for a route it creates
    ("gateway.networking.k8s.io", "httproutes", "get", false),
    ("gateway.networking.k8s.io", "httproutes", "patch", false),
    ("gateway.networking.k8s.io", "httproutes", "create", false),
    ("gateway.networking.k8s.io", "grpcroutes", "get", false),
    ("gateway.networking.k8s.io", "grpcroutes", "patch", false),
    ("gateway.networking.k8s.io", "grpcroutes", "create", false),
    ("", "services", "get", false),
    // canary/reconcile.rs: Canaries, their status, and the splits they own
    ("shifter.dev", "canaries", "list", false),
    ("shifter.dev", "canaries", "watch", false),
    ("shifter.dev", "canaries/status", "patch", false),
    ("split.smi-spec.io", "trafficsplits", "get", false),
    ("split.smi-spec.io", "trafficsplits", "patch", false),
    // server-side apply that creates the split is authorised as create
    ("split.smi-spec.io", "trafficsplits", "create", false),
    // the split's owner reference sets blockOwnerDeletion
    ("shifter.dev", "canaries/finalizers", "update", false),
    // events.rs
    ("events.k8s.io", "events", "create", false),
    // lease.rs: leader election in the release namespace
    ("coordination.k8s.io", "leases", "get", true),
    ("coordination.k8s.io", "leases", "create", true),
    ("coordination.k8s.io", "leases", "update", true),
    // runtime.rs: the conversion webhook's caBundle
    ("apiextensions.k8s.io", "customresourcedefinitions", "get", false),
    ("apiextensions.k8s.io", "customresourcedefinitions", "patch", false),
];

fn grants(rules: &[PolicyRule], namespaced: bool) -> BTreeSet<(String, String, String, bool)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(group != "*" && resource != "*" && verb != "*", "wildcard in {rule:?}");
                    out.insert((group.clone(), resource.clone(), verb.clone(), namespaced));
                }
            }
        }
    }
    out
}

#[test]
fn rbac_grants_exactly_what_the_controller_calls() {
    let render = render(json!({}));
    let pod = controller_pod(&render);
    let account = pod.service_account_name.clone().expect("the controller runs as its own ServiceAccount");
    let cluster_role: ClusterRole = render.typed("ClusterRole", "shifter-controller");
    let role: Role = render.typed("Role", "shifter-controller-lease");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE), "the Lease is in POD_NAMESPACE");
    let mut granted = grants(cluster_role.rules.as_deref().unwrap_or_default(), false);
    granted.extend(grants(role.rules.as_deref().unwrap_or_default(), true));
    let needed: BTreeSet<(String, String, String, bool)> =
        CONTROLLER_CALLS.iter().map(|(g, r, v, n)| (g.to_string(), r.to_string(), v.to_string(), *n)).collect();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "RBAC is missing {missing:?} and grants more than needed: {extra:?}"
    );

    let crd_rule =
        cluster_role.rules.unwrap().into_iter().find(|r| r.api_groups == Some(vec!["apiextensions.k8s.io".into()]));
    assert_eq!(
        crd_rule.unwrap().resource_names,
        Some(vec!["trafficsplits.split.smi-spec.io".to_string()]),
        "only the TrafficSplit CRD may be patched"
    );
    let cluster_binding: ClusterRoleBinding = render.typed("ClusterRoleBinding", "shifter-controller");
    let binding: RoleBinding = render.typed("RoleBinding", "shifter-controller-lease");
    assert_eq!(cluster_binding.role_ref.name, "shifter-controller");
    assert_eq!(binding.role_ref.name, "shifter-controller-lease");
    for subjects in [cluster_binding.subjects.unwrap(), binding.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("ServiceAccount", account.as_str()));
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    }
    render.get("ServiceAccount", &account);
}

#[test]
fn chart_crds_are_what_shifter_crds_prints() {
    let render = render(json!({}));
    let out = Command::new(env!("CARGO_BIN_EXE_shifter")).arg("crds").output().expect("run shifter crds");
    assert!(out.status.success());
    let printed = documents(std::str::from_utf8(&out.stdout).unwrap());
    assert_eq!(printed.len(), 3);
    assert!(
        render.crds == printed,
        "Helm installs different CRDs than `shifter crds` prints; regenerate them with:\n  \
         cargo run -q -p shifter -- crds > charts/shifter/crds/crds.yaml"
    );
}

#[test]
fn bad_values_fail_with_the_field_to_fix() {
    let cases = [
        (json!({"gateways": [{"name": "web", "namespace": "shop", "port": 80}]}), "gateways[0].service is required"),
        (json!({"gateways": [{"name": "Web", "service": "web", "namespace": "shop", "port": 80}]}), "gateways[0].name"),
        (
            json!({"gateways": [{"name": "web", "service": "web", "namespace": "shop", "port": 80},
                                {"name": "web", "service": "api", "namespace": "shop", "port": 80}]}),
            "gateways[1].name \"web\" is used twice",
        ),
        (
            json!({"gateways": [{"name": "web", "service": "web", "namespace": "shop", "port": 70000}]}),
            "gateways[0].port",
        ),
        (json!({"controller": {"podAntiAffinity": "maybe"}}), "controller.podAntiAffinity"),
        (json!({"gateway": {"serviceType": "Ingress"}}), "gateway.serviceType"),
    ];
    for (values, message) in cases {
        match try_render(values.clone()) {
            Ok(_) => panic!("{values} rendered; expected an error naming {message:?}"),
            Err(e) => assert!(e.contains(message), "{values}: {e}"),
        }
    }
    let elsewhere = json!({"chart": chart_dir(), "values": {}, "name": "shifter", "namespace": "default"});
    let err = try_render_request(elsewhere).err().expect("installing outside shifter-system fails");
    assert!(err.contains("--namespace shifter-system"), "{err}");
}

/// `# -- ` comments in values.yaml (helm-docs style), by dotted key path.
fn documented_keys(values_yaml: &str) -> BTreeSet<String> {
    let mut documented = BTreeSet::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut doc_comment = false;
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("# -- ") {
            doc_comment = true;
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let key = trimmed.split_once(':').map(|(k, _)| k).filter(|k| !k.is_empty() && !k.contains(' '));
        match key {
            Some(key) if !trimmed.starts_with('-') => {
                stack.retain(|(i, _)| *i < indent);
                stack.push((indent, key.to_string()));
                if doc_comment {
                    documented.insert(stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join("."));
                }
            }
            _ => {}
        }
        doc_comment = false;
    }
    documented
}

fn leaves(value: &serde_yaml::Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        serde_yaml::Value::Mapping(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = k.as_str().unwrap();
                leaves(v, &if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }, out);
            }
        }
        other => {
            out.insert(path.to_string(), serde_json::to_value(other).unwrap());
        }
    }
}

#[test]
fn every_value_is_documented_in_values_yaml_and_the_readme() {
    let values_yaml = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let documented = documented_keys(&values_yaml);
    let defaults: serde_yaml::Value = serde_yaml::from_str(&values_yaml).unwrap();
    let mut all = BTreeMap::new();
    leaves(&defaults, "", &mut all);
    let covered = |leaf: &str| documented.iter().any(|d| leaf == d || leaf.starts_with(&format!("{d}.")));
    let undocumented: Vec<&String> = all.keys().filter(|leaf| !covered(leaf)).collect();
    assert!(undocumented.is_empty(), "values.yaml: give these a `# -- ` comment: {undocumented:?}");

    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let (_, table) = readme.split_once("## Values").expect("a Values section");
    let mut rows = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert_eq!(cells.len(), 4, "README values row needs key, type, default, description: {line}");
        let key = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
        let default: Value = serde_json::from_str(cells[2].trim_matches('`'))
            .unwrap_or_else(|e| panic!("README default for {key} is not JSON ({e}): {}", cells[2]));
        rows.insert(key, default);
    }
    let listed: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(listed, documented, "charts/shifter/README.md lists exactly the documented values");
    for (key, default) in &rows {
        let actual = key.split('.').fold(&defaults, |v, k| &v[k]);
        assert_eq!(default, &serde_json::to_value(actual).unwrap(), "README default for {key}");
    }
}

#[test]
fn single_replicas_get_no_disruption_budget() {
    let render = render(json!({
        "controller": {"replicas": 1},
        "gateway": {"replicas": 1},
        "gateways": [{"name": "web", "service": "web", "namespace": "shop", "port": 80}],
    }));
    check_objects(&render);
    // A budget allowing no disruption of a lone pod would block every node drain.
    assert!(render.of_kind("PodDisruptionBudget").is_empty(), "{:?}", render.names());
}
