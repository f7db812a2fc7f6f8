//! Leases (issue 22, DESIGN.md §10): a push of a ChatGPT login writes an access-only copy, the
//! refresh token never leaves this machine, `auth sync` renews every lease with one issuer
//! refresh, `auth where` tells lease/full and expiring/expired apart, `auth token` prints only the
//! access token, and `preferred_auth_method` set by the user wins over a file's `auth_mode` —
//! against the test issuer and real containers, through the real binary.

use crate::family::{Signed, assert_no_tokens, holder_states};
use crate::support::docker::{Container, IMAGE_ROOT, Local};
use crate::support::harness::json_lines;
use llmx_test_issuer::IssuerConfig;
use serde_json::Value;
use std::time::Duration;

const ROOT_AUTH: &str = "/root/.llmx/auth.json";

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// What a lease of `owner` is, byte for byte: the owner's file with an empty refresh token and
/// no API key.
fn lease_of(owner: &[u8]) -> String {
    let v = json(owner);
    let rt = v["tokens"]["refresh_token"].as_str().unwrap();
    let mut text = String::from_utf8(owner.to_vec()).unwrap();
    if let Some(key) = v["OPENAI_API_KEY"].as_str() {
        text = text.replace(&format!("\"OPENAI_API_KEY\": \"{key}\""), "\"OPENAI_API_KEY\": null");
    }
    text.replace(&format!("\"refresh_token\": \"{rt}\""), "\"refresh_token\": \"\"")
}

/// An issuer whose access tokens live `days` days (a real one's live about ten).
fn issuer_days(days: u64) -> IssuerConfig {
    IssuerConfig { access_token_ttl: Duration::from_secs(days * 86_400), ..IssuerConfig::default() }
}

#[test]
fn a_lease_push_never_puts_the_refresh_token_on_the_target_and_an_agent_refresh_with_it_burns_nothing() {
    let s = Signed::with(issuer_days(10));
    let ct = Container::run("lease-a", IMAGE_ROOT, &[]);
    let owner = s.auth();
    let owner_rt = json(&owner)["tokens"]["refresh_token"].as_str().unwrap().to_string();
    let r = s.llmx(&["auth", "push", &ct.target(), "--json"]);
    assert_eq!(r.code(), 0, "{}", r.all());

    // The bytes on the target: the owner's file with "refresh_token": "" (key present), nothing else changed.
    let there = ct.read(ROOT_AUTH).unwrap();
    assert_eq!(there, lease_of(&owner));
    assert!(!there.contains(&owner_rt), "the refresh token never leaves this machine");
    let owner_key = json(&owner)["OPENAI_API_KEY"].as_str().expect("the test issuer exchanged a key").to_string();
    assert!(!there.contains(&owner_key), "nor the exchanged API key");
    let v = json(there.as_bytes());
    assert_eq!(v["tokens"]["refresh_token"], "", "the key stays (Codex refuses a file without it)");
    assert_eq!(v["tokens"]["access_token"], json(&owner)["tokens"]["access_token"]);
    assert_eq!(v["auth_mode"], json(&owner)["auth_mode"]);
    assert_eq!(v["last_refresh"], json(&owner)["last_refresh"]);

    // --json says when it expires; no rotation hazard; the ledger records the kind and expiry.
    let lines = json_lines(&r.stdout);
    let target = lines.iter().find(|l| l["event"] == "target").unwrap();
    let exp = target["lease_expires_at"].as_str().expect("lease_expires_at").to_string();
    assert_eq!(lines.last().unwrap()["warnings"].as_array().map(Vec::len), Some(0), "{}", r.stdout);
    let ledger: Value = serde_json::from_str(&s.ledger()).unwrap();
    assert_eq!(ledger["entries"][0]["kind"], "lease");
    assert_eq!(ledger["entries"][0]["expires_at"], exp.as_str());
    let human = s.llmx(&["auth", "push", &ct.target()]);
    assert!(
        human.stderr.contains(&format!("usable until {exp}")) && human.stderr.contains("llmx auth sync"),
        "{}",
        human.all()
    );

    // The target's status says it is a lease.
    let st = s.llmx(&["auth", "status", &ct.target(), "--json"]);
    assert_eq!((st.code(), st.json()["lease"].clone()), (0, Value::Bool(true)), "{}", st.all());

    // The agent there, on a 401, tries one refresh with the empty token: the issuer refuses it,
    // and the owner's lineage is untouched (it still refreshes here).
    let body = serde_json::json!({"client_id": llmx::config::DEFAULT_CLIENT_ID, "grant_type": "refresh_token",
        "refresh_token": "", "scope": "openid profile email"});
    let refused = s.rt.block_on(agent_refresh(&s.issuer.base_url(), &body.to_string()));
    assert!(refused >= 400, "an empty refresh token is refused by the issuer ({refused})");
    let before = s.refreshes();
    let again = s.llmx(&["auth", "refresh"]);
    assert_eq!(again.code(), 0, "the owner's lineage is alive: {}", again.all());
    assert_eq!(s.refreshes(), before + 1);
    for out in [&r, &human, &st, &again] {
        assert_no_tokens(&out.all(), std::slice::from_ref(&owner_rt));
    }
}

