//! Property tests of Canary validation: no spec, however absurd its strings and numbers, panics
//! it; every problem starts with the path of a field the spec has; a spec within every bound
//! passes both validation and the CRD schema; and breaking any one field is reported at that field.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use regex::Regex;
use serde_json::{Value, json};
use shifter_crds::canary::*;
use shifter_crds::duration::{DurationRange, format_duration};
use support::schema::problems_of;

/// The field paths `validate` may name (indices are checked separately).
const FIELD: &str = r"^spec\.(service|stable|canary|stepWeight|maxWeight|progressDeadline|steps(\[[0-9]+\]\.(weight|pause))?|analysis\.(interval|minDuration|warmup|failureLimit|minRequests|alpha|provider\.(address|scrapeInterval)|metrics(\[[0-9]+\](\.(name|minSuccessRate|quantile|maxLatencyMs|tolerance|min|max|query))?)?)|webhooks(\[[0-9]+\]\.(name|url|timeout|metadata))?)$";

/// Text of one of six shapes, spelled out from a seed. Deriving it in one `prop_map` instead of a
/// `prop_oneof!` of string strategies keeps ~30 of these a case cheap in a debug build.
fn absurd_text() -> impl Strategy<Value = String> {
    const UNITS: [&str; 8] = ["ms", "s", "m", "h", "us", "d", "", " s"];
    const SAMPLES: [&str; 10] =
        ["web", "web-v1", "Web_V1", "web-", "-web", "", "http://", "https://x", "ftp://x", "http://a b"];
    (0..6u8, any::<u64>()).prop_map(|(shape, seed)| {
        let small = (seed % 1_000) as usize;
        let unit = UNITS[(seed >> 20) as usize % UNITS.len()];
        match shape {
            // Any characters: control, combining, astral, replacement.
            0 => (0..small % 16)
                .map(|i| {
                    let x = seed.rotate_left(i as u32 * 7).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    char::from_u32(x as u32 % 0x11_0000).unwrap_or('\u{FFFD}')
                })
                .collect(),
            1 => format!("{}{unit}", "9".repeat(10 + small % 20)),
            2 if seed & 1 == 0 => format!("{}{unit}", seed >> 48),
            2 => format!("{}.{}{unit}", seed >> 48, (seed >> 32) & 0xFFFF),
            3 => SAMPLES[small % SAMPLES.len()].to_string(),
            4 => "a".repeat(small % 70),
            _ => "x".repeat(5_000),
        }
    })
}

fn absurd_number() -> impl Strategy<Value = f64> {
    // Any bit pattern covers NaN, infinities and subnormals; the samples hit the bounds.
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 0.0, 0.5, 1.0, 99.9, 100.0, 101.0, 3.6e6, 1e300]),
    ]
}

fn absurd_spec() -> impl Strategy<Value = CanarySpec> {
    let names = (absurd_text(), absurd_text(), absurd_text());
    let step = (any::<u32>(), prop::option::of(absurd_text()), any::<bool>())
        .prop_map(|(weight, pause, gate)| CanaryStep { weight: weight % 128, pause, gate });
    let steps =
        prop_oneof![10 => prop::collection::vec(step, 0..5), 1 => Just(vec![CanaryStep::default(); MAX_STEPS + 3])];
    let metric = (
        absurd_text(),
        0..3u8,
        prop::option::of(any::<bool>()),
        prop::array::uniform7(prop::option::of(absurd_number())),
        prop::option::of(absurd_text()),
    )
        .prop_map(|(name, kind, absolute, n, query)| Metric {
            name,
            kind: [MetricKind::SuccessRate, MetricKind::Latency, MetricKind::Custom][kind as usize],
            mode: absolute.map(|a| if a { MetricMode::Absolute } else { MetricMode::Comparative }),
            min_success_rate: n[0],
            quantile: n[1],
            max_latency_ms: n[2],
            tolerance: n[3],
            query,
            min: n[4],
            max: n[5].or(n[6]),
        });
    let webhook = (absurd_text(), absurd_text(), prop::option::of(absurd_text()), 0..40usize).prop_map(
        |(name, url, timeout, n)| Webhook {
            name,
            kind: WebhookKind::Rollout,
            url,
            timeout,
            metadata: (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect::<BTreeMap<_, _>>(),
        },
    );
    let durations = prop::array::uniform5(prop::option::of(absurd_text()));
    let counts = (
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u64>()),
    );
    let provider = (any::<bool>(), prop::option::of(absurd_text()), prop::option::of(absurd_text()));
    (
        names,
        steps,
        (durations, counts, prop::option::of(absurd_number())),
        provider,
        prop::collection::vec(metric, 0..4),
        prop::collection::vec(webhook, 0..4),
    )
        .prop_map(
            |(
                (service, stable, canary),
                steps,
                (d, (sw, mw, fl, mr), alpha),
                (prom, address, scrape),
                metrics,
                webhooks,
            )| CanarySpec {
                service,
                stable,
                canary,
                steps,
                step_weight: sw,
                max_weight: mw,
                analysis: Analysis {
                    interval: d[0].clone(),
                    failure_limit: fl,
                    min_requests: mr,
                    min_duration: d[1].clone(),
                    warmup: d[2].clone(),
                    alpha,
                    provider: Provider {
                        kind: if prom { ProviderKind::Prometheus } else { ProviderKind::Mesh },
                        address,
                        scrape_interval: scrape,
                        data_plane: None,
                    },
                    metrics,
                },
                webhooks,
                progress_deadline: d[3].clone().or(d[4].clone()),
                paused: false,
                route_ref: None,
            },
        )
}

