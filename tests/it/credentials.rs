//! Status, logout, API-key login, `-c` overrides and corrupt files, through the real `llmx` binary
//! with a temp `LLMX_HOME` and a cleared environment; plus garbage fed to every parser.

use crate::support::login::{Home, mode};
use llmx_test_issuer::jwt;
use serde_json::json;

const KEY: &str = "sk-proj-abcdefghijklmnop12345";

pub fn chatgpt_file(api_key: Option<&str>) -> Vec<u8> {
    let id = jwt(&json!({
        "email": "ana@example.com",
        "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc-9"}
    }));
    let access = jwt(&json!({"exp": 4102444800i64}));
    serde_json::to_vec_pretty(&json!({
        "OPENAI_API_KEY": api_key,
        "tokens": {"id_token": id, "access_token": access, "refresh_token": "rt-secret-value", "account_id": "acc-9"},
        "last_refresh": "2025-08-06T20:41:36.232376Z"
    }))
    .unwrap()
}

#[tokio::test]
async fn not_logged_in_exits_1() {
    let home = Home::new();
    let r = home.llmx(["login", "status"]).run().await;
    assert_eq!(r.code(), 1);
    assert!(r.stdout.starts_with("Not logged in."), "{r:?}");
    let j = home.llmx(["auth", "status", "--json"]).run().await;
    assert_eq!(j.code(), 1);
    assert_eq!(j.json()["logged_in"], false);
}

#[tokio::test]
async fn api_key_login_and_status_mask_the_key() {
    let home = Home::new();
    let r = home.llmx(["login", "--with-api-key"]).stdin(format!("{KEY}\n")).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    // auth_mode tells current Codex CLIs which credential the file is for (DESIGN.md §1).
    let want = format!("{{\n  \"OPENAI_API_KEY\": \"{KEY}\",\n  \"auth_mode\": \"apikey\"\n}}");
    assert_eq!(String::from_utf8(home.read_auth().unwrap()).unwrap(), want);
    assert_eq!(mode(&home.auth_path()), 0o600);
    assert_eq!(mode(&home.path()), 0o700);

    for args in [["login", "status"], ["auth", "status"]] {
        let r = home.llmx(args).run().await;
        assert_eq!(r.code(), 0);
        assert!(r.stdout.starts_with("Logged in using an API key - sk-proj-***12345"), "{r:?}");
        assert!(!r.stdout.contains(KEY));
    }
    let j = home.llmx(["login", "status", "--json"]).run().await.json();
    assert_eq!(j["method"], "apikey");
    assert_eq!(j["source"], "file");
    assert_eq!(j["api_key"], "sk-proj-***12345");

    let empty = home.llmx(["login", "--with-api-key"]).stdin(*b"  \n").run().await;
    assert_eq!(empty.code(), 2, "{empty:?}");
}

#[tokio::test]
async fn env_key_is_reported_as_env_and_short_keys_are_fully_masked() {
    let home = Home::new();
    let r = home.llmx(["login", "status", "--json"]).env("OPENAI_API_KEY", "sk-env-0123456789-ZYXWV").run().await;
    assert_eq!(r.code(), 0);
    assert_eq!(r.json()["source"], "env");
    // 23 characters: showing 8 + 5 of them would reveal more than half.
    assert_eq!(r.json()["api_key"], "***");
    let r = home.llmx(["login", "status", "--json"]).env("OPENAI_API_KEY", "sk-env-0123456789-abcd-ZYXWV").run().await;
    assert_eq!(r.json()["api_key"], "sk-env-0***ZYXWV");
    let r = home.llmx(["login", "status"]).env("OPENAI_API_KEY", "sk-short").run().await;
    assert!(r.stdout.contains("API key - ***") && r.stdout.contains("OPENAI_API_KEY environment variable"), "{r:?}");
    assert!(!r.stdout.contains("sk-short"));
}

