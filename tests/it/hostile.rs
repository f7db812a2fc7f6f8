//! Hostile input from places llmx reaches or is handed (issue 21): names that would reach a shell
//! through a `ProxyCommand`, targets whose shell floods its output, issuers that answer nonsense,
//! a full disk. Each test runs the real binary and counts what it tried.

use crate::support::harness::Llmx;
use std::path::Path;

/// `llmx ARGS` with HOME (so `~/.ssh/config`) and LLMX_HOME in `home`, and `PWNED` naming the
/// file a successful injection would create.
fn llmx_in(home: &Path, pwned: &Path, docker_host: &str, args: &[&str]) -> crate::support::harness::Run {
    Llmx::new(args)
        .env("HOME", home)
        .env("LLMX_HOME", home.join(".llmx"))
        .env("PWNED", pwned)
        .env("DOCKER_HOST", docker_host)
        .stdin("sk-hostile-0123456789abcdefghijkl\n")
        .run_blocking()
}

const NO_DOCKER: &str = "unix:///nonexistent/docker.sock";

/// Names a shell would run if they were put into `sh -c` verbatim: `$(…)`, backticks, `;`, `|`,
/// `&&`, a redirection, a broken quote, `${IFS}` for the spaces a target name cannot hold.
const HOSTILE_HOSTS: &[&str] = &[
    "$(touch${IFS}$PWNED)",
    "`touch${IFS}$PWNED`",
    "x;touch${IFS}$PWNED",
    "x|touch${IFS}$PWNED",
    "x&&touch${IFS}$PWNED",
    "x>$PWNED",
    "x'$(touch${IFS}$PWNED)'",
    "x\"$(touch${IFS}$PWNED)\"",
    "${IFS}touch${IFS}$PWNED",
    "x{a}<$PWNED",
];

#[test]
fn proxy_command_tokens_from_the_command_line_file_and_jump_hosts_never_reach_a_shell() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    let pwned = home.path().join("pwned");
    let log = home.path().join("proxy.log");
    // A wildcard ProxyCommand, as for SSM (`Host i-*`) or a bastion for `*.internal`: it logs
    // what it was given and fails the connection.
    std::fs::write(
        home.path().join(".ssh/config"),
        format!("Host *\n  ProxyCommand sh -c 'echo \"$1 $2 $3\" >> {}; exit 1' proxy %h %n %r\n", log.display()),
    )
    .unwrap();
    let run = llmx_in(home.path(), &pwned, NO_DOCKER, &["login", "--with-api-key"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let mut tried = 0;
    let check_with = |args: &[&str], bad: &str, docker_host: &str, tried: &mut usize| {
        *tried += 1;
        let run = llmx_in(home.path(), &pwned, docker_host, args);
        run.assert_orderly();
        assert_ne!(run.code(), 0, "{args:?}: {run:?}");
        assert!(!pwned.exists(), "{args:?} ran a command through the ProxyCommand: {run:?}");
        assert!(
            !log.exists() || !std::fs::read_to_string(&log).unwrap().contains("PWNED"),
            "{args:?}: the ProxyCommand ran with the hostile name"
        );
        assert!(run.all().contains("is not safe to put into the ProxyCommand"), "{args:?}: {run:?}");
        let shown = llmx::text::terminal_safe(bad);
        assert!(run.all().contains(&shown), "{args:?}: the error names the bad name {bad}: {run:?}");
    };
    let check = |args: &[&str], bad: &str, tried: &mut usize| check_with(args, bad, NO_DOCKER, tried);
    for bad in HOSTILE_HOSTS {
        for cmd in [&["auth", "push"][..], &["auth", "status"][..]] {
            let target = format!("ssh:{bad}");
            check(&[cmd, &[target.as_str()]].concat(), bad, &mut tried);
            let user_target = format!("ssh:{bad}@host");
            check(&[cmd, &[user_target.as_str()]].concat(), bad, &mut tried);
        }
        // From a targets file.
        let file = home.path().join("fleet.txt");
        std::fs::write(&file, format!("ssh:{bad}\n")).unwrap();
        let at = format!("@{}", file.display());
        check(&["auth", "push", &at], bad, &mut tried);
        // As a jump host: the first hop is resolved by the config, so the ProxyCommand applies to it.
        check(&["auth", "push", "-J", bad, "ssh:inner"], bad, &mut tried);
        check(&["auth", "status", "-J", &format!("u@{bad}"), "ssh:inner"], bad, &mut tried);
        // An engine over SSH named by DOCKER_HOST.
        check_with(&["auth", "push", "docker:web"], bad, &format!("ssh://{bad}"), &mut tried);
    }
    eprintln!("hostile ProxyCommand inputs tried: {tried}");

    // A plain name still goes through the same ProxyCommand (which fails the connection).
    let run = llmx_in(home.path(), &pwned, NO_DOCKER, &["auth", "status", "ssh:deploy@build-1.internal"]);
    assert_ne!(run.code(), 0, "{run:?}");
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(seen.trim(), "build-1.internal build-1.internal deploy", "{seen}");
}

// ---- Item 2: a holder that never stops writing ---------------------------------------------

/// Every command that reads or writes a target, with what it needs after `llmx`.
fn commands_on(target: &str) -> Vec<Vec<String>> {
    [
        vec!["auth", "push", target],
        vec!["auth", "status", target],
        vec!["auth", "pull", target],
        vec!["auth", "remove", target],
        vec!["auth", "where"],
        vec!["auth", "sync"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_string).collect())
    .collect()
}

/// Run each command against a flooding target: every one ends quickly (nowhere near the
/// harness's 60 s limit), fails or reports that target with the reason, and never panics.
/// Returns how many runs were made.
fn each_command_gives_up_on(target: &str, run: &dyn Fn(&[&str]) -> crate::support::harness::Run) -> usize {
    let mut n = 0;
    for args in commands_on(target) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&args);
        n += 1;
        eprintln!("{args:?}: exit {} in {:?}\n{}", r.code(), r.elapsed, r.all());
        r.assert_orderly();
        assert!(r.elapsed < std::time::Duration::from_secs(40), "{args:?} took {:?}: {r:?}", r.elapsed);
        // Every command names the target and why it gave up on it (where and sync find it in
        // the ledger).
        assert_ne!(r.code(), 0, "{args:?}: {r:?}");
        assert!(r.all().contains("more than 4 MiB to its error output"), "{args:?}: {r:?}");
    }
    n
}

