//! Long-running `etcdctl` commands (`lock`, `elect`, `watch`) whose output is
//! read line by line while the test goes on, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// An `etcdctl` process running in the background.
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Background {
    /// Starts `etcdctl --endpoints=<endpoints> <args>`.
    pub fn etcdctl(endpoints: &str, args: &[&str]) -> Background {
        let bin = std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "etcdctl".into());
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start etcdctl (install it with `apt-get install etcd-client` or run `make test`)",
            );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line equal to `want`, panicking after `limit`.
    pub fn wait_line(&mut self, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.seen.iter().any(|l| l == want) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {want:?} within {limit:?}; saw {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "etcdctl ended before printing {want:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for a stdout line starting with `prefix`, panicking after `limit`.
    pub fn wait_line_matching(&mut self, prefix: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.seen.iter().any(|l| l.starts_with(prefix)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line starting {prefix:?} within {limit:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Whether the process has ended.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends `signal` (e.g. "INT", "KILL") to the process.
    pub fn signal(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to end, panicking after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.success();
            }
            if Instant::now() > deadline {
                panic!("etcdctl still running after {limit:?}; saw {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
