//! One function that reads a TrafficSplit of any served version and returns the backends with
//! their shares, or every problem found, each naming its field and how to fix it.

use std::fmt;

use serde_json::Value;

use crate::quantity::{MAX_WEIGHT, Nanos, QuantityError, parse_quantity, to_integer_weights};
use crate::traffic_split::{GROUP, MAX_BACKENDS, MAX_MATCHES, MAX_NAME_LEN, VERSIONS};

/// A split reduced to what routing needs: integer weights at a common scale and percentages.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedSplit {
    /// The version the object was written at, e.g. `v1alpha1`.
    pub version: String,
    pub service: String,
    pub backends: Vec<WeightedBackend>,
    /// Names of the HTTPRouteGroups in `spec.matches` (v1alpha3+).
    pub route_groups: Vec<String>,
}

/// One backend with its weight at the split's common integer scale and its share in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedBackend {
    pub service: String,
    pub weight: u64,
    pub percent: f64,
}

/// One problem with a split, tied to the field that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    /// JSON path of the field, e.g. `spec.backends[1].weight`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
    pub kind: SplitErrorKind,
}

/// The case a [`SplitError`] belongs to; used as a status reason and to test each case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitErrorKind {
    UnknownVersion,
    MissingField,
    EmptyName,
    NoBackends,
    DuplicateBackend,
    NegativeWeight,
    NonNumericWeight,
    WeightOutOfRange,
    InvalidName,
    TooManyItems,
    AllWeightsZero,
    UnknownMatchKind,
    MatchesNotSupported,
}

impl SplitErrorKind {
    /// CamelCase reason for status conditions.
    pub fn reason(self) -> &'static str {
        match self {
            SplitErrorKind::UnknownVersion => "UnknownVersion",
            SplitErrorKind::MissingField => "MissingField",
            SplitErrorKind::EmptyName => "EmptyName",
            SplitErrorKind::NoBackends => "NoBackends",
            SplitErrorKind::DuplicateBackend => "DuplicateBackend",
            SplitErrorKind::NegativeWeight => "NegativeWeight",
            SplitErrorKind::NonNumericWeight => "InvalidWeight",
            SplitErrorKind::WeightOutOfRange => "WeightOutOfRange",
            SplitErrorKind::InvalidName => "InvalidName",
            SplitErrorKind::TooManyItems => "TooManyItems",
            SplitErrorKind::AllWeightsZero => "AllWeightsZero",
            SplitErrorKind::UnknownMatchKind => "UnsupportedMatchKind",
            SplitErrorKind::MatchesNotSupported => "MatchesNotSupported",
        }
    }
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SplitErrors(pub Vec<SplitError>);

impl fmt::Display for SplitErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl SplitErrors {
    pub fn kinds(&self) -> Vec<SplitErrorKind> {
        self.0.iter().map(|e| e.kind).collect()
    }
}

struct Collector(Vec<SplitError>);

impl Collector {
    fn push(&mut self, kind: SplitErrorKind, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SplitError { field: field.into(), message: message.into(), kind });
    }
}

