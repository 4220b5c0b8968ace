//! kube-rs against the embedded server over HTTPS: CRUD, optimistic concurrency, the status
//! subresource and generation, every patch type, schema and admission errors, finalizers.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use serde_json::{Value, json};
use support::{TestServer, install_crds, split};

fn splits(client: &kube::Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("split.smi-spec.io", version, "TrafficSplit");
    Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk_with_plural(&gvk, "trafficsplits"))
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("object")
}

fn api_error(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

#[tokio::test]
async fn crud_with_optimistic_concurrency_and_generate_name() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let created = api.create(&PostParams::default(), &cm("app", json!({"a": "1"}))).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let dup = api_error(api.create(&PostParams::default(), &cm("app", json!({}))).await.unwrap_err());
    assert!(dup.is_already_exists(), "{dup:?}");

    let mut fresh = api.get("app").await.unwrap();
    fresh.data.as_mut().unwrap().insert("a".into(), "2".into());
    let updated = api.replace("app", &PostParams::default(), &fresh).await.unwrap();
    let rv2: u64 = updated.metadata.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // `fresh` still carries rv1: a writer that read before the update loses.
    let stale = api_error(api.replace("app", &PostParams::default(), &fresh).await.unwrap_err());
    assert_eq!(stale.code, 409);
    assert!(stale.message.contains("the object has been modified"), "{}", stale.message);

    let mut generated = cm("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("job-".into());
    let a = api.create(&PostParams::default(), &generated).await.unwrap();
    let b = api.create(&PostParams::default(), &generated).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("job-") && a.len() == 9 && a != b);

    api.delete("app", &DeleteParams::default()).await.unwrap();
    assert!(api_error(api.get("app").await.unwrap_err()).is_not_found());
    assert!(api_error(api.delete("app", &DeleteParams::default()).await.unwrap_err()).is_not_found());
}

#[tokio::test]
async fn status_writes_leave_generation_alone_and_spec_writes_bump_it() {
    let t = TestServer::start().await;
    let client = t.client().await;
    install_crds(&client).await;
    let api = splits(&client, "v1alpha4");
    let mut obj = split("web", &[("web-v1", 90), ("web-v2", 10)]);
    obj["status"] = json!({"split": "ignored on create"});
    let created = api.create(&PostParams::default(), &dynamic(obj)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none(), "status is not writable through create");

    let status = json!({"status": {"split": "web-v1=90% web-v2=10%", "observedGeneration": 1}});
    let after_status = api.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(after_status.data["status"]["split"], "web-v1=90% web-v2=10%");

    // A status write cannot change the spec ...
    let sneaky = json!({"spec": {"service": "other"}, "status": {"split": "x"}});
    let s = api.patch_status("web", &PatchParams::default(), &Patch::Merge(&sneaky)).await.unwrap();
    assert_eq!(s.data["spec"]["service"], "web");
    // ... and a spec write cannot change the status, but bumps generation.
    let spec = json!({"spec": {"service": "web2"}, "status": {"split": "y"}});
    let s = api.patch("web", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    assert_eq!(s.data["status"]["split"], "x");
    // A write that changes nothing is not a new version.
    let same =
        api.patch("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"service": "web2"}}))).await.unwrap();
    assert_eq!(same.metadata.resource_version, s.metadata.resource_version);
    assert_eq!(same.metadata.generation, Some(2));
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let t = TestServer::start().await;
    let client = t.client().await;
    install_crds(&client).await;
    let api = splits(&client, "v1alpha4");
    api.create(&PostParams::default(), &dynamic(split("web", &[("web-v1", 90), ("web-v2", 10)]))).await.unwrap();

    let merged = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {"team": "a"}}, "spec": {"backends": [{"service": "web-v1", "weight": 50}, {"service": "web-v2", "weight": 50}]}})))
        .await
        .unwrap();
    assert_eq!(merged.data["spec"]["backends"][1]["weight"], 50);
    assert_eq!(merged.metadata.labels.unwrap()["team"], "a");

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/backends/0/weight", "value": 50},
        {"op": "replace", "path": "/spec/backends/0/weight", "value": 0},
    ]))
    .unwrap();
    let patched = api.patch("web", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(patched.data["spec"]["backends"][0]["weight"], 0);
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/service", "value": "nope"}])).unwrap();
    assert_eq!(
        api_error(api.patch("web", &PatchParams::default(), &Patch::<()>::Json(failing)).await.unwrap_err()).code,
        422
    );

    // Custom resources do not accept strategic merge patch, exactly as Kubernetes.
    let smp = api.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"service": "x"}}))).await;
    assert_eq!(api_error(smp.unwrap_err()).code, 415);

    // Built-in kinds do: Service ports merge by port.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
    )
    .unwrap();
    let created = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = created.spec.unwrap();
    assert!(spec.cluster_ip.as_deref().unwrap().starts_with("10.96."), "a cluster IP is allocated");
    let smp = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let svc = svcs.patch("web", &PatchParams::default(), &Patch::Strategic(smp)).await.unwrap();
    let ports = svc.spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 2, "the 443 port survives a strategic merge");
    assert_eq!(serde_json::to_value(&ports[0].target_port).unwrap(), json!(9090));
}

