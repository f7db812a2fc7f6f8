//! The one way the tests run the real `llmx` binary, and read what it prints.
//!
//! - [`Llmx`]: `llmx ARGS` with a cleared environment (only `PATH`, plus what the test gives),
//!   stdin closed unless the test gives bytes, and a time limit: [`Llmx::run`] (async) and
//!   [`Llmx::run_blocking`] (for plain `#[test]`s) capture stdout and stderr into a [`Run`];
//!   [`Llmx::events`] starts a long-running `--json` command and reads its events one by one.
//! - [`Events`]: the one JSON-event reader. Every event read is kept, so a failure shows the whole
//!   conversation, and [`Events::finish`] returns all of them. [`json_lines`] parses captured
//!   `--json` output with the same rules.
//! - [`free_port`]: the one helper for a fixed port, for the few places where llmx cannot be given
//!   `--port 0` (a tunnel needs the same port on both sides; a closed port to connect to).

use serde_json::Value;
use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The binary under test.
pub const LLMX: &str = env!("CARGO_BIN_EXE_llmx");

/// An upper bound for anything a test waits for; reaching it is a failure, not a delay.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 that nothing listened on a moment ago (bound to port 0, then released).
/// Tests run in parallel, so nothing may hard-code one; prefer `--port 0` where llmx takes it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `llmx` invocation, built up by the test, then run or spawned.
pub struct Llmx {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Llmx {
    /// `llmx ARGS` with an empty environment but for `PATH`.
    pub fn new<I, S>(args: I) -> Llmx
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Llmx::with(Command::new(LLMX)).args(args)
    }

    /// `PROGRAM PREFIX... LLMX`: llmx started through a wrapper (e.g. `unshare … sh -c … exec`),
    /// with the same cleared environment; add llmx's arguments with [`args`](Llmx::args).
    pub fn via<I, S>(program: &str, prefix: I) -> Llmx
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(prefix).arg(LLMX);
        Llmx::with(cmd)
    }

    fn with(mut cmd: Command) -> Llmx {
        // The machine's /etc/ssh/ssh_config is not the test's (tests that want one set it).
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LLMX_SSH_SYSTEM_CONFIG", "")
            .kill_on_drop(true);
        Llmx { cmd, stdin: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Llmx
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Llmx {
        self.cmd.env(key, value);
        self
    }

    /// Feed `bytes` on stdin, then close it (without this, stdin is `/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Llmx {
        self.stdin = Some(bytes.into());
        self
    }

    /// Start it with stdout and stderr piped, stdin written and closed.
    pub fn spawn(mut self) -> Child {
        let stdin = if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() };
        self.cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {LLMX}: {e}"));
        if let Some(bytes) = self.stdin {
            let mut pipe = child.stdin.take().unwrap();
            // Written in the background: a large input must not block on a child that does not read.
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
            });
        }
        child
    }

    /// Run to completion within [`LIMIT`] and capture the output.
    pub async fn run(self) -> Run {
        let start = Instant::now();
        let child = self.spawn();
        let out = tokio::time::timeout(LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("llmx did not finish within {LIMIT:?}"))
            .unwrap();
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }

    /// [`run`](Llmx::run) from a plain `#[test]` (one that is not inside a tokio runtime).
    pub fn run_blocking(self) -> Run {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(self.run())
    }

    /// Start a `--json` command that prints events while it runs, and read them as they come.
    pub fn events(self) -> Events {
        Events::of(self.spawn())
    }

    /// [`events`](Llmx::events), with stdin kept open for the test to type into (paste-back).
    pub fn events_with_input(mut self) -> (Events, ChildStdin) {
        self.cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {LLMX}: {e}"));
        let input = child.stdin.take().unwrap();
        (Events::of(child), input)
    }
}

/// A finished `llmx` run.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The exit code; -1 when it was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// stdout then stderr, for assertions about "anywhere in the output".
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// A run that must neither panic nor be killed: exit 0, 1 or 2 and no panic message.
    pub fn assert_orderly(&self) {
        assert!(matches!(self.code(), 0..=2), "exit code {}: {self:?}", self.code());
        assert!(!self.stderr.contains("panicked"), "{self:?}");
    }
}

/// One line of `--json` output: a JSON value, or a test failure naming the line.
pub fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

/// Every line of captured `--json` output, parsed.
/// The last event of a stream (a failed command ends with its `{"error":…}` object, which is
/// not an event).
pub fn last_event(events: &[Value]) -> &Value {
    events.iter().rev().find(|e| e.get("event").is_some()).expect("an event")
}

pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(json_line).collect()
}

/// Read a child's whole stderr in the background (it is shown when an assertion fails).
pub fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    })
}

/// A running `llmx … --json` whose events (one JSON object per stdout line, named by `"event"`)
/// the test reads one by one, each within [`LIMIT`].
pub struct Events {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    seen: Vec<Value>,
}

impl Events {
    fn of(mut child: Child) -> Events {
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = collect_stderr(&mut child);
        Events { child, lines, stderr, seen: Vec::new() }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kill the process outright (no chance to clean up) and reap it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The next event, or `None` when stdout closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.expect("an event in time").unwrap()?;
        let event = json_line(&line);
        self.seen.push(event.clone());
        Some(event)
    }

    /// The next event, which must be named `name`.
    pub async fn expect_next(&mut self, name: &str) -> Value {
        match self.next_event().await {
            Some(e) if e["event"] == name => e,
            other => self.fail(name, other).await,
        }
    }

    /// Skip events until one named `name`; fails if the output ends first.
    pub async fn wait_for(&mut self, name: &str) -> Value {
        loop {
            match self.next_event().await {
                Some(e) if e["event"] == name => return e,
                Some(_) => {}
                None => self.fail(name, None).await,
            }
        }
    }

    async fn fail(&mut self, name: &str, got: Option<Value>) -> ! {
        let _ = self.child.start_kill();
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        panic!("expected a {name} event, got {got:?}; events so far: {:?}; stderr: {stderr}", self.seen)
    }

    /// Read to the end and wait for the exit: the status, every event (from the first, including
    /// those already read) and stderr.
    pub async fn finish(mut self) -> (ExitStatus, Vec<Value>, String) {
        while self.next_event().await.is_some() {}
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await.expect("llmx exits").unwrap();
        (status, self.seen, self.stderr.await.unwrap())
    }
}