/// Reads a TrafficSplit written at any served version (`apiVersion` decides which rules apply).
pub fn normalise(obj: &Value) -> Result<NormalisedSplit, SplitErrors> {
    let mut errs = Collector(Vec::new());
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let version = match api_version.split_once('/') {
        Some((GROUP, v)) if VERSIONS.contains(&v) => v.to_string(),
        _ => {
            errs.push(
                SplitErrorKind::UnknownVersion,
                "apiVersion",
                format!(
                    "{} is not a TrafficSplit version; use {GROUP}/v1alpha1 … {GROUP}/v1alpha4",
                    crate::duration::shown(api_version)
                ),
            );
            return Err(SplitErrors(errs.0));
        }
    };
    let quantities = version == "v1alpha1";
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);

    let service = match spec.get("service") {
        Some(Value::String(s)) if s.chars().count() > MAX_NAME_LEN => {
            errs.push(SplitErrorKind::InvalidName, "spec.service", too_long_name(s));
            String::new()
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => {
            errs.push(
                SplitErrorKind::EmptyName,
                "spec.service",
                "must not be empty; name the apex Service clients call",
            );
            String::new()
        }
        _ => {
            errs.push(SplitErrorKind::MissingField, "spec.service", "required; name the apex Service clients call");
            String::new()
        }
    };

    let route_groups = read_matches(&spec, &version, &mut errs);

    let mut backends = spec.get("backends").and_then(Value::as_array).cloned().unwrap_or_default();
    if backends.is_empty() {
        errs.push(SplitErrorKind::NoBackends, "spec.backends", "no backends; list at least one {service, weight}");
    }
    if backends.len() > MAX_BACKENDS {
        errs.push(
            SplitErrorKind::TooManyItems,
            "spec.backends",
            format!("{} backends; a split has at most {MAX_BACKENDS}", backends.len()),
        );
        backends.truncate(MAX_BACKENDS);
    }
    let mut names: Vec<String> = Vec::new();
    let mut weights: Vec<Option<Nanos>> = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let at = format!("spec.backends[{i}]");
        let name = b.get("service").and_then(Value::as_str).unwrap_or("").to_string();
        if name.chars().count() > MAX_NAME_LEN {
            errs.push(SplitErrorKind::InvalidName, format!("{at}.service"), too_long_name(&name));
        } else if name.trim().is_empty() {
            errs.push(
                SplitErrorKind::EmptyName,
                format!("{at}.service"),
                "must not be empty; name a Service in this namespace",
            );
        } else if let Some(first) = names.iter().position(|n| *n == name) {
            errs.push(
                SplitErrorKind::DuplicateBackend,
                format!("{at}.service"),
                format!("{name:?} is listed twice (also spec.backends[{first}]); merge them into one backend with the sum of their weights"),
            );
        }
        names.push(name);
        weights.push(read_weight(b.get("weight"), quantities, &version, &format!("{at}.weight"), &mut errs));
    }

    if !backends.is_empty() && weights.iter().all(|w| matches!(w, Some(Nanos(0)))) {
        errs.push(
            SplitErrorKind::AllWeightsZero,
            "spec.backends",
            "every weight is 0, so no backend would receive traffic; give at least one backend a positive weight",
        );
    }
    if !errs.0.is_empty() {
        return Err(SplitErrors(errs.0));
    }

    let nanos: Vec<Nanos> = weights.into_iter().map(|w| w.expect("checked above")).collect();
    let ints = to_integer_weights(&nanos).map_err(|e| {
        let field = match e {
            QuantityError::Rescaled { index, .. } => format!("spec.backends[{index}].weight"),
            _ => "spec.backends".into(),
        };
        SplitErrors(vec![SplitError { field, message: e.to_string(), kind: SplitErrorKind::WeightOutOfRange }])
    })?;
    let total: u128 = ints.iter().map(|&w| u128::from(w)).sum();
    let backends = names
        .into_iter()
        .zip(ints)
        .map(|(service, weight)| WeightedBackend { service, weight, percent: weight as f64 * 100.0 / total as f64 })
        .collect();
    Ok(NormalisedSplit { version, service, backends, route_groups })
}

