//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!` not-exists) and field selectors.
//! Field selectors accept any field path (`metadata.name`, `involvedObject.uid`, `type`), a
//! superset of the per-kind lists a real API server allows.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector` plus `fieldSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

const LABEL_FORMS: &str = "write key=value, key!=value, key in (a,b), key notin (a,b), key, !key, key>N or key<N";

/// Splits on commas that are not inside parentheses.
fn split_top(raw: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&raw[start..]);
    out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters: a label name or value.
fn is_label_word(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A DNS subdomain: dot-separated lower-case labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn check_key(key: &str) -> Result<String, String> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_word(name),
        None => is_label_word(key),
    };
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!(
            "{key:?} is not a valid label key: use [prefix/]name, the name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn check_value(value: &str) -> Result<String, String> {
    if value.is_empty() || is_label_word(value) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a valid label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn parse_set(raw: &str) -> Result<Vec<String>, String> {
    let inner = raw
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{:?} is not a set: write (a,b)", raw.trim()))?;
    let values: Vec<String> =
        inner.split(',').map(str::trim).filter(|v| !v.is_empty()).map(check_value).collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Err("the set of values is empty: list at least one value".into());
    }
    Ok(values)
}

fn parse_label(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(check_key(key.trim())?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(check_key(k.trim())?, check_value(v.trim())?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(check_key(k.trim())?, check_value(v.trim())?));
    }
    for (op, greater) in [('>', true), ('<', false)] {
        if let Some((k, v)) = term.split_once(op) {
            let n = v.trim().parse::<i64>().map_err(|_| format!("{:?} after {op} is not a whole number", v.trim()))?;
            let key = check_key(k.trim())?;
            return Ok(if greater { Requirement::GreaterThan(key, n) } else { Requirement::LessThan(key, n) });
        }
    }
    let key_end = term.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(term.len());
    let (key, rest) = (&term[..key_end], term[key_end..].trim_start());
    if rest.is_empty() {
        return Ok(Requirement::Exists(check_key(key)?));
    }
    let word_end = rest.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(rest.len());
    let (op, set) = (&rest[..word_end], &rest[word_end..]);
    match op {
        "in" => Ok(Requirement::In(check_key(key)?, parse_set(set)?)),
        "notin" => Ok(Requirement::NotIn(check_key(key)?, parse_set(set)?)),
        _ => Err(format!("unknown operator {op:?}")),
    }
}

/// Splits a field selector on commas that are not escaped (`\,`).
fn split_unescaped(raw: &str) -> Vec<String> {
    let (mut out, mut current, mut escaped) = (Vec::new(), String::new(), false);
    for c in raw.chars() {
        match c {
            _ if escaped => {
                current.push('\\');
                current.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            ',' => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if escaped {
        current.push('\\');
    }
    out.push(current);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

/// Resolves `\\`, `\,` and `\=` in a field selector value.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => return Err(format!("\\{e} is not a valid escape: only \\\\, \\, and \\= are")),
            None => return Err("a trailing \\ escapes nothing: write \\\\ for a backslash".into()),
        }
    }
    Ok(out)
}

fn parse_field(term: &str) -> Result<(String, bool, String), String> {
    let (field, negate, value) = if let Some((k, v)) = term.split_once("!=") {
        (k, true, v)
    } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        (k, false, v)
    } else {
        return Err("write field=value, field==value or field!=value".into());
    };
    let field = field.trim();
    let valid = !field.is_empty()
        && field.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return Err(format!("{field:?} is not a field path: write names joined by dots, e.g. metadata.name"));
    }
    Ok((field.to_string(), negate, unescape(value.trim())?))
}

impl Selector {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Selector, ApiError> {
        let labels = split_top(label_selector.unwrap_or(""))
            .into_iter()
            .map(|term| {
                parse_label(term).map_err(|why| {
                    ApiError::BadRequest(format!("labelSelector: invalid requirement {term:?}: {why}; {LABEL_FORMS}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let fields = split_unescaped(field_selector.unwrap_or(""))
            .iter()
            .map(|term| {
                parse_field(term)
                    .map_err(|why| ApiError::BadRequest(format!("fieldSelector: invalid term {term:?}: {why}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Selector { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| obj.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, set) => label(k).is_some_and(|l| set.iter().any(|s| s == l)),
            Requirement::NotIn(k, set) => label(k).is_none_or(|l| !set.iter().any(|s| s == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::GreaterThan(k, n) => label(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => label(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l < *n),
        });
        labels_ok
            && self.fields.iter().all(|(field, negate, value)| {
                let path = format!("/{}", field.replace('.', "/"));
                let actual = match obj.pointer(&path) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *value) != *negate
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "prod", "labels": labels}})
    }

    #[test]
    fn every_label_operator() {
        let o = pod(json!({"app": "web", "tier": "front"}));
        let yes = |s: &str| Selector::parse(Some(s), None).unwrap().matches(&o);
        assert!(yes("app=web"));
        assert!(yes("app==web,tier"));
        assert!(!yes("app!=web"));
        assert!(yes("tier in (front, back)"));
        assert!(!yes("tier notin (front)"));
        assert!(yes("env notin (prod)"));
        assert!(yes("!env"));
        assert!(!yes("!app"));
        assert!(yes("app in(web),tier notin(x,y)"));
        let n = pod(json!({"replicas": "3"}));
        let on_n = |s: &str| Selector::parse(Some(s), None).unwrap().matches(&n);
        assert!(on_n("replicas>2") && on_n("replicas<4") && !on_n("replicas>3"));
    }

    #[test]
    fn malformed_selectors_name_the_parameter_and_the_fix() {
        for bad in ["app in web", "app in ()", "-app=x", "app=x y", "app=-x", "a/b/c", "app>three", "app ~ x"] {
            let err = Selector::parse(Some(bad), None).unwrap_err().to_string();
            assert!(err.starts_with("labelSelector: invalid requirement"), "{bad}: {err}");
        }
        for bad in ["metadata.name", "spec..x=1", "=x", "metadata.name=a\\b"] {
            let err = Selector::parse(None, Some(bad)).unwrap_err().to_string();
            assert!(err.starts_with("fieldSelector: invalid term"), "{bad}: {err}");
        }
        let escaped = Selector::parse(None, Some("metadata.name=a\\,b")).unwrap();
        assert!(escaped.matches(&json!({"metadata": {"name": "a,b"}})));
    }

    #[test]
    fn field_selectors_compare_any_field_path() {
        let o = pod(json!({}));
        assert!(Selector::parse(None, Some("metadata.name=web,metadata.namespace!=dev")).unwrap().matches(&o));
        assert!(!Selector::parse(None, Some("metadata.name=api")).unwrap().matches(&o));
        let event = json!({"involvedObject": {"name": "web", "uid": "u1"}, "count": 3});
        assert!(
            Selector::parse(None, Some("involvedObject.name=web,involvedObject.uid=u1,count=3"))
                .unwrap()
                .matches(&event)
        );
        assert!(Selector::parse(None, Some("spec..x=1")).is_err());
    }
}
