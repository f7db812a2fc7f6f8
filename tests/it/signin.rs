//! Sign-in where no browser callback can reach (DESIGN.md §8): the device-code login against the
//! test issuer's device endpoints (approve, decline, switched off → browser fallback, the
//! issuer's interval, the time limit), paste-back of the address or the code while a
//! `--no-browser` login waits, the 1457 fallback port, and `auth_mode` in what a login writes.

use crate::support::harness::{LIMIT, Llmx, last_event};
use crate::support::login::*;
use crate::support::netns::Netns;
use llmx_test_issuer::DeviceState;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// `llmx -c auth_issuer=URL login --device-auth --json EXTRA...`.
pub(crate) fn device_login(home: &Home, issuer_url: &str, extra: &[&str]) -> crate::support::harness::Events {
    let iss = format!("auth_issuer={issuer_url}");
    home.llmx(["-c", &iss, "login", "--device-auth", "--json"]).args(extra).events()
}

/// What a person does on the issuer's page: enter the code and press a button.
pub(crate) async fn decide_on_page(issuer_url: &str, user_code: &str, action: &str) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("{issuer_url}/codex/device"))
        .form(&[("user_code", user_code), ("action", action)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{user_code}");
}

fn assert_nothing_written(home: &Home) {
    assert!(home.read_auth().is_none(), "auth.json must not exist");
}

#[tokio::test]
async fn device_code_login_approved_on_the_page_saves_a_chatgpt_login() {
    let issuer = issuer().await;
    let home = Home::new();
    let mut login = device_login(&home, &issuer.base_url(), &[]);
    let code = login.expect_next("device_code").await;
    assert_eq!(code["verification_url"], format!("{}/codex/device", issuer.base_url()));
    assert_eq!(code["expires_in"], 900, "{code}");
    let user_code = code["user_code"].as_str().unwrap().to_string();
    assert_eq!(user_code.len(), 9, "{user_code}");
    decide_on_page(&issuer.base_url(), &user_code, "approve").await;
    login.expect_next("callback_received").await;
    let done = login.expect_next("login_succeeded").await;
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(done["method"], "chatgpt");
    assert_eq!(done["email"], "dev@example.com");
    assert_eq!(done["api_key_saved"], false, "no API-key exchange on the device path");

    let auth = home.auth_json();
    assert_eq!(auth["auth_mode"], "chatgpt");
    assert!(auth["OPENAI_API_KEY"].is_null());
    assert_eq!(auth["tokens"]["account_id"], "acc-test-0001");
    assert_eq!(mode(&home.auth_path()), 0o600);
    let stats = issuer.issuer.stats();
    assert_eq!((stats.code_exchanges, stats.api_key_exchanges), (1, 0));
    for s in [auth["tokens"]["refresh_token"].as_str().unwrap(), auth["tokens"]["access_token"].as_str().unwrap()] {
        assert!(!stderr.contains(s), "a token in stderr");
    }
    // The human form shows the page, the code, the expiry and the warning.
    let issuer2 = crate::support::login::issuer().await;
    let home2 = Home::new();
    let iss = format!("auth_issuer={}", issuer2.base_url());
    let human = home2.llmx(["-c", &iss, "login", "--device-auth", "--timeout", "1"]).run().await;
    assert_eq!(human.code(), 1, "{human:?}");
    for want in ["/codex/device", "enter the code", "expires in 1 s", "nobody who asks you for this code"] {
        assert!(human.stderr.contains(want), "want {want:?} in {}", human.stderr);
    }
}

#[tokio::test]
async fn device_code_declined_on_the_page_fails_at_once_and_writes_nothing() {
    let issuer = issuer().await;
    let home = Home::new();
    let mut login = device_login(&home, &issuer.base_url(), &[]);
    let code = login.expect_next("device_code").await;
    decide_on_page(&issuer.base_url(), code["user_code"].as_str().unwrap(), "decline").await;
    let failed = login.expect_next("login_failed").await;
    let (status, _, stderr) = login.finish().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(failed["reason"], "declined");
    assert!(stderr.contains("the sign-in was declined"), "{stderr}");
    assert_nothing_written(&home);
}

#[tokio::test]
async fn device_code_switched_off_falls_back_to_the_browser_login() {
    let issuer = issuer().await;
    issuer.issuer.set_device_code(false);
    let home = Home::new();
    let mut login = device_login(&home, &issuer.base_url(), &["--port", "0"]);
    login.expect_next("device_code_unavailable").await;
    let listening = login.expect_next("listening").await;
    let hops = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, 200, "{hops:?}");
    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{events:?} {stderr}");
    assert_eq!(last_event(&events)["event"], "login_succeeded");
    assert_eq!(home.auth_json()["auth_mode"], "chatgpt");
}

