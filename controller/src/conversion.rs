//! The TrafficSplit conversion webhook a real cluster's API server calls (`ConversionReview` v1),
//! served on the controller's TLS port at `/convert`. It runs the same conversion code as the
//! embedded API server ([`shifter_crds::convert`]), so both read and write every SMI version alike.

use serde_json::{Value, json};

/// Answers one `ConversionReview`: every object converted, or a failure naming the first problem.
pub fn review(review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let desired = request["desiredAPIVersion"].as_str().unwrap_or_default();
    let objects = request["objects"].as_array().cloned().unwrap_or_default();
    let converted: Result<Vec<Value>, String> =
        objects.into_iter().map(|o| shifter_crds::convert::convert(o, desired).map_err(|e| e.to_string())).collect();
    let response = match converted {
        Ok(objects) => json!({"uid": uid, "convertedObjects": objects, "result": {"status": "Success"}}),
        Err(message) => {
            json!({"uid": uid, "convertedObjects": [], "result": {"status": "Failure", "message": message}})
        }
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response})
}

/// Axum handler for `POST /convert`.
pub async fn handler(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(review(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_converts_every_object_and_keeps_the_uid() {
        let req = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "abc", "desiredAPIVersion": "split.smi-spec.io/v1alpha4", "objects": [{
                "apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit", "metadata": {"name": "web"},
                "spec": {"service": "web", "backends": [{"service": "v1", "weight": "500m"}, {"service": "v2", "weight": "500m"}]}
            }]}
        });
        let out = review(&req);
        assert_eq!(out["response"]["uid"], "abc");
        assert_eq!(out["response"]["result"]["status"], "Success");
        let obj = &out["response"]["convertedObjects"][0];
        assert_eq!(obj["apiVersion"], "split.smi-spec.io/v1alpha4");
        assert_eq!(obj["spec"]["backends"][0]["weight"], 500);
    }

    #[test]
    fn a_bad_object_fails_the_review_with_its_reason() {
        let req = json!({"request": {"uid": "x", "desiredAPIVersion": "split.smi-spec.io/v1alpha4", "objects": [{
            "apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
            "spec": {"service": "web", "backends": [{"service": "v1", "weight": "lots"}]}
        }]}});
        let out = review(&req);
        assert_eq!(out["response"]["result"]["status"], "Failure");
        assert!(out["response"]["result"]["message"].as_str().unwrap().contains("spec.backends[0].weight"));
    }
}
