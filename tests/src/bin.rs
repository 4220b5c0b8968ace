//! The `shifter` and `kubectl-shift` binaries under test, built once per test process with the same
//! cargo.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path to a freshly built `shifter` (debug profile), or `$SHIFTER_BIN` when set (benchmarks point
/// it at a release build).
pub fn shifter_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("SHIFTER_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "shifter", "--bin", "shifter"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the shifter binary failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace.join("target"));
        let bin = target.join("debug").join("shifter");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Path to a freshly built `kubectl-shift` (the kubectl plugin), or `$KUBECTL_SHIFT_BIN` when set.
/// Its directory first on PATH makes `kubectl shift ...` run it.
pub fn kubectl_shift_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("KUBECTL_SHIFT_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "shifter", "--bin", "kubectl-shift"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the kubectl-shift binary failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace.join("target"));
        let bin = target.join("debug").join("kubectl-shift");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}
