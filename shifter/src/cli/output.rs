//! `-o json|yaml`: objects exactly as the API server returned them.

use serde::Serialize;

use super::args::OutputFormat;
use super::error::CliError;

pub fn print_object<T: Serialize>(format: OutputFormat, object: &T) -> Result<(), CliError> {
    let text = match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(object).map_err(|e| CliError::Output(e.to_string()))?;
            s.push('\n');
            s
        }
        OutputFormat::Yaml => serde_yaml::to_string(object).map_err(|e| CliError::Output(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}

/// A `v1 List` of items, as `kubectl get -o json` prints several objects.
pub fn list(items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
}
