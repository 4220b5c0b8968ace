//! HTTPRoute and GRPCRoute objects to the route model ([`RouteInfo`]): a pure function per kind.
//!
//! Routes are read as JSON so that every field is seen: one this translation does not know, or a
//! value it does not implement, is listed by its path in `unsupported` (and the route is not
//! accepted) rather than dropped. Fields upstream defines that do not apply to a Service parent
//! (`hostnames`) are ignored, as GAMMA specifies.

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Map, Value};
use shifter_crds::duration::parse_duration;
use shifter_proto::v1 as pb;

use super::gateway::{BackendRef, Match, Parent, Rank, RouteInfo, RouteKind, Rule, ServiceParent};
use super::state::last_spec_manager;

/// Translates one route object.
pub fn route(kind: RouteKind, obj: &DynamicObject) -> RouteInfo {
    let namespace = obj.namespace().unwrap_or_default();
    let mut t =
        Translation { namespace: namespace.clone(), kind, unsupported: Vec::new(), service_parents: Vec::new() };
    let empty = Map::new();
    let spec = obj.data.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    t.known(spec, "spec", &["parentRefs", "hostnames", "rules"]);
    let parents: Vec<Parent> = array(spec, "parentRefs").iter().enumerate().map(|(i, p)| t.parent(i, p)).collect();
    t.service_parents =
        parents.iter().filter_map(|p| p.service.as_ref()).map(|s| (s.namespace.clone(), s.name.clone())).collect();
    let rules = array(spec, "rules").iter().enumerate().map(|(i, r)| t.rule(i, r)).collect();
    let status_parents = obj.data.pointer("/status/parents").and_then(Value::as_array).cloned().unwrap_or_default();
    RouteInfo {
        kind,
        name: obj.name_any(),
        generation: obj.metadata.generation,
        created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        uid: obj.metadata.uid.clone(),
        parents,
        rules,
        unsupported: t.unsupported,
        status_parents,
        spec_manager: last_spec_manager(&obj.metadata),
    }
}

struct Translation {
    namespace: String,
    kind: RouteKind,
    unsupported: Vec<String>,
    /// The Services the route attaches to: a backendRef to one of them is the destination its
    /// clients already call, so it needs no grant across namespaces (a consumer route's).
    service_parents: Vec<(String, String)>,
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn port(obj: &Map<String, Value>) -> Option<u16> {
    obj.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())
}

impl Translation {
    fn unsupported(&mut self, path: &str, what: impl std::fmt::Display) {
        self.unsupported.push(format!("{path}: {what}"));
    }

