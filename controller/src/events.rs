//! Kubernetes Events (`events.k8s.io/v1`), one per occurrence. kube-runtime's recorder folds
//! repeats with the same reason into one Event's series and keeps the first note, which would hide
//! "90→50" behind "weights set"; every weight change and rollout transition deserves its own line.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use rand::RngCore;

/// Records Events as one reporting controller instance.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
}

impl EventRecorder {
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        EventRecorder { client, controller: controller.into(), instance: instance.into() }
    }

    /// Creates a Normal (or Warning) Event about `regarding`.
    pub async fn record(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let mut suffix = [0u8; 8];
        rand::rng().fill_bytes(&mut suffix);
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{suffix}", regarding.name.clone().unwrap_or_default())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note.chars().take(1024).collect()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await.map(drop)
    }
}
