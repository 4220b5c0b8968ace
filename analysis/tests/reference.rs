//! The statistics checked against values scipy computed independently
//! (`analysis/reference/make_reference.py` wrote `analysis/reference/values.json`).

use serde_json::Value;
use shifter_analysis::eprocess::{
    FAILURE_ALTERNATIVES, LATENCY_ALTERNATIVES, QUANTILE_ALTERNATIVES, RiskRatioEProcess, ln_beta_mixture_bayes_factor,
    rate_upper_bound,
};
use shifter_analysis::latency::MannWhitney;
use shifter_analysis::simulate::{Z_98, Z_99, lognormal_cdf};

fn values() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/values.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference values")).expect("valid JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn close(actual: f64, expected: f64, rel: f64, what: &str) {
    let tolerance = rel * expected.abs() + 1e-12;
    assert!((actual - expected).abs() <= tolerance, "{what}: {actual} vs scipy {expected}");
}

fn process(windows: &Value) -> RiskRatioEProcess {
    let mut p = RiskRatioEProcess::new();
    for w in windows.as_array().expect("windows") {
        let n = |i: usize| w[i].as_u64().expect("count");
        p.observe(n(0), n(1), n(2), n(3));
    }
    p
}

#[test]
fn ln_beta_matches_scipy() {
    for row in values()["ln_beta"].as_array().unwrap() {
        let got = statrs::function::beta::ln_beta(f(&row[0]), f(&row[1]));
        close(got, f(&row[2]), 1e-10, &format!("ln_beta({}, {})", row[0], row[1]));
    }
}

#[test]
fn window_likelihood_ratios_match_scipy_binomials() {
    let all = values();
    let rows = all["log_lr"].as_array().unwrap();
    assert!(rows.len() >= 20);
    for row in rows {
        let k = row["k"].as_i64().unwrap() as i32;
        let got = process(&row["windows"]).log_lr(k).expect("on the grid");
        let expected = f(&row["value"]);
        assert!((got - expected).abs() <= 1e-9 * expected.abs().max(1.0), "k {k}: {got} vs scipy {expected}");
    }
}

#[test]
fn harm_evidence_matches_scipy() {
    for row in values()["harm_evidence"].as_array().unwrap() {
        let alternatives: Vec<i32> =
            row["alternatives"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap() as i32).collect();
        let known = [&FAILURE_ALTERNATIVES[..], &LATENCY_ALTERNATIVES[..], &QUANTILE_ALTERNATIVES[..]];
        assert!(known.contains(&&alternatives[..]), "{alternatives:?}");
        let got = process(&row["windows"]).harm_evidence(&alternatives);
        close(got, f(&row["value"]), 1e-9, "harm evidence");
    }
}

#[test]
fn closed_form_beta_mixture_matches_numeric_integration() {
    for row in values()["beta_mixture"].as_array().unwrap() {
        let got = ln_beta_mixture_bayes_factor(
            row["e_c"].as_u64().unwrap(),
            row["e_b"].as_u64().unwrap(),
            f(&row["s"]),
            f(&row["a"]),
            f(&row["b"]),
        );
        let expected = f(&row["value"]);
        assert!((got - expected).abs() < 1e-8, "{row}: {got} vs scipy {expected}");
    }
}

#[test]
fn rate_bounds_match_scipy_root_finding() {
    for row in values()["rate_upper_bound"].as_array().unwrap() {
        let got = rate_upper_bound(f(&row["events"]), f(&row["trials"]), f(&row["alpha"]));
        close(got, f(&row["value"]), 1e-8, &row.to_string());
    }
}

#[test]
fn simulation_distributions_match_scipy() {
    let all = values();
    for row in all["lognormal_cdf"].as_array().unwrap() {
        let got = lognormal_cdf(f(&row["x"]), f(&row["median"]), f(&row["sigma"]));
        // statrs' erfc is good to about 1e-10 relative.
        close(got, f(&row["value"]), 1e-9, &row.to_string());
    }
    let q = all["normal_quantile"].as_array().unwrap();
    close(Z_98, f(&q[0][1]), 1e-14, "z 0.98");
    close(Z_99, f(&q[1][1]), 1e-14, "z 0.99");
}

#[test]
fn mann_whitney_from_buckets_matches_scipy_on_expanded_samples() {
    for row in values()["mann_whitney"].as_array().unwrap() {
        let counts = |k: &str| -> Vec<u64> { row[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect() };
        let mw = MannWhitney::from_buckets(&counts("canary"), &counts("stable")).unwrap();
        close(mw.u, f(&row["u"]), 1e-12, "U");
        let z = f(&row["z"]);
        assert!((mw.z() - z).abs() <= 1e-6 * z.abs().max(1.0), "z {} vs scipy {z}", mw.z());
    }
}