#[tokio::test]
async fn server_side_apply_with_two_managers() {
    let t = TestServer::start().await;
    let client = t.client().await;
    install_crds(&client).await;
    let api = splits(&client, "v1alpha4");
    let mut ci = split("web", &[("web-v1", 100)]);
    ci["metadata"]["labels"] = json!({"owner": "ci"});
    let created = api.patch("web", &PatchParams::apply("ci"), &Patch::Apply(&ci)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // A second manager adds a label: no conflict, both own their fields.
    let ops = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "web", "labels": {"oncall": "ops"}}});
    let both = api.patch("web", &PatchParams::apply("ops"), &Patch::Apply(&ops)).await.unwrap();
    let labels = both.metadata.labels.clone().unwrap();
    assert_eq!((labels["owner"].as_str(), labels["oncall"].as_str()), ("ci", "ops"));
    let managers: Vec<String> = both.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(managers, ["ci", "ops"]);

    // ops changing ci's field conflicts ...
    let mut grab = ops.clone();
    grab["spec"] = json!({"service": "web", "backends": [{"service": "web-v2", "weight": 100}]});
    let conflict = api_error(api.patch("web", &PatchParams::apply("ops"), &Patch::Apply(&grab)).await.unwrap_err());
    assert_eq!(conflict.code, 409);
    assert!(conflict.message.contains("conflict with \"ci\""), "{}", conflict.message);
    assert!(conflict.message.contains(".spec.backends"), "{}", conflict.message);
    // ... unless forced, which moves ownership.
    let forced = api.patch("web", &PatchParams::apply("ops").force(), &Patch::Apply(&grab)).await.unwrap();
    assert_eq!(forced.data["spec"]["backends"][0]["service"], "web-v2");
    assert_eq!(forced.metadata.generation, Some(2));

    // ci re-applies without its label: the label it owned alone is removed; ops' label stays.
    let ci_again = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "web"}, "spec": {"service": "web"}});
    let after = api.patch("web", &PatchParams::apply("ci"), &Patch::Apply(&ci_again)).await.unwrap();
    let labels = after.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("owner") && labels["oncall"] == "ops", "{labels:?}");
    assert_eq!(after.data["spec"]["backends"][0]["service"], "web-v2", "ops' backends are untouched");
}

#[tokio::test]
async fn invalid_splits_are_rejected_naming_each_field_and_nothing_is_written() {
    let t = TestServer::start().await;
    let client = t.client().await;
    install_crds(&client).await;
    let api = splits(&client, "v1alpha4");
    let mut bad = split("bad", &[("web-v1", -5)]);
    bad["spec"].as_object_mut().unwrap().remove("service");
    let err = api_error(api.create(&PostParams::default(), &dynamic(bad)).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.is_invalid());
    let fields: Vec<String> = err.details.unwrap().causes.into_iter().map(|c| c.field).collect();
    assert!(
        fields.contains(&"spec.service".to_string()) && fields.contains(&"spec.backends[0].weight".to_string()),
        "{fields:?}"
    );

    // Admission: the schema allows it, shifter's rules do not.
    let zeros = split("zeros", &[("web-v1", 0), ("web-v2", 0)]);
    let err = api_error(api.create(&PostParams::default(), &dynamic(zeros)).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("spec.backends"), "{}", err.message);
    let dup = split("dup", &[("web-v1", 1), ("web-v1", 1)]);
    let err = api_error(api.create(&PostParams::default(), &dynamic(dup)).await.unwrap_err());
    assert!(err.message.contains("spec.backends[1].service"), "{}", err.message);

    let all = api.list(&ListParams::default()).await.unwrap();
    assert!(all.items.is_empty(), "rejected writes leave nothing behind");
}

#[tokio::test]
async fn a_split_is_readable_at_every_served_version() {
    let t = TestServer::start().await;
    let client = t.client().await;
    install_crds(&client).await;
    let v1 = json!({"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit", "metadata": {"name": "q"},
        "spec": {"service": "web", "backends": [{"service": "a", "weight": "750m"}, {"service": "b", "weight": "250m"}]}});
    splits(&client, "v1alpha1").create(&PostParams::default(), &dynamic(v1)).await.unwrap();
    let v4 = splits(&client, "v1alpha4").get("q").await.unwrap();
    assert_eq!(v4.types.unwrap().api_version, "split.smi-spec.io/v1alpha4");
    assert_eq!(
        (v4.data["spec"]["backends"][0]["weight"].as_i64(), v4.data["spec"]["backends"][1]["weight"].as_i64()),
        (Some(750), Some(250))
    );
    let back = splits(&client, "v1alpha1").get("q").await.unwrap();
    assert_eq!(back.data["spec"]["backends"][0]["weight"], "750m", "the writer's quantity spelling survives");
    let v2 = splits(&client, "v1alpha2").get("q").await.unwrap();
    assert_eq!(v2.data["spec"]["backends"][1]["weight"], 250);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let mut c = cm("held", json!({}));
    c.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let still = api.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(api_error(api.get("held").await.unwrap_err()).is_not_found());
}