/// POST a JSON body to `{base}/oauth/token` with curl (the agent's refresh request); the status.
async fn agent_refresh(base: &str, body: &str) -> u16 {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("{base}/oauth/token"))
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn sync_renews_sixteen_expiring_leases_with_exactly_one_issuer_refresh() {
    // The issuer's access tokens live an hour: inside the default 2-day window, so due.
    let s = Signed::new();
    let cts: Vec<Container> = (0..16).map(|i| Container::run(&format!("lease-s{i}"), IMAGE_ROOT, &[])).collect();
    let targets: Vec<String> = cts.iter().map(Container::target).collect();
    let mut args = vec!["auth", "push", "-j", "16"];
    args.extend(targets.iter().map(String::as_str));
    assert_eq!(s.llmx(&args).code(), 0);
    let w = s.llmx(&["auth", "where", "--json"]);
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert!(holder_states(&v).iter().all(|(_, st)| st == "same"), "{v}");
    assert!(v["holders"].as_array().unwrap().iter().all(|h| h["kind"] == "lease" && h["lease_expires_at"].is_string()));

    // The owner refreshes here: the leases are now from an earlier refresh, and their access
    // tokens (an hour) expire inside the 2-day window: expiring. They still work (exit 0), and
    // `where` says what to run.
    assert_eq!(s.llmx(&["auth", "refresh"]).code(), 0);
    let first = lease_of(&s.auth());
    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(w.code(), 0, "{}", w.all());
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert!(holder_states(&v).iter().all(|(_, st)| st == "expiring"), "{v}");
    let human = s.llmx(&["auth", "where"]);
    assert!(
        human.stdout.contains("16 leases are due for renewal") && human.stdout.contains("llmx auth sync"),
        "{}",
        human.stdout
    );

    let before = s.refreshes();
    let dry = s.llmx(&["auth", "sync", "--dry-run", "--json"]);
    assert_eq!(dry.code(), 0, "{}", dry.all());
    let predicted: Vec<String> =
        json_lines(&dry.stdout).iter().filter(|l| l["event"] == "target").map(|l| l["outcome"].to_string()).collect();
    assert_eq!(s.refreshes(), before, "a dry run calls nobody");
    let started = std::time::Instant::now();
    let sync = s.llmx(&["auth", "sync", "--json", "-j", "16"]);
    let took = started.elapsed();
    assert_eq!(sync.code(), 0, "{}", sync.all());
    assert_eq!(s.refreshes(), before + 1, "one issuer refresh for 16 leases");
    let lines = json_lines(&sync.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["issuer_calls"], 1);
    let done: Vec<String> = lines.iter().filter(|l| l["event"] == "target").map(|l| l["outcome"].to_string()).collect();
    assert_eq!(predicted, done, "--dry-run predicted exactly what the run did");
    let renewed = lease_of(&s.auth());
    assert_ne!(renewed, first);
    for ct in &cts {
        assert_eq!(ct.read(ROOT_AUTH).unwrap(), renewed, "{} holds the new lease", ct.target());
    }
    eprintln!("sync renewed 16 leases in {took:?} with one issuer refresh");

    // Far from expiry now (window 30 minutes, tokens live an hour): nothing to do, nobody called.
    let quiet = s.llmx(&["auth", "sync", "--renew-within", "30m", "--json"]);
    assert_eq!(quiet.code(), 0, "{}", quiet.all());
    assert_eq!(s.refreshes(), before + 1);
    assert!(json_lines(&quiet.stdout).iter().filter(|l| l["event"] == "target").all(|l| l["outcome"] == "unchanged"));
    assert_no_tokens(&format!("{}{}{}", sync.all(), dry.all(), quiet.all()), &s.secrets());
}

