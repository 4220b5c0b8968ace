//! A child process whose output is read while it runs, so a test can wait for the line that proves
//! the program reached a point (its first report, a view of a change) before acting, instead of
//! sleeping and hoping.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which output to look at.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub struct LiveChild {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                return;
            }
            into.lock().expect("output buffer").extend_from_slice(&buf[..n]);
        }
    })
}

impl LiveChild {
    /// Spawns `cmd` with stdout and stderr captured as they are written.
    pub fn spawn(mut cmd: Command) -> LiveChild {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("child starts");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            pump(child.stdout.take().expect("piped stdout"), Arc::clone(&stdout)),
            pump(child.stderr.take().expect("piped stderr"), Arc::clone(&stderr)),
        ];
        LiveChild { child, stdout, stderr, readers }
    }

    /// What `stream` holds so far.
    pub fn text(&self, stream: Stream) -> String {
        let buf = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        String::from_utf8_lossy(&buf.lock().expect("output buffer")).into_owned()
    }

    /// Waits until `stream` has printed `needle` at least `times` times; panics (with everything
    /// printed) after `timeout` or if the child exits first.
    pub fn wait_for(&mut self, stream: Stream, needle: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.text(stream).matches(needle).count() >= times {
                return;
            }
            let exited = self.child.try_wait().expect("child status").is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "{needle:?} not printed {times}x on {stream:?} ({}):\nstdout:\n{}\nstderr:\n{}",
                if exited { "the child exited" } else { "timed out" },
                self.text(Stream::Stdout),
                self.text(Stream::Stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the child to exit and returns everything it printed.
    pub fn finish(mut self) -> Output {
        let status: ExitStatus = self.child.wait().expect("child exits");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().expect("output buffer")),
            stderr: std::mem::take(&mut *self.stderr.lock().expect("output buffer")),
        }
    }
}

impl Drop for LiveChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
