//! Browser login and refresh, end to end: the real `llmx` binary, a temp `LLMX_HOME`, a cleared
//! environment, the test issuer (a real HTTP server) and a scripted browser on 127.0.0.1.

use crate::support::harness::{LIMIT, free_port, last_event};
use crate::support::login::*;
use llmx_test_issuer::IssuerConfig;
use serde_json::Value;

fn secrets(auth: &Value) -> Vec<String> {
    let t = &auth["tokens"];
    let mut s: Vec<String> =
        ["id_token", "access_token", "refresh_token"].iter().map(|k| t[k].as_str().unwrap().to_string()).collect();
    if let Some(k) = auth["OPENAI_API_KEY"].as_str() {
        s.push(k.to_string());
    }
    s
}

#[tokio::test]
async fn browser_login_saves_tokens_and_api_key_privately() {
    let issuer = issuer().await;
    let home = Home::new();
    // An earlier API-key login with a key from a newer client: a browser login replaces the file.
    home.write("auth.json", br#"{"OPENAI_API_KEY":"sk-old-key-0000000000","newer_client_key":1}"#);
    // Port 0: the OS picks one, and the listening event says which.
    let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let port = port_of(&listening);
    assert_ne!(port, 0);
    assert_eq!(listening["redirect_uri"], format!("http://localhost:{port}/auth/callback"));
    assert_eq!(listening["timeout_secs"], 600);

    let hops = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    let statuses: Vec<u16> = hops.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [302, 302, 200], "authorize -> callback -> success: {hops:?}");
    assert!(hops[2].url.ends_with("/success") && hops[2].body.contains("signed in"), "{hops:?}");

    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["listening", "callback_received", "login_succeeded"]);
    let done = &events[2];
    assert_eq!(done["email"], "dev@example.com");
    assert_eq!(done["plan"], "plus");
    assert_eq!(done["account_id"], "acc-test-0001");
    assert_eq!(done["api_key_saved"], true);
    assert!(done["callback_to_saved_ms"].as_f64().unwrap() > 0.0);

    assert_eq!(mode(&home.auth_path()), 0o600);
    assert_eq!(mode(&home.path()), 0o700);
    let auth = home.auth_json();
    let keys: Vec<&String> = auth.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["OPENAI_API_KEY", "tokens", "last_refresh", "auth_mode"], "the whole file is replaced");
    assert_eq!(auth["auth_mode"], "chatgpt", "current Codex CLIs read it (DESIGN.md §1)");
    assert!(auth["OPENAI_API_KEY"].as_str().unwrap().starts_with("sk-test-"));
    assert_eq!(auth["tokens"]["account_id"], "acc-test-0001");
    assert_eq!(issuer.issuer.stats().code_exchanges, 1);
    assert_eq!(issuer.issuer.stats().api_key_exchanges, 1);

    let status = home.llmx(["login", "status", "--json"]).run().await;
    assert_eq!(status.code(), 0, "{status:?}");
    let report = status.json();
    assert_eq!(report["method"], "chatgpt");
    assert_eq!(report["email"], "dev@example.com");
    assert_eq!(report["plan"], "plus");
    assert!(report["access_token_expires_at"].is_string());
    let human = home.llmx(["auth", "status"]).run().await;
    assert!(human.stdout.contains("Logged in using ChatGPT"), "{human:?}");

    // No secret reached any output.
    let all = format!("{events:?}{stderr}{}{}{}", status.stdout, human.stdout, human.stderr);
    for s in secrets(&auth) {
        assert!(!all.contains(&s), "a secret was printed");
    }
}

#[tokio::test]
async fn human_login_prints_the_url_on_stderr() {
    let issuer = issuer().await;
    let home = Home::new();
    let mut child = home.llmx(["-c", &format!("auth_issuer={}", issuer.base_url()), "login", "--port", "0"]).spawn();
    // Read stderr until the URL line shows up, then play the browser.
    use tokio::io::AsyncBufReadExt;
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(LIMIT, err.next_line()).await.unwrap().unwrap().expect("a URL line");
        if let Some(u) = line.trim().strip_prefix(&format!("{}/oauth/authorize?", issuer.base_url())) {
            break format!("{}/oauth/authorize?{u}", issuer.base_url());
        }
    };
    let hops = Browser::new().follow(&url).await;
    assert_eq!(hops.last().unwrap().status, 200);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("Logged in using ChatGPT - dev@example.com (plus)"), "{stdout}");
}

