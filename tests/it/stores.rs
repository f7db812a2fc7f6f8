//! Credential stores (`cli_auth_credentials_store = file | keyring | auto`) against a real
//! Secret Service: gnome-keyring on a private session bus ([`SecretService`]). Each test has its
//! own home, so its own keyring account (the kernel keyring's cache in front of the Secret
//! Service is per account too).

use crate::credentials::chatgpt_file;
use crate::support::keyring::{SecretService, account_of};
use crate::support::login::{Home, browser_login, issuer, refresh};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-proj-abcdefghijklmnop12345";

/// A home on `ss`'s bus whose config.toml names `store`.
fn home_on(ss: &SecretService, store: &str) -> Home {
    let home = Home::new().with_env("DBUS_SESSION_BUS_ADDRESS", ss.address());
    home.write("config.toml", format!("cli_auth_credentials_store = \"{store}\"\nmodel = \"kept\"\n").as_bytes());
    home
}

/// [`home_on`] with the ChatGPT login in its keyring entry, stored as the agent stores it.
fn with_agents_entry(ss: &SecretService, store: &str) -> Home {
    let home = home_on(ss, store);
    ss.store_as_agent(&account_of(&home.path()), chatgpt_compact().as_bytes());
    home
}

/// The ChatGPT login of the credential tests, as the agent stores it (compact JSON).
fn chatgpt_compact() -> String {
    let pretty: serde_json::Value = serde_json::from_slice(&chatgpt_file(None)).unwrap();
    serde_json::to_string(&pretty).unwrap()
}