#[test]
fn a_container_whose_shell_floods_stderr_fails_alone_and_quickly_for_every_command() {
    use crate::support::docker::{Container, IMAGE_ROOT};
    let c = Container::run("flood", IMAGE_ROOT, &[]);
    let s = crate::family::Signed::new();
    let target = c.target();
    // Pushed while the shell was honest: the ledger knows it (for where, pull and sync).
    let r = s.llmx(&["auth", "push", &target]);
    assert_eq!(r.code(), 0, "{r:?}");
    let pushed = c.read("/root/.llmx/auth.json").unwrap();
    // Then /bin/sh becomes one that writes to stderr without end (busybox itself stays).
    c.exec(&["/bin/busybox", "rm", "/bin/sh"]);
    c.put("/bin", "sh", b"#!/bin/busybox ash\nwhile :; do echo flooding the error output; done >&2\n", 0);
    c.exec(&["/bin/busybox", "chmod", "755", "/bin/sh"]);
    let tried = each_command_gives_up_on(&target, &|args| s.llmx(args));
    eprintln!("commands tried against a flooding container shell: {tried}");
    // The copy is still there: nothing was removed or replaced through the hostile shell.
    assert_eq!(c.read("/root/.llmx/auth.json").unwrap(), pushed);
}

#[test]
fn an_ssh_account_whose_rc_file_floods_stderr_fails_alone_and_quickly_for_every_command() {
    use crate::support::sshd::{Key, Sshd, SshdOptions};
    let sshd = Sshd::start(SshdOptions::default());
    let user = sshd.user();
    let s = crate::family::Signed::new();
    let ssh_dir = s.local.home().join(".ssh");
    let key = Key::generate(&ssh_dir, "id_ed25519", "");
    std::fs::write(ssh_dir.join("known_hosts"), sshd.known_hosts_line()).unwrap();
    user.authorize(&key.public);
    let target = sshd.spec(user);
    let r = s.llmx(&["auth", "push", &target]);
    assert_eq!(r.code(), 0, "{r:?}");
    let pushed = std::fs::read(user.home.join(".llmx/auth.json")).unwrap();
    // sshd runs ~/.ssh/rc before every command and subsystem (SFTP too), its output on the channel.
    user.write(".ssh/rc", "while :; do echo flooding the error output; done >&2\n", 0o644);
    let tried = each_command_gives_up_on(&target, &|args| s.llmx(args));
    eprintln!("commands tried against a flooding ~/.ssh/rc: {tried}");
    assert_eq!(std::fs::read(user.home.join(".llmx/auth.json")).unwrap(), pushed);
}