#[tokio::test]
async fn selectors_paging_and_delete_collection() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    for i in 0..7 {
        let mut c = cm(&format!("c{i}"), json!({}));
        c.metadata.labels = Some([("tier".to_string(), if i % 2 == 0 { "front" } else { "back" }.to_string())].into());
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let names = |l: &kube::core::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>()
    };
    let front = api.list(&ListParams::default().labels("tier in (front)")).await.unwrap();
    assert_eq!(names(&front), ["c0", "c2", "c4", "c6"]);
    let not_front = api.list(&ListParams::default().labels("tier!=front")).await.unwrap();
    assert_eq!(names(&not_front), ["c1", "c3", "c5"]);
    let by_name = api.list(&ListParams::default().fields("metadata.name=c3")).await.unwrap();
    assert_eq!(names(&by_name), ["c3"]);

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(names(&page));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 7);

    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=back")).await.unwrap();
    assert_eq!(names(&api.list(&ListParams::default()).await.unwrap()), ["c0", "c2", "c4", "c6"]);
}

#[tokio::test]
async fn events_recorded_through_events_k8s_io_show_up_as_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let t = TestServer::start().await;
    let client = t.client().await;
    let recorded: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "name": "web", "namespace": "default", "uid": "u-1"},
        "reason": "WeightsChanged", "note": "web-v1=80 web-v2=20 by alice", "type": "Normal", "action": "Update",
        "reportingController": "shifter.dev/controller", "reportingInstance": "shifter-0",
    }))
    .unwrap();
    Api::<Event>::namespaced(client.clone(), "default").create(&PostParams::default(), &recorded).await.unwrap();
    // `kubectl describe` looks events up by the object they concern.
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let found =
        core.list(&ListParams::default().fields("involvedObject.name=web,involvedObject.uid=u-1")).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.message.as_deref(), Some("web-v1=80 web-v2=20 by alice"));
    assert_eq!(e.reporting_component.as_deref(), Some("shifter.dev/controller"));
    assert!(core.list(&ListParams::default().fields("involvedObject.name=api")).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn reapplying_the_same_status_or_crd_is_not_a_new_version() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let t = TestServer::start().await;
    let client = t.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut versions = Vec::new();
    for _ in 0..2 {
        for crd in shifter_crds::all_crds() {
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(&name, &PatchParams::apply("shifter-serve").force(), &Patch::Apply(&crd)).await.unwrap();
        }
        versions.push(crds.get("trafficsplits.split.smi-spec.io").await.unwrap().metadata.resource_version);
    }
    assert_eq!(versions[0], versions[1], "re-installing the same CRDs writes nothing");

    let api = splits(&client, "v1alpha4");
    api.create(&PostParams::default(), &dynamic(split("web", &[("web-v1", 1)]))).await.unwrap();
    let status = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "web"},
        "status": {"split": "web-v1=100%", "observedGeneration": 1}});
    let pp = PatchParams::apply("shifter-controller").force();
    let first = api.patch_status("web", &pp, &Patch::Apply(&status)).await.unwrap();
    let second = api.patch_status("web", &pp, &Patch::Apply(&status)).await.unwrap();
    assert_eq!(first.data["status"]["split"], "web-v1=100%");
    assert_eq!(first.metadata.resource_version, second.metadata.resource_version, "an idempotent reconcile is silent");
}

#[tokio::test]
async fn a_namespace_terminates_until_its_last_finalizer_is_gone() {
    use k8s_openapi::api::core::v1::Namespace;
    let t = TestServer::start().await;
    let client = t.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.create(&PostParams::default(), &cm("plain", json!({}))).await.unwrap();

    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    let ns = namespaces.get("team").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(api_error(cms.get("plain").await.unwrap_err()).is_not_found());
    assert!(cms.get("held").await.unwrap().metadata.deletion_timestamp.is_some());
    let refused = api_error(cms.create(&PostParams::default(), &cm("late", json!({}))).await.unwrap_err());
    assert_eq!(refused.code, 403, "{refused:?}");

    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(
        api_error(namespaces.get("team").await.unwrap_err()).is_not_found(),
        "the namespace goes with its last object"
    );
}
