//! Several accounts per home (DESIGN.md §11, issue 24): `login --as`, `auth list`, `auth switch`,
//! `--account` / `LLMX_ACCOUNT`, `logout --account`, against two test issuers (two ChatGPT
//! accounts with their own account id and email) and an API key, with the real binary.

use crate::support::harness::Run;
use crate::support::login::*;
use llmx_test_issuer::{DEFAULT_CLIENT_ID, IssuerConfig, RunningIssuer};
use serde_json::Value;
use std::path::PathBuf;

const KEY: &str = "sk-test-ACCOUNTKEY-0123456789wxyz";

fn account_file(home: &Home, label: &str) -> PathBuf {
    home.path().join("accounts").join(label).join("auth.json")
}

async fn second_issuer() -> RunningIssuer {
    issuer_with(IssuerConfig {
        email: "ops@example.com".into(),
        account_id: "acc-test-0002".into(),
        ..Default::default()
    })
    .await
}

/// `login --no-browser --json --as [LABEL]` against `issuer`, completed by the scripted browser.
async fn login_as(home: &Home, issuer: &RunningIssuer, label: Option<&str>) -> Vec<Value> {
    let mut extra = vec!["--as"];
    extra.extend(label);
    let (login, listening) = start_login(home, &issuer.base_url(), 0, &extra).await;
    let hops = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, 200, "{hops:?}");
    let (status, events, stderr) = login.finish().await;
    assert!(status.success(), "{stderr} {events:?}");
    events
}

/// `llmx -c auth_issuer=URL ARGS` in `home`.
async fn llmx_on(home: &Home, issuer: &RunningIssuer, args: &[&str]) -> Run {
    let iss = format!("auth_issuer={}", issuer.base_url());
    home.llmx(["-c", &iss]).args(args).run().await
}

