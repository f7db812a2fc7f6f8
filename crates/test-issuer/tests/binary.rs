//! The `llmx-test-issuer` binary as `scripts/demo` and the benchmarks run it: the URL comes first
//! on stdout, the flags reach the issued tokens, and a whole code grant with PKCE works against it.
//! The client side here is written from the protocol, not taken from llmx (this crate does not
//! depend on llmx); llmx's own login against this issuer is tested in llmx's tests/it/login.rs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use llmx_test_issuer::{AUTH_CLAIMS, DEFAULT_CLIENT_ID, s256};
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const LIMIT: Duration = Duration::from_secs(60);

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn test_issuer_binary_prints_its_url_first_and_serves_logins() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmx-test-issuer"))
        .args(["--listen", "127.0.0.1:0", "--email", "bin@example.com", "--plan", "team"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{url}");

    // The browser's part: authorize, which redirects to the callback with a code.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let verifier = "a-verifier-of-enough-length-0123456789-abcdefghijklmnopqrstuvwxyz";
    let redirect = "http://localhost:1455/auth/callback";
    let authorize = reqwest::Url::parse_with_params(
        &format!("{url}/oauth/authorize"),
        [
            ("response_type", "code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", redirect),
            ("code_challenge", &s256(verifier)),
            ("code_challenge_method", "S256"),
            ("state", "st-1"),
        ],
    )
    .unwrap();
    let resp = tokio::time::timeout(LIMIT, http.get(authorize).send()).await.unwrap().unwrap();
    assert_eq!(resp.status(), 302);
    let location = reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect), "{location}");
    let param = |k: &str| location.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    assert_eq!(param("state").as_deref(), Some("st-1"));
    let code = param("code").expect("a code");

    // The client's part: the code exchange, with the verifier.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", DEFAULT_CLIENT_ID),
        ("code_verifier", verifier),
    ];
    let resp =
        tokio::time::timeout(LIMIT, http.post(format!("{url}/oauth/token")).form(&form).send()).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "bin@example.com");
    assert_eq!(id[AUTH_CLAIMS]["chatgpt_plan_type"], "team");
    assert!(claims(tokens["access_token"].as_str().unwrap())["exp"].is_i64());
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));
    child.start_kill().unwrap();
}