#[tokio::test]
async fn wrong_state_is_rejected_and_the_login_keeps_waiting() {
    let issuer = issuer().await;
    let home = Home::new();
    let (mut login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let browser = Browser::new();
    let callback = browser.callback_url(listening["authorize_url"].as_str().unwrap()).await;

    let mut forged = callback.clone();
    let code = param(&callback, "code").unwrap();
    forged.query_pairs_mut().clear().append_pair("code", &code).append_pair("state", "forged-state");
    let hop = browser.get(forged.as_str()).await;
    assert_eq!(hop.status, 400, "{hop:?}");
    assert!(hop.body.contains("State mismatch"), "{hop:?}");
    assert_eq!(login.expect_next("callback_rejected").await["reason"], "state mismatch");
    assert!(home.read_auth().is_none());

    // The right callback still completes the login.
    let hops = browser.follow(callback.as_str()).await;
    assert_eq!(hops.iter().map(|h| h.status).collect::<Vec<_>>(), [302, 200]);
    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(last_event(&events)["event"], "login_succeeded");
}

#[tokio::test]
async fn callback_without_code_is_400_and_the_login_keeps_waiting() {
    let issuer = issuer().await;
    let home = Home::new();
    let (mut login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let browser = Browser::new();
    let callback = browser.callback_url(listening["authorize_url"].as_str().unwrap()).await;
    let state = param(&callback, "state").unwrap();
    let mut no_code = callback.clone();
    no_code.query_pairs_mut().clear().append_pair("state", &state);
    assert_eq!(browser.get(no_code.as_str()).await.status, 400);
    assert_eq!(login.expect_next("callback_rejected").await["reason"], "missing authorization code");
    let other = format!("http://127.0.0.1:{}/favicon.ico", port_of(&listening));
    assert_eq!(browser.get(&other).await.status, 404);
    assert_eq!(browser.follow(callback.as_str()).await.last().unwrap().status, 200);
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
}

#[tokio::test]
async fn access_denied_fails_the_login_and_writes_nothing() {
    let issuer = issuer().await;
    let home = Home::new();
    let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let url = format!("{}&llmx_test_error=access_denied", listening["authorize_url"].as_str().unwrap());
    let hops = Browser::new().follow(&url).await;
    assert!(hops.last().unwrap().body.contains("access_denied"), "{hops:?}");
    let (status, events, stderr) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(last_event(&events)["event"], "login_failed");
    assert_eq!(last_event(&events)["reason"], "denied");
    assert!(stderr.starts_with("llmx: the sign-in was refused by the issuer: access_denied"), "{stderr}");
    assert!(stderr.contains("hint: run `llmx login` again"), "{stderr}");
    assert!(home.read_auth().is_none());
    assert_eq!(issuer.issuer.stats().code_exchanges, 0);
}

#[tokio::test]
async fn issuer_configured_to_deny_fails_the_login() {
    let issuer = issuer_with(IssuerConfig { deny: true, ..Default::default() }).await;
    let home = Home::new();
    let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    let (status, events, _) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(last_event(&events)["reason"], "denied");
}

#[tokio::test]
async fn stale_llmx_login_on_the_port_is_evicted() {
    let issuer = issuer().await;
    // The same home: eviction needs the cancel secret the stale login left there.
    let home = Home::new();
    let port = free_port();
    let (stale, _) = start_login(&home, &issuer.base_url(), port, &[]).await;
    let cancel_file = home.path().join(format!("login-{port}.cancel"));
    assert_eq!(mode(&cancel_file), 0o600);
    let mut fresh = spawn_login(&home, &issuer.base_url(), port, &[]);
    assert_eq!(fresh.expect_next("stale_server_cancelled").await["port"], port);
    let listening = fresh.expect_next("listening").await;
    assert_eq!(listening["port"], port);

    let (status, events, stderr) = stale.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(last_event(&events)["reason"], "cancelled", "{stderr}");

    assert_eq!(Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await.last().unwrap().status, 200);
    let (status, _, stderr) = fresh.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(home.read_auth().is_some());
    assert!(!cancel_file.exists(), "the cancel file is removed when the login ends");
}

#[tokio::test]
async fn foreign_server_on_the_port_is_a_clear_error() {
    let issuer = issuer().await;
    let home = Home::new();
    // Something that is not llmx: answers every request 404, so /cancel does nothing.
    let foreign = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = foreign.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = foreign.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    let login = spawn_login(&home, &issuer.base_url(), port, &[]);
    let (status, events, stderr) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or("(error object)")).collect();
    assert_eq!(names, ["login_failed", "(error object)"]);
    assert_eq!(events[0]["reason"], "port_busy");
    assert_eq!(events[1]["error"]["kind"], "failed", "{events:?}");
    let first = stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "llmx: port {port} on 127.0.0.1 is in use by another program (it did not stop on /cancel: it is not an llmx login of this LLMX_HOME)"
        )
    );
    assert!(stderr.contains(&format!("hint: see who holds it with `ss -ltnp 'sport = :{port}'`")), "{stderr}");
}

