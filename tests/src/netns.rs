//! Linux network namespaces as the "pods" of mesh tests: each test creates its own, named after
//! the test process so parallel runs never meet, and deletes them when the handle drops. Nothing
//! in them has a route out: every address a test uses is assigned inside one of them.
//!
//! Needs root (CI runs as root) and `ip` from iproute2 (the README's test command installs it).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up. Panics with what is missing when it cannot be made.
    pub fn new(purpose: &str) -> Netns {
        assert!(
            is_root(),
            "network-namespace tests need root (they create namespaces and iptables rules); CI runs as root"
        );
        let name = format!("shf-{purpose}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Moves the calling thread into the namespace: its sockets, the threads it starts and the
    /// processes it spawns live there from now on. Run a test's cluster in a thread of its own
    /// that calls this first; the rest of the process stays where it was.
    pub fn enter_current_thread(&self) {
        enter(&self.name);
    }

    /// Runs `argv` inside the namespace and returns its output, whatever its exit status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        c.output().unwrap_or_else(|e| panic!("running {argv:?} in {}: {e}", self.name))
    }

    /// Runs `argv` inside the namespace, panics unless it succeeds, returns its stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).output();
    }
}

/// Moves the calling thread into the network namespace `name` (see [`Netns::enter_current_thread`]).
pub fn enter(name: &str) {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
}

/// A tokio runtime whose worker threads live inside a namespace: what a test runs on it (servers
/// it starts, clients it dials) sees that namespace's network. It stops when this drops.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    pub fn start(ns: &Netns) -> NsRuntime {
        let name = ns.name.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            enter(&name);
            // Threads inherit the namespace of the thread that starts them.
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            ready_tx.send(runtime.handle().clone()).unwrap();
            let _ = stop_rx.recv();
        });
        let handle = ready_rx.recv().expect("a runtime in the namespace");
        NsRuntime { handle, stop: Some(stop), thread: Some(thread) }
    }

    /// Runs `future` on the namespace's workers and waits for its output.
    pub fn run<T: Send + 'static>(&self, future: impl std::future::Future<Output = T> + Send + 'static) -> T {
        self.handle.block_on(self.handle.spawn(future)).expect("the task ran to its end")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(out.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