/// The issuer's interval is obeyed, as a string or as a number: with the code approved after
/// ~3.2 s, a 1 s interval polls 4-5 times, a 2 s interval 2-3 times; never faster.
#[tokio::test]
async fn device_code_polls_at_the_issuers_interval() {
    for (interval, polls) in [(serde_json::json!("1"), 4..=5), (serde_json::json!(2), 2..=3)] {
        let issuer = issuer().await;
        issuer.issuer.set_device_interval(interval.clone());
        let home = Home::new();
        let mut login = device_login(&home, &issuer.base_url(), &[]);
        let code = login.expect_next("device_code").await;
        tokio::time::sleep(Duration::from_millis(3200)).await;
        assert!(issuer.issuer.set_device_state(code["user_code"].as_str().unwrap(), DeviceState::Approved));
        let (status, _, stderr) = login.finish().await;
        assert!(status.success(), "{stderr}");
        let (_, seen) = issuer.issuer.device_counts();
        assert!(polls.contains(&seen), "interval {interval}: {seen} polls");
    }
}

#[tokio::test]
async fn device_code_gives_up_at_the_timeout_and_on_an_expired_code() {
    let issuer = issuer().await;
    let home = Home::new();
    let started = Instant::now();
    let mut login = device_login(&home, &issuer.base_url(), &["--timeout", "2"]);
    assert_eq!(login.expect_next("device_code").await["expires_in"], 2);
    let failed = login.expect_next("login_failed").await;
    assert_eq!(failed["reason"], "timeout", "{failed}");
    assert!(started.elapsed() < LIMIT);
    let (status, _, _) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_nothing_written(&home);

    let mut login = device_login(&home, &issuer.base_url(), &[]);
    let code = login.expect_next("device_code").await;
    assert!(issuer.issuer.set_device_state(code["user_code"].as_str().unwrap(), DeviceState::Expired));
    let failed = login.expect_next("login_failed").await;
    assert_eq!(failed["reason"], "issuer", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("410"), "{failed}");
    let (status, _, _) = login.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_nothing_written(&home);
}

/// The issuer going away mid-poll is retried until the limit, then a clear message; nothing
/// is written.
#[tokio::test]
async fn device_code_issuer_down_mid_poll_is_retried_then_reported() {
    let issuer = issuer().await;
    let url = issuer.base_url();
    let home = Home::new();
    let mut login = device_login(&home, &url, &["--timeout", "3"]);
    login.expect_next("device_code").await;
    issuer.stop().await.unwrap();
    let failed = login.expect_next("login_failed").await;
    assert_eq!(failed["reason"], "issuer", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("cannot reach the issuer"), "{failed}");
    let (status, _, _) = login.finish().await;
    assert_eq!(status.code(), Some(3), "unreachable");
    assert_nothing_written(&home);
}