#[tokio::test]
async fn login_times_out_when_nobody_signs_in() {
    let issuer = issuer().await;
    let home = Home::new();
    let (login, listening) = start_login(&home, &issuer.base_url(), 0, &["--timeout", "1"]).await;
    assert_eq!(listening["timeout_secs"], 1);
    let (status, events, stderr) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(last_event(&events)["reason"], "timeout");
    assert!(stderr.contains("llmx: nobody completed the sign-in within 1 s"), "{stderr}");
    assert!(stderr.contains("--timeout SECS"), "{stderr}");
    assert!(home.read_auth().is_none());
}

#[tokio::test]
async fn api_key_exchange_is_best_effort() {
    let issuer = issuer_with(IssuerConfig { api_keys: false, ..Default::default() }).await;
    let home = Home::new();
    let done = browser_login(&home, &issuer).await;
    assert_eq!(done["api_key_saved"], false);
    let auth = home.auth_json();
    assert!(auth["OPENAI_API_KEY"].is_null(), "written as null");
    assert!(auth["tokens"]["refresh_token"].is_string());
}

#[tokio::test]
async fn issuer_checks_pkce_redirect_uri_client_and_single_use() {
    use llmx::auth::oauth::{OAuthClient, OAuthError};
    use llmx::auth::pkce::Pkce;
    let issuer = issuer().await;
    let client = OAuthClient::new(&issuer.base_url(), llmx::config::DEFAULT_CLIENT_ID).unwrap();
    let browser = Browser::new();
    let redirect = "http://localhost:1/auth/callback";
    let code_for = |pkce: &Pkce| {
        let url = client.authorize_url(redirect, pkce, "st");
        let browser = &browser;
        async move { param(&browser.callback_url(&url).await, "code").unwrap() }
    };
    let invalid_grant = |r: Result<_, OAuthError>| matches!(r, Err(OAuthError::Status { status: 400, code: Some(c) }) if c == "invalid_grant");

    let pkce = Pkce::generate().unwrap();
    let code = code_for(&pkce).await;
    let other = Pkce::generate().unwrap();
    assert!(invalid_grant(client.exchange_code(&code, redirect, &other.verifier).await), "wrong verifier");
    assert!(invalid_grant(client.exchange_code(&code, redirect, &pkce.verifier).await), "a tried code is spent");

    let code = code_for(&pkce).await;
    assert!(invalid_grant(client.exchange_code(&code, "http://localhost:2/auth/callback", &pkce.verifier).await));

    let code = code_for(&pkce).await;
    let stranger = OAuthClient::new(&issuer.base_url(), "app_someone_else").unwrap();
    let r = stranger.exchange_code(&code, redirect, &pkce.verifier).await;
    assert!(matches!(r, Err(OAuthError::Status { status: 401, .. })), "{r:?}");

    let code = code_for(&pkce).await;
    let tokens = client.exchange_code(&code, redirect, &pkce.verifier).await.unwrap();
    assert!(invalid_grant(client.exchange_code(&code, redirect, &pkce.verifier).await), "single use");
    assert!(client.exchange_api_key(&tokens.id_token).await.unwrap().expose().starts_with("sk-test-"));
    let claims = llmx::auth::claims::IdClaims::parse(tokens.id_token.expose()).unwrap();
    assert_eq!((claims.email.as_deref(), claims.plan.as_deref()), (Some("dev@example.com"), Some("plus")));
    assert!(llmx::auth::claims::expiry(tokens.access_token.expose()).is_some());

    // Refresh rotation, straight against the issuer.
    let fresh = client.refresh(&tokens.refresh_token).await.unwrap();
    assert!(fresh.refresh_token.is_some_and(|r| r != tokens.refresh_token));
    let again = client.refresh(&tokens.refresh_token).await.unwrap_err();
    assert!(matches!(again, llmx::auth::oauth::RefreshError::Permanent { ref code } if code == "refresh_token_reused"));
    assert_eq!(issuer.issuer.stats().code_exchanges, 1);
}

