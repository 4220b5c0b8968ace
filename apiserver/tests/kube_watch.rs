//! Watches through kube-rs: resuming from a resourceVersion, 410 Gone after a restart, bookmarks,
//! and kube-runtime's watcher, reflector and Controller reconciling a custom resource.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::TestServer;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": v}})).unwrap()
}

async fn next_event<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = Result<WatchEvent<ConfigMap>, kube::Error>> + Unpin,
{
    loop {
        let e = timeout(LIMIT, stream.next()).await.expect("event in time").expect("stream open").expect("event");
        if !matches!(e, WatchEvent::Bookmark(_)) {
            return e;
        }
    }
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_even_across_a_restart() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let first = api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    let rv = first.resource_version().unwrap();
    api.create(&PostParams::default(), &cm("b", "1")).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.unwrap();
    api.delete("b", &Default::default()).await.unwrap();

    // Resuming after `a` was created replays exactly what happened since, in order.
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Modified(c) => assert_eq!(c.data.unwrap()["v"], "2"),
        other => panic!("expected MODIFIED a, got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Deleted(c) => assert_eq!(c.name_any(), "b"),
        other => panic!("expected DELETED b, got {other:?}"),
    }
    // And then live events.
    api.create(&PostParams::default(), &cm("c", "1")).await.unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "c"),
        other => panic!("expected ADDED c, got {other:?}"),
    }
    drop(stream);

    // The history is durable: after a restart the same watch resumes where it was.
    let t = t.restart().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "b"),
        other => panic!("expected ADDED b after the restart, got {other:?}"),
    }
}

#[tokio::test]
async fn a_version_older_than_the_kept_history_gets_410_expired() {
    let t = TestServer::start_with(|c| c.watch_history = 3).await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let first = api.create(&PostParams::default(), &cm("a", "0")).await.unwrap().resource_version().unwrap();
    for i in 1..=5 {
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": i.to_string()}}))).await.unwrap();
    }
    let mut stream = api.watch(&WatchParams::default(), &first).await.unwrap().boxed();
    match timeout(LIMIT, stream.next()).await.unwrap().unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    // A watch from a version still in the history works.
    let recent = api.get("a").await.unwrap().resource_version().unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "6"}}))).await.unwrap();
    let mut stream = api.watch(&WatchParams::default(), &recent).await.unwrap().boxed();
    match next_event(&mut stream).await {
        WatchEvent::Modified(c) => assert_eq!(c.data.unwrap()["v"], "6"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_and_timeouts_are_honoured() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let created = api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    let rv = created.resource_version().unwrap();
    let wp = WatchParams { bookmarks: true, ..WatchParams::default() }.timeout(2);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let started = std::time::Instant::now();
    let mut bookmarks = 0;
    while let Some(e) = timeout(LIMIT, stream.next()).await.expect("stream ends by its timeout") {
        if let WatchEvent::Bookmark(b) = e.unwrap() {
            assert_eq!(b.metadata.resource_version, rv);
            bookmarks += 1;
        }
    }
    assert!(bookmarks >= 1, "the server sends bookmarks when asked");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn watcher_and_reflector_follow_changes() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    api.create(&PostParams::default(), &cm("before", "1")).await.unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let mut stream = stream.boxed();
    let first = timeout(LIMIT, stream.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.name_any(), "before");
    api.create(&PostParams::default(), &cm("after", "1")).await.unwrap();
    api.patch("before", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "9"}}))).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let o = timeout(LIMIT, stream.try_next()).await.unwrap().unwrap().unwrap();
        seen.push((o.name_any(), o.data.unwrap()["v"].clone()));
    }
    assert_eq!(seen, [("after".to_string(), "1".to_string()), ("before".to_string(), "9".to_string())]);
    assert_eq!(reader.state().len(), 2);
    api.delete("after", &Default::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let drive = async {
        while reader.state().len() != 1 {
            let _ = timeout(Duration::from_millis(200), stream.try_next()).await;
            assert!(tokio::time::Instant::now() < deadline, "reflector saw the delete");
        }
    };
    drive.await;
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_initial_objects_then_changes() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    for n in ["a", "b"] {
        api.create(&PostParams::default(), &cm(n, "1")).await.unwrap();
    }
    // sendInitialEvents=true: the objects arrive as ADDED events, then a bookmark ends the list.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().streaming_lists();
    let mut stream = reflector(writer, watcher(api.clone(), config)).applied_objects().boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        names.push(timeout(LIMIT, stream.try_next()).await.unwrap().unwrap().unwrap().name_any());
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);
    api.create(&PostParams::default(), &cm("c", "1")).await.unwrap();
    let next = timeout(LIMIT, stream.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.name_any(), "c");
    assert_eq!(reader.state().len(), 3);
}

/// A small custom resource the test controller reconciles.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "test.shifter.dev", version = "v1", kind = "Widget", namespaced, status = "WidgetStatus")]
pub struct WidgetSpec {
    pub size: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    pub doubled: i64,
    #[serde(rename = "observedGeneration")]
    pub observed_generation: i64,
}

async fn reconcile(w: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, kube::Error> {
    let status =
        json!({"status": {"doubled": w.spec.size * 2, "observedGeneration": w.metadata.generation.unwrap_or(0)}});
    api.patch_status(&w.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn a_kube_runtime_controller_reconciles_a_custom_resource() {
    let t = TestServer::start().await;
    let client = t.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd()).await.unwrap();
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let shared = Arc::new(api.clone());
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), shared)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("reconcile error: {e:?}");
            }
        });
    let handle = tokio::spawn(controller);

    let w: Widget = serde_json::from_value(
        json!({"apiVersion": "test.shifter.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 21}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &w).await.unwrap();
    let wait_for = |want: i64, generation: i64| {
        let api = api.clone();
        async move {
            let deadline = tokio::time::Instant::now() + LIMIT;
            loop {
                let got = api.get("w").await.unwrap();
                if got.status.as_ref().is_some_and(|s| s.doubled == want && s.observed_generation == generation) {
                    return got;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "controller did not reconcile to {want}: {:?}",
                    got.status
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let got = wait_for(42, 1).await;
    assert_eq!(got.metadata.generation, Some(1), "status writes do not bump generation");
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 5}}))).await.unwrap();
    wait_for(10, 2).await;
    handle.abort();
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_enter_and_leave_the_selection() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client().await, "default");
    let start = api.create(&PostParams::default(), &cm("other", "1")).await.unwrap().resource_version().unwrap();
    let wp = WatchParams::default().labels("tier=front");
    let mut stream = api.watch(&wp, &start).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("x", "1")).await.unwrap();
    let label = |v: Option<&str>| json!({"metadata": {"labels": {"tier": v}}});
    api.patch("x", &PatchParams::default(), &Patch::Merge(label(Some("front")))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(label(None))).await.unwrap();
    api.patch("other", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(label(Some("front")))).await.unwrap();
    api.delete("x", &Default::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(match next_event(&mut stream).await {
            WatchEvent::Added(c) => format!("ADDED {}", c.name_any()),
            WatchEvent::Modified(c) => format!("MODIFIED {}", c.name_any()),
            WatchEvent::Deleted(c) => format!("DELETED {}", c.name_any()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(seen, ["ADDED x", "MODIFIED x", "DELETED x", "ADDED x", "DELETED x"]);
}
