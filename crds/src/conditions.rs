//! Standard status conditions (`type`, `status`, `reason`, `message`, `lastTransitionTime`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets `new` in `conditions`, keeping `lastTransitionTime` when the status did not change.
///
/// Returns true when anything visible changed, so reconcilers can skip no-op writes.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = old.status != new.status
                || old.reason != new.reason
                || old.message != new.message
                || old.observed_generation != new.observed_generation;
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Builds a condition stamped now.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// True when the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut cs = vec![];
        assert!(set_condition(&mut cs, condition("Ready", true, "Ok", "fine", Some(1))));
        let first = cs[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(!set_condition(&mut cs, condition("Ready", true, "Ok", "fine", Some(1))));
        assert_eq!(cs[0].last_transition_time, first);
        assert!(set_condition(&mut cs, condition("Ready", false, "Broken", "not fine", Some(2))));
        assert_ne!(cs[0].last_transition_time, first);
        assert!(!is_true(&cs, "Ready"));
    }
}
