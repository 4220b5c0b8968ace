//! `shifter demo`, the README's first command, run as a user would: to its summary, with kubectl
//! looking on meanwhile, and stopped by Ctrl-C.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use shifter_tests::shifter_bin;

/// A running `shifter demo` with its output in a file.
struct Demo {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("demo.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(shifter_bin())
            .arg("demo")
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Demo { child, log, _dir: dir }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The directory the demo writes to, read off the kubeconfig path it prints.
    fn data_dir(&mut self) -> PathBuf {
        let line = self.wait_for("--kubeconfig ", Duration::from_secs(60));
        let path = line.split("--kubeconfig ").nth(1).unwrap().split_whitespace().next().unwrap();
        PathBuf::from(path).parent().unwrap().parent().unwrap().to_path_buf()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("demo exited ({status}) before printing {needle:?}:\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "demo did not print {needle:?} in {timeout:?}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("demo still running after {timeout:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_demo_promotes_a_healthy_release_then_rolls_back_a_bad_one() {
    let mut demo = Demo::start(&[]);
    let dir = demo.data_dir();
    let kubeconfig = dir.join("apiserver").join("kubeconfig");
    demo.wait_for("Rolling out web-v2", Duration::from_secs(60));
    // Meanwhile kubectl sees the rollout the demo drives.
    let table = kubectl(&kubeconfig, &["get", "ts,canary", "-n", "demo"]);
    assert!(table.contains("canary.shifter.dev/web") && table.contains("web-v2"), "{table}");

    let status = demo.wait(Duration::from_secs(360));
    let out = demo.output();
    assert!(status.success(), "demo exit {status}:\n{out}");
    assert!(out.contains("=> web-v2 promoted"), "{out}");
    assert!(out.contains("=> web-v3 rolled back"), "{out}");
    let summary = &out[out.find("Summary").expect("a summary")..];
    assert!(
        summary.contains("web-v1 -> web-v2: promoted") && summary.contains("web-v2 -> web-v3: rolled back"),
        "{summary}"
    );
    assert!(!summary.contains("UNEXPECTED"), "{summary}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_slower_release_is_rolled_back_for_its_latency() {
    let mut demo = Demo::start(&["--scenario", "latency"]);
    let dir = demo.data_dir();
    let status = demo.wait(Duration::from_secs(240));
    let out = demo.output();
    assert!(status.success(), "demo exit {status}:\n{out}");
    let end = out.lines().find(|l| l.contains("=> web-v2")).unwrap_or_default();
    assert!(end.contains("rolled back") && end.contains("latency"), "{out}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn ctrl_c_stops_everything_and_removes_what_the_demo_wrote() {
    let mut demo = Demo::start(&[]);
    let dir = demo.data_dir();
    let gateway = demo.wait_for("curl -i http://", Duration::from_secs(30));
    let gateway = gateway.split("http://").nth(1).unwrap().trim_end_matches('/').to_string();
    demo.wait_for("Rolling out web-v2", Duration::from_secs(60));
    assert!(dir.exists());
    let kill = Command::new("kill").args(["-INT", &demo.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = demo.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{}", demo.output());
    assert!(demo.output().contains("Ctrl-C"), "{}", demo.output());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(std::net::TcpStream::connect(&gateway).is_err(), "the gateway {gateway} still accepts connections");
}
