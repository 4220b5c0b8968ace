//! Every way a request can fail, and how each failure looks on the wire: a Kubernetes `Status`.

use http::StatusCode;
use serde_json::{Value, json};

/// One invalid field, as Kubernetes reports it in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueTypeInvalid`, …
    pub reason: &'static str,
    /// Path of the field, e.g. `spec.backends[0].weight`.
    pub field: String,
    /// What is wrong, e.g. `Required value` or `Invalid value: -1: should be at least 0`.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>) -> Self {
        FieldError { reason: "FieldValueRequired", field: field.into(), detail: "Required value".into() }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, why: impl AsRef<str>) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            detail: format!("Invalid value: {}: {}", short(value), why.as_ref()),
        }
    }

    pub fn type_invalid(field: impl Into<String>, value: &Value, expected: &str) -> Self {
        let field = field.into();
        let detail = format!(
            "Invalid value: \"{}\": {field} in body must be of type {expected}: {}",
            type_name(value),
            short(value)
        );
        FieldError { reason: "FieldValueTypeInvalid", field, detail }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[Value]) -> Self {
        let list: Vec<String> = allowed.iter().map(short).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            detail: format!("Unsupported value: {}: supported values: {}", short(value), list.join(", ")),
        }
    }

    /// A rule from outside the schema (an admission hook) that has no value to quote.
    pub fn rule(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { reason: "FieldValueInvalid", field: field.into(), detail: message.into() }
    }

    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
}

/// Renders a value the way Kubernetes quotes it in messages: strings quoted, the rest as JSON.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 { format!("{}...", text.chars().take(77).collect::<String>()) } else { text }
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Names the object a failure is about, for `Status.details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// Plural resource name (`trafficsplits`) for most errors, the Kind for `Invalid`.
    pub kind: String,
    pub name: String,
}

/// A failed request. Converted to a Kubernetes `Status` object at the HTTP boundary.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    NotFound { subject: Subject, message: String },
    #[error("{message}")]
    AlreadyExists { subject: Subject, message: String },
    #[error("{message}")]
    Conflict { subject: Subject, message: String, causes: Vec<FieldError> },
    #[error("{message}")]
    Invalid { subject: Subject, message: String, causes: Vec<FieldError> },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("request entity too large: limit is {0} bytes")]
    TooLarge(usize),
    /// The request asked for a state the server has not reached (e.g. a future resourceVersion).
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        ApiError::NotFound {
            subject: Subject { group: group.into(), kind: resource.into(), name: name.into() },
            message: format!("{qualified} \"{name}\" not found"),
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        ApiError::AlreadyExists {
            subject: Subject { group: group.into(), kind: resource.into(), name: name.into() },
            message: format!("{qualified} \"{name}\" already exists"),
        }
    }

    /// The optimistic-concurrency failure every Kubernetes client knows how to retry.
    pub fn modified(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        ApiError::Conflict {
            subject: Subject { group: group.into(), kind: resource.into(), name: name.into() },
            message: format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            causes: Vec::new(),
        }
    }

    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let listed: Vec<String> = causes.iter().map(FieldError::message).collect();
        let joined = if listed.len() == 1 { listed[0].clone() } else { format!("[{}]", listed.join(", ")) };
        ApiError::Invalid {
            subject: Subject { group: group.into(), kind: kind.into(), name: name.into() },
            message: format!("{qualified} \"{name}\" is invalid: {joined}"),
            causes,
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Gone(_) => "Expired",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object sent to the client.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let (subject, causes) = match self {
            ApiError::NotFound { subject, .. } | ApiError::AlreadyExists { subject, .. } => (Some(subject), None),
            ApiError::Conflict { subject, causes, .. } | ApiError::Invalid { subject, causes, .. } => {
                (Some(subject), Some(causes))
            }
            _ => (None, None),
        };
        if let Some(subject) = subject {
            let mut details = json!({"name": subject.name, "kind": subject.kind});
            if !subject.group.is_empty() {
                details["group"] = json!(subject.group);
            }
            if let Some(causes) = causes.filter(|c| !c.is_empty()) {
                details["causes"] =
                    causes.iter().map(|c| json!({"reason": c.reason, "message": c.detail, "field": c.field})).collect();
            }
            status["details"] = details;
        }
        status
    }
}

/// `trafficsplits.split.smi-spec.io`, or `services` for the core group.
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}