/// Start a `--no-browser` login that reads pasted lines; returns it, its stdin, the callback
/// address the issuer sends the browser to (which the user would paste) and the port.
async fn paste_login(
    home: &Home,
    issuer: &llmx_test_issuer::RunningIssuer,
) -> (crate::support::harness::Events, tokio::process::ChildStdin, url::Url) {
    let iss = format!("auth_issuer={}", issuer.base_url());
    let (mut login, input) =
        home.llmx(["-c", &iss, "login", "--no-browser", "--json", "--port", "0"]).events_with_input();
    let listening = login.expect_next("listening").await;
    let callback = Browser::new().callback_url(listening["authorize_url"].as_str().unwrap()).await;
    (login, input, callback)
}

async fn paste(input: &mut tokio::process::ChildStdin, line: &str) {
    input.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    input.flush().await.unwrap();
}

/// Wrong lines are each answered with a reason and the login keeps waiting; then the real
/// address completes it through the same state check and exchange.
#[tokio::test]
async fn pasted_address_completes_the_login_after_bad_lines_are_refused() {
    let issuer = issuer().await;
    let home = Home::new();
    let (mut login, mut input, callback) = paste_login(&home, &issuer).await;
    let state = param(&callback, "state").unwrap();
    let mut wrong_state = callback.clone();
    wrong_state.set_query(Some(&format!("code={}&state=not-{state}", param(&callback, "code").unwrap())));
    let bad = [
        ("hello world".to_string(), "neither"),
        (wrong_state.to_string(), "another login"),
        (format!("http://localhost:1455/auth/callback?error=access_denied&state={state}"), "access_denied"),
        (format!("http://localhost:1455/auth/callback?state={state}"), "no authorization code"),
        ("ac_not-a-code-the-issuer-knows".to_string(), "did not work"),
        ("\u{1b}]52;c;ZXZpbA==\u{7}".to_string(), "neither"),
    ];
    for (line, why) in &bad {
        paste(&mut input, line).await;
        let e = login.wait_for("paste_rejected").await;
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{line:?}: {reason}");
        assert!(!reason.contains('\u{1b}'), "{reason:?}");
    }
    assert_nothing_written(&home);
    paste(&mut input, callback.as_str()).await;
    let done = login.wait_for("login_succeeded").await;
    assert_eq!(done["method"], "chatgpt");
    drop(input);
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(home.auth_json()["auth_mode"], "chatgpt");
    assert_eq!(issuer.issuer.stats().code_exchanges, 1);
}

#[tokio::test]
async fn pasted_bare_code_completes_the_login() {
    let issuer = issuer().await;
    let home = Home::new();
    let (mut login, mut input, callback) = paste_login(&home, &issuer).await;
    paste(&mut input, &format!("  {}  ", param(&callback, "code").unwrap())).await;
    login.wait_for("login_succeeded").await;
    drop(input);
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(home.auth_json()["tokens"]["refresh_token"].is_string());
}

/// The human screen says how to paste.
#[tokio::test]
async fn no_browser_login_tells_the_user_they_can_paste_the_address() {
    let issuer = issuer().await;
    let home = Home::new();
    let iss = format!("auth_issuer={}", issuer.base_url());
    let r = home.llmx(["-c", &iss, "login", "--no-browser", "--port", "0", "--timeout", "1"]).run().await;
    assert_eq!(r.code(), 1);
    assert!(r.stderr.contains("paste the address it shows"), "{}", r.stderr);
    assert!(r.stderr.contains("--device-auth"), "{}", r.stderr);
}