/// A duration inside `range`, written as shifter formats it.
fn within(range: DurationRange) -> impl Strategy<Value = String> {
    (range.min.as_millis() as u64..=range.max.as_millis() as u64)
        .prop_map(|ms| format_duration(Duration::from_millis(ms)))
}

/// A spec within every bound.
fn valid_spec() -> impl Strategy<Value = CanarySpec> {
    let steps = prop::collection::vec((0..=100u32, prop::option::of(within(PAUSE))), 0..6).prop_map(|mut s| {
        s.sort_by_key(|(w, _)| *w);
        s.into_iter().map(|(weight, pause)| CanaryStep { weight, pause, gate: false }).collect::<Vec<_>>()
    });
    let analysis = (
        prop::option::of(within(INTERVAL)),
        prop::option::of(within(MIN_DURATION)),
        prop::option::of(within(WARMUP)),
        prop::option::of(1..=MAX_FAILURE_LIMIT),
        prop::option::of(0..=MAX_MIN_REQUESTS),
        prop::option::of(1e-9..0.4999f64),
        prop::option::of(within(SCRAPE_INTERVAL)),
        prop::collection::vec((0.0..=100.0f64, 0.001..0.999f64, 0.1..=MAX_LATENCY_MS, 1.0..=MAX_TOLERANCE), 0..3),
    )
        .prop_map(|(interval, min_duration, warmup, failure_limit, min_requests, alpha, scrape, metrics)| Analysis {
            interval,
            failure_limit,
            min_requests,
            min_duration,
            warmup,
            alpha,
            provider: Provider {
                kind: ProviderKind::Prometheus,
                address: Some("http://prometheus:9090".into()),
                scrape_interval: scrape,
                data_plane: None,
            },
            metrics: metrics
                .into_iter()
                .enumerate()
                .map(|(i, (rate, quantile, latency, tolerance))| Metric {
                    name: format!("m{i}"),
                    kind: MetricKind::Latency,
                    mode: Some(MetricMode::Absolute),
                    min_success_rate: Some(rate),
                    quantile: Some(quantile),
                    max_latency_ms: Some(latency),
                    tolerance: Some(tolerance),
                    ..Default::default()
                })
                .collect(),
        });
    let webhooks = prop::collection::vec(prop::option::of(within(WEBHOOK_TIMEOUT)), 0..3).prop_map(|timeouts| {
        timeouts
            .into_iter()
            .enumerate()
            .map(|(i, timeout)| Webhook {
                name: format!("hook-{i}"),
                kind: WebhookKind::Rollout,
                url: format!("https://hooks.example/{i}"),
                timeout,
                ..Default::default()
            })
            .collect::<Vec<_>>()
    });
    (steps, analysis, webhooks, prop::option::of(within(PROGRESS_DEADLINE))).prop_map(
        |(steps, analysis, webhooks, deadline)| CanarySpec {
            service: "web".into(),
            stable: "web-v1".into(),
            canary: "web-v2".into(),
            steps,
            analysis,
            webhooks,
            progress_deadline: deadline,
            ..Default::default()
        },
    )
}

