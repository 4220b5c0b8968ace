//! What can go wrong in a verb, each with a message a person can act on. All of them exit 2.

use kube::Error as KubeError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The named object does not exist.
    #[error("{kind} {name:?} not found in namespace {namespace:?}; `kubectl shift get` lists what is there")]
    NotFound { kind: &'static str, name: String, namespace: String },
    /// The command line asks for something the object cannot do.
    #[error("{0}")]
    Invalid(String),
    /// No usable kubeconfig or context.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// The API server refused or could not be reached; the message is the server's.
    #[error("{action}: {message}")]
    Api { action: String, message: String },
    /// Serialising output failed.
    #[error("printing output: {0}")]
    Output(String),
    /// `wait` gave up.
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    /// Wraps a client error with what was being done, keeping the server's own message.
    pub fn api(action: impl Into<String>, error: KubeError) -> CliError {
        CliError::Api { action: action.into(), message: api_message(&error) }
    }
}

/// The server's message with its reason and code (`... (Invalid, HTTP 422)`), or the transport error.
pub fn api_message(error: &KubeError) -> String {
    match error {
        KubeError::Api(status) => {
            let mut msg = status.message.clone();
            let reason = status.reason.as_str();
            match (reason.is_empty(), status.code) {
                (false, code) if code > 0 => msg.push_str(&format!(" ({reason}, HTTP {code})")),
                (true, code) if code > 0 => msg.push_str(&format!(" (HTTP {code})")),
                _ => {}
            }
            msg
        }
        other => {
            // Transport errors nest the useful part ("Connection refused") a few sources down.
            let mut msg = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                source = cause.source();
            }
            if matches!(other, KubeError::Service(_) | KubeError::HyperError(_)) {
                msg = format!("cannot reach the API server ({msg}); check the kubeconfig's server and that it is up");
            }
            msg
        }
    }
}

/// True for a 404 answer about an object (not about a missing resource type).
pub fn is_not_found(error: &KubeError) -> bool {
    matches!(error, KubeError::Api(s) if s.code == 404) && !is_missing_kind(error)
}

/// True when the server does not know the resource type at all: shifter's CRDs are not installed.
pub fn is_missing_kind(error: &KubeError) -> bool {
    matches!(error, KubeError::Api(s) if s.code == 404
        && s.details.as_ref().is_none_or(|d| d.name.is_empty())
        && s.message.contains("could not find the requested resource"))
}

/// The error for a request about `kind`, naming the fix when the CRDs are missing.
pub fn request_error(action: impl Into<String>, kind: &str, error: KubeError) -> CliError {
    if is_missing_kind(&error) {
        return CliError::Api {
            action: action.into(),
            message: format!(
                "this cluster does not serve {kind} (shifter's CRDs are not installed); install them with `kubectl shift crds | kubectl apply -f -`"
            ),
        };
    }
    CliError::api(action, error)
}

/// True for a 409 answer (someone else wrote in between).
pub fn is_conflict(error: &KubeError) -> bool {
    matches!(error, KubeError::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::StatusDetails;

    fn api(status: Status) -> KubeError {
        KubeError::Api(Box::new(status))
    }

    #[test]
    fn server_messages_keep_reason_and_code() {
        let e = api(Status::failure("Canary.shifter.dev \"web\" is invalid: spec.canary: must differ", "Invalid")
            .with_code(422));
        assert_eq!(
            api_message(&e),
            "Canary.shifter.dev \"web\" is invalid: spec.canary: must differ (Invalid, HTTP 422)"
        );
        let err = CliError::api("updating canary web", e);
        assert!(err.to_string().starts_with("updating canary web: Canary.shifter.dev"));
    }

    #[test]
    fn a_missing_object_and_a_missing_crd_are_told_apart() {
        let object = api(Status::failure("canaries.shifter.dev \"x\" not found", "NotFound")
            .with_code(404)
            .with_details(StatusDetails {
                name: "x".into(),
                group: "shifter.dev".into(),
                kind: "canaries".into(),
                uid: String::new(),
                causes: vec![],
                retry_after_seconds: 0,
            }));
        assert!(is_not_found(&object) && !is_missing_kind(&object));
        let kind = api(Status::failure("the server could not find the requested resource", "NotFound").with_code(404));
        assert!(is_missing_kind(&kind) && !is_not_found(&kind));
        let msg = request_error("listing canaries", "Canary (shifter.dev)", kind).to_string();
        assert!(msg.contains("kubectl shift crds | kubectl apply -f -"), "{msg}");
        assert!(is_conflict(&api(Status::failure("conflict", "Conflict").with_code(409))));
    }
}
