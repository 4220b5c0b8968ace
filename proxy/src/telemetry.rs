//! Per-backend windows for the controller: every `telemetry_interval` each backend's window is
//! closed and queued; a `Telemetry.Report` stream carries the queue to the controller. While the
//! controller is away the queue keeps at most `telemetry_buffer` windows and drops the oldest
//! first; the few windows already handed to a stream that then breaks are lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use shifter_proto::LATENCY_BOUNDS_MS;
use shifter_proto::v1::telemetry_client::TelemetryClient;
use shifter_proto::v1::{BackendWindow, TelemetryWindow};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, debug, debug_span, warn};

use crate::config::watch::{Controller, backoff};
use crate::destinations::Destinations;
use crate::metrics::{AttemptFailure, FailureClass, Metrics};

type ReportCall = JoinHandle<Result<tonic::Response<shifter_proto::v1::ReportAck>, tonic::Status>>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Closes every backend's window. A window is sent every interval even with no traffic: its
/// `applied` list is how the controller learns which snapshot each authority runs.
fn close_window(
    metrics: &Metrics,
    dests: &Destinations,
    controller: &Controller,
    start: i64,
    end: i64,
) -> TelemetryWindow {
    let backends: Vec<BackendWindow> = metrics
        .all_backends()
        .iter()
        .filter_map(|b| {
            let (w, (namespace, service, version)) = b.take_window()?;
            let failures_by_class =
                [FailureClass::Http5xx, FailureClass::Connect, FailureClass::Timeout, FailureClass::Grpc]
                    .iter()
                    .zip(w.by_class)
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| (c.as_str().to_string(), n))
                    .collect();
            let failed_attempts_by_reason = AttemptFailure::ALL
                .iter()
                .zip(w.failed_attempts)
                .filter(|(_, n)| *n > 0)
                .map(|(why, n)| (why.as_str().to_string(), n))
                .collect();
            Some(BackendWindow {
                namespace,
                service,
                backend: b.key.dst_service.clone(),
                snapshot_version: version,
                requests: w.requests,
                failures: w.failures,
                failures_by_class,
                latency_counts: w.latency.to_vec(),
                latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
                failed_attempts: w.failed_attempts.iter().sum(),
                failed_attempts_by_reason,
            })
        })
        .collect();
    TelemetryWindow {
        proxy: Some(controller.identity.clone()),
        start_unix_ms: start,
        end_unix_ms: end,
        backends,
        applied: dests.applied(),
    }
}

/// Says how a report stream ended. The controller refusing a window is worth a warning: this
/// proxy's telemetry is what is wrong, and the message names the field.
async fn log_end(call: ReportCall, queued: usize) {
    if !call.is_finished() {
        // The request side closed first; the answer no longer matters.
        call.abort();
        return debug!(queued, "telemetry stream ended");
    }
    match call.await {
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
            warn!(message = status.message(), "the controller rejected a telemetry window")
        }
        Ok(Err(status)) => debug!(code = ?status.code(), message = status.message(), queued, "telemetry stream ended"),
        _ => debug!(queued, "telemetry stream ended"),
    }
}

/// Queues a window, dropping the oldest ones beyond `cap` (the controller may be away for long).
fn enqueue(queue: &mut VecDeque<TelemetryWindow>, window: TelemetryWindow, cap: usize) {
    queue.push_back(window);
    while queue.len() > cap.max(1) {
        queue.pop_front();
    }
}

pub(crate) async fn report(dests: Arc<Destinations>, controller: Controller) {
    let settings = dests.settings().clone();
    let metrics = &dests.compiler().metrics;
    let mut queue: VecDeque<TelemetryWindow> = VecDeque::new();
    let mut tick = tokio::time::interval(settings.telemetry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut start = now_ms();
    let mut stream: Option<(mpsc::Sender<TelemetryWindow>, ReportCall)> = None;
    let mut attempt = 0;
    let mut next_try = Instant::now();
    loop {
        tick.tick().await;
        let end = now_ms();
        enqueue(&mut queue, close_window(metrics, &dests, &controller, start, end), settings.telemetry_buffer);
        start = end;
        if stream.as_ref().is_some_and(|(tx, call)| tx.is_closed() || call.is_finished()) {
            if let Some((_, call)) = stream.take() {
                log_end(call, queue.len()).await;
            }
            next_try = Instant::now() + backoff(settings.backoff_base, settings.backoff_max, attempt);
            attempt = attempt.saturating_add(1);
        }
        if stream.is_none() && !queue.is_empty() && Instant::now() >= next_try {
            let (tx, rx) = mpsc::channel(4);
            let mut client = TelemetryClient::with_interceptor(controller.channel.clone(), controller.auth.clone());
            let call = tokio::spawn(
                async move { client.report(ReceiverStream::new(rx)).await }.instrument(debug_span!("telemetry_report")),
            );
            stream = Some((tx, call));
        }
        if let Some((tx, call)) = &stream {
            while let Some(window) = queue.pop_front() {
                if let Err(e) = tx.try_send(window) {
                    queue.push_front(e.into_inner());
                    break;
                }
            }
            if !call.is_finished() && queue.is_empty() {
                attempt = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_drops_the_oldest_first() {
        let mut queue = VecDeque::new();
        for i in 0..1000 {
            enqueue(&mut queue, TelemetryWindow { start_unix_ms: i, ..Default::default() }, 300);
        }
        assert_eq!(queue.len(), 300);
        assert_eq!(queue.front().unwrap().start_unix_ms, 700);
        assert_eq!(queue.back().unwrap().start_unix_ms, 999);
    }
}