/// A foreign program on 1455 (it is not an llmx login of this home): the login falls back to
/// 1457; with both held, the error names both. Run in a network namespace of its own, whose
/// 127.0.0.1:1455 and :1457 are the test's, so it passes whatever holds those ports on the
/// machine (issue 20 item 7: it failed where another program held 1457).
#[tokio::test(flavor = "multi_thread")]
async fn busy_default_port_falls_back_to_1457_then_names_both_whatever_holds_them_on_the_machine() {
    let ns = Netns::create();
    let listener = tokio::net::TcpListener::bind((ns.host_ip, 0)).await.unwrap();
    let issuer = llmx_test_issuer::Issuer::new(Default::default()).spawn(listener).unwrap();
    let home = Home::new();
    let iss = format!("auth_issuer={}", issuer.base_url());
    let inside = |args: &[&str]| Llmx::via("ip", ["netns", "exec", &ns.name]).env("LLMX_HOME", home.path()).args(args);
    let held = ns.hold(1455);
    let mut login = inside(&["-c", &iss, "login", "--no-browser", "--json"]).events();
    // The switch says why (issue 20 item 6).
    let switched = login.expect_next("port_fallback").await;
    assert_eq!((switched["busy"].as_u64(), switched["port"].as_u64()), (Some(1455), Some(1457)), "{switched}");
    let listening = login.expect_next("listening").await;
    assert_eq!(listening["port"], 1457, "{listening}");
    assert_eq!(listening["redirect_uri"], "http://localhost:1457/auth/callback");
    // The issuer approves; the browser (in the namespace) comes back to 1457 there.
    let callback = Browser::new().callback_url(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(callback.port(), Some(1457), "{callback}");
    let path = format!("{}?{}", callback.path(), callback.query().unwrap_or(""));
    // Off the runtime's threads: the issuer answers the login's code exchange meanwhile.
    let (status, location, reply) = tokio::task::block_in_place(|| ns.http_get(1457, &path));
    assert_eq!((status, location.as_deref()), (302, Some("/success")), "{reply}");
    assert_eq!(ns.http_get(1457, "/success").0, 200);
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");

    let held_too = ns.hold(1457);
    let r = Home::new();
    let r = Llmx::via("ip", ["netns", "exec", &ns.name])
        .env("LLMX_HOME", r.path())
        .args(["-c", &iss, "login", "--no-browser"])
        .run()
        .await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("Port 1455 is held by another program"), "the switch is not explained: {}", r.stderr);
    assert!(r.stderr.contains("1455") && r.stderr.contains("1457"), "{}", r.stderr);
    drop((held, held_too));
}

/// A file that declares `auth_mode` is read by it when the user set no preference: an llmx
/// ChatGPT login that also holds the exchanged API key is a ChatGPT login; a preference the user
/// set wins (issue 22 item 8: "always use your API key, even when ChatGPT auth exists").
#[tokio::test]
async fn auth_mode_in_the_file_decides_which_credential_is_used() {
    let (_issuer, home) = logged_in().await;
    let auth: Value = home.auth_json();
    assert_eq!(auth["auth_mode"], "chatgpt");
    assert!(auth["OPENAI_API_KEY"].is_string());
    let r = home.llmx(["login", "status", "--json"]).run().await;
    assert_eq!(r.json()["method"], "chatgpt", "{r:?}");
    let r = home.llmx(["-c", "preferred_auth_method=apikey", "login", "status", "--json"]).run().await;
    assert_eq!(r.json()["method"], "apikey", "an explicit preference wins: {r:?}");
    let mut edited = auth.clone();
    edited["auth_mode"] = "apikey".into();
    home.write("auth.json", serde_json::to_string_pretty(&edited).unwrap().as_bytes());
    let r = home.llmx(["login", "status", "--json"]).run().await;
    assert_eq!(r.json()["method"], "apikey", "{r:?}");
}

/// Ctrl-C while polling stops at once and writes nothing.
#[tokio::test]
async fn device_code_interrupted_while_polling_writes_nothing() {
    let issuer = issuer().await;
    let home = Home::new();
    let mut login = device_login(&home, &issuer.base_url(), &[]);
    login.expect_next("device_code").await;
    let pid = login.pid().unwrap() as i32;
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let failed = login.expect_next("login_failed").await;
    assert_eq!(failed["reason"], "interrupted");
    let (status, _, _) = login.finish().await;
    assert_ne!(status.code(), Some(0));
    assert_nothing_written(&home);
}
