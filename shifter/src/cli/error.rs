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
        other => other.to_string(),
    }
}

/// True for a 404 answer.
pub fn is_not_found(error: &KubeError) -> bool {
    matches!(error, KubeError::Api(s) if s.code == 404)
}

/// True for a 409 answer (someone else wrote in between).
pub fn is_conflict(error: &KubeError) -> bool {
    matches!(error, KubeError::Api(s) if s.code == 409)
}
