//! How a rendered pod is wired: its expanded arguments, named ports, probes, Secret mount and the
//! Services in front of it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Render;

pub fn controller_pod(render: &Render) -> PodSpec {
    let controller: StatefulSet = render.typed("StatefulSet", "shifter-controller");
    controller.spec.unwrap().template.spec.unwrap()
}

pub fn gateway_pod(render: &Render, name: &str) -> PodSpec {
    let gateway: Deployment = render.typed("Deployment", &format!("shifter-gateway-{name}"));
    gateway.spec.unwrap().template.spec.unwrap()
}

/// The container's arguments after the kubelet expands `$(VAR)` from its env (values from the
/// downward API are given in `pod_fields`); a reference to an undefined variable would stay literal.
pub fn expanded_args(container: &Container, pod_fields: &BTreeMap<&str, &str>) -> Vec<String> {
    let mut vars = BTreeMap::new();
    for env in container.env.iter().flatten() {
        let value = match (&env.value, &env.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let path = &from.field_ref.as_ref().expect("env from a pod field").field_path;
                pod_fields.get(path.as_str()).unwrap_or_else(|| panic!("no test value for {path}")).to_string()
            }
            _ => String::new(),
        };
        vars.insert(format!("$({})", env.name), value);
    }
    let args = container.args.clone().unwrap_or_default();
    args.into_iter()
        .map(|mut arg| {
            for (var, value) in &vars {
                arg = arg.replace(var, value);
            }
            assert!(!arg.contains("$("), "{arg} refers to a variable the container does not define");
            arg
        })
        .collect()
}

pub fn port_named(container: &Container, name: &str) -> u16 {
    let port = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name));
    port.unwrap_or_else(|| panic!("{} has no port {name}", container.name)).container_port as u16
}

pub fn probe_port(probe: Option<&Probe>, container: &Container) -> (String, u16) {
    let get = probe.and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
    let port = match &get.port {
        IntOrString::Int(p) => *p as u16,
        IntOrString::String(name) => port_named(container, name),
    };
    (get.path.clone().unwrap_or_default(), port)
}

/// Where the pod mounts the Secret volume, and which of the Secret's keys it sees there.
pub fn secret_mount(pod: &PodSpec) -> (String, Vec<String>) {
    let volume = pod.volumes.iter().flatten().find(|v| v.secret.is_some()).expect("a Secret volume");
    let keys = volume.secret.as_ref().unwrap().items.iter().flatten().map(|i| i.path.clone()).collect();
    let mount = pod.containers[0].volume_mounts.iter().flatten().find(|m| m.name == volume.name).unwrap();
    (mount.mount_path.clone(), keys)
}

/// Resolves a Service port (by number) to the container port it forwards to.
pub fn service_target(service: &Service, port: u16, container: &Container) -> u16 {
    let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
    let p = ports.iter().find(|p| p.port == i32::from(port)).unwrap_or_else(|| panic!("Service lacks port {port}"));
    match p.target_port.as_ref().expect("targetPort") {
        IntOrString::Int(n) => *n as u16,
        IntOrString::String(name) => port_named(container, name),
    }
}