#[test]
fn where_tells_lease_full_expiring_and_expired_apart_and_sync_leaves_a_full_copy_under_a_lease_entry_alone() {
    let s = Signed::with(issuer_days(10));
    let lease = Container::run("lease-w1", IMAGE_ROOT, &[]);
    let full = Container::run("lease-w2", IMAGE_ROOT, &[]);
    let expired = Container::run("lease-w3", IMAGE_ROOT, &[]);
    let swapped = Container::run("lease-w4", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &lease.target(), &expired.target(), &swapped.target()]).code(), 0);
    assert_eq!(s.llmx(&["auth", "push", "--full", &full.target()]).code(), 0);

    // One lease's access token has expired (as an old lease would); another place was given a
    // full copy behind the ledger's back.
    let mut old: Value = json(lease_of(&s.auth()).as_bytes());
    old["tokens"]["access_token"] = llmx_test_issuer::jwt(&serde_json::json!({"exp": 1_000_000_000})).into();
    expired.put("/root/.llmx", "auth.json", serde_json::to_string_pretty(&old).unwrap().as_bytes(), 0);
    swapped.put("/root/.llmx", "auth.json", &s.auth(), 0);

    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(w.code(), 1, "an expired lease cannot work: {}", w.all());
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    let kinds: Vec<(String, String)> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["kind"].as_str().unwrap().to_string(), h["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("lease".into(), "same".into()),
            ("lease".into(), "expired".into()),
            ("full".into(), "same".into()),
            ("full".into(), "same".into()),
        ]
    );
    let human = s.llmx(&["auth", "where"]);
    assert!(human.stdout.contains("expired") && human.stdout.contains("llmx auth sync"), "{}", human.stdout);
    // Rows with marks and a recap, as a fleet tool prints them (issue 20 item 5).
    assert!(human.stdout.contains(&format!("✗ {}", expired.target())), "{}", human.stdout);
    assert!(human.stdout.contains(&format!("✓ {}", lease.target())), "{}", human.stdout);
    assert!(human.stdout.contains("4 holders: 3 working, 1 not"), "{}", human.stdout);

    // Sync renews the expired one, writes the --full holder the full file, and leaves the place
    // whose ledger entry says lease but that holds a full copy now alone.
    let sync = s.llmx(&["auth", "sync", "--refresh"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    let owner = s.auth();
    assert_eq!(expired.read(ROOT_AUTH).unwrap(), lease_of(&owner));
    assert_eq!(lease.read(ROOT_AUTH).unwrap(), lease_of(&owner));
    assert_eq!(full.read(ROOT_AUTH).unwrap().as_bytes(), owner.as_slice());
    assert!(sync.stdout.contains("holds a full copy now"), "{}", sync.stdout);
    assert_ne!(swapped.read(ROOT_AUTH).unwrap().as_bytes(), owner.as_slice(), "left alone");
}

#[test]
fn auth_token_prints_only_the_access_token_and_refreshes_one_about_to_expire() {
    // Access tokens that live 2 minutes: inside the 5-minute margin, so `auth token` refreshes.
    let s = Signed::with(IssuerConfig { access_token_ttl: Duration::from_secs(120), ..IssuerConfig::default() });
    let before = s.refreshes();
    let t = s.llmx(&["auth", "token"]);
    assert_eq!(t.code(), 0, "{}", t.all());
    assert_eq!(s.refreshes(), before + 1, "refreshed once, under the lock");
    let v = json(&s.auth());
    assert_eq!(t.stdout.trim(), v["tokens"]["access_token"].as_str().unwrap(), "only the access token");
    assert!(!t.all().contains(v["tokens"]["refresh_token"].as_str().unwrap()));
    assert!(!t.all().contains(v["tokens"]["id_token"].as_str().unwrap()));
    let j = s.llmx(&["auth", "token", "--json"]);
    let o = j.json();
    let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "expires_at", "account_id"]);
    assert_eq!(o["account_id"], "acc-test-0001");
    assert!(!j.all().contains(v["tokens"]["refresh_token"].as_str().unwrap()));

    // An API key login has no access token to print.
    let local = Local::new();
    local.write_auth(r#"{"OPENAI_API_KEY": "sk-test-000000000000000000000000"}"#);
    let none = local.llmx(&["auth", "token"], &[]);
    assert_eq!(none.code(), 1, "{}", none.all());
    assert!(none.stderr.contains("no ChatGPT login"), "{}", none.stderr);
}

