//! Calls a Canary's webhooks: a JSON POST with what the rollout is doing, a timeout, and retries.
//! A 2xx answer is success; anything else, a timeout or a refused connection is a failure whose
//! message says which.

use std::time::Duration;

use serde_json::json;
use shifter_crds::canary::{CanarySpec, CanaryStatus, Webhook, WebhookKind};
use shifter_crds::duration::parse_duration;

use super::machine::{WebhookOutcome, stable_of};

/// Attempts per call (the first try plus retries).
pub const ATTEMPTS: u32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The body every webhook receives.
pub fn body(
    name: &str,
    namespace: &str,
    spec: &CanarySpec,
    status: &CanaryStatus,
    hook: &Webhook,
) -> serde_json::Value {
    json!({
        "name": name,
        "namespace": namespace,
        "phase": status.phase,
        "weight": status.canary_weight,
        "step": status.current_step,
        "stable": stable_of(spec, status),
        "canary": spec.canary,
        "type": hook.kind,
        "metadata": hook.metadata,
    })
}

/// Calls `hook`, retrying failures with a short backoff.
pub async fn call(client: &reqwest::Client, hook: &Webhook, body: &serde_json::Value) -> WebhookOutcome {
    let timeout = hook.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_TIMEOUT);
    let attempts = if hook.kind == WebhookKind::Rollback { 1 } else { ATTEMPTS };
    let mut message = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match client.post(&hook.url).timeout(timeout).json(body).send().await {
            Ok(r) if r.status().is_success() => {
                return WebhookOutcome {
                    name: hook.name.clone(),
                    kind: hook.kind,
                    ok: true,
                    message: format!("HTTP {}", r.status().as_u16()),
                };
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                message = format!("HTTP {status} {}", text.trim());
                // A clear "no" from a gate or kill switch is an answer, not a fault to retry.
                if matches!(hook.kind, WebhookKind::Rollback | WebhookKind::ConfirmPromotion) {
                    break;
                }
            }
            Err(e) if e.is_timeout() => message = format!("no answer within {timeout:?}"),
            Err(e) => message = format!("request failed: {e}"),
        }
    }
    WebhookOutcome { name: hook.name.clone(), kind: hook.kind, ok: false, message }
}