fn read_weight(raw: Option<&Value>, quantities: bool, version: &str, at: &str, errs: &mut Collector) -> Option<Nanos> {
    let Some(raw) = raw else {
        errs.push(SplitErrorKind::MissingField, at, "required; give a relative weight such as 90 (0 sends nothing)");
        return None;
    };
    if quantities {
        let text = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                errs.push(
                    SplitErrorKind::NonNumericWeight,
                    at,
                    format!("{} is not a quantity; write e.g. 90 or \"500m\"", brief(other)),
                );
                return None;
            }
        };
        return match parse_quantity(&text) {
            Ok(n) => Some(n),
            Err(QuantityError::Negative(_)) => {
                errs.push(SplitErrorKind::NegativeWeight, at, format!("{text} is negative; weights must be 0 or more"));
                None
            }
            Err(e @ QuantityError::TooLarge(_)) => {
                errs.push(SplitErrorKind::WeightOutOfRange, at, e.to_string());
                None
            }
            Err(e) => {
                errs.push(SplitErrorKind::NonNumericWeight, at, e.to_string());
                None
            }
        };
    }
    match raw {
        Value::Number(n) if n.as_i64().is_some_and(|v| v < 0) => {
            errs.push(SplitErrorKind::NegativeWeight, at, format!("{n} is negative; weights must be 0 or more"));
            None
        }
        Value::Number(n) => match n.as_u64() {
            Some(w) if w <= MAX_WEIGHT => Some(Nanos(u128::from(w) * 1_000_000_000)),
            Some(w) => {
                errs.push(
                    SplitErrorKind::WeightOutOfRange,
                    at,
                    format!("{w} is above the largest weight, {MAX_WEIGHT}; weights are relative, so divide them all by a common factor"),
                );
                None
            }
            None => {
                errs.push(SplitErrorKind::NonNumericWeight, at, not_whole(n, version));
                None
            }
        },
        other => {
            errs.push(SplitErrorKind::NonNumericWeight, at, not_whole(other, version));
            None
        }
    }
}

fn not_whole(value: impl fmt::Display, version: &str) -> String {
    format!(
        "{} is not a whole number; {GROUP}/{version} weights are integers such as 90 (quantities like \"500m\" are v1alpha1 only)",
        brief(value)
    )
}

fn too_long_name(name: &str) -> String {
    format!("{} characters long; a Service name has at most {MAX_NAME_LEN}", name.chars().count())
}

/// A value as JSON, cut short so a message never repeats a huge value.
fn brief(value: impl fmt::Display) -> String {
    crate::duration::shown(&value.to_string()).trim_matches('"').to_string()
}

fn read_matches(spec: &Value, version: &str, errs: &mut Collector) -> Vec<String> {
    let Some(matches) = spec.get("matches") else {
        return Vec::new();
    };
    let mut list = matches.as_array().cloned().unwrap_or_default();
    if list.len() > MAX_MATCHES {
        errs.push(
            SplitErrorKind::TooManyItems,
            "spec.matches",
            format!("{} matches; a split has at most {MAX_MATCHES}", list.len()),
        );
        list.truncate(MAX_MATCHES);
    }
    if list.is_empty() {
        return Vec::new();
    }
    if version == "v1alpha1" || version == "v1alpha2" {
        errs.push(
            SplitErrorKind::MatchesNotSupported,
            "spec.matches",
            format!("not part of {GROUP}/{version}; write the split as {GROUP}/v1alpha4 to use route groups"),
        );
        return Vec::new();
    }
    let mut names = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("spec.matches[{i}]");
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != "HTTPRouteGroup" {
            errs.push(
                SplitErrorKind::UnknownMatchKind,
                format!("{at}.kind"),
                format!("unknown kind {}; shifter splits by HTTPRouteGroup", crate::duration::shown(kind)),
            );
        }
        if let Some(group) = m.get("apiGroup").and_then(Value::as_str)
            && !group.is_empty()
            && group != crate::route_group::GROUP
        {
            errs.push(
                SplitErrorKind::UnknownMatchKind,
                format!("{at}.apiGroup"),
                format!("unknown API group {}; use {}", crate::duration::shown(group), crate::route_group::GROUP),
            );
        }
        match m.get("name").and_then(Value::as_str) {
            Some(n) if n.chars().count() > MAX_NAME_LEN => errs.push(
                SplitErrorKind::InvalidName,
                format!("{at}.name"),
                format!("{} characters long; an HTTPRouteGroup name has at most {MAX_NAME_LEN}", n.chars().count()),
            ),
            Some(n) if !n.trim().is_empty() => names.push(n.to_string()),
            _ => errs.push(
                SplitErrorKind::EmptyName,
                format!("{at}.name"),
                "must not be empty; name an HTTPRouteGroup in this namespace",
            ),
        }
    }
    names
}