    /// Reports every key of `obj` not in `known`.
    fn known(&mut self, obj: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.unsupported(&format!("{path}.{key}"), "field not implemented");
        }
    }

    fn object<'a>(&mut self, value: &'a Value, path: &str) -> &'a Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match value.as_object() {
            Some(o) => o,
            None => {
                self.unsupported(path, "must be an object");
                EMPTY.get_or_init(Map::new)
            }
        }
    }

    fn parent(&mut self, i: usize, value: &Value) -> Parent {
        let path = format!("spec.parentRefs[{i}]");
        let p = self.object(value, &path);
        let group = string(p, "group").unwrap_or("gateway.networking.k8s.io");
        let kind = string(p, "kind").unwrap_or("Gateway");
        let service = (kind == "Service" && (group.is_empty() || group == "core")).then(|| {
            if p.contains_key("sectionName") {
                self.unsupported(&format!("{path}.sectionName"), "not implemented for a Service parent; use port");
            }
            ServiceParent {
                namespace: string(p, "namespace").unwrap_or(&self.namespace).to_string(),
                name: string(p, "name").unwrap_or_default().to_string(),
                port: port(p),
            }
        });
        Parent { service, reference: value.clone() }
    }

    fn rule(&mut self, i: usize, value: &Value) -> Rule {
        let path = format!("spec.rules[{i}]");
        let r = self.object(value, &path);
        let known: &[&str] = match self.kind {
            RouteKind::Http => &["name", "matches", "filters", "backendRefs", "timeouts"],
            RouteKind::Grpc => &["name", "matches", "filters", "backendRefs"],
        };
        self.known(r, &path, known);
        let mut rule = Rule {
            matches: array(r, "matches")
                .iter()
                .enumerate()
                .map(|(j, m)| self.matcher(&format!("{path}.matches[{j}]"), m))
                .collect(),
            backends: array(r, "backendRefs")
                .iter()
                .enumerate()
                .map(|(j, b)| self.backend(&format!("{path}.backendRefs[{j}]"), b))
                .collect(),
            ..Rule::default()
        };
        for (j, f) in array(r, "filters").iter().enumerate() {
            self.filter(&format!("{path}.filters[{j}]"), f, &mut rule);
        }
        if let Some(timeouts) = r.get("timeouts") {
            let t = self.object(timeouts, &format!("{path}.timeouts"));
            self.known(t, &format!("{path}.timeouts"), &["request", "backendRequest"]);
            rule.request_timeout_ms = self.timeout(&format!("{path}.timeouts.request"), string(t, "request"));
            rule.backend_timeout_ms =
                self.timeout(&format!("{path}.timeouts.backendRequest"), string(t, "backendRequest"));
        }
        let rewrites_prefix =
            [rule.redirect.as_ref().and_then(|r| r.path.as_ref()), rule.rewrite.as_ref().and_then(|r| r.path.as_ref())]
                .into_iter()
                .flatten()
                .any(|p| matches!(p.kind, Some(pb::path_modifier::Kind::ReplacePrefixMatch(_))));
        if rewrites_prefix && rule.matches.iter().any(|m| m.rank.path_kind != Rank::PREFIX) {
            self.unsupported(
                &format!("{path}.filters"),
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
            );
        }
        rule
    }

    /// A Gateway API duration; "0s" (and none) mean no bound of the route's own.
    fn timeout(&mut self, path: &str, raw: Option<&str>) -> u64 {
        let Some(raw) = raw else { return 0 };
        match parse_duration(raw) {
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Err(e) => {
                self.unsupported(path, e);
                0
            }
        }
    }

    fn matcher(&mut self, path: &str, value: &Value) -> Match {
        match self.kind {
            RouteKind::Http => self.http_match(path, value),
            RouteKind::Grpc => self.grpc_match(path, value),
        }
    }

    fn http_match(&mut self, path: &str, value: &Value) -> Match {
        let m = self.object(value, path);
        self.known(m, path, &["path", "headers", "queryParams", "method"]);
        let mut out = Match::default();
        let (kind, value) = match m.get("path") {
            Some(p) => {
                let p = self.object(p, &format!("{path}.path"));
                (string(p, "type").unwrap_or("PathPrefix").to_string(), string(p, "value").unwrap_or("/").to_string())
            }
            None => ("PathPrefix".into(), "/".into()),
        };
        match kind.as_str() {
            "Exact" => {
                out.matcher.path_regex = format!("{}$", regex::escape(&value));
                out.rank.path_kind = Rank::EXACT;
            }
            "PathPrefix" => {
                let prefix = value.trim_end_matches('/');
                if !prefix.is_empty() {
                    out.matcher.path_regex = format!("{}(?:/.*)?$", regex::escape(prefix));
                }
                out.matcher.path_prefix = if prefix.is_empty() { "/".into() } else { prefix.into() };
                out.rank.path_kind = Rank::PREFIX;
            }
            "RegularExpression" => {
                out.matcher.path_regex = format!("(?:{})$", self.checked_regex(&format!("{path}.path.value"), &value));
                out.rank.path_kind = Rank::REGEX;
            }
            other => self.unsupported(&format!("{path}.path.type"), format!("{other:?} is not a path match type")),
        }
        out.rank.path_len = value.len();
        if let Some(method) = string(m, "method") {
            out.matcher.methods = vec![method.to_string()];
            out.rank.method = 1;
        }
        out.matcher.headers = self.pairs(&format!("{path}.headers"), array(m, "headers"));
        out.matcher.query_params = self.pairs(&format!("{path}.queryParams"), array(m, "queryParams"));
        out.rank.headers = out.matcher.headers.len();
        out.rank.query = out.matcher.query_params.len();
        out
    }

    /// gRPC calls are `POST /<service>/<method>`: a method match becomes a path match, ranked by
    /// the service's and then the method's length.
    fn grpc_match(&mut self, path: &str, value: &Value) -> Match {
        let m = self.object(value, path);
        self.known(m, path, &["method", "headers"]);
        let mut out = Match::default();
        if let Some(method) = m.get("method") {
            let mpath = format!("{path}.method");
            let g = self.object(method, &mpath);
            self.known(g, &mpath, &["type", "service", "method"]);
            let service = string(g, "service").unwrap_or_default();
            let name = string(g, "method").unwrap_or_default();
            let part = |t: &mut Self, field: &str, value: &str, regex_type: bool| match (value.is_empty(), regex_type) {
                (true, _) => "[^/]+".to_string(),
                (false, false) => regex::escape(value),
                (false, true) => format!("(?:{})", t.checked_regex(&format!("{mpath}.{field}"), value)),
            };
            let regex_type = match string(g, "type").unwrap_or("Exact") {
                "Exact" => false,
                "RegularExpression" => true,
                other => {
                    self.unsupported(&format!("{mpath}.type"), format!("{other:?} is not a method match type"));
                    false
                }
            };
            let s = part(self, "service", service, regex_type);
            let n = part(self, "method", name, regex_type);
            out.matcher.path_regex = format!("/{s}/{n}$");
            out.rank.path_len = service.len();
            out.rank.method = name.len();
        }
        out.matcher.headers = self.pairs(&format!("{path}.headers"), array(m, "headers"));
        out.rank.headers = out.matcher.headers.len();
        out
    }

    /// Header or query parameter matches: Exact values become escaped expressions.
    fn pairs(&mut self, path: &str, list: &[Value]) -> Vec<pb::HeaderMatch> {
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{path}[{i}]");
                let h = self.object(v, &path);
                self.known(h, &path, &["type", "name", "value"]);
                let value = string(h, "value").unwrap_or_default();
                let value_regex = match string(h, "type").unwrap_or("Exact") {
                    "Exact" => regex::escape(value),
                    "RegularExpression" => self.checked_regex(&format!("{path}.value"), value),
                    other => {
                        self.unsupported(&format!("{path}.type"), format!("{other:?} is not a match type"));
                        regex::escape(value)
                    }
                };
                pb::HeaderMatch { name: string(h, "name").unwrap_or_default().to_string(), value_regex }
            })
            .collect()
    }

    /// A regular expression the proxy can compile (same engine), or reported.
    fn checked_regex(&mut self, path: &str, re: &str) -> String {
        if let Err(e) = regex::Regex::new(re) {
            self.unsupported(path, format!("invalid regular expression: {e}"));
        }
        re.to_string()
    }

    fn filter(&mut self, path: &str, value: &Value, rule: &mut Rule) {
        let f = self.object(value, path);
        let kind = string(f, "type").unwrap_or_default().to_string();
        let allowed: &[&str] = match self.kind {
            RouteKind::Http => &["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"],
            RouteKind::Grpc => &["RequestHeaderModifier", "ResponseHeaderModifier"],
        };
        if !allowed.contains(&kind.as_str()) {
            self.unsupported(&format!("{path}.type"), format!("filter {kind:?} is not implemented"));
            return;
        }
        let field = match kind.as_str() {
            "RequestHeaderModifier" => "requestHeaderModifier",
            "ResponseHeaderModifier" => "responseHeaderModifier",
            "RequestRedirect" => "requestRedirect",
            _ => "urlRewrite",
        };
        self.known(f, path, &["type", field]);
        let inner_path = format!("{path}.{field}");
        let inner = f.get(field).cloned().unwrap_or(Value::Object(Map::new()));
        let inner = self.object(&inner, &inner_path).clone();
        match kind.as_str() {
            "RequestHeaderModifier" => rule.request_headers = Some(self.header_modifier(&inner_path, &inner)),
            "ResponseHeaderModifier" => rule.response_headers = Some(self.header_modifier(&inner_path, &inner)),
            "RequestRedirect" => {
                self.known(&inner, &inner_path, &["scheme", "hostname", "path", "port", "statusCode"]);
                rule.redirect = Some(pb::Redirect {
                    scheme: string(&inner, "scheme").unwrap_or_default().into(),
                    hostname: string(&inner, "hostname").unwrap_or_default().into(),
                    port: port(&inner).map_or(0, u32::from),
                    status_code: inner.get("statusCode").and_then(Value::as_u64).map_or(302, |c| c as u32),
                    path: inner.get("path").map(|p| self.path_modifier(&format!("{inner_path}.path"), p)),
                });
            }
            _ => {
                self.known(&inner, &inner_path, &["hostname", "path"]);
                rule.rewrite = Some(pb::Rewrite {
                    hostname: string(&inner, "hostname").unwrap_or_default().into(),
                    path: inner.get("path").map(|p| self.path_modifier(&format!("{inner_path}.path"), p)),
                });
            }
        }
    }

    fn header_modifier(&mut self, path: &str, m: &Map<String, Value>) -> pb::HeaderModifier {
        self.known(m, path, &["set", "add", "remove"]);
        let headers = |list: &[Value]| {
            list.iter()
                .filter_map(Value::as_object)
                .map(|h| pb::Header {
                    name: string(h, "name").unwrap_or_default().into(),
                    value: string(h, "value").unwrap_or_default().into(),
                })
                .collect()
        };
        pb::HeaderModifier {
            set: headers(array(m, "set")),
            add: headers(array(m, "add")),
            remove: array(m, "remove").iter().filter_map(Value::as_str).map(str::to_string).collect(),
        }
    }

    fn path_modifier(&mut self, path: &str, value: &Value) -> pb::PathModifier {
        let p = self.object(value, path);
        self.known(p, path, &["type", "replaceFullPath", "replacePrefixMatch"]);
        use pb::path_modifier::Kind;
        let kind = match string(p, "type").unwrap_or_default() {
            "ReplaceFullPath" => Some(Kind::ReplaceFullPath(string(p, "replaceFullPath").unwrap_or("/").into())),
            "ReplacePrefixMatch" => {
                Some(Kind::ReplacePrefixMatch(string(p, "replacePrefixMatch").unwrap_or("/").into()))
            }
            other => {
                self.unsupported(&format!("{path}.type"), format!("{other:?} is not a path modifier type"));
                None
            }
        };
        pb::PathModifier { kind }
    }

    fn backend(&mut self, path: &str, value: &Value) -> BackendRef {
        let b = self.object(value, path);
        self.known(b, path, &["group", "kind", "name", "namespace", "port", "weight", "filters"]);
        if !array(b, "filters").is_empty() {
            self.unsupported(&format!("{path}.filters"), "filters on a backendRef are not implemented");
        }
        let group = string(b, "group").unwrap_or_default();
        let kind = string(b, "kind").unwrap_or("Service");
        let name = string(b, "name").unwrap_or_default().to_string();
        let namespace = string(b, "namespace").unwrap_or(&self.namespace).to_string();
        let invalid = if kind != "Service" || !(group.is_empty() || group == "core") {
            Some(("InvalidKind", format!("{path}: {group}/{kind} {name} is not a Service")))
        } else if namespace != self.namespace && !self.service_parents.contains(&(namespace.clone(), name.clone())) {
            Some((
                "RefNotPermitted",
                format!(
                    "{path}: Service {namespace}/{name} is in another namespace; cross-namespace backendRefs are not permitted"
                ),
            ))
        } else {
            None
        };
        BackendRef {
            namespace,
            name,
            port: port(b),
            weight: b.get("weight").and_then(Value::as_u64).unwrap_or(1),
            invalid,
        }
    }
}