#[tokio::test]
async fn refresh_rotates_tokens_and_keeps_unknown_keys() {
    let (issuer, home) = logged_in().await;
    let mut before = home.auth_json();
    before["newer_client_key"] = serde_json::json!({"kept": true});
    home.write("auth.json", serde_json::to_string_pretty(&before).unwrap().as_bytes());

    let r = refresh(&home, &issuer.base_url(), true).await;
    assert_eq!(r.code(), 0, "{r:?}");
    let out = r.json();
    assert_eq!(out["refreshed"], true);
    assert_eq!(out["refresh_token_rotated"], true);
    assert_eq!(out["email"], "dev@example.com");

    let after = home.auth_json();
    assert_ne!(after["tokens"]["refresh_token"], before["tokens"]["refresh_token"]);
    assert_ne!(after["tokens"]["access_token"], before["tokens"]["access_token"]);
    assert_eq!(after["OPENAI_API_KEY"], before["OPENAI_API_KEY"]);
    assert_eq!(after["newer_client_key"], before["newer_client_key"]);
    assert_eq!(after["tokens"]["account_id"], "acc-test-0001");
    assert_ne!(after["last_refresh"], before["last_refresh"]);
    assert_eq!(out["last_refresh"], after["last_refresh"]);
    assert_eq!(mode(&home.auth_path()), 0o600);
    for s in secrets(&after) {
        assert!(!r.stdout.contains(&s) && !r.stderr.contains(&s), "a secret was printed");
    }
}

#[tokio::test]
async fn reused_refresh_token_is_permanent_and_leaves_the_file_untouched() {
    // Two copies of one login: the first to refresh rotates the token; the other is now stale.
    let (issuer, home) = logged_in().await;
    let copy = Home::new();
    copy.write("auth.json", &home.read_auth().unwrap());
    assert_eq!(refresh(&home, &issuer.base_url(), false).await.code(), 0);

    let bytes = copy.read_auth().unwrap();
    let r = refresh(&copy, &issuer.base_url(), false).await;
    assert_eq!(r.code(), 4, "authentication needed: {r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "llmx: the issuer rejected the refresh token (refresh_token_reused); this login is no longer valid; auth.json was left unchanged"
    );
    assert!(lines[1].starts_with("hint: run `llmx login` to sign in again"), "{lines:?}");
    assert_eq!(copy.read_auth().unwrap(), bytes, "byte for byte");

    let j = refresh(&copy, &issuer.base_url(), true).await;
    assert_eq!(j.code(), 4);
    assert_eq!(j.json()["error"]["kind"], "auth_needed");
    assert_eq!(j.json()["permanent"], true);
    assert_eq!(j.json()["code"], "refresh_token_reused");
    assert_eq!(copy.read_auth().unwrap(), bytes);
}

#[tokio::test]
async fn refresh_with_the_issuer_down_is_transient_and_leaves_the_file_untouched() {
    let (issuer, home) = logged_in().await;
    let url = issuer.base_url();
    issuer.stop().await.unwrap();
    let bytes = home.read_auth().unwrap();
    let r = refresh(&home, &url, true).await;
    assert_eq!(r.code(), 3, "unreachable: {r:?}");
    assert_eq!(r.json()["permanent"], false);
    assert_eq!(r.json()["error"]["kind"], "unreachable");
    assert!(r.stderr.starts_with("llmx: could not refresh: cannot reach the issuer"), "{r:?}");
    assert!(r.stderr.contains("auth.json was left unchanged"), "{r:?}");
    assert_eq!(home.read_auth().unwrap(), bytes);
}

