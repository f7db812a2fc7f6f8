//! What the login, credential and tunnel tests share: a temp `LLMX_HOME`, the in-process test
//! issuer (crates/test-issuer), `llmx login --json` as a stream of events, and a scripted
//! "browser" (an HTTP client that follows redirects itself and only ever talks to 127.0.0.1).

use super::harness::{Events, LIMIT, Llmx, Run};
use llmx_test_issuer::{Issuer, IssuerConfig, RunningIssuer};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A temporary llmx home.
pub struct Home {
    pub dir: tempfile::TempDir,
    /// Set in every `llmx` run of this home besides LLMX_HOME (e.g. a session bus address).
    env: Vec<(String, String)>,
}

impl Home {
    pub fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap(), env: Vec::new() }
    }

    /// This home, with `key=value` in the environment of every `llmx` run in it.
    pub fn with_env(mut self, key: &str, value: &str) -> Home {
        self.env.push((key.to_string(), value.to_string()));
        self
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

    /// `llmx ARGS` with a cleared environment: PATH and LLMX_HOME only (and what
    /// [`Home::with_env`] added).
    pub fn llmx<I, S>(&self, args: I) -> Llmx
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.env.iter().fold(Llmx::new(args).env("LLMX_HOME", self.path()), |l, (k, v)| l.env(k, v))
    }
}

/// The in-process test issuer on a free loopback port.
pub async fn issuer() -> RunningIssuer {
    issuer_with(IssuerConfig::default()).await
}

pub async fn issuer_with(config: IssuerConfig) -> RunningIssuer {
    Issuer::start(config).await.unwrap()
}

/// `llmx -c auth_issuer=URL login --no-browser --json --port PORT EXTRA...` (port 0: the OS picks),
/// then wait for its `listening` event (by reading its output: no sleeping). The port it listens
/// on is the event's `port`.
pub async fn start_login(home: &Home, issuer_url: &str, port: u16, extra: &[&str]) -> (Events, Value) {
    let mut login = spawn_login(home, issuer_url, port, extra);
    let listening = login.expect_next("listening").await;
    (login, listening)
}

/// Start the login without waiting for any event.
pub fn spawn_login(home: &Home, issuer_url: &str, port: u16, extra: &[&str]) -> Events {
    let issuer = format!("auth_issuer={issuer_url}");
    let port = port.to_string();
    home.llmx(["-c", &issuer, "login", "--no-browser", "--json", "--port", &port]).args(extra).events()
}

/// The port in a `listening` event.
pub fn port_of(listening: &Value) -> u16 {
    let port = listening["port"].as_u64().unwrap_or_else(|| panic!("no port in {listening}"));
    u16::try_from(port).unwrap()
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
    let (login, listening) = start_login(home, &issuer.base_url(), 0, &[]).await;
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
    home.llmx(&args).run().await
}

/// A query parameter of a URL.
pub fn param(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}