#[tokio::test]
async fn keyring_login_writes_the_agents_entry_and_no_auth_json() {
    let ss = SecretService::start();
    let home = home_on(&ss, "keyring");
    home.write("auth.json", b"{\"OPENAI_API_KEY\": \"sk-an-older-file-login-000\"}");
    let ignored = home.llmx(["login", "status"]).run().await;
    assert_eq!(ignored.code(), 1, "the agent reads only the keyring: {ignored:?}");
    assert!(ignored.stderr.contains("the agent ignores that file"), "{ignored:?}");
    let r = home.llmx(["-v", "login", "--with-api-key"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    let account = account_of(&home.path());
    assert!(r.stdout.contains(&format!("keyring \"LLMX Auth\" account \"{account}\"")), "{r:?}");
    assert!(r.stderr.contains("login store: save keyring"), "-v names the store: {r:?}");
    // Byte for byte what the agent writes: the auth.json object as compact JSON.
    let want = format!("{{\"OPENAI_API_KEY\":\"{KEY}\",\"auth_mode\":\"apikey\"}}");
    assert_eq!(String::from_utf8(ss.lookup(&account).expect("an entry")).unwrap(), want);
    assert_eq!(
        ss.attributes(&account),
        [
            "attribute.application = rust-keyring".to_string(),
            "attribute.service = LLMX Auth".into(),
            "attribute.target = default".into(),
            format!("attribute.username = {account}"),
        ]
    );
    assert!(!home.auth_path().exists(), "saving to the keyring deletes auth.json, as the agent does");

    let s = home.llmx(["login", "status"]).run().await;
    assert_eq!(s.code(), 0, "{s:?}");
    assert!(s.stdout.contains("Store: keyring"), "{s:?}");
    let j = home.llmx(["auth", "status", "--json"]).run().await.json();
    assert_eq!((j["store"].as_str(), j["store_setting"].as_str()), (Some("keyring"), Some("keyring")));
    assert_eq!(j["api_key"], "sk-proj-***12345");
    assert!(!j.to_string().contains(KEY));

    let out = home.llmx(["logout"]).run().await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(ss.lookup(&account).is_none(), "logout deletes the entry");
    assert!(!home.auth_path().exists());
    let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(config.contains("model = \"kept\""));
}

#[tokio::test]
async fn an_entry_the_agent_wrote_is_read() {
    let ss = SecretService::start();
    let home = with_agents_entry(&ss, "keyring");
    let r = home.llmx(["login", "status"]).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(r.stdout.contains("Logged in using ChatGPT") && r.stdout.contains("ana@example.com"), "{r:?}");
    assert!(r.stdout.contains("Source: keyring \"LLMX Auth\""), "{r:?}");
    assert!(!r.all().contains("rt-secret-value"));
}

#[tokio::test]
async fn browser_login_and_refresh_stay_in_the_keyring() {
    let ss = SecretService::start();
    let issuer = issuer().await;
    let home = home_on(&ss, "keyring");
    browser_login(&home, &issuer).await;
    let account = account_of(&home.path());
    let first: serde_json::Value = serde_json::from_slice(&ss.lookup(&account).expect("an entry")).unwrap();
    assert!(!home.auth_path().exists());
    let r = refresh(&home, &issuer.base_url(), true).await;
    assert_eq!(r.code(), 0, "{r:?}");
    let raw = ss.lookup(&account).expect("an entry");
    let after: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(raw, serde_json::to_vec(&after).unwrap(), "compact JSON");
    assert_ne!(after["tokens"]["refresh_token"], first["tokens"]["refresh_token"], "the refresh was saved there");
    assert!(!home.auth_path().exists(), "no auth.json beside the keyring");
}

#[tokio::test]
async fn auto_saves_to_the_keyring_and_warns_when_the_two_differ() {
    let ss = SecretService::start();
    let home = home_on(&ss, "auto");
    let r = home.llmx(["login", "--with-api-key"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    let account = account_of(&home.path());
    assert!(ss.lookup(&account).is_some());
    assert!(!home.auth_path().exists());
    let j = home.llmx(["auth", "status", "--json"]).run().await.json();
    assert_eq!(j["store"], "auto → keyring");
    assert_eq!(j["stores_differ"], false);

    // Another login in auth.json (an older agent, a copy): the agent reads the keyring.
    home.write("auth.json", b"{\"OPENAI_API_KEY\": \"sk-proj-another-login-99999\"}");
    let s = home.llmx(["auth", "status"]).run().await;
    assert_eq!(s.code(), 0, "{s:?}");
    assert!(s.stderr.contains("the keyring and auth.json hold different logins"), "{s:?}");
    assert!(s.stdout.contains("sk-proj-***12345"), "the keyring's login is the one in use: {s:?}");
    assert_eq!(home.llmx(["auth", "status", "--json"]).run().await.json()["stores_differ"], true);
}

#[tokio::test]
async fn locked_keyring_fails_with_one_line_and_auto_falls_back() {
    let ss = SecretService::start();
    let home = with_agents_entry(&ss, "keyring");
    let auto = with_agents_entry(&ss, "auto");
    auto.write("auth.json", format!("{{\"OPENAI_API_KEY\": \"{KEY}\"}}").as_bytes());
    ss.lock();
    let r = home.llmx(["login", "status"]).env("LLMX_KEYRING_TIMEOUT", "3s").run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.elapsed < Duration::from_secs(3) + Duration::from_millis(1500), "{r:?}");
    let line = r.stderr.lines().find(|l| l.starts_with("llmx:")).unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        line.contains("could not read the login") && line.contains("cli_auth_credentials_store = \"file\""),
        "{r:?}"
    );
    assert!(line.contains("unlock the keyring"), "{r:?}");

    // auto: the file, and it says so.
    let a = auto.llmx(["auth", "status"]).run().await;
    assert_eq!(a.code(), 0, "{a:?}");
    assert!(a.stderr.contains("used auth.json instead"), "{a:?}");
    assert!(a.stdout.contains("Store: auto → file"), "{a:?}");
}

#[tokio::test]
async fn a_stalled_secret_service_times_out_within_the_limit() {
    let ss = SecretService::start();
    let home = home_on(&ss, "keyring");
    ss.stall(true);
    let r =
        home.llmx(["login", "--with-api-key"]).env("LLMX_KEYRING_TIMEOUT", "2s").stdin(format!("{KEY}\n")).run().await;
    ss.stall(false);
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.elapsed >= Duration::from_secs(2) && r.elapsed < Duration::from_secs(4), "{r:?}");
    assert!(r.stderr.contains("no answer within 2 s"), "{r:?}");
    assert!(r.stderr.contains("cli_auth_credentials_store = \"file\""), "{r:?}");
    assert!(!home.auth_path().exists(), "keyring means keyring: nothing written elsewhere");

    let auto = home_on(&ss, "auto");
    ss.stall(true);
    let a =
        auto.llmx(["login", "--with-api-key"]).env("LLMX_KEYRING_TIMEOUT", "1s").stdin(format!("{KEY}\n")).run().await;
    ss.stall(false);
    assert_eq!(a.code(), 0, "{a:?}");
    assert!(a.stderr.contains("the save used auth.json instead"), "{a:?}");
    assert!(auto.auth_path().exists());

    // A refresh reads twice and writes once: one time limit, not three.
    let issuer = issuer().await;
    let refreshing = home_on(&ss, "auto");
    browser_login(&refreshing, &issuer).await;
    ss.stall(true);
    let iss = format!("auth_issuer={}", issuer.base_url());
    let r = refreshing.llmx(["-c", &iss, "auth", "refresh"]).env("LLMX_KEYRING_TIMEOUT", "1s").run().await;
    ss.stall(false);
    assert!(r.elapsed < Duration::from_millis(2500), "one limit of 1 s, not three: {r:?}");
    assert_eq!(r.stderr.matches("no answer within 1 s").count(), 1, "{r:?}");
}

#[tokio::test]
async fn no_session_bus_fails_at_once_and_auto_uses_the_file() {
    let home = Home::new();
    home.write("config.toml", b"cli_auth_credentials_store = \"keyring\"\n");
    let r = home.llmx(["login", "status"]).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.elapsed < Duration::from_secs(5), "{r:?}");
    assert!(
        r.stderr.contains("could not read the login") && r.stderr.contains("cli_auth_credentials_store = \"file\"")
    );

    let auto = Home::new();
    auto.write("config.toml", b"cli_auth_credentials_store = \"auto\"\n");
    let l = auto.llmx(["login", "--with-api-key"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(l.code(), 0, "{l:?}");
    assert!(auto.auth_path().exists());
    let s = auto.llmx(["auth", "status", "--json"]).run().await;
    assert_eq!(s.json()["store"], "auto → file", "{s:?}");
}

#[tokio::test]
async fn an_invalid_store_value_is_a_config_error() {
    let home = Home::new();
    let r = home.llmx(["-c", "cli_auth_credentials_store=vault", "login", "status"]).run().await;
    assert_eq!(r.code(), 2, "{r:?}");
    assert!(r.stderr.contains("\"file\", \"keyring\", \"auto\""), "{r:?}");
}

/// What the agent on a target reads: `auth status TARGET` and `auth push` read the target's
/// `cli_auth_credentials_store` in the conversation that locates its home, and say when the
/// auth.json written there is ignored (`keyring`) or shadowed (`auto`).
#[test]
fn a_target_whose_agent_reads_its_keyring_is_named_on_push_and_status() {
    use crate::support::docker::{Container, IMAGE_ROOT, Local, api_key_auth};
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let ct = Container::run("store", IMAGE_ROOT, &[]);
    ct.exec(&["mkdir", "-p", "/root/.llmx"]);
    let plain = local.llmx(&["auth", "push", &ct.target(), "--json"], &[]);
    assert_eq!(plain.code(), 0, "{}", plain.all());
    let events = crate::support::harness::json_lines(&plain.stdout);
    assert!(events.iter().any(|e| e["store"] == "file"), "the target's store is reported: {events:?}");
    assert!(!plain.stderr.contains("keyring"), "{}", plain.stderr);

    for (store, says) in [("keyring", "is ignored"), ("auto", "shadows")] {
        let config = format!("model = \"m\"\n  cli_auth_credentials_store = '{store}' # the agent's\n[tui]\nx = 1\n");
        ct.put("/root/.llmx", "config.toml", config.as_bytes(), 0);
        let r = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
        assert_eq!(r.code(), 0, "{}", r.all());
        assert!(
            r.stderr.contains(says) && r.stderr.contains(&format!("cli_auth_credentials_store = \"{store}\"")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("llmx auth tunnel"), "{}", r.stderr);
        let s = local.llmx(&["auth", "status", &ct.target()], &[]);
        assert!(s.stdout.contains(&format!("Store: {store}")), "{}", s.all());
        assert!(s.stderr.contains(says), "{}", s.all());
        let j = local.llmx(&["auth", "status", &ct.target(), "--json"], &[]);
        let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
        assert_eq!(v["store"], store);
        assert_eq!(ct.read("/root/.llmx/config.toml").unwrap(), config, "the target's config is only read");

        // --store file: the key replaced at the top level, the rest of the file as it was; the
        // auth.json there was already the same, and is written again for it.
        let fixed = local.llmx(&["auth", "push", &ct.target(), "--store", "file"], &[]);
        assert_eq!(fixed.code(), 0, "{}", fixed.all());
        assert!(fixed.all().contains("now sets cli_auth_credentials_store = \"file\""), "{}", fixed.all());
        assert!(!fixed.stderr.contains(says), "{}", fixed.stderr);
        let want = "cli_auth_credentials_store = \"file\"\nmodel = \"m\"\n[tui]\nx = 1\n";
        assert_eq!(ct.read("/root/.llmx/config.toml").unwrap(), want);
        let after = local.llmx(&["auth", "status", &ct.target()], &[]);
        assert!(after.stdout.contains("Store: file") && !after.stderr.contains("warning"), "{}", after.all());
    }
}

/// The push source is the keyring entry: a login kept only in the keyring goes out to a
/// container as the same object, pretty-printed as auth.json is.
#[test]
fn push_reads_the_login_from_the_keyring() {
    use crate::support::docker::{Container, IMAGE_ROOT, Local};
    let ss = SecretService::start();
    let local = Local::new();
    let env = [("DBUS_SESSION_BUS_ADDRESS", ss.address())];
    let keyring = ["-c", "cli_auth_credentials_store=keyring"];
    let login = crate::support::harness::Llmx::new(keyring.iter().chain(&["login", "--with-api-key"]))
        .env("LLMX_HOME", local.dir.path().join("llmx"))
        .env("DBUS_SESSION_BUS_ADDRESS", ss.address())
        .stdin(format!("{KEY}\n"))
        .run_blocking();
    assert_eq!(login.code(), 0, "{login:?}");
    assert!(!local.auth_path().exists());
    let ct = Container::run("from-keyring", IMAGE_ROOT, &[]);
    let push = local.llmx(&[keyring[0], keyring[1], "-v", "auth", "push", &ct.target()], &env);
    assert_eq!(push.code(), 0, "{}", push.all());
    assert!(push.stderr.contains("login store: read keyring \"LLMX Auth\""), "{}", push.stderr);
    let there: serde_json::Value = serde_json::from_str(&ct.read("/root/.llmx/auth.json").unwrap()).unwrap();
    assert_eq!(there, json!({"OPENAI_API_KEY": KEY, "auth_mode": "apikey"}));
    assert!(!push.all().contains(KEY));
}

/// Accounts in the keyring: each account's directory is a home with its own entry; switching
/// moves logins between entries, never into a file.
#[tokio::test]
async fn accounts_keep_their_logins_in_keyring_entries_of_their_own() {
    let ss = SecretService::start();
    let home = home_on(&ss, "keyring");
    for (label, key) in [("ci", KEY), ("ops", "sk-proj-zyxwvutsrqponmlk54321")] {
        let r = home.llmx(["login", "--with-api-key", "--as", label]).stdin(format!("{key}\n")).run().await;
        assert_eq!(r.code(), 0, "{r:?}");
    }
    let live = account_of(&home.path());
    let ci = account_of(&home.path().join("accounts").join("ci"));
    let ops = account_of(&home.path().join("accounts").join("ops"));
    assert!(String::from_utf8(ss.lookup(&live).unwrap()).unwrap().contains(KEY), "the first stays active");
    assert!(String::from_utf8(ss.lookup(&ops).unwrap()).unwrap().contains("54321"));
    assert!(String::from_utf8(ss.lookup(&ci).unwrap()).unwrap().contains(KEY));
    let sw = home.llmx(["auth", "switch", "ops"]).run().await;
    assert_eq!(sw.code(), 0, "{sw:?}");
    assert!(String::from_utf8(ss.lookup(&live).unwrap()).unwrap().contains("54321"));
    let list = home.llmx(["auth", "list", "--json"]).run().await;
    assert_eq!(list.code(), 0, "{list:?}");
    let found = walk_files(&home.path());
    assert!(!found.iter().any(|p| p.ends_with("auth.json")), "no auth.json anywhere: {found:?}");
}

/// Every file under `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk_files(&p)) } else { out.push(p) }
    }
    out
}