#[tokio::test]
async fn refresh_with_an_issuer_error_is_transient() {
    let (issuer, home) = logged_in().await;
    issuer.issuer.set_refresh_failure(Some(503));
    let bytes = home.read_auth().unwrap();
    let r = refresh(&home, &issuer.base_url(), false).await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("the issuer answered 503 (server_error)"), "{r:?}");
    assert_eq!(home.read_auth().unwrap(), bytes);
    // The token was not consumed: once the issuer recovers, the same file refreshes.
    issuer.issuer.set_refresh_failure(None);
    assert_eq!(refresh(&home, &issuer.base_url(), false).await.code(), 0);
}

#[tokio::test]
async fn refresh_without_a_chatgpt_login_says_what_to_do() {
    let home = Home::new();
    home.write("auth.json", br#"{"OPENAI_API_KEY":"sk-a-key-that-is-long"}"#);
    let r = home.llmx(["-c", "auth_issuer=http://127.0.0.1:9", "auth", "refresh"]).run().await;
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr.contains("holds no ChatGPT login to refresh") && r.stderr.contains("hint: sign in with `llmx login`"),
        "{r:?}"
    );
}

#[tokio::test]
async fn junk_callback_queries_are_answered_and_never_crash_the_login() {
    let issuer = issuer().await;
    let home = Home::new();
    let (mut login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let browser = Browser::new();
    let base = format!("http://127.0.0.1:{}", port_of(&listening));
    for q in [
        "",
        "?",
        "?&&&",
        "?=",
        "?code",
        "?code=%",
        "?%ZZ=%ZZ",
        "?state=%ff%fe&code=%00",
        "?a=b=c",
        "?state=&code=",
        "?code=x&state=x&state=y",
        "?error=",
        "?state=%00%01",
        &format!("?state={}", "A".repeat(10_000)),
    ] {
        let hop = browser.get(&format!("{base}/auth/callback{q}")).await;
        assert!(matches!(hop.status, 400 | 414 | 431), "{q}: {hop:?}");
    }
    for path in ["/auth", "/auth/callback/x", "/%2e%2e/etc/passwd", "/success?x=1"] {
        assert_eq!(browser.get(&format!("{base}{path}")).await.status, 404, "{path}");
    }
    // Still waiting, and still able to finish.
    let mut rejected = 0;
    let hops = browser.follow(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, 200);
    while let Some(e) = login.next_event().await {
        match e["event"].as_str().unwrap() {
            "callback_rejected" => rejected += 1,
            "login_succeeded" => break,
            "callback_received" => {}
            other => panic!("{other}"),
        }
    }
    assert!(rejected >= 10, "{rejected}");
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
}

/// What a web page in the user's browser can send to a waiting login's `/cancel`: a GET (link,
/// image, fetch), form POSTs with no, a guessed or a near-miss secret. None ends the login; the
/// login then completes normally.
#[tokio::test]
async fn cancel_needs_the_login_secret_so_web_pages_cannot_end_a_login() {
    let issuer = issuer().await;
    let home = Home::new();
    let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
    let port = port_of(&listening);
    let secret = std::fs::read_to_string(home.path().join(format!("login-{port}.cancel"))).unwrap();
    let url = format!("http://127.0.0.1:{port}/cancel");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = "application/x-www-form-urlencoded";
    let attempts = [
        (http.get(&url), 405),
        (http.get(format!("{url}?secret={}", secret.trim())), 405),
        (http.post(&url), 403),
        (http.post(&url).header("content-type", form).body("cancel=1"), 403),
        (http.post(&url).header("content-type", "text/plain").body("guess"), 403),
        (http.post(&url).body(format!("{}x", secret.trim())), 403),
        (http.post(&url).body(secret.trim()[1..].to_string()), 403),
        (http.post(&url).header("origin", "https://evil.example").body(""), 403),
    ];
    for (i, (req, want)) in attempts.into_iter().enumerate() {
        assert_eq!(req.send().await.unwrap().status().as_u16(), want, "attempt {i}");
    }
    let hops = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, 200, "the login still waited: {hops:?}");
    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{events:?} {stderr}");
}