#[test]
fn an_explicit_preferred_auth_method_wins_over_the_files_auth_mode_in_every_combination() {
    let s = Signed::new();
    // A ChatGPT login that also holds the exchanged API key, declaring auth_mode chatgpt.
    let mut v = json(&s.auth());
    v["OPENAI_API_KEY"] = "sk-test-EXCHANGED-000000000000000000".into();
    for (mode, pref, want) in [
        ("chatgpt", None, "chatgpt"),
        ("chatgpt", Some("apikey"), "apikey"),
        ("chatgpt", Some("chatgpt"), "chatgpt"),
        ("apikey", None, "apikey"),
        ("apikey", Some("chatgpt"), "chatgpt"),
        ("apikey", Some("apikey"), "apikey"),
    ] {
        v["auth_mode"] = mode.into();
        std::fs::write(s.local.auth_path(), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let flag = pref.map(|p| format!("preferred_auth_method={p}"));
        let mut args: Vec<&str> = Vec::new();
        if let Some(f) = &flag {
            args.extend(["-c", f.as_str()]);
        }
        args.extend(["login", "status", "--json"]);
        let r = s.local.llmx(&args, &[]);
        assert_eq!(r.json()["method"], want, "auth_mode {mode}, -c {pref:?}: {}", r.all());
        // The same through config.toml.
        let config = s.local.auth_path().with_file_name("config.toml");
        match pref {
            Some(p) => std::fs::write(&config, format!("preferred_auth_method = \"{p}\"\n")).unwrap(),
            None => {
                let _ = std::fs::remove_file(&config);
            }
        }
        let r = s.local.llmx(&["login", "status", "--json"], &[]);
        assert_eq!(r.json()["method"], want, "auth_mode {mode}, config.toml {pref:?}: {}", r.all());
        let _ = std::fs::remove_file(&config);
    }
}

#[test]
fn logout_says_a_revoke_is_account_wide_names_machines_signed_in_on_their_own_and_everywhere_removes_every_lease() {
    let s = Signed::new();
    let a = Container::run("lease-lo", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &a.target()]).code(), 0);
    // A machine signed in through `auth tunnel` is recorded as its own (tests/it/tunnel.rs shows
    // the tunnel writing this entry); it is not a copy, and logout never contacts it.
    let ledger_path = s.local.auth_path().with_file_name("ledger.json");
    let mut ledger: Value = serde_json::from_str(&s.ledger()).unwrap();
    ledger["entries"].as_array_mut().unwrap().push(serde_json::json!({
        "target": "ssh:deploy@build-9.invalid", "path": "/home/deploy/.llmx/auth.json", "account_id": "acc-test-0001",
        "sha256": "", "written_at": "2026-12-01T00:00:00Z", "kind": "own"}));
    std::fs::write(&ledger_path, serde_json::to_vec_pretty(&ledger).unwrap()).unwrap();

    let refused = s.llmx(&["logout"]);
    assert_eq!(refused.code(), 1, "a lease holder is a live copy: {}", refused.all());
    assert!(refused.stderr.contains(&a.target()) && !refused.stderr.contains("build-9"), "{}", refused.stderr);
    assert_eq!(s.issuer.issuer.stats().revocations, 0);

    let r = s.llmx(&["logout", "--everywhere"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr.contains("account-wide") && r.stderr.contains("ssh:deploy@build-9.invalid"), "{}", r.stderr);
    assert!(a.read(ROOT_AUTH).is_none(), "the lease is removed");
    assert_eq!(s.issuer.issuer.stats().revocations, 1);
}

/// Issue 20 item 3: a new login names the places that hold copies of the previous one.
#[test]
fn a_new_login_names_the_places_holding_the_previous_login() {
    let s = Signed::new();
    let a = Container::run("lease-relogin", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &a.target()]).code(), 0);
    let relogin = crate::support::harness::Llmx::new(["login", "--with-api-key"])
        .env("HOME", s.local.home())
        .env("LLMX_HOME", s.local.auth_path().parent().unwrap())
        .stdin("sk-test-relogin-000000000000000000000\n")
        .run_blocking();
    assert_eq!(relogin.code(), 0, "{}", relogin.all());
    assert!(
        relogin.stderr.contains("holding copies of the previous login") && relogin.stderr.contains(&a.target()),
        "{}",
        relogin.all()
    );
    assert!(relogin.stderr.contains("llmx auth where"), "{}", relogin.stderr);
}

/// Issue 20 item 5: `logout --everywhere --dry-run` reaches every copy and says what would go,
/// and removes, revokes and deletes nothing.
#[test]
fn logout_everywhere_dry_run_says_what_would_go_and_does_nothing() {
    let s = Signed::new();
    let a = Container::run("lease-lodry", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &a.target()]).code(), 0);
    let before = (s.auth(), s.ledger());
    let r = s.llmx(&["logout", "--everywhere", "--dry-run"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("{}  would be removed", a.target())), "{}", r.stdout);
    assert!(r.stdout.contains("Dry run") && r.stdout.contains("nothing was done"), "{}", r.stdout);
    assert!(a.read(ROOT_AUTH).is_some(), "the lease is still there");
    assert_eq!((s.auth(), s.ledger()), before, "nothing changed here");
    assert_eq!(s.issuer.issuer.stats().revocations, 0);
    let usage = s.llmx(&["logout", "--dry-run"]);
    assert_eq!(usage.code(), 2, "--dry-run goes with --everywhere: {}", usage.all());
}