#[tokio::test]
async fn chatgpt_status_and_preferred_auth_method() {
    let home = Home::new();
    home.write("auth.json", &chatgpt_file(Some(KEY)));
    let r = home.llmx(["login", "status"]).run().await;
    assert_eq!(r.code(), 0);
    assert!(r.stdout.starts_with("Logged in using ChatGPT\n  Account: ana@example.com\n  Plan: pro\n"), "{r:?}");
    assert!(r.stdout.contains("Last refresh: 2025-08-06T20:41:36.232376Z"), "{r:?}");
    assert!(r.stdout.contains("Access token expires: 2100-01-01T00:00:00Z"), "{r:?}");
    assert!(!r.stdout.contains("rt-secret-value"));

    // The API key wins with preferred_auth_method = "apikey", from the file or from -c.
    let j = home.llmx(["-c", "preferred_auth_method=apikey", "login", "status", "--json"]).run().await.json();
    assert_eq!(j["method"], "apikey");
    home.write("config.toml", b"preferred_auth_method = \"apikey\"\nmodel = \"unknown keys are fine\"\n");
    assert_eq!(home.llmx(["auth", "status", "--json"]).run().await.json()["method"], "apikey");
    let j = home.llmx(["-c", "preferred_auth_method=\"chatgpt\"", "auth", "status", "--json"]).run().await.json();
    assert_eq!(j["method"], "chatgpt", "the override wins over the file");
    assert_eq!(j["account_id"], "acc-9");

    let bad = home.llmx(["-c", "preferred_auth_method=oauth", "login", "status"]).run().await;
    assert_eq!(bad.code(), 2);
    assert!(
        bad.stderr.starts_with("llmx: override 'preferred_auth_method=oauth': invalid preferred_auth_method"),
        "{bad:?}"
    );
    assert!(bad.stderr.contains("\"chatgpt\", \"apikey\""), "{bad:?}");
}

#[tokio::test]
async fn logout_is_idempotent_and_mentions_the_env_key() {
    let home = Home::new();
    home.write("auth.json", &chatgpt_file(None));
    let r = home.llmx(["logout"]).run().await;
    assert_eq!(r.code(), 0);
    assert!(home.read_auth().is_none());
    let again = home.llmx(["logout", "--json"]).run().await;
    assert_eq!(again.code(), 0);
    assert_eq!(again.json()["removed"], false);
    assert!(home.llmx(["logout"]).env("OPENAI_API_KEY", KEY).run().await.stdout.contains("OPENAI_API_KEY is set"));
    assert_eq!(home.llmx(["login", "status"]).run().await.code(), 1);
}

#[tokio::test]
async fn malformed_overrides_exit_2_with_one_line() {
    let home = Home::new();
    for (arg, want) in [
        ("novalue", "llmx: invalid override 'novalue': expected key=value"),
        ("=1", "llmx: invalid override '=1': empty key"),
        ("a..b=1", "llmx: invalid override 'a..b=1': empty key"),
        ("auth_issuer=", "auth_issuer"),
        ("auth_issuer=not a url", "auth_issuer"),
    ] {
        let r = home.llmx(["-c", arg, "login", "status"]).run().await;
        assert_eq!(r.code(), 2, "{arg}: {r:?}");
        assert!(r.stderr.lines().next().unwrap().contains(want), "{arg}: {r:?}");
    }
    assert!(!home.path().exists(), "nothing written");
}

