//! `kubectl-shift`: the kubectl plugin. With this executable on PATH, `kubectl shift VERB ...` runs
//! `kubectl-shift VERB ...`; the verbs themselves live in `shifter::cli`.

fn main() -> std::process::ExitCode {
    shifter::cli::plugin_main()
}
