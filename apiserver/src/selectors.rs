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
}

/// A parsed `labelSelector` plus `fieldSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

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

fn parse_set(raw: &str) -> Option<Vec<String>> {
    let inner = raw.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn parse_label(term: &str) -> Result<Requirement, ApiError> {
    let bad = || ApiError::BadRequest(format!("unable to parse requirement: invalid label selector term {term:?}"));
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    let words: Vec<&str> = term.splitn(3, char::is_whitespace).filter(|s| !s.is_empty()).collect();
    match words.as_slice() {
        [key] => Ok(Requirement::Exists(key.to_string())),
        [key, op, rest] if op.eq_ignore_ascii_case("in") => {
            Ok(Requirement::In(key.to_string(), parse_set(rest).ok_or_else(bad)?))
        }
        [key, op, rest] if op.eq_ignore_ascii_case("notin") => {
            Ok(Requirement::NotIn(key.to_string(), parse_set(rest).ok_or_else(bad)?))
        }
        _ => {
            // `key in(a,b)` without a space before the parenthesis.
            for (op, notin) in [(" notin", true), (" in", false)] {
                if let Some(pos) = term.find(op) {
                    let key = term[..pos].trim().to_string();
                    let set = parse_set(&term[pos + op.len()..]).ok_or_else(bad)?;
                    return Ok(if notin { Requirement::NotIn(key, set) } else { Requirement::In(key, set) });
                }
            }
            Err(bad())
        }
    }
}

impl Selector {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Selector, ApiError> {
        let labels = split_top(label_selector.unwrap_or("")).into_iter().map(parse_label).collect::<Result<_, _>>()?;
        let mut fields = Vec::new();
        for term in split_top(field_selector.unwrap_or("")) {
            let (field, negate, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, false, v)
            } else {
                return Err(ApiError::BadRequest(format!("invalid field selector term {term:?}")));
            };
            let field = field.trim();
            let valid = !field.is_empty()
                && field.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !valid {
                return Err(ApiError::BadRequest(format!("invalid field selector: {field:?} is not a field path")));
            }
            fields.push((field.to_string(), negate, value.trim().to_string()));
        }
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
