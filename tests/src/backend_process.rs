//! Backends in their own OS processes (the `test-backend` binary of this crate), for the faults
//! only a process has: a crash that drops its listener and every open connection at once.

use std::path::Path;
use std::time::Duration;

use crate::{Proc, free_port};

/// A `test-backend` process serving on 127.0.0.1:`port`; killed when dropped.
pub struct BackendProcess {
    pub name: String,
    pub port: u16,
    pub proc: Proc,
}

impl BackendProcess {
    /// Starts `program` (an integration test passes `env!("CARGO_BIN_EXE_test-backend")`) as
    /// `name` on a free port and waits until it serves.
    pub fn start(dir: &Path, program: &Path, name: &str) -> BackendProcess {
        let port = free_port();
        let args = vec![name.to_string(), port.to_string()];
        let mut proc = Proc::spawn(&format!("backend-{name}"), dir, program, &args, &[]);
        proc.wait_for_line("serving on", Duration::from_secs(20));
        BackendProcess { name: name.into(), port, proc }
    }

    /// SIGKILL: the process dies with its connections open, as a crashed pod does.
    pub fn crash(&mut self) {
        self.proc.kill();
    }
}