/// Where to break a valid spec, and how.
fn a_break() -> impl Strategy<Value = (usize, String)> {
    let duration = prop_oneof![
        "[0-9]{10,25}s",
        Just("9999999999999999999999s".to_string()),
        Just("169h".to_string()),
        "[0-9]{1,3}",
        Just("-1s".to_string()),
    ];
    (0usize..9, duration)
}

fn checked(spec: &CanarySpec) -> Result<Vec<String>, TestCaseError> {
    thread_local!(static RE: Regex = Regex::new(FIELD).unwrap());
    let errors = validate(spec);
    for e in &errors {
        let (field, message) = e.split_once(": ").ok_or_else(|| TestCaseError::fail(format!("no field path: {e}")))?;
        prop_assert!(RE.with(|re| re.is_match(field)), "unknown field path in {e}");
        prop_assert!(!message.is_empty() && message.chars().count() < 400, "{e}");
        let index = |list: &str| field.strip_prefix(list).and_then(|r| r.split(']').next()?.parse::<usize>().ok());
        for (list, len, max) in [
            ("spec.steps[", spec.steps.len(), MAX_STEPS),
            ("spec.analysis.metrics[", spec.analysis.metrics.len(), MAX_METRICS),
            ("spec.webhooks[", spec.webhooks.len(), MAX_WEBHOOKS),
        ] {
            if let Some(i) = index(list) {
                prop_assert!(i < len.min(max), "{e}");
            }
        }
    }
    Ok(errors)
}

proptest! {
    #![proptest_config(support::cases())]

    #[test]
    fn absurd_specs_are_judged_without_panicking_and_every_problem_names_its_field(spec in absurd_spec()) {
        checked(&spec)?;
    }

    #[test]
    fn any_json_spec_that_deserialises_is_judged_naming_its_fields(value in support::any_json()) {
        let mut spec = json!({"service": "web", "stable": "web-v1", "canary": "web-v2"});
        if let (Value::Object(base), Value::Object(extra)) = (&mut spec, value) {
            base.extend(extra);
        }
        if let Ok(spec) = serde_json::from_value::<CanarySpec>(spec) {
            checked(&spec)?;
        }
    }

    #[test]
    fn a_spec_within_every_bound_passes_validation_and_the_schema(spec in valid_spec()) {
        prop_assert_eq!(checked(&spec)?, Vec::<String>::new());
        let obj = json!({"apiVersion": "shifter.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "web"}, "spec": spec});
        prop_assert_eq!(problems_of(&obj), Vec::<String>::new());
    }

    #[test]
    fn breaking_one_duration_is_reported_at_that_field(mut spec in valid_spec(), (which, bad) in a_break()) {
        let field = match which {
            0 => { spec.analysis.interval = Some(bad); "spec.analysis.interval".to_string() }
            1 => { spec.analysis.min_duration = Some(bad); "spec.analysis.minDuration".to_string() }
            2 => { spec.analysis.warmup = Some(bad); "spec.analysis.warmup".to_string() }
            3 => { spec.analysis.provider.scrape_interval = Some(bad); "spec.analysis.provider.scrapeInterval".to_string() }
            4 => { spec.progress_deadline = Some(bad); "spec.progressDeadline".to_string() }
            5 | 6 if !spec.steps.is_empty() => {
                let i = spec.steps.len() - 1;
                spec.steps[i].pause = Some(bad);
                format!("spec.steps[{i}].pause")
            }
            _ => {
                spec.webhooks.push(Webhook { name: "broken".into(), url: "http://b".into(), timeout: Some(bad), ..Default::default() });
                format!("spec.webhooks[{}].timeout", spec.webhooks.len() - 1)
            }
        };
        let errors = checked(&spec)?;
        prop_assert_eq!(errors.len(), 1, "{:?}", errors);
        prop_assert!(errors[0].starts_with(&format!("{field}: ")), "{errors:?}");
    }
}
