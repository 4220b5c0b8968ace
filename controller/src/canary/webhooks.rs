//! Calls a Canary's webhooks: a JSON POST with what the rollout is doing, retried within one time
//! budget. A 2xx answer is success; anything else, a timeout or a refused connection is a failure
//! whose message says which.
//!
//! The hook's `timeout` bounds the whole call, every attempt and pause included, and is itself
//! capped at [`MAX_TIMEOUT`] whatever the object says: a hook that never answers holds up only its
//! own Canary, and only for that long. Answers are read up to [`MAX_BODY_BYTES`].

use std::time::Duration;

use serde_json::json;
use shifter_crds::canary::{CanarySpec, CanaryStatus, Webhook, WebhookKind};
use shifter_crds::duration::parse_duration;

use super::machine::{WebhookOutcome, stable_of};

/// Attempts per call (the first try plus retries), all within the hook's timeout.
pub const ATTEMPTS: u32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a hook may take, retries included, even if its object asks for more.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an answer is read (for the message of a failed call).
pub const MAX_BODY_BYTES: usize = 4096;

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

/// The budget for one call of `hook`: its timeout, defaulted and capped.
pub fn budget(hook: &Webhook) -> Duration {
    hook.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
}

/// Calls `hook`, retrying failures with a short backoff while its budget lasts.
pub async fn call(client: &reqwest::Client, hook: &Webhook, body: &serde_json::Value) -> WebhookOutcome {
    let budget = budget(hook);
    let outcome = |ok: bool, message: String| WebhookOutcome { name: hook.name.clone(), kind: hook.kind, ok, message };
    let mut message = String::new();
    let attempts = async {
        let attempts = if hook.kind == WebhookKind::Rollback { 1 } else { ATTEMPTS };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            match client.post(&hook.url).timeout(budget).json(body).send().await {
                Ok(r) if r.status().is_success() => return Some(format!("HTTP {}", r.status().as_u16())),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text: String = read_prefix(r).await.chars().take(200).collect();
                    message = format!("HTTP {status} {}", text.trim());
                    // A clear "no" from a gate or kill switch is an answer, not a fault to retry.
                    if matches!(hook.kind, WebhookKind::Rollback | WebhookKind::ConfirmPromotion) {
                        break;
                    }
                }
                Err(e) if e.is_timeout() => message = format!("no answer within {budget:?}"),
                Err(e) => message = format!("request failed: {e}"),
            }
        }
        None
    };
    let result = tokio::time::timeout(budget, attempts).await;
    match result {
        Ok(Some(ok)) => outcome(true, ok),
        Ok(None) => outcome(false, message),
        Err(_) if message.is_empty() => outcome(false, format!("no answer within {budget:?}")),
        Err(_) => outcome(false, format!("{message}; then no answer within {budget:?} in all")),
    }
}

/// The first [`MAX_BODY_BYTES`] of an answer, as text.
async fn read_prefix(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY_BYTES - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn hook(url: String, timeout: &str) -> Webhook {
        Webhook {
            name: "smoke".into(),
            kind: WebhookKind::PreRollout,
            url,
            timeout: Some(timeout.into()),
            ..Default::default()
        }
    }

    /// Accepts connections, reads the request, and answers with `reply` (or never, when `None`).
    async fn server(reply: Option<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = socket.read(&mut buf).await;
                    match reply {
                        Some(reply) => {
                            let _ = socket.write_all(reply.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_hook_that_never_answers_costs_its_timeout_once_not_per_attempt() {
        let url = server(None).await;
        let started = Instant::now();
        let outcome = call(&reqwest::Client::new(), &hook(url, "300ms"), &serde_json::json!({})).await;
        let took = started.elapsed();
        assert!(!outcome.ok);
        assert!(outcome.message.contains("no answer within 300ms"), "{}", outcome.message);
        assert!(took < Duration::from_millis(300 * u64::from(ATTEMPTS)), "took {took:?}");
    }

    #[test]
    fn a_timeout_beyond_the_cap_is_capped() {
        assert_eq!(budget(&hook("http://x".into(), "10h")), MAX_TIMEOUT);
        assert_eq!(budget(&hook("http://x".into(), "9999999999999999999999s")), DEFAULT_TIMEOUT);
        assert_eq!(budget(&hook("http://x".into(), "2s")), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_huge_error_answer_gives_a_short_message() {
        let body = "x".repeat(1 << 20);
        let reply = format!("HTTP/1.1 500 Oops\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let url = server(Some(reply)).await;
        let outcome = call(&reqwest::Client::new(), &hook(url, "2s"), &serde_json::json!({})).await;
        assert!(!outcome.ok);
        assert!(outcome.message.starts_with("HTTP 500 xxx"), "{}", &outcome.message[..40]);
        assert!(outcome.message.len() < 300, "the message carries a prefix, not the megabyte");
    }
}
