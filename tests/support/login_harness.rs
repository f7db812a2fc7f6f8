//! Test harness for the login and credential tests: a temp `LLMX_HOME`, the real `llmx` binary
//! run with a cleared environment, the in-process test issuer, and a scripted "browser" (an HTTP
//! client that follows redirects itself and only ever talks to 127.0.0.1).
//!
//! Included with `#[path]` by the test files that use it, so no shared `support/mod.rs` is needed.
#![allow(dead_code)]

use llmx::issuer::{Issuer, IssuerConfig, RunningIssuer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// An upper bound for anything a test waits for; reaching it is a failure, not a delay.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A temporary llmx home.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap() }
    }

    /// The home itself: a subdirectory, so llmx creates it (and must make it 0700).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("llmx-home")
    }

    pub fn auth_path(&self) -> PathBuf {
        self.path().join("auth.json")
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(self.path()).unwrap();
        std::fs::write(self.path().join(name), bytes).unwrap();
    }

    pub fn read_auth(&self) -> Option<Vec<u8>> {
        std::fs::read(self.auth_path()).ok()
    }

    pub fn auth_json(&self) -> Value {
        serde_json::from_slice(&self.read_auth().expect("auth.json exists")).unwrap()
    }

    /// `llmx ARGS` with a cleared environment: PATH and LLMX_HOME only.
    pub fn llmx<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmx"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LLMX_HOME", self.path())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// The result of a finished `llmx` run.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// A run that must neither panic nor be killed: exit 0, 1 or 2 and no panic message.
    pub fn assert_orderly(&self) {
        assert!(matches!(self.code(), 0..=2), "exit code {}: {self:?}", self.code());
        assert!(!self.stderr.contains("panicked"), "{self:?}");
    }
}

/// Run to completion and capture the output.
pub async fn run(mut cmd: Command) -> Run {
    let out = tokio::time::timeout(LIMIT, cmd.output()).await.expect("llmx finished in time").unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run with `stdin` piped in. llmx may stop reading early (input past a limit): a broken pipe
/// here is not an error of the test.
pub async fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Run {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin).await;
    drop(pipe);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A port that was free a moment ago (bind port 0, read it, release it). Tests run in parallel,
/// so nothing may hard-code 1455.
/// Read a child's whole stderr in the background (it is shown when an assertion fails).
pub fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The in-process test issuer on a free loopback port.
pub async fn issuer() -> RunningIssuer {
    issuer_with(IssuerConfig::default()).await
}

pub async fn issuer_with(config: IssuerConfig) -> RunningIssuer {
    Issuer::start(config).await.unwrap()
}

/// A running `llmx login --json` whose events the test reads one by one.
pub struct LoginProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    pub port: u16,
}

impl LoginProcess {
    /// `llmx -c auth_issuer=URL login --no-browser --json --port PORT EXTRA...`, then wait for its
    /// `listening` event (by reading its output: no sleeping).
    pub async fn start(home: &Home, issuer_url: &str, port: u16, extra: &[&str]) -> (LoginProcess, Value) {
        let mut p = LoginProcess::spawn(home, issuer_url, port, extra);
        let listening = p.expect_event("listening").await;
        (p, listening)
    }

    /// Start without waiting for any event.
    pub fn spawn(home: &Home, issuer_url: &str, port: u16, extra: &[&str]) -> LoginProcess {
        let port_s = port.to_string();
        let issuer = format!("auth_issuer={issuer_url}");
        let mut args = vec!["-c", &issuer, "login", "--no-browser", "--json", "--port", &port_s];
        args.extend_from_slice(extra);
        let mut cmd = home.llmx(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = collect_stderr(&mut child);
        LoginProcess { child, lines, stderr, port }
    }

    /// The next JSON event, or `None` when stdout closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.expect("an event in time").unwrap()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
    }

    /// The next event, which must be named `name`.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        match self.next_event().await {
            Some(e) if e["event"] == name => e,
            other => {
                let _ = self.child.start_kill();
                let stderr = (&mut self.stderr).await.unwrap_or_default();
                panic!("expected a {name} event, got {other:?}; stderr: {stderr}")
            }
        }
    }

    /// Wait for the process to end; returns its status, the remaining events and stderr.
    pub async fn finish(mut self) -> (ExitStatus, Vec<Value>, String) {
        let mut rest = Vec::new();
        while let Some(e) = self.next_event().await {
            rest.push(e);
        }
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await.expect("llmx exits").unwrap();
        (status, rest, self.stderr.await.unwrap())
    }
}

/// One request/response of the scripted browser.
#[derive(Debug, Clone)]
pub struct Hop {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// The "browser": follows redirects itself, rewriting `localhost` to 127.0.0.1 so that tests
/// only ever talk to 127.0.0.1.
pub struct Browser {
    http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
        Browser { http }
    }

    pub async fn get(&self, url: &str) -> Hop {
        let mut u = url::Url::parse(url).unwrap();
        if u.host_str() == Some("localhost") {
            u.set_host(Some("127.0.0.1")).unwrap();
        }
        let resp = tokio::time::timeout(LIMIT, self.http.get(u.clone()).send()).await.unwrap().unwrap();
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| u.join(l.to_str().unwrap()).unwrap().to_string());
        Hop { url: u.to_string(), status, location, body: resp.text().await.unwrap_or_default() }
    }

    /// GET `url` and follow redirects (at most 10); every hop in order.
    pub async fn follow(&self, url: &str) -> Vec<Hop> {
        let mut hops = vec![self.get(url).await];
        while let Some(next) = hops.last().unwrap().location.clone() {
            assert!(hops.len() < 10, "redirect loop: {hops:?}");
            hops.push(self.get(&next).await);
        }
        hops
    }

    /// Ask the issuer to approve `authorize_url` and return the callback URL it redirects to,
    /// without visiting it.
    pub async fn callback_url(&self, authorize_url: &str) -> url::Url {
        let hop = self.get(authorize_url).await;
        assert_eq!(hop.status, 302, "{hop:?}");
        url::Url::parse(&hop.location.unwrap()).unwrap()
    }
}

/// A complete browser login into `home` against `issuer`; returns the `login_succeeded` event.
pub async fn browser_login(home: &Home, issuer: &RunningIssuer) -> Value {
    let (login, listening) = LoginProcess::start(home, &issuer.base_url(), free_port(), &[]).await;
    let hops = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, 200, "{hops:?}");
    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    let done = events.iter().find(|e| e["event"] == "login_succeeded").cloned();
    done.unwrap_or_else(|| panic!("no login_succeeded in {events:?}; stderr: {stderr}"))
}

/// A test issuer and a home already signed in to it through the browser.
pub async fn logged_in() -> (RunningIssuer, Home) {
    let issuer = issuer().await;
    let home = Home::new();
    browser_login(&home, &issuer).await;
    (issuer, home)
}

/// `llmx -c auth_issuer=ISSUER auth refresh [--json]` in `home`.
pub async fn refresh(home: &Home, issuer_url: &str, json: bool) -> Run {
    let iss = format!("auth_issuer={issuer_url}");
    let mut args = vec!["-c", &iss, "auth", "refresh"];
    if json {
        args.push("--json");
    }
    run(home.llmx(&args)).await
}

/// A query parameter of a URL.
pub fn param(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}