/// What the agent does when it refreshes: POST the refresh token itself and rewrite auth.json
/// with the answer (its own serialisation: compact, not llmx's pretty form).
async fn agent_refresh(home: &Home, issuer: &RunningIssuer) -> Vec<u8> {
    let mut auth = home.auth_json();
    let rt = auth["tokens"]["refresh_token"].as_str().unwrap().to_string();
    let answer: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/oauth/token", issuer.base_url()))
        .json(&serde_json::json!({"client_id": DEFAULT_CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt, "scope": "openid profile email"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in ["id_token", "access_token", "refresh_token"] {
        auth["tokens"][k] = answer[k].clone();
    }
    auth["last_refresh"] = "2030-01-01T00:00:00.000001Z".into();
    let bytes = serde_json::to_vec(&auth).unwrap();
    std::fs::write(home.auth_path(), &bytes).unwrap();
    bytes
}

fn assert_no_secrets(text: &str, files: &[Value]) {
    for f in files {
        for k in ["id_token", "access_token", "refresh_token"] {
            if let Some(v) = f["tokens"][k].as_str().filter(|v| !v.is_empty()) {
                assert!(!text.contains(v), "{k} leaked: {text}");
            }
        }
    }
    assert!(!text.contains(KEY), "API key leaked: {text}");
}

#[tokio::test]
async fn two_chatgpt_accounts_and_an_api_key_side_by_side_switching_keeps_refreshed_tokens() {
    let (a, b) = (issuer().await, second_issuer().await);
    let home = Home::new();
    // An existing single-account home, as every home is today.
    browser_login(&home, &a).await;
    let original = home.read_auth().unwrap();

    // The first `--as` upgrades it: the login that was there becomes an account, untouched.
    let events = login_as(&home, &b, None).await;
    let saved = events.iter().find(|e| e["event"] == "account_saved").unwrap();
    assert_eq!(saved["label"], "ops@example.com");
    assert_eq!(saved["active"], false, "a new account does not replace the active one");
    assert_eq!(saved["registered_first"], "dev@example.com");
    assert_eq!(home.read_auth().unwrap(), original, "auth.json byte-identical for the agent");
    assert_eq!(std::fs::read(account_file(&home, "dev@example.com")).unwrap(), original);
    assert_eq!(mode(&account_file(&home, "ops@example.com")), 0o600);
    assert_eq!(mode(&home.path().join("accounts")), 0o700);
    assert_eq!(mode(account_file(&home, "ops@example.com").parent().unwrap()), 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging directories removed: {leftovers:?}");

    // An API key as a third account.
    let run = home.llmx(["login", "--with-api-key", "--as", "ci"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(home.read_auth().unwrap(), original);
    let ops_file: Value =
        serde_json::from_slice(&std::fs::read(account_file(&home, "ops@example.com")).unwrap()).unwrap();

    let list = home.llmx(["auth", "list", "--json"]).run().await;
    assert_eq!(list.code(), 0, "{list:?}");
    let v = list.json();
    assert_eq!(v["active"], "dev@example.com");
    let labels: Vec<&str> = v["accounts"].as_array().unwrap().iter().map(|a| a["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["ci", "dev@example.com", "ops@example.com"]);
    let acc = &v["accounts"];
    assert_eq!((acc[0]["method"].as_str(), acc[0]["active"].as_bool()), (Some("apikey"), Some(false)));
    assert_eq!(acc[1]["account_id"], "acc-test-0001");
    assert_eq!(acc[2]["account_id"], "acc-test-0002");
    assert_eq!(acc[2]["email"], "ops@example.com");
    assert_eq!(acc[2]["plan"], "plus");
    assert!(acc[2]["access_token_expires_at"].is_string());
    let human = home.llmx(["auth", "list"]).run().await;
    assert!(human.stdout.contains("* dev@example.com"), "{human:?}");
    let original_json: Value = serde_json::from_slice(&original).unwrap();
    assert_no_secrets(&format!("{}{}{}", list.all(), human.all(), run.all()), &[original_json, ops_file]);

    // The agent refreshes the active account by rewriting auth.json; a switch writes it back.
    let agent_bytes = agent_refresh(&home, &a).await;
    let sw = home.llmx(["auth", "switch", "ops@example.com"]).run().await;
    assert_eq!(sw.code(), 0, "{sw:?}");
    assert_eq!(std::fs::read(account_file(&home, "dev@example.com")).unwrap(), agent_bytes, "kept byte for byte");
    assert_eq!(home.read_auth().unwrap(), std::fs::read(account_file(&home, "ops@example.com")).unwrap());
    assert_eq!(mode(&home.auth_path()), 0o600);

    // The active account refreshed by llmx, the other one selected with --account.
    let r = llmx_on(&home, &b, &["auth", "refresh", "--json"]).await;
    assert_eq!(r.code(), 0, "{r:?}");
    let before_dev = std::fs::read(account_file(&home, "dev@example.com")).unwrap();
    let live_before = home.read_auth().unwrap();
    let r = llmx_on(&home, &a, &["--account", "dev@example.com", "auth", "refresh", "--json"]).await;
    assert_eq!(r.code(), 0, "the agent-refreshed lineage is intact: {r:?}");
    assert_eq!(r.json()["email"], "dev@example.com");
    assert_ne!(std::fs::read(account_file(&home, "dev@example.com")).unwrap(), before_dev, "refreshed in its account");
    assert_eq!(home.read_auth().unwrap(), live_before, "the active login untouched");
    let st = home.llmx(["auth", "status", "--json"]).env("LLMX_ACCOUNT", "ci").run().await;
    assert_eq!((st.code(), st.json()["method"].as_str()), (0, Some("apikey")), "{st:?}");
    let tok = home.llmx(["--account", "dev@example.com", "auth", "token", "--json"]).run().await;
    let dev_now: Value =
        serde_json::from_slice(&std::fs::read(account_file(&home, "dev@example.com")).unwrap()).unwrap();
    assert_eq!(tok.json()["access_token"], dev_now["tokens"]["access_token"], "{tok:?}");

    // Back and forth: each account's refreshed tokens survive, and still refresh at the issuer.
    let sw = home.llmx(["auth", "switch", "dev@example.com", "--json"]).run().await;
    assert_eq!(
        (sw.json()["active"].as_str(), sw.json()["previous"].as_str()),
        (Some("dev@example.com"), Some("ops@example.com"))
    );
    assert_eq!(home.auth_json(), dev_now);
    let r = llmx_on(&home, &a, &["auth", "refresh"]).await;
    assert_eq!(r.code(), 0, "{r:?}");
    let sw = home.llmx(["auth", "switch", "ops@example.com"]).run().await;
    assert_eq!(sw.code(), 0, "{sw:?}");
    let r = llmx_on(&home, &b, &["auth", "refresh"]).await;
    assert_eq!(r.code(), 0, "ops' refresh from before the switches is kept: {r:?}");
    assert_eq!(a.issuer.stats().rejected_token_requests, 0);
    assert_eq!(b.issuer.stats().rejected_token_requests, 0);

    // Logging out one account forgets it and leaves the others.
    let out = home.llmx(["logout", "--account", "ci", "--json"]).run().await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(!account_file(&home, "ci").parent().unwrap().exists());
    let v = home.llmx(["auth", "list", "--json"]).run().await.json();
    assert_eq!(v["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(v["active"], "ops@example.com");
}

#[tokio::test]
async fn an_old_single_account_home_upgrades_on_first_as_and_auth_json_stays_byte_identical() {
    let home = Home::new();
    // Written by another client: compact, with a key llmx does not know.
    let id = llmx_test_issuer::jwt(&serde_json::json!({
        "email": "old@example.com",
        llmx::auth::claims::AUTH_CLAIMS: {"chatgpt_account_id": "acc-old", "chatgpt_plan_type": "pro"},
    }));
    let old = format!(
        r#"{{"OPENAI_API_KEY":null,"tokens":{{"id_token":"{id}","access_token":"at-old","refresh_token":"rt-old","account_id":"acc-old"}},"last_refresh":"2025-01-01T00:00:00Z","newer_client_key":{{"x":1}}}}"#
    );
    home.write("auth.json", old.as_bytes());
    // Before any --as: nothing changes, and `auth list` shows the one login.
    let v = home.llmx(["auth", "list", "--json"]).run().await.json();
    assert_eq!(v["accounts"][0]["label"], "old@example.com");
    assert_eq!(v["accounts"][0]["saved"], false);
    assert!(!home.path().join("accounts").exists(), "listing writes nothing");

    let run = home.llmx(["login", "--with-api-key", "--as"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.all().contains("api-key-wxyz"), "default label of a key: {run:?}");
    assert_eq!(home.read_auth().unwrap(), old.as_bytes(), "the agent reads the same bytes");
    assert_eq!(std::fs::read(account_file(&home, "old@example.com")).unwrap(), old.as_bytes());
    assert_eq!(
        std::fs::read(account_file(&home, "api-key-wxyz")).unwrap(),
        b"{\n  \"OPENAI_API_KEY\": \"sk-test-ACCOUNTKEY-0123456789wxyz\",\n  \"auth_mode\": \"apikey\"\n}"
    );
    let st = home.llmx(["login", "status", "--json"]).run().await;
    assert_eq!(st.json()["email"], "old@example.com");
}

#[tokio::test]
async fn account_labels_that_could_leave_the_accounts_directory_are_refused() {
    let home = Home::new();
    for bad in ["../x", "a/b", ".hidden", "x\u{1b}y"] {
        let run = home.llmx(["login", "--with-api-key", "--as", bad]).stdin(format!("{KEY}\n")).run().await;
        assert_eq!(run.code(), 2, "{bad}: {run:?}");
        let run = home.llmx(["--account", bad, "auth", "status"]).run().await;
        assert_eq!(run.code(), 2, "{bad}: {run:?}");
    }
    assert!(home.read_auth().is_none());
    let run = home.llmx(["auth", "switch", "nobody"]).run().await;
    assert_eq!(run.code(), 1, "{run:?}");
}

/// `llmx -c auth_issuer=URL ARGS` with the test run's Docker engine.
async fn llmx_docker(home: &Home, issuer: &RunningIssuer, args: &[&str]) -> Run {
    let iss = format!("auth_issuer={}", issuer.base_url());
    let mut cmd = home.llmx(["-c", &iss]).args(args);
    if let Ok(v) = std::env::var("DOCKER_HOST") {
        cmd = cmd.env("DOCKER_HOST", v);
    }
    cmd.run().await
}

#[tokio::test]
async fn push_account_binds_its_places_and_sync_renews_each_accounts_holders_with_one_refresh_each() {
    use crate::support::docker::{Container, IMAGE_ROOT};
    use crate::support::harness::json_lines;
    // dev's access tokens live an hour (due within sync's 2-day window); ops' live 30 days.
    let a = issuer().await;
    let b = issuer_with(IssuerConfig {
        email: "ops@example.com".into(),
        account_id: "acc-test-0002".into(),
        access_token_ttl: std::time::Duration::from_secs(30 * 86_400),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    browser_login(&home, &a).await;
    login_as(&home, &b, None).await;
    let (c1, c2) = (Container::run("acct-dev", IMAGE_ROOT, &[]), Container::run("acct-ops", IMAGE_ROOT, &[]));
    let p = llmx_docker(&home, &a, &["auth", "push", &c1.target()]).await;
    assert_eq!(p.code(), 0, "{p:?}");
    let p = llmx_docker(&home, &b, &["--account", "ops@example.com", "auth", "push", &c2.target()]).await;
    assert_eq!(p.code(), 0, "{p:?}");
    let read = |c: &Container| -> Value { serde_json::from_str(&c.read("/root/.llmx/auth.json").unwrap()).unwrap() };
    assert_eq!(read(&c2)["tokens"]["account_id"], "acc-test-0002", "the ops account went to c2");
    assert_eq!(read(&c2)["tokens"]["refresh_token"], "", "as a lease");
    assert_eq!(read(&c1)["tokens"]["account_id"], "acc-test-0001");
    let bound = || -> Vec<(String, String)> {
        let ledger: Value = serde_json::from_slice(&std::fs::read(home.path().join("ledger.json")).unwrap()).unwrap();
        ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["target"].as_str().unwrap().to_string(), e["account"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let want = [(c1.target(), "dev@example.com".to_string()), (c2.target(), "ops@example.com".to_string())];
    assert_eq!(bound(), want);

    // One sync, no target: each account's holders, at most one refresh each (dev is due, ops not).
    let (ra, rb) = (a.issuer.stats().refreshes, b.issuer.stats().refreshes);
    let s = llmx_docker(&home, &a, &["auth", "sync", "--json"]).await;
    assert_eq!(s.code(), 0, "{s:?}");
    let summaries: Vec<Value> = json_lines(&s.stdout).into_iter().filter(|l| l["event"] == "summary").collect();
    let per: Vec<(String, u64)> = summaries
        .iter()
        .map(|l| (l["account"].as_str().unwrap().to_string(), l["issuer_calls"].as_u64().unwrap()))
        .collect();
    assert_eq!(per, [("dev@example.com".to_string(), 1), ("ops@example.com".to_string(), 0)], "{}", s.stdout);
    assert_eq!((a.issuer.stats().refreshes, b.issuer.stats().refreshes), (ra + 1, rb));
    assert_eq!(read(&c1)["tokens"]["access_token"], home.auth_json()["tokens"]["access_token"], "c1 renewed");
    assert_eq!(bound(), want, "a sync's rewrite keeps the binding");
    let ops_file = account_file(&home, "ops@example.com");
    let ops_before: Value = serde_json::from_slice(&std::fs::read(&ops_file).unwrap()).unwrap();
    assert_eq!(read(&c2)["tokens"]["access_token"], ops_before["tokens"]["access_token"], "c2 left as it was");

    // --account: that account only, refreshed in its own file; the live login untouched.
    let live = home.read_auth().unwrap();
    let s = llmx_docker(&home, &b, &["--account", "ops@example.com", "auth", "sync", "--refresh", "--json"]).await;
    assert_eq!(s.code(), 0, "{s:?}");
    assert_eq!(b.issuer.stats().refreshes, rb + 1);
    let ops_after: Value = serde_json::from_slice(&std::fs::read(&ops_file).unwrap()).unwrap();
    assert_ne!(ops_after["tokens"]["access_token"], ops_before["tokens"]["access_token"]);
    assert_eq!(read(&c2)["tokens"]["access_token"], ops_after["tokens"]["access_token"], "c2 renewed from ops' file");
    assert_eq!(home.read_auth().unwrap(), live);
    assert!(!home.path().join("accounts/ops@example.com/ledger.json").exists(), "one ledger, in the home");

    // where, remove: each place judged by its own account's login (on main c2 was
    // "other-account" against the active dev login, and remove skipped it).
    let w = llmx_docker(&home, &a, &["auth", "where", "--json"]).await;
    assert_eq!(w.code(), 0, "{w:?}");
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    let rows: Vec<(String, String, String)> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["target"].as_str().unwrap().into(),
                h["state"].as_str().unwrap().into(),
                h["account"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (c1.target(), "same".into(), "dev@example.com".into()),
            (c2.target(), "same".into(), "ops@example.com".into())
        ]
    );
    let w = llmx_docker(&home, &a, &["--account", "ops@example.com", "auth", "where", "--json"]).await;
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(v["holders"].as_array().unwrap().len(), 1, "{}", w.stdout);
    assert_eq!(v["holders"][0]["target"], c2.target().as_str());
    let w = llmx_docker(&home, &a, &["auth", "where"]).await;
    assert!(w.stdout.contains("(account ops@example.com)"), "{}", w.stdout);
    let r = llmx_docker(&home, &a, &["auth", "remove", &c2.target()]).await;
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(c2.read("/root/.llmx/auth.json").is_none(), "{r:?}");
    assert_eq!(bound(), [want[0].clone()]);
}

#[tokio::test]
async fn status_all_checks_every_account_and_exits_1_when_one_is_unusable() {
    let home = Home::new();
    let run = home.llmx(["login", "--with-api-key", "--as", "ci"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(run.code(), 0, "{run:?}");
    // A lease whose access token expired (pushed here once by another machine).
    let id = llmx_test_issuer::jwt(&serde_json::json!({"email": "lease@example.com"}));
    let at = llmx_test_issuer::jwt(&serde_json::json!({"exp": 1_000_000_000i64}));
    let lease = format!(
        r#"{{"OPENAI_API_KEY":null,"tokens":{{"id_token":"{id}","access_token":"{at}","refresh_token":"","account_id":"acc-l"}}}}"#
    );
    let dir = home.path().join("accounts").join("old-lease");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("auth.json"), &lease).unwrap();
    let st = home.llmx(["auth", "status", "--all", "--json"]).run().await;
    assert_eq!(st.code(), 1, "{st:?}");
    let v = st.json();
    let rows: Vec<(String, bool)> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["label"].as_str().unwrap().to_string(), a["usable"].as_bool().unwrap()))
        .collect();
    assert_eq!(rows, [("ci".to_string(), true), ("old-lease".to_string(), false)]);
    assert!(!st.all().contains(KEY) && !st.all().contains(&at), "{st:?}");
    let human = home.llmx(["auth", "status", "--all"]).run().await;
    assert!(human.stdout.contains("UNUSABLE"), "{human:?}");
    let out = home.llmx(["logout", "--account", "old-lease", "--local"]).run().await;
    assert_eq!(out.code(), 0, "{out:?}");
    let st = home.llmx(["auth", "status", "--all", "--json"]).run().await;
    assert_eq!((st.code(), st.json()["ok"].as_bool()), (0, Some(true)), "{st:?}");
}