#[tokio::test]
async fn corrupt_auth_json_is_an_error_naming_the_file_and_left_alone() {
    let home = Home::new();
    home.write("auth.json", b"{\"tokens\": ");
    let path = home.auth_path().display().to_string();
    for args in [
        vec!["login", "status"],
        vec!["auth", "status", "--json"],
        vec!["-c", "auth_issuer=http://127.0.0.1:9", "auth", "refresh"],
    ] {
        let r = home.llmx(&args).run().await;
        assert_eq!(r.code(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with(&format!("llmx: {path}: not a valid auth.json")), "{r:?}");
        assert!(r.stderr.contains("hint:"), "{r:?}");
        assert_eq!(home.read_auth().unwrap(), b"{\"tokens\": ");
    }
}

#[tokio::test]
async fn corrupt_config_toml_names_file_and_line_and_is_left_alone() {
    let home = Home::new();
    home.write("config.toml", b"model = \"x\"\npreferred_auth_method = = 1\n");
    let r = home.llmx(["login", "status"]).run().await;
    assert_eq!(r.code(), 2, "{r:?}");
    let config = home.path().join("config.toml");
    assert!(r.stderr.starts_with(&format!("llmx: {}: line 2", config.display())), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1);
    assert_eq!(std::fs::read(config).unwrap(), b"model = \"x\"\npreferred_auth_method = = 1\n");
}

/// Junk for every parser: `-c` overrides, config.toml, auth.json (including junk JWTs). Each run
/// must end in an orderly error or success — exit 0, 1 or 2, never a panic.
#[tokio::test]
async fn garbage_never_panics() {
    let junk_strings = [
        "",
        "=",
        "==",
        ".",
        "a.=1",
        ".a=1",
        "a.b.=1",
        "a=[",
        "a={",
        "a=\"",
        "a='",
        "a=\"\"\"",
        "\u{1}=\u{7f}",
        "\u{1F600}=\u{1F600}",
        "a=1\n2",
        "preferred_auth_method=1",
        "preferred_auth_method=[1]",
        "preferred_auth_method.x=1",
        "auth_issuer=ftp://x",
        "auth_issuer={a=1}",
        "auth_client_id=",
        "auth_client_id=[]",
        "auth_issuer=http://",
        "x.y.z.w=inf",
        "a=nan",
        "a=1979-05-27T07:32:00Z",
    ];
    let home = Home::new();
    for j in junk_strings {
        let r = home.llmx(["-c", j, "login", "status", "--json"]).run().await;
        r.assert_orderly();
        if r.code() == 2 {
            assert!(r.stderr.starts_with("llmx: "), "{j:?}: {r:?}");
        }
    }

    let tomls: [&[u8]; 10] = [
        b"\xff\xfe",
        b"[",
        b"a = ",
        b"preferred_auth_method = 5",
        b"[preferred_auth_method]",
        b"a = 1\na = 2",
        b"auth_issuer = \"\"",
        b"\"\" = 1\n[[x]]\n[x]",
        b"\0",
        b"preferred_auth_method = \"APIKEY\"",
    ];
    for t in tomls {
        let home = Home::new();
        home.write("config.toml", t);
        let r = home.llmx(["auth", "status"]).run().await;
        r.assert_orderly();
        assert_eq!(r.code(), 2, "{:?}: {r:?}", String::from_utf8_lossy(t));
        assert_eq!(std::fs::read(home.path().join("config.toml")).unwrap(), t, "never rewritten");
    }

    let jwts = [
        "",
        ".",
        "..",
        "a.b.c",
        "a.!!!.c",
        "a.W10.c",
        "a.bnVsbA.c",
        "\u{1F600}.\u{1F600}.\u{1F600}",
        "x.e30",
        "a.e30.b.c",
    ];
    let mut files: Vec<Vec<u8>> = [
        &b""[..],
        b"null",
        b"[]",
        b"\"s\"",
        b"{",
        b"{\"OPENAI_API_KEY\": 1}",
        b"{\"tokens\": []}",
        b"{\"tokens\": {}}",
        b"{\"last_refresh\": 5}",
        b"{\"last_refresh\": \"2025-13-45T99:99:99Z\"}",
        b"\xff\xfe{}",
        b"{\"OPENAI_API_KEY\":\"k\",\"OPENAI_API_KEY\":\"k\"}",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    for jwt in jwts {
        files.push(
            serde_json::to_vec(&json!({"tokens": {"id_token": jwt, "access_token": jwt, "refresh_token": "r"}}))
                .unwrap(),
        );
    }
    for f in files {
        let home = Home::new();
        home.write("auth.json", &f);
        for args in [&["login", "status"][..], &["-c", "auth_issuer=http://127.0.0.1:9", "auth", "refresh"]] {
            let r = home.llmx(args).run().await;
            r.assert_orderly();
            assert_eq!(home.read_auth().unwrap(), f, "never rewritten: {r:?}");
        }
    }

    for jwt in jwts {
        assert!(llmx::auth::claims::IdClaims::parse(jwt).is_err(), "{jwt}");
        let _ = llmx::auth::claims::expiry(jwt);
        let _ = llmx::auth::server::CallbackQuery::parse(jwt);
        let _ = llmx::auth::oauth::error_code(jwt.as_bytes());
    }
}

/// auth.json with values in the wrong place: the error names the file and where, never the value.
#[tokio::test]
async fn hostile_auth_json_shapes_never_echo_values_and_are_left_alone() {
    const V: &str = "sk-LEAKED-0123456789abcdef";
    let id = llmx_test_issuer::jwt(&json!({"email": "a@b.c"}));
    let shapes = [
        format!(r#"{{"tokens": "{V}"}}"#),
        format!(r#"{{"tokens": ["{V}"]}}"#),
        format!(r#"{{"OPENAI_API_KEY": {{"k": "{V}"}}}}"#),
        format!(r#"{{"OPENAI_API_KEY": ["{V}"]}}"#),
        format!(r#"{{"last_refresh": "{V}"}}"#),
        format!(r#"{{"tokens": {{"id_token": "{V}", "access_token": "a", "refresh_token": "r"}}}}"#),
        format!(r#"{{"tokens": {{"id_token": "{id}", "access_token": {{"{V}": 1}}, "refresh_token": "r"}}}}"#),
        format!(r#"{{"OPENAI_API_KEY": "{V}" "tokens": 1}}"#),
        format!("{{\"OPENAI_API_KEY\": \"{V}\u{1b}[2J\""),
        format!(r#"["{V}"]"#),
    ];
    for shape in &shapes {
        let home = Home::new();
        home.write("auth.json", shape.as_bytes());
        for args in [
            &["login", "status"][..],
            &["auth", "status", "--json"],
            &["-c", "auth_issuer=http://127.0.0.1:9", "auth", "refresh"],
        ] {
            let r = home.llmx(args).run().await;
            r.assert_orderly();
            assert_ne!(r.code(), 0, "{shape}: {r:?}");
            assert!(!r.stderr.contains("LEAKED") && !r.stdout.contains("LEAKED"), "{shape}: {r:?}");
            assert!(!llmx::text::has_terminal_controls(&r.stderr), "{r:?}");
            assert_eq!(home.read_auth().unwrap(), shape.as_bytes());
        }
    }
}

/// A FIFO, a symlink to /dev/zero, a directory, a device and a file past 4 MiB as auth.json or
/// config.toml: a clear error at once, never a hang or a read of gigabytes.
#[tokio::test]
async fn special_or_huge_auth_json_and_config_are_refused_without_hanging() {
    for name in ["auth.json", "config.toml"] {
        for kind in ["fifo", "dev-zero", "dev-null", "dir", "huge"] {
            let home = Home::new();
            std::fs::create_dir_all(home.path()).unwrap();
            let p = home.path().join(name);
            match kind {
                "fifo" => {
                    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                    // SAFETY: mkfifo with a valid C string on a path in our temp dir.
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
                }
                "dev-zero" => std::os::unix::fs::symlink("/dev/zero", &p).unwrap(),
                "dev-null" => std::os::unix::fs::symlink("/dev/null", &p).unwrap(),
                "dir" => std::fs::create_dir(&p).unwrap(),
                _ => std::fs::File::create(&p).unwrap().set_len(5 * 1024 * 1024).unwrap(),
            }
            let started = std::time::Instant::now();
            let r = home.llmx(["login", "status"]).run().await;
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{name} {kind}: slow");
            r.assert_orderly();
            assert_ne!(r.code(), 0, "{name} {kind}: {r:?}");
            let want = if kind == "huge" { "larger than 4 MiB" } else { "not a regular file" };
            assert!(r.stderr.contains(want) && r.stderr.contains(name), "{name} {kind}: {r:?}");
        }
    }
}

/// `-c` keys with many dotted parts: a one-line usage error (exit 2), never a stack overflow.
#[tokio::test]
async fn deep_override_keys_are_a_usage_error_not_a_crash() {
    let home = Home::new();
    for key in [vec!["k"; 33].join("."), vec!["k"; 50_000].join("."), ".".repeat(60_000)] {
        let r = home.llmx(["-c", &format!("{key}=1"), "login", "status"]).run().await;
        assert_eq!(r.code(), 2, "{r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
        assert!(r.stderr.len() < 300, "the key is not echoed: {}", r.stderr.len());
    }
    let ok = home.llmx(["-c", &format!("{}=1", vec!["k"; 32].join(".")), "login", "status"]).run().await;
    assert_eq!(ok.code(), 1, "32 parts are fine: {ok:?}");
    // Deeply nested values are values: parsed or taken as text, never a crash.
    for v in ["[".repeat(50_000), "{a=".repeat(20_000)] {
        home.llmx(["-c", &format!("x={v}"), "login", "status"]).run().await.assert_orderly();
    }
}

/// API keys of every length up to where the ends may show: fully masked in text and JSON.
#[tokio::test]
async fn keys_shorter_than_26_chars_are_fully_masked() {
    let home = Home::new();
    for n in [9, 13, 14, 16, 20, 25, 26] {
        let key: String = "sk-".chars().chain(('a'..='z').cycle()).take(n).collect();
        let cmd = home.llmx(["login", "status", "--json"]).env("OPENAI_API_KEY", &key);
        let shown = cmd.run().await.json()["api_key"].as_str().unwrap().to_string();
        if n < 26 {
            assert_eq!(shown, "***", "{n} chars");
        } else {
            assert_eq!(shown, format!("{}***{}", &key[..8], &key[n - 5..]), "{n} chars");
        }
    }
}

/// `--with-api-key` with more than 64 KiB on stdin: an error, nothing saved (an earlier file
/// stays); exactly 64 KiB of one key still works.
#[tokio::test]
async fn api_key_on_stdin_past_64_kib_is_an_error_and_saves_nothing() {
    let home = Home::new();
    home.write("auth.json", br#"{"OPENAI_API_KEY":"sk-old-key-0000000000"}"#);
    for n in [64 * 1024 + 1, 64 * 1024 + 100, 1024 * 1024] {
        let r = home.llmx(["login", "--with-api-key"]).stdin("k".repeat(n).as_bytes()).run().await;
        assert_eq!(r.code(), 2, "{n}: {r:?}");
        assert!(r.stderr.contains("more than 64 KiB"), "{r:?}");
        assert_eq!(home.read_auth().unwrap(), br#"{"OPENAI_API_KEY":"sk-old-key-0000000000"}"#);
    }
    let r = home.llmx(["login", "--with-api-key"]).stdin("k".repeat(64 * 1024).as_bytes()).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
}

/// Temp copies of auth.json that a crashed write left (a dead writer's pid in the name) are
/// removed by the next write and by logout; other files, symlinks and other users' files stay.
#[tokio::test]
async fn stale_temp_credentials_are_removed_by_the_next_write_and_by_logout() {
    use std::os::unix::fs::MetadataExt;
    let dead = 4_194_999; // above any pid_max
    for how in ["write", "logout"] {
        let home = Home::new();
        home.write("auth.json", br#"{"OPENAI_API_KEY":"sk-a-0000000000000000000000"}"#);
        let stale: Vec<_> = ["ab12", "0", "ffffffffffff"]
            .iter()
            .map(|h| home.path().join(format!(".auth.json.tmp-{dead}-{h}")))
            .collect();
        for p in &stale {
            std::fs::write(p, b"{\"OPENAI_API_KEY\":\"sk-crashed\"}").unwrap();
        }
        let target = home.dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = home.path().join(format!(".auth.json.tmp-{dead}-link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let other = home.path().join(format!(".auth.json.tmp-{dead}-other"));
        std::fs::write(&other, b"x").unwrap();
        // SAFETY: chown of a file we created, to an unprivileged uid (tests run as root).
        let c = std::ffi::CString::new(other.as_os_str().as_encoded_bytes()).unwrap();
        let chowned = unsafe { libc::chown(c.as_ptr(), 65534, 65534) } == 0;
        let unrelated = home.path().join("notes.tmp-1-1");
        std::fs::write(&unrelated, b"x").unwrap();
        let r = if how == "write" {
            home.llmx(["login", "--with-api-key"]).stdin(b"sk-b-0000000000000000000000").run().await
        } else {
            home.llmx(["logout"]).run().await
        };
        assert_eq!(r.code(), 0, "{how}: {r:?}");
        for p in &stale {
            assert!(!p.exists(), "{how}: {} left", p.display());
        }
        assert!(std::fs::symlink_metadata(&link).is_ok() && std::fs::read(&target).unwrap() == b"keep", "{how}");
        if chowned {
            assert!(other.exists() && std::fs::metadata(&other).unwrap().uid() == 65534, "{how}");
        }
        assert!(unrelated.exists(), "{how}");
    }
}

/// Issue 13: the exit-code table of docs/authentication.md, and with `--json` a failure is one
/// JSON object on stdout (`{"error":{"kind","message","hint"}}`). 3 (an issuer) and 4 (a login
/// no longer valid) are pinned by the refresh tests in login.rs, 3 and 4 for SSH hosts in ssh.rs,
/// 130 in tunnel.rs.
#[tokio::test]
async fn exit_codes_tell_failures_apart_and_json_failures_are_objects() {
    let home = Home::new();
    let error = |r: &crate::support::harness::Run| {
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON object: {r:?}");
        serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["error"].clone()
    };
    // 1: not logged in.
    let r = home.llmx(["auth", "push", "docker:web", "--json"]).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert_eq!(error(&r)["kind"], "not_logged_in");
    assert!(r.stderr.contains("hint: run `llmx login`"), "{r:?}");
    // 2: usage, from clap and from our own validation, with a did-you-mean for a kindless target.
    let r = home.llmx(["auth", "status", "--no-such-flag", "--json"]).run().await;
    assert_eq!((r.code(), error(&r)["kind"].clone()), (2, json!("usage")), "{r:?}");
    let r = home.llmx(["auth", "push", "nc-web", "--json"]).run().await;
    assert_eq!((r.code(), error(&r)["kind"].clone()), (2, json!("usage")), "{r:?}");
    assert_eq!(error(&r)["hint"], "did you mean docker:nc-web or ssh:nc-web?");
    // 2: a config error.
    let r = home.llmx(["-c", "preferred_auth_method=oauth", "login", "status", "--json"]).run().await;
    assert_eq!((r.code(), error(&r)["kind"].clone()), (2, json!("config")), "{r:?}");
    // 3: the Docker Engine is unreachable (the only target of `auth status`).
    let r = home
        .llmx(["auth", "status", "docker:web", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .run()
        .await;
    assert_eq!((r.code(), error(&r)["kind"].clone()), (3, json!("unreachable")), "{r:?}");
    assert!(error(&r)["message"].as_str().unwrap().contains("cannot reach the Docker daemon"), "{r:?}");
    // --help and --version are not failures.
    assert_eq!(home.llmx(["auth", "push", "--help"]).run().await.code(), 0);
    // A typo of a key llmx reads is allowed (the file is the agent's too) but named.
    let r = home.llmx(["-c", "auth_isuer=https://x", "login", "status"]).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("warning: -c auth_isuer") && r.stderr.contains("did you mean auth_issuer?"), "{r:?}");
    let r = home.llmx(["-c", "model=o3", "login", "status"]).run().await;
    assert!(!r.stderr.contains("warning"), "{r:?}");
}

/// Issue 13: a key only in OPENAI_API_KEY is in the environment, not in a file: `auth push`
/// says so and offers `--from-env`, which pushes it (here: the dry run's validation).
#[tokio::test]
async fn a_key_only_in_the_environment_is_named_and_pushable_with_from_env() {
    let home = Home::new();
    let r = home.llmx(["login", "status"]).env("OPENAI_API_KEY", KEY).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    let r = home.llmx(["auth", "push", "docker:web"]).env("OPENAI_API_KEY", KEY).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("OPENAI_API_KEY environment variable, not in"), "{r:?}");
    assert!(r.stderr.contains("llmx auth push --from-env"), "{r:?}");
    assert!(!r.stderr.contains(KEY), "{r:?}");
    let r = home.llmx(["auth", "push", "--from-env", "docker:web"]).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("OPENAI_API_KEY is not set"), "{r:?}");
}

/// Issue 13: completions for every shell clap_complete knows, with the target kinds, and the
/// man pages (one per command).
#[tokio::test]
async fn completions_and_man_pages_are_generated() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = home.llmx(["completion", shell]).run().await;
        assert_eq!(r.code(), 0, "{shell}: {r:?}");
        assert!(r.stdout.contains("push") && r.stdout.contains("accept-new"), "{shell}");
        if shell != "elvish" && shell != "powershell" {
            assert!(r.stdout.contains("docker:") || r.stdout.contains("docker\\:"), "{shell}: no target kinds");
        }
    }
    let dir = home.path().join("man");
    let r = home.llmx([std::ffi::OsStr::new("man"), dir.as_os_str()]).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    for page in ["llmx.1", "llmx-login.1", "llmx-auth-push.1", "llmx-auth-tunnel.1", "llmx-completion.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}: not roff");
        assert_eq!(mode(&dir.join(page)), 0o644, "{page}");
    }
    let push = std::fs::read_to_string(dir.join("llmx-auth-push.1")).unwrap();
    for section in [".SH EXAMPLES", ".SH \"EXIT STATUS\"", ".SH \"SEE ALSO\"", "<\\fITARGET\\fR>..."] {
        assert!(push.contains(section), "no {section} in llmx-auth-push.1");
    }
}

/// Issue 13: `-v` says what was resolved (home, config file, issuer); `-q` and `-v` exclude
/// each other; `--color always` colours, the default off a terminal does not.
#[tokio::test]
async fn verbose_names_what_was_read_and_quiet_conflicts_with_it() {
    let home = Home::new();
    let r = home.llmx(["-v", "login", "status"]).run().await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains(&format!("verbose: config: {}", home.path().join("config.toml").display())), "{r:?}");
    assert!(r.stderr.contains("auth_issuer https://auth.openai.com"), "{r:?}");
    assert_eq!(home.llmx(["-q", "-v", "login", "status"]).run().await.code(), 2);
    let r = home.llmx(["login", "status"]).run().await;
    assert!(r.stderr.is_empty(), "{r:?}");
    let r = home.llmx(["--color", "always", "-c", "auth_isuer=x", "login", "status"]).run().await;
    assert!(r.stderr.contains("\u{1b}[33mwarning:\u{1b}[0m"), "{r:?}");
    let r = home.llmx(["-c", "auth_isuer=x", "login", "status"]).run().await;
    assert!(!r.stderr.contains('\u{1b}'), "{r:?}");
}