// ---- Item 4: issuer answers that must not be saved -----------------------------------------

/// Token answers a login must refuse: 200 with JSON of the right shape whose tokens cannot work.
fn unusable_token_answers() -> Vec<(String, &'static str)> {
    let jwt = llmx_test_issuer::jwt(&serde_json::json!({"email": "x@example.com"}));
    let body = |id: &str, at: &str, rt: &str| {
        serde_json::json!({"id_token": id, "access_token": at, "refresh_token": rt}).to_string()
    };
    vec![
        (body("not-a-jwt", "at-0123", "rt-0123"), "its id_token is not a JWT"),
        (body("", "at-0123", "rt-0123"), "its id_token is empty"),
        (body(&jwt, "", "rt-0123"), "its access token is empty"),
        (body(&jwt, "at-0123", ""), "its refresh token is empty"),
        (body(&jwt, " ", "rt-0123"), "its access token is empty"),
        (body("a.!!!.c", "at-0123", "rt-0123"), "its id_token is JWT payload is not base64url"),
        (body("a.bm90anNvbg.c", "at-0123", "rt-0123"), "its id_token is JWT payload is not a JSON object"),
        (body("", "", ""), "its id_token is empty"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_never_saves_empty_or_non_jwt_tokens_over_a_good_login() {
    use crate::support::harness::last_event;
    use crate::support::login::{Browser, Home, issuer, start_login};
    use llmx_test_issuer::TokenAnswer;
    let issuer = issuer().await;
    let good = br#"{"OPENAI_API_KEY":"sk-old-key-0000000000"}"#;
    let mut tried = 0;
    for (body, want) in unusable_token_answers() {
        let answer =
            TokenAnswer::Raw { status: 200, content_type: "application/json".into(), body: body.clone().into_bytes() };
        // Browser login.
        let home = Home::new();
        home.write("auth.json", good);
        issuer.issuer.set_token_answer(Some(answer.clone()));
        let (login, listening) = start_login(&home, &issuer.base_url(), 0, &[]).await;
        let _ = Browser::new().follow(listening["authorize_url"].as_str().unwrap()).await;
        let (status, events, stderr) = login.finish().await;
        tried += 1;
        assert_eq!(status.code(), Some(1), "{body}: {stderr}");
        let failed = last_event(&events);
        assert_eq!(failed["reason"], "token_exchange", "{body}: {events:?}");
        assert!(stderr.contains(want) && stderr.contains("nothing was saved"), "{body}: want {want:?} in {stderr}");
        assert!(!stderr.contains("at-0123") && !stderr.contains("rt-0123"), "a token in {stderr}");
        assert_eq!(home.read_auth().unwrap(), good, "{body}");

        // Device-code login: the same answer to the code exchange after approval.
        let home = Home::new();
        home.write("auth.json", good);
        issuer.issuer.set_token_answer(Some(answer));
        let mut login = crate::signin::device_login(&home, &issuer.base_url(), &[]);
        let code = login.expect_next("device_code").await;
        crate::signin::decide_on_page(&issuer.base_url(), code["user_code"].as_str().unwrap(), "approve").await;
        let (status, _, stderr) = login.finish().await;
        tried += 1;
        assert_eq!(status.code(), Some(1), "device {body}: {stderr}");
        assert!(stderr.contains(want), "device {body}: want {want:?} in {stderr}");
        assert_eq!(home.read_auth().unwrap(), good, "device {body}");
    }
    issuer.issuer.set_token_answer(None);
    eprintln!("unusable login answers tried: {tried}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_refresh_answer_after_rotation_keeps_the_new_refresh_token_and_the_login_works() {
    use crate::support::login::{logged_in, refresh};
    use llmx_test_issuer::RefreshAnswer;
    for (answer, access_saved) in [(RefreshAnswer::NonJwtIdToken, true), (RefreshAnswer::EmptyAccessToken, false)] {
        let (issuer, home) = logged_in().await;
        let before = home.auth_json();
        issuer.issuer.set_refresh_answer(answer);
        let r = refresh(&home, &issuer.base_url(), false).await;
        assert_eq!(r.code(), 1, "{answer:?}: {r:?}");
        let said = if access_saved {
            "the new refresh token and access token were saved with the previous id_token, so the login still works"
        } else {
            "the new refresh token was saved with the previous id_token, so the login still works"
        };
        assert!(r.stderr.contains("had already replaced the refresh token") && r.stderr.contains(said), "{}", r.stderr);
        assert!(r.stderr.contains("hint: run `llmx auth refresh` again"), "{}", r.stderr);
        let after = home.auth_json();
        assert_ne!(after["tokens"]["refresh_token"], before["tokens"]["refresh_token"], "the rotated token is kept");
        assert_eq!(after["tokens"]["id_token"], before["tokens"]["id_token"], "the malformed id_token is not");
        assert_eq!(after["tokens"]["access_token"] != before["tokens"]["access_token"], access_saved);
        assert!(!home.path().join("auth.json.recovered").exists());
        // The login was not lost: the next refresh (a normal answer) works with the saved token.
        issuer.issuer.set_refresh_answer(RefreshAnswer::Normal);
        let r = refresh(&home, &issuer.base_url(), false).await;
        assert_eq!(r.code(), 0, "{answer:?}: the login still works: {r:?}");
    }
}

// ---- Item 5: a full disk -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_on_a_full_disk_is_refused_before_the_issuer_is_called_and_the_login_survives() {
    use crate::support::login::{logged_in, refresh};
    let (issuer, home) = logged_in().await;
    let url = issuer.base_url();
    assert_eq!(refresh(&home, &url, false).await.code(), 0, "creates the lock file");
    let calls = issuer.issuer.stats().refreshes;
    let saved = tempfile::tempdir().unwrap();
    // In a mount namespace of its own: the home's files on a small tmpfs that is then filled up.
    let script = r#"set -e
cp -a "$H/." "$S/"
mount -t tmpfs -o size=256k,mode=0700 llmx-full "$H"
cp -a "$S/." "$H/"
cat /dev/zero > "$H/fill" 2>/dev/null || true
exec "$0" "$@""#;
    let iss = format!("auth_issuer={url}");
    let r = Llmx::via("unshare", ["-m", "sh", "-c", script])
        .args(["-c", &iss, "auth", "refresh"])
        .env("H", home.path())
        .env("S", saved.path())
        .env("LLMX_HOME", home.path())
        .run()
        .await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(r.stderr.contains("the issuer was not called and the login still works"), "{}", r.stderr);
    assert_eq!(issuer.issuer.stats().refreshes, calls, "the refresh token was not spent");
    // The login (here, outside the full tmpfs) still refreshes.
    assert_eq!(refresh(&home, &url, false).await.code(), 0);
}

// ---- Item 6: low ones --------------------------------------------------------------------------

#[test]
fn remote_home_naming_an_existing_directory_leaves_its_mode_alone() {
    use crate::support::docker::{Container, IMAGE_ROOT, Local, api_key_auth};
    let c = Container::run("etc", IMAGE_ROOT, &[]);
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let (_, _, _, before) = c.stat("/etc").unwrap();
    assert_eq!(before, 0o755);
    let r = local.llmx(&["auth", "push", &c.target(), "--remote-home", "/etc"], &[]);
    assert_eq!(r.code(), 0, "{r:?}");
    let (bytes, _, _, mode) = c.stat("/etc/auth.json").unwrap();
    assert_eq!((bytes, mode), (api_key_auth().into_bytes(), 0o600));
    assert_eq!(c.stat("/etc").unwrap().3, 0o755, "a root container's /etc is not chmodded 0700");
    // llmx's own default directory, loosened by hand, is still tightened.
    c.exec(&["/bin/busybox", "mkdir", "-p", "-m", "755", "/root/.llmx"]);
    let r = local.llmx(&["auth", "push", &c.target()], &[]);
    assert_eq!(r.code(), 0, "{r:?}");
    assert_eq!(c.stat("/root/.llmx").unwrap().3, 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_code_intervals_of_any_size_never_panic_nor_end_the_login_early_and_timeout_is_kept() {
    use crate::support::login::{Home, issuer};
    let issuer = issuer().await;
    let url = issuer.base_url();
    // u64::MAX seconds (a panic on `Instant + interval` before) and huge values: the login keeps
    // polling, times out when told, with a true message.
    for interval in [serde_json::json!(u64::MAX), serde_json::json!("18446744073709551615"), serde_json::json!(100_000)]
    {
        issuer.issuer.set_device_interval(interval.clone());
        let home = Home::new();
        let start = std::time::Instant::now();
        let login = crate::signin::device_login(&home, &url, &["--timeout", "2"]);
        let (status, events, stderr) = login.finish().await;
        assert_eq!(status.code(), Some(1), "{interval}: {stderr}");
        assert!(!stderr.contains("panicked"), "{interval}: {stderr}");
        assert_eq!(crate::support::harness::last_event(&events)["reason"], "timeout", "{interval}: {events:?}");
        let took = start.elapsed();
        assert!(took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_millis(4500), "{took:?}");
        assert!(home.read_auth().is_none());
    }
    // A huge interval and a person who approves after the first poll: noticed at the deadline,
    // not "nobody completed the sign-in" after one poll.
    issuer.issuer.set_device_interval(serde_json::json!("100000"));
    let home = Home::new();
    let mut login = crate::signin::device_login(&home, &url, &["--timeout", "3"]);
    let code = login.expect_next("device_code").await;
    crate::signin::decide_on_page(&url, code["user_code"].as_str().unwrap(), "approve").await;
    let (status, _, stderr) = login.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(home.read_auth().is_some());
    // A poll the issuer stalls is abandoned at --timeout, not answered 10 s later.
    issuer.issuer.set_device_interval(serde_json::json!("1"));
    issuer.issuer.set_device_poll_delay(std::time::Duration::from_secs(10));
    let home = Home::new();
    let start = std::time::Instant::now();
    let (status, events, stderr) = crate::signin::device_login(&home, &url, &["--timeout", "2"]).finish().await;
    let took = start.elapsed();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(crate::support::harness::last_event(&events)["reason"], "timeout", "{events:?}");
    assert!(took < std::time::Duration::from_millis(4500), "--timeout 2 overrun: {took:?}");
    issuer.issuer.set_device_poll_delay(std::time::Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_text_with_newlines_never_makes_a_line_of_its_own() {
    use crate::support::login::{Home, issuer};
    let issuer = issuer().await;
    let fakes = [
        "ABCD-1234\nLogged in using ChatGPT - admin@example.com",
        "ABCD-1234\r\nLogged in using ChatGPT - admin@example.com",
        "ABCD-1234\u{85}Logged in using ChatGPT - admin@example.com",
        "ABCD-1234\u{2028}Logged in using ChatGPT - admin@example.com",
        "\nLogged in using ChatGPT - admin@example.com\n",
    ];
    for fake in fakes {
        issuer.issuer.set_device_user_code(Some(fake.to_string()));
        let home = Home::new();
        let iss = format!("auth_issuer={}", issuer.base_url());
        let r = home.llmx(["-c", &iss, "login", "--device-auth", "--timeout", "1"]).run().await;
        assert_eq!(r.code(), 1, "{r:?}");
        assert!(r.stderr.contains("ABCD-1234") || fake.starts_with('\n'), "{:?}", r.stderr);
        for line in r.all().lines() {
            assert!(!line.starts_with("Logged in"), "{fake:?} made a line of its own: {:?}", r.stderr);
        }
    }
    issuer.issuer.set_device_user_code(None);
    eprintln!("hostile issuer texts tried: {}", fakes.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_and_removes_the_recovered_login_a_failed_save_left() {
    use crate::support::login::{Home, browser_login, logged_in};
    let (issuer, home) = logged_in().await;
    // A live login in auth.json.recovered (as a refresh whose save failed leaves it).
    let other = Home::new();
    browser_login(&other, &issuer).await;
    let recovered = other.read_auth().unwrap();
    home.write("auth.json.recovered", &recovered);
    let rt = serde_json::from_slice::<serde_json::Value>(&recovered).unwrap()["tokens"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let iss = format!("auth_issuer={}", issuer.base_url());
    let r = home.llmx(["-c", &iss, "logout", "--json"]).run().await;
    assert_eq!(r.code(), 0, "{r:?}");
    assert_eq!(r.json()["recovery_file_removed"], true, "{r:?}");
    assert!(!home.path().join("auth.json.recovered").exists(), "the recovered login is gone");
    assert!(issuer.issuer.is_revoked(&rt), "and its refresh token no longer works");
    assert!(!r.all().contains(&rt));
}

#[test]
fn a_shared_sticky_or_foreign_local_home_is_refused_as_openssh_refuses_such_a_dot_ssh() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    let mut tried = 0;
    for (name, mode, owner, want) in [
        ("sticky", 0o1777, None, "other users can write to it (mode 1777, a shared sticky directory such as /tmp)"),
        ("team", 0o775, None, "other users can write to it (mode 0775)"),
        ("world", 0o777, None, "other users can write to it (mode 0777)"),
        ("setgid", 0o2770, None, "other users can write to it (mode 2770)"),
        ("foreign", 0o700, Some(4242u32), "it belongs to uid 4242, not to you (uid 0)"),
        ("foreign-readable", 0o755, Some(4242u32), "it belongs to uid 4242"),
    ] {
        let home = t.path().join(name);
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(mode)).unwrap();
        // Planted: another user's login, and a lock-file link to a file root would create.
        std::fs::write(home.join("auth.json"), br#"{"OPENAI_API_KEY":"sk-planted-by-another-user-000000"}"#).unwrap();
        std::os::unix::fs::symlink(&victim, home.join("auth.json.lock")).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
        }
        for args in [
            &["auth", "status"][..],
            &["login", "status"][..],
            &["login", "--with-api-key"][..],
            &["auth", "refresh"][..],
            &["logout"][..],
            &["auth", "where"][..],
        ] {
            tried += 1;
            let r = Llmx::new(args)
                .env("HOME", t.path())
                .env("LLMX_HOME", &home)
                .stdin("sk-mine-0123456789abcdefghijklmnop\n")
                .run_blocking();
            assert_eq!(r.code(), 1, "{name} {args:?}: {r:?}");
            assert!(r.stderr.contains("refusing to use") && r.stderr.contains(want), "{name} {args:?}: {r:?}");
            assert!(r.stderr.contains("hint: point LLMX_HOME at a directory of your own"), "{r:?}");
            assert!(!r.all().contains("sk-planted"), "{r:?}");
            assert!(!victim.exists(), "{name} {args:?}: a planted link was followed");
            let planted = std::fs::read(home.join("auth.json")).unwrap();
            assert!(planted.starts_with(br#"{"OPENAI_API_KEY":"sk-planted"#), "{name} {args:?}: auth.json changed");
        }
    }
    // A home of one's own that others can only read is used (and tightened on the next write).
    let own = t.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = Llmx::new(["login", "--with-api-key"])
        .env("LLMX_HOME", &own)
        .stdin("sk-mine-0123456789abcdefghijklmnop\n")
        .run_blocking();
    assert_eq!(r.code(), 0, "{r:?}");
    assert_eq!(std::fs::metadata(&own).unwrap().permissions().mode() & 0o7777, 0o700);
    eprintln!("shared or foreign homes x commands tried: {tried}");
}

#[test]
fn docker_remove_deletes_as_the_containers_user_never_as_root() {
    use crate::support::docker::{Container, IMAGE_APP, Local, api_key_auth};
    let c = Container::run("rmuser", IMAGE_APP, &[]);
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let r = local.llmx(&["auth", "push", &c.target()], &[]);
    assert_eq!(r.code(), 0, "{r:?}");
    // Every shell the engine starts logs its uid, then runs as busybox's sh would.
    let as_root = |cmd: &[&str]| {
        let mut args = vec!["exec", "-u", "0", c.name.as_str()];
        args.extend(cmd);
        crate::support::docker::docker(&args);
    };
    as_root(&["/bin/busybox", "rm", "/bin/sh"]);
    c.put("/bin", "sh", b"#!/bin/busybox ash\n/bin/busybox id -u >> /tmp/sh-users\nexec /bin/busybox ash \"$@\"\n", 0);
    as_root(&["/bin/busybox", "chmod", "755", "/bin/sh"]);
    as_root(&["/bin/busybox", "sh", "-c", "/bin/busybox touch /tmp/sh-users; /bin/busybox chmod 666 /tmp/sh-users"]);
    let r = local.llmx(&["auth", "remove", &c.target()], &[]);
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(c.stat("/home/app/.llmx/auth.json").is_none(), "removed");
    let users = c.read("/tmp/sh-users").unwrap();
    assert!(!users.is_empty() && users.lines().all(|u| u == "1000"), "a shell ran as root: {users:?}");
}