/// The issuer's token endpoint misbehaving: redirects to another origin (which would get the code
/// and verifier), same-origin redirects, a body past the cap, non-JSON, JSON of the wrong shape
/// quoting a value, an error code with terminal escapes. Each fails the login with a clear error,
/// sends nothing to the other origin, leaves the earlier auth.json as it was and prints no controls.
#[tokio::test]
async fn hostile_token_answers_fail_the_login_and_leave_auth_json_intact() {
    use llmx_test_issuer::TokenAnswer;
    let issuer = issuer().await;
    let elsewhere = crate::support::login::issuer().await;
    let other = format!("{}/oauth/token", elsewhere.base_url());
    let raw = |status: u16, ct: &str, body: &str| TokenAnswer::Raw {
        status,
        content_type: ct.into(),
        body: body.as_bytes().to_vec(),
    };
    let answers = [
        (TokenAnswer::Redirect { status: 307, location: other.clone() }, "answered 307 (a redirect to"),
        (TokenAnswer::Redirect { status: 308, location: other.clone() }, "answered 308"),
        (TokenAnswer::Redirect { status: 302, location: other.clone() }, "answered 302"),
        (TokenAnswer::Redirect { status: 307, location: "/oauth/token".into() }, "answered 307"),
        (TokenAnswer::Padded { bytes: 2 * 1024 * 1024 }, "larger than 1024 KiB"),
        (raw(200, "application/json", &"x".repeat(1024 * 1024 + 1)), "larger than 1024 KiB"),
        (raw(200, "text/html", "<html>hello</html>"), "not the expected JSON"),
        (raw(200, "application/json", r#"{"id_token":["sk-LEAKED"],"access_token":1}"#), "wrong type"),
        (raw(400, "application/json", "{\"error\":\"x\\u001b]52;c;ZXZpbA==\\u0007\\u001b[2J\"}"), "answered 400"),
    ];
    let n = answers.len();
    for (answer, want) in answers {
        let home = Home::new();
        home.write("auth.json", br#"{"OPENAI_API_KEY":"sk-old-key-0000000000"}"#);
        issuer.issuer.set_token_answer(Some(answer.clone()));
        let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
        let _ = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
        let (status, events, stderr) = login.finish().await;
        assert_eq!(status.code(), Some(1), "{answer:?}: {stderr}");
        let failed = last_event(&events);
        assert_eq!(failed["reason"], "token_exchange", "{answer:?}: {events:?}");
        assert!(failed["error"].as_str().unwrap().contains(want), "{answer:?}: want {want:?} in {failed}");
        assert!(!llmx::text::has_terminal_controls(failed["error"].as_str().unwrap()), "{failed}");
        assert!(stderr.contains("exchanging the authorization code failed"), "{answer:?}: {stderr}");
        assert!(stderr.contains(want), "{answer:?}: want {want:?} in {stderr}");
        assert!(!stderr.contains("LEAKED"), "{stderr}");
        assert!(!llmx::text::has_terminal_controls(&stderr), "{answer:?}: {stderr:?}");
        assert_eq!(home.read_auth().unwrap(), br#"{"OPENAI_API_KEY":"sk-old-key-0000000000"}"#, "{answer:?}");
    }
    assert_eq!(elsewhere.issuer.token_requests(), 0, "a redirect was followed");
    assert_eq!(issuer.issuer.token_requests() as usize, n);
}

/// The same hostile answers to a refresh: transient failures, the refresh token never re-sent
/// elsewhere, auth.json untouched.
#[tokio::test]
async fn hostile_refresh_answers_are_transient_and_never_follow_redirects() {
    use llmx_test_issuer::TokenAnswer;
    let (issuer, home) = logged_in().await;
    let elsewhere = crate::support::login::issuer().await;
    let other = format!("{}/oauth/token", elsewhere.base_url());
    let before = home.read_auth().unwrap();
    for answer in [
        TokenAnswer::Redirect { status: 307, location: other.clone() },
        TokenAnswer::Redirect { status: 308, location: other.clone() },
        TokenAnswer::Padded { bytes: 2 * 1024 * 1024 },
        TokenAnswer::Raw { status: 200, content_type: "text/plain".into(), body: b"\x1b[2Jnot json".to_vec() },
    ] {
        issuer.issuer.set_token_answer(Some(answer.clone()));
        let r = refresh(&home, &issuer.base_url(), false).await;
        assert_eq!(r.code(), 1, "{answer:?}: {r:?}");
        assert!(!llmx::text::has_terminal_controls(&r.stderr), "{r:?}");
        assert_eq!(home.read_auth().unwrap(), before, "{answer:?}");
    }
    assert_eq!(elsewhere.issuer.token_requests(), 0, "the refresh token went to another origin");
}

/// The browser launcher's command line (readable by every local user in /proc) holds only a
/// `file://` URL of a 0600 page in the home; the page leads to the authorize URL and is removed
/// when the login ends. `$BROWSER` is a script that records its argv, as xdg-open would get it.
#[tokio::test]
async fn browser_launcher_argv_never_holds_the_authorize_url() {
    use std::os::unix::fs::PermissionsExt;
    let issuer = issuer().await;
    let home = Home::new();
    let spy = home.dir.path().join("browser-spy");
    let argv = home.dir.path().join("argv");
    std::fs::write(
        &spy,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}.tmp'\nmv '{0}.tmp' '{0}'\n",
            argv.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let iss = format!("auth_issuer={}", issuer.base_url());
    let cmd = home.llmx(["-c", &iss, "login", "--json", "--port", "0"]);
    let mut child = cmd.env("DISPLAY", ":99").env("BROWSER", &spy).spawn();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let listening: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let authorize = listening["authorize_url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + LIMIT;
    while !argv.exists() {
        assert!(std::time::Instant::now() < deadline, "the browser was never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let args = std::fs::read_to_string(&argv).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.len(), 1, "{args:?}");
    let state = param(&url::Url::parse(&authorize).unwrap(), "state").unwrap();
    for a in &args {
        assert!(!a.contains(&state) && !a.contains("code_challenge") && !a.contains("authorize"), "{a}");
    }
    let page = url::Url::parse(args[0]).unwrap().to_file_path().unwrap();
    assert!(page.starts_with(home.path()), "{}", page.display());
    assert_eq!(mode(&page), 0o600);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&authorize.replace('&', "&amp;")), "{html}");
    assert_eq!(Browser::new().follow(&authorize).await.last().unwrap().status, 200);
    while lines.next_line().await.unwrap().is_some() {}
    assert!(tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap().success());
    assert!(!page.exists(), "the page is removed when the login ends");
}

/// Claims from an issuer (or a target's auth.json) carrying every hostile string class: the
/// human lines and `--json` of `login` and `status` show none of their controls, and each JSON
/// line still parses.
#[tokio::test]
async fn hostile_claims_are_printed_without_terminal_controls() {
    for hostile in llmx::text::HOSTILE_STRINGS {
        let issuer = issuer_with(IssuerConfig {
            email: hostile.to_string(),
            plan: hostile.to_string(),
            account_id: hostile.to_string(),
            ..IssuerConfig::default()
        })
        .await;
        let home = Home::new();
        let done = browser_login(&home, &issuer).await;
        for k in ["email", "plan", "account_id"] {
            let v = done[k].as_str().unwrap();
            assert!(!llmx::text::has_terminal_controls(v) && !v.contains('\n'), "{hostile:?}: {v:?}");
        }
        for args in [&["login", "status"][..], &["auth", "status", "--json"]] {
            let r = home.llmx(args).run().await;
            assert_eq!(r.code(), 0, "{r:?}");
            assert!(!llmx::text::has_terminal_controls(&r.stdout), "{hostile:?}: {:?}", r.stdout);
            if args.contains(&"--json") {
                assert!(!llmx::text::has_terminal_controls(r.json()["email"].as_str().unwrap()), "{r:?}");
            }
        }
    }
}
