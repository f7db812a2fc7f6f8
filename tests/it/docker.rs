//! `llmx auth push docker:…` and `llmx auth status docker:…` against the real Docker Engine,
//! with images built from local files (tests/it/support/docker.rs). Each test runs the real binary
//! with a temp LLMX_HOME and a clean environment, and removes its containers pass or fail.

use crate::support::docker::*;
use crate::support::harness::{free_port, json_lines};
use std::time::Duration;

const OLD: &str = "2025-01-01T00:00:00Z";
const NEW: &str = "2025-03-01T00:00:00Z";

/// The result lines with the alignment padding taken out (`✓ docker:a  created ...`).
fn squeezed(stdout: &str) -> String {
    stdout
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((head, rest)) => format!("{head}  {}", rest.trim_start()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn chatgpt_local(tag: &str) -> (Local, Creds, String) {
    let local = Local::new();
    let c = creds("acc-1", tag);
    let text = chatgpt_auth(&c, "acc-1", OLD);
    local.write_auth(&text);
    // What a push puts on a target: the lease (no refresh token).
    let lease = lease_text(&text, &c);
    (local, c, lease)
}

#[test]
fn root_container_gets_0600_file_in_0700_dir_owned_by_root() {
    let (local, c, text) = chatgpt_local("root");
    let ct = Container::run("root", IMAGE_ROOT, &[]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("{}  created /root/.llmx/auth.json", ct.target())), "{}", r.stdout);
    assert!(r.stdout.contains("1 target: 1 created"), "{}", r.stdout);
    let (bytes, uid, gid, mode) = ct.stat("/root/.llmx/auth.json").expect("auth.json pushed");
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, gid, mode), (text, 0, 0, 0o600));
    let (_, uid, _, mode) = ct.stat("/root/.llmx").unwrap();
    assert_eq!((uid, mode), (0, 0o700));
    assert_eq!(ct.exec(&["ls", "-a", "/root/.llmx"]).split_whitespace().collect::<Vec<_>>(), [".", "..", "auth.json"]);
    assert_no_secret(&r.all(), &c);
}

#[test]
fn non_root_container_file_is_owned_by_uid_1000() {
    let (local, c, text) = chatgpt_local("app");
    let ct = Container::run("app", IMAGE_APP, &[]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let (bytes, uid, gid, mode) = ct.stat("/home/app/.llmx/auth.json").expect("pushed to the user's home");
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, gid, mode), (text, 1000, 1000, 0o600));
    let (_, uid, gid, mode) = ct.stat("/home/app/.llmx").unwrap();
    assert_eq!((uid, gid, mode), (1000, 1000, 0o700));
    // The container's own user can read it (what the agent will do).
    assert_eq!(ct.exec(&["sh", "-c", "id -u; cat /home/app/.llmx/auth.json | wc -c"]).lines().next(), Some("1000"));

    let s = local.llmx(&["auth", "status", &ct.target()], &[]);
    assert_eq!(s.code(), 0, "{}", s.all());
    assert!(s.stdout.contains("Logged in using ChatGPT"), "{}", s.stdout);
    assert!(s.stdout.contains("dev@example.com") && s.stdout.contains("acc-1"), "{}", s.stdout);
    assert!(s.stdout.contains("owner 1000:1000, mode 0600"), "{}", s.stdout);
    assert!(s.stdout.contains(&format!("Last refresh: {OLD}")), "{}", s.stdout);
    assert!(s.stdout.contains("Access token expires: 2100-01-01"), "{}", s.stdout);
    let j = local.llmx(&["auth", "status", &ct.target(), "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
    assert_eq!(v["method"], "chatgpt");
    assert_eq!(v["account_id"], "acc-1");
    assert_eq!(v["uid"], 1000);
    assert_eq!(v["mode"], "0600");
    assert_eq!(v["auth_file"], "/home/app/.llmx/auth.json");
    assert_no_secret(&format!("{}{}{}", r.all(), s.all(), j.all()), &c);
}

#[test]
fn shell_less_container_is_written_through_the_archive_api() {
    let (local, c, text) = chatgpt_local("noshell");
    let ct = Container::run("noshell", IMAGE_NOSHELL, &[]);
    // Prove the premise: there is no shell to exec.
    assert!(!docker_raw(&["exec", &ct.name, "/bin/sh", "-c", "true"], None).status.success());
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /home/nonroot/.llmx/auth.json"), "{}", r.stdout);
    let (bytes, uid, gid, mode) = ct.stat("/home/nonroot/.llmx/auth.json").unwrap();
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, gid, mode), (text, 65532, 65532, 0o600));
    assert_eq!(ct.stat("/home/nonroot/.llmx").map(|s| (s.1, s.3)), Some((65532, 0o700)));
    // A second push with a new credential replaces it (updated) with no shell either.
    // (Another account there needs --force.)
    let c2 = creds("acc-2", "noshell2");
    local.write_auth(&chatgpt_auth(&c2, "acc-2", OLD));
    let r2 = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
    assert!(r2.stdout.contains("updated"), "{}", r2.all());
    assert!(ct.read("/home/nonroot/.llmx/auth.json").unwrap().contains(&c2.access_token));
    assert_no_secret(&r.all(), &c);
    assert_no_secret(&r2.all(), &c2);

    // A whole login written there can never be taken back, and the push says so; remove tells
    // a running shell-less container apart from a stopped one.
    let full = local.llmx(&["auth", "push", &ct.target(), "--full"], &[]);
    assert_eq!(full.code(), 0, "{}", full.all());
    assert!(full.stderr.contains("cannot be taken back") && full.stderr.contains("no /bin/sh"), "{}", full.stderr);
    let rm = local.llmx(&["auth", "remove", &ct.target()], &[]);
    assert_eq!(rm.code(), 1, "{}", rm.all());
    assert!(rm.stdout.contains("has no /bin/sh") && !rm.stdout.contains("stopped"), "{}", rm.all());
    assert!(rm.all().contains("recreate the container"), "{}", rm.all());
    assert_no_secret(&format!("{}{}", full.all(), rm.all()), &c2);
    // An API key does not expire either: the same warning; a lease expires, so no warning.
    assert!(!r2.stderr.contains("cannot be taken back"), "a lease warned: {}", r2.all());
    local.write_auth(&crate::support::docker::api_key_auth());
    let key = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
    assert_eq!(key.code(), 0, "{}", key.all());
    assert!(
        key.stderr.contains("the API key written to") && key.stderr.contains("cannot be taken back"),
        "{}",
        key.all()
    );
}

#[test]
fn stopped_container_is_written_and_read() {
    let (local, c, text) = chatgpt_local("stopped");
    let ct = Container::created("stopped", IMAGE_APP, &[]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /home/app/.llmx/auth.json"), "{}", r.stdout);
    let (bytes, uid, _, mode) = ct.stat("/home/app/.llmx/auth.json").unwrap();
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, mode), (text.clone(), 1000, 0o600));
    let s = local.llmx(&["auth", "status", &ct.target()], &[]);
    assert_eq!(s.code(), 0, "{}", s.all());
    // Removing from a stopped container says it is stopped and how to go on.
    let rm = local.llmx(&["auth", "remove", &ct.target()], &[]);
    assert_eq!(rm.code(), 1, "{}", rm.all());
    assert!(rm.stdout.contains("the container is stopped") && rm.all().contains("docker start"), "{}", rm.all());
    // Starting it afterwards: the agent's user sees the file.
    docker(&["start", &ct.name]);
    assert_eq!(ct.exec(&["cat", "/home/app/.llmx/auth.json"]), text.trim());
    assert_no_secret(&format!("{}{}", r.all(), s.all()), &c);
}

#[test]
fn llmx_home_in_the_container_environment_is_honoured() {
    let (local, _, text) = chatgpt_local("envhome");
    let ct = Container::run("envhome", IMAGE_APP, &["-e", "LLMX_HOME=/data/creds/llmx"]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /data/creds/llmx/auth.json"), "{}", r.stdout);
    let (bytes, uid, _, mode) = ct.stat("/data/creds/llmx/auth.json").unwrap();
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, mode), (text, 1000, 0o600));
    assert_eq!(ct.stat("/home/app/.llmx"), None, "nothing written to the default home");
    // --remote-home wins over the container's LLMX_HOME.
    let r = local.llmx(&["auth", "push", &ct.target(), "--remote-home", "/home/app/other"], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(ct.stat("/home/app/other/auth.json").map(|s| (s.1, s.3)), Some((1000, 0o600)));
}

#[test]
fn label_selects_every_running_container_and_only_those() {
    let (local, c, _) = chatgpt_local("label");
    let value = unique_name("lbl");
    let label = format!("llmx.test={value}");
    let cts: Vec<Container> =
        (0..3).map(|i| Container::run(&format!("lbl{i}"), IMAGE_ROOT, &["--label", &label])).collect();
    let stopped = Container::created("lblstopped", IMAGE_ROOT, &["--label", &label]);
    let other = Container::run("lblother", IMAGE_ROOT, &["--label", "llmx.test=someone-else"]);
    let r = local.llmx(&["auth", "push", &format!("docker:label={label}"), "--json", "--jobs", "2"], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let lines = json_lines(&r.stdout);
    let mut targets: Vec<String> =
        lines.iter().filter(|l| l["event"] == "target").map(|l| l["target"].as_str().unwrap().to_string()).collect();
    targets.sort();
    let mut want: Vec<String> = cts.iter().map(Container::target).collect();
    want.sort();
    assert_eq!(targets, want);
    assert!(lines.iter().filter(|l| l["event"] == "target").all(|l| l["outcome"] == "created"), "{}", r.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["counts"]["created"], 3);
    assert_eq!(summary["ok"], true);
    // Leases: no rotation hazard, and each target says when its lease expires.
    assert_eq!(summary["warnings"].as_array().map(Vec::len), Some(0), "{}", r.stdout);
    assert!(
        lines.iter().filter(|l| l["event"] == "target").all(|l| l["lease_expires_at"] == "2100-01-01T00:00:00Z"),
        "{}",
        r.stdout
    );
    for ct in &cts {
        assert!(ct.stat("/root/.llmx/auth.json").is_some());
    }
    assert_eq!(stopped.stat("/root/.llmx"), None);
    assert_eq!(other.stat("/root/.llmx"), None);

    // A label nothing carries is a failed target, exit 1.
    let none = local.llmx(&["auth", "push", &format!("docker:label=llmx.none={value}")], &[]);
    assert_eq!(none.code(), 1, "{}", none.all());
    assert!(none.stdout.contains("no running container has label=llmx.none="), "{}", none.stdout);
    assert_no_secret(&format!("{}{}", r.all(), none.all()), &c);
}

#[test]
fn compose_selector_takes_the_running_containers_of_a_project_or_one_service() {
    let (local, c, _) = chatgpt_local("compose");
    let project = unique_name("proj");
    let labels = |service: &str| {
        vec![
            "--label".to_string(),
            format!("com.docker.compose.project={project}"),
            "--label".to_string(),
            format!("com.docker.compose.service={service}"),
        ]
    };
    let run = |tag: &str, service: &str| {
        let l = labels(service);
        let opts: Vec<&str> = l.iter().map(String::as_str).collect();
        Container::run(tag, IMAGE_ROOT, &opts)
    };
    let web = run("cweb", "web");
    let db = run("cdb", "db");
    let other = Container::run("cother", IMAGE_ROOT, &["--label", "com.docker.compose.project=someone-else"]);
    let r = local.llmx(&["auth", "push", &format!("docker:compose={project}/web")], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(web.stat("/root/.llmx/auth.json").is_some());
    assert_eq!(db.stat("/root/.llmx"), None, "another service of the project");
    let r = local.llmx(&["auth", "push", &format!("docker:compose={project}")], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(db.stat("/root/.llmx/auth.json").is_some());
    assert_eq!(other.stat("/root/.llmx"), None, "another project");
    let none = local.llmx(&["auth", "push", &format!("docker:compose={project}/nothing")], &[]);
    assert_eq!(none.code(), 1, "{}", none.all());
    assert!(none.stdout.contains(&format!("docker compose -p {project} ps")), "{}", none.stdout);
    assert_no_secret(&format!("{}{}", r.all(), none.all()), &c);
}

#[test]
fn targets_from_a_file_and_from_stdin_skip_blank_lines_and_comments() {
    let (local, c, _) = chatgpt_local("tfile");
    let a = Container::run("tfa", IMAGE_ROOT, &[]);
    let b = Container::run("tfb", IMAGE_ROOT, &[]);
    let list = local.home().join("fleet.txt");
    std::fs::write(&list, format!("# the fleet\n\n  {}\n{}  \n", a.target(), b.target())).unwrap();
    let r = local.llmx(&["auth", "push", &format!("@{}", list.display()), "--json"], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(a.stat("/root/.llmx/auth.json").is_some() && b.stat("/root/.llmx/auth.json").is_some());
    let s = local.llmx(&["auth", "status", &format!("@{}", list.display())], &[]);
    assert_eq!(s.code(), 0, "{}", s.all());
    assert!(s.stdout.contains(&a.target()) && s.stdout.contains(&b.target()), "{}", s.stdout);

    // stdin, through the harness: the same list.
    let mut cmd = crate::support::harness::Llmx::new(["auth", "status", "-"])
        .env("HOME", local.home())
        .env("LLMX_HOME", local.home().join("none"));
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        cmd = cmd.env("DOCKER_HOST", h);
    }
    let s = cmd.stdin(std::fs::read(&list).unwrap()).run_blocking();
    assert_eq!(s.code(), 0, "{}", s.all());
    assert!(s.stdout.contains(&a.target()) && s.stdout.contains(&b.target()), "{}", s.stdout);

    // A bad line is a usage error naming the file and line; nothing is pushed.
    std::fs::write(&list, "docker:ok\nnot-a-target\n").unwrap();
    let r = local.llmx(&["auth", "push", &format!("@{}", list.display())], &[]);
    assert_eq!(r.code(), 2, "{}", r.all());
    assert!(r.stderr.contains(&format!("{}:2: invalid target 'not-a-target'", list.display())), "{}", r.stderr);
    std::fs::write(&list, "# nothing\n").unwrap();
    let r = local.llmx(&["auth", "sync", &format!("@{}", list.display())], &[]);
    assert_eq!(r.code(), 2, "an empty list is not 'every holder': {}", r.all());
    assert_no_secret(&r.all(), &c);
}

#[test]
fn missing_container_is_a_clear_error_naming_it() {
    let (local, c, _) = chatgpt_local("missing");
    images();
    let name = unique_name("missing");
    let ok = Container::run("besidemissing", IMAGE_ROOT, &[]);
    let r = local.llmx(&["auth", "push", &format!("docker:{name}"), &ok.target()], &[]);
    assert_eq!(r.code(), 1, "{}", r.all());
    let failed = format!("✗ docker:{name}  failed: no such container: {name}");
    assert!(squeezed(&r.stdout).contains(&failed), "{}", r.stdout);
    let other = format!("✓ {}  created", ok.target());
    assert!(squeezed(&r.stdout).contains(&other), "the other target still runs: {}", r.stdout);
    assert!(r.stdout.contains("2 targets: 1 created, 1 failed"), "{}", r.stdout);
    let s = local.llmx(&["auth", "status", &format!("docker:{name}")], &[]);
    assert_eq!(s.code(), 1);
    assert!(s.stderr.contains(&format!("no such container: {name}")), "{}", s.stderr);
    assert_no_secret(&format!("{}{}", r.all(), s.all()), &c);
}

/// Regression: DOCKER_TLS_VERIFY was ignored and the credential went over plain HTTP to the
/// tcp:// engine. Now the first bytes on the wire are a TLS ClientHello (and a peer that does not
/// answer it gets nothing else), and plain TCP to another machine is refused before connecting.
#[test]
fn tls_verify_sends_a_tls_handshake_never_plain_http_and_remote_plain_tcp_is_refused() {
    let (local, c, _) = chatgpt_local("tlsrefuse");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = format!("tcp://{}", listener.local_addr().unwrap());
    let first_bytes = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 3];
        s.read_exact(&mut head).unwrap();
        head // then hang up: the handshake fails
    });
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().display().to_string();
    let env = [("DOCKER_HOST", tcp.as_str()), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", cert_path.as_str())];
    let r = local.llmx(&["auth", "push", "docker:web"], &env);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains(&format!("Docker daemon at {tcp}")), "{}", r.stdout);
    // A TLS handshake record (0x16), TLS 1.x (0x03 0x0N), not "GET /" or "POST".
    let head = first_bytes.join().unwrap();
    assert_eq!(&head[..2], &[0x16, 0x03], "not a TLS handshake: {head:?}");
    let r = local.llmx(&["auth", "push", "docker:web"], &[("DOCKER_HOST", "tcp://192.0.2.7:2375")]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("over plain TCP, unencrypted"), "{}", r.stdout);
    assert_no_secret(&r.all(), &c);
}

#[test]
fn unreachable_daemon_fails_clearly_within_seconds() {
    let (local, c, _) = chatgpt_local("unreach");
    let tcp = format!("tcp://127.0.0.1:{}", free_port());
    for host in ["unix:///nonexistent/docker.sock", tcp.as_str()] {
        let r = local.llmx(&["auth", "push", "docker:web", "docker:label=x"], &[("DOCKER_HOST", host)]);
        assert_eq!(r.code(), 1, "{}", r.all());
        assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
        assert!(
            r.stdout.contains(&format!("cannot reach the Docker daemon at {host} (from DOCKER_HOST)")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("2 targets: 2 failed"), "{}", r.stdout);
        let s = local.llmx(&["auth", "status", "docker:web"], &[("DOCKER_HOST", host)]);
        assert_eq!(s.code(), 3, "the only target is unreachable");
        assert!(s.stderr.contains("cannot reach the Docker daemon"), "{}", s.stderr);
        assert_no_secret(&format!("{}{}", r.all(), s.all()), &c);
    }
}

#[test]
fn current_docker_context_is_used_when_docker_host_is_unset() {
    use sha2::Digest;
    let (local, _, _) = chatgpt_local("context");
    let ct = Container::run("context", IMAGE_ROOT, &[]);
    let engine = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let docker_dir = local.home().join(".docker");
    let add_context = |name: &str, host: &str| {
        let meta = docker_dir.join("contexts/meta").join(hex::encode(sha2::Sha256::digest(name.as_bytes())));
        std::fs::create_dir_all(&meta).unwrap();
        let body = serde_json::json!({"Name": name, "Endpoints": {"docker": {"Host": host}}});
        std::fs::write(meta.join("meta.json"), body.to_string()).unwrap();
    };
    add_context("llmx-good", &engine);
    add_context("llmx-nowhere", "unix:///nonexistent/ctx.sock");
    let use_ctx = |name: &str| {
        std::fs::write(docker_dir.join("config.json"), format!(r#"{{"currentContext":"{name}"}}"#)).unwrap()
    };
    let clear = [("DOCKER_HOST", "")];
    use_ctx("llmx-good");
    let r = local.llmx(&["auth", "push", &ct.target()], &clear);
    assert_eq!(r.code(), 0, "{}", r.all());
    use_ctx("llmx-nowhere");
    let r = local.llmx(&["auth", "push", &ct.target()], &clear);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("unix:///nonexistent/ctx.sock (from docker context 'llmx-nowhere')"), "{}", r.stdout);
}

/// A container that signed itself in (never pushed to from here) holds its own lineage: the skip
/// hint says so instead of suggesting a pull.
#[test]
fn fresher_login_of_its_own_is_skipped_as_its_own_lineage() {
    let (local, _c, _text) = chatgpt_local("ownlogin");
    let ct = Container::run("ownlogin", IMAGE_APP, &[]);
    let own = chatgpt_auth(&creds("acc-1", "own-login"), "acc-1", NEW);
    ct.exec(&["sh", "-c", "mkdir -m 700 /home/app/.llmx"]);
    ct.put("/home/app/.llmx", "auth.json", own.as_bytes(), 1000);
    let skip = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(skip.code(), 0, "{}", skip.all());
    assert!(skip.stdout.contains("its own lineage"), "{}", skip.stdout);
    assert!(!skip.stdout.contains("auth pull"), "{}", skip.stdout);
    assert_eq!(ct.read("/home/app/.llmx/auth.json").unwrap(), own);
}

#[test]
fn unchanged_then_skipped_when_target_is_fresher_then_force() {
    let (local, c, text) = chatgpt_local("guard");
    let ct = Container::run("guard", IMAGE_APP, &[]);
    assert_eq!(local.llmx(&["auth", "push", &ct.target()], &[]).code(), 0);
    let again = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(again.code(), 0, "{}", again.all());
    assert!(again.stdout.contains("unchanged /home/app/.llmx/auth.json"), "{}", again.stdout);

    // The container refreshed its copy since: same account, newer last_refresh.
    let theirs = creds("acc-1", "guard-fresher");
    let fresher = chatgpt_auth(&theirs, "acc-1", NEW);
    ct.put("/home/app/.llmx", "auth.json", fresher.as_bytes(), 1000);
    let skip = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(skip.code(), 0, "skipped is not a failure: {}", skip.all());
    assert!(skip.stdout.contains("skipped: your copy here is retired"), "{}", skip.stdout);
    assert!(skip.stdout.contains("--force"), "{}", skip.stdout);
    // It was pushed from here before (the ledger says so): its fresher copy is this lineage.
    assert!(skip.stdout.contains(&format!("llmx auth pull {}", ct.target())), "{}", skip.stdout);
    assert_eq!(ct.read("/home/app/.llmx/auth.json").unwrap(), fresher, "the fresher copy is kept");

    let forced = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
    assert_eq!(forced.code(), 0, "{}", forced.all());
    assert!(forced.stdout.contains("updated /home/app/.llmx/auth.json"), "{}", forced.stdout);
    assert_eq!(ct.read("/home/app/.llmx/auth.json").unwrap(), text);
    assert_eq!(ct.stat("/home/app/.llmx/auth.json").map(|s| (s.1, s.3)), Some((1000, 0o600)));
    // No temp file left beside it by the atomic replace.
    assert_eq!(ct.exec(&["ls", "-a", "/home/app/.llmx"]).split_whitespace().count(), 3);

    // A different account on the target is said and needs --force.
    let other = creds("acc-9", "guard-other");
    ct.put("/home/app/.llmx", "auth.json", chatgpt_auth(&other, "acc-9", NEW).as_bytes(), 1000);
    let kept = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert!(kept.stdout.contains("skipped: the target holds a login of another account"), "{}", kept.stdout);
    let upd = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
    assert!(upd.stdout.contains("updated"), "{}", upd.stdout);
    for r in [&again, &skip, &forced, &upd] {
        assert_no_secret(&r.all(), &c);
        assert_no_secret(&r.all(), &theirs);
    }
}

#[test]
fn dry_run_reports_path_and_action_and_writes_nothing() {
    let (local, c, _) = chatgpt_local("dry");
    let ct = Container::run("dry", IMAGE_APP, &[]);
    let r = local.llmx(&["auth", "push", &ct.target(), "--dry-run"], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("would create /home/app/.llmx/auth.json"), "{}", r.stdout);
    assert!(r.stdout.contains("dry run: nothing written"), "{}", r.stdout);
    assert_eq!(ct.stat("/home/app/.llmx"), None, "dry run created something");
    let j = local.llmx(&["auth", "push", &ct.target(), "--dry-run", "--json"], &[]);
    let lines = json_lines(&j.stdout);
    assert_eq!(lines[0]["outcome"], "created");
    assert_eq!(lines[0]["dry_run"], true);
    assert_eq!(lines[0]["path"], "/home/app/.llmx/auth.json");
    assert_eq!(ct.stat("/home/app/.llmx"), None);
    assert_no_secret(&format!("{}{}", r.all(), j.all()), &c);
}

#[test]
fn malformed_local_auth_json_is_refused_before_any_target_is_touched() {
    let local = Local::new();
    local.write_auth(
        r#"{"tokens": {"id_token": "not-a-jwt", "access_token": "AT-SECRET-x", "refresh_token": "RT-SECRET-x"}}"#,
    );
    let ct = Container::run("malformed", IMAGE_ROOT, &[]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr.contains("auth.json: not a valid auth.json"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no target reported: {}", r.stdout);
    assert_eq!(ct.stat("/root/.llmx"), None);
    assert!(!r.all().contains("SECRET"), "{}", r.all());
    // Not logged in at all: also refused, with the fix.
    std::fs::remove_file(local.auth_path()).unwrap();
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr.contains("not logged in") && r.stderr.contains("llmx login"), "{}", r.stderr);
}

#[test]
fn malformed_target_is_a_usage_error_before_anything_connects() {
    let (local, _, _) = chatgpt_local("badspec");
    // An engine that would hang if contacted: the spec error must come first and fast.
    let r = local.llmx(&["auth", "push", "docker:ok", "docker:-bad"], &[("DOCKER_HOST", "unix:///nonexistent/x.sock")]);
    assert_eq!(r.code(), 2, "{}", r.all());
    assert!(r.stderr.contains("invalid target 'docker:-bad'"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = local.llmx(&["auth", "push", "docker:ok", "--remote-home", "relative/path"], &[]);
    assert_eq!(r.code(), 2, "{}", r.all());
    let r = local.llmx(&["auth", "push", "docker:ok", "--jobs", "0"], &[]);
    assert_eq!(r.code(), 2, "{}", r.all());
}

#[test]
fn api_keys_push_without_the_rotation_warning() {
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let ct = Container::run("apikey", IMAGE_ROOT, &[]);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let s = local.llmx(&["auth", "status", &ct.target()], &[]);
    assert!(s.stdout.contains("Logged in using an API key - sk-test-***bcdef"), "{}", s.stdout);
    let dummy = creds("acc-1", "apikey");
    assert_no_secret(&format!("{}{}", r.all(), s.all()), &dummy);

    // A ChatGPT login goes out as a lease: no hazard, and the output says when it expires and
    // what renews it. Only --full copies the refresh token, and that names the hazard, --full
    // as its cause, and the safe alternatives.
    let (local, c, _) = chatgpt_local("hazard");
    let lease = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
    assert_eq!(lease.code(), 0, "{}", lease.all());
    assert!(!lease.stderr.contains("warning:"), "{}", lease.stderr);
    assert!(
        lease.stderr.contains("usable until 2100-01-01") && lease.stderr.contains("llmx auth sync"),
        "{}",
        lease.stderr
    );
    assert!(
        !ct.read("/root/.llmx/auth.json").unwrap().contains(&c.refresh_token),
        "a lease never carries the refresh token"
    );
    let r = local.llmx(&["auth", "push", &ct.target(), "--full"], &[]);
    assert!(r.stderr.contains("warning: --full copied a whole ChatGPT login"), "{}", r.stderr);
    assert!(r.stderr.contains("refresh_token_reused") && r.stderr.contains("llmx auth tunnel"), "{}", r.stderr);
    assert!(r.stderr.contains("API key") && r.stderr.contains("without --full"), "{}", r.stderr);
    assert!(ct.read("/root/.llmx/auth.json").unwrap().contains(&c.refresh_token), "--full copies the whole login");
    assert_no_secret(&format!("{}{}", lease.all(), r.all()), &c);
}

#[test]
fn status_of_a_container_without_credential_exits_1() {
    let local = Local::new();
    let ct = Container::run("nocred", IMAGE_APP, &[]);
    let s = local.llmx(&["auth", "status", &ct.target()], &[]);
    assert_eq!(s.code(), 1, "{}", s.all());
    assert!(s.stdout.contains("/home/app/.llmx/auth.json") && s.stdout.contains("No credential"), "{}", s.stdout);
    let j = local.llmx(&["auth", "status", &ct.target(), "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
    assert_eq!(v["logged_in"], false);
    assert_eq!(v["mode"], serde_json::Value::Null);
}

/// The names in a container directory, listed with the container's own `ls` (no shell needed).
fn entries(ct: &Container, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = ct.exec(&["ls", "-a", dir]).split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn failed_move_in_a_container_leaves_no_temp_file() {
    // auth.json is a bind mount: rename(2) onto it fails (EBUSY) on the exec path and on the
    // archive path alike. Neither may leave its temporary copy of the credential behind.
    let (local, c, _) = chatgpt_local("ebusy");
    let host = tempfile::tempdir().unwrap();
    let mounted = host.path().join("auth.json");
    std::fs::write(&mounted, api_key_auth()).unwrap();
    let ct = Container::run("ebusy", IMAGE_ROOT, &["-v", &format!("{}:/root/.llmx/auth.json", path_of(&mounted))]);
    ct.put("/root/.llmx", ".auth.json.llmx-stale", b"a stale copy", 0);
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("failed: moving /root/.llmx/.auth.json.llmx-"), "{}", r.stdout);
    assert_eq!(entries(&ct, "/root/.llmx"), [".", "..", "auth.json"], "temp files left: {}", r.all());
    assert_eq!(std::fs::read_to_string(&mounted).unwrap(), api_key_auth());
    assert_no_secret(&r.all(), &c);
}

#[test]
fn shell_that_cannot_run_leaves_no_temp_file() {
    // /bin/sh exists but cannot be executed (exit 126): the archive path uploads in place
    // instead of leaving a temporary file that no `mv` will ever move.
    let (local, c, text) = chatgpt_local("brokensh");
    let ct = Container::run("brokensh", IMAGE_ROOT, &[]);
    ct.put("/bin", "sh", b"not a shell\n", 0);
    assert_eq!(docker_raw(&["exec", &ct.name, "/bin/sh", "-c", "true"], None).status.code(), Some(126));
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /root/.llmx/auth.json"), "{}", r.stdout);
    assert_eq!(ct.read("/root/.llmx/auth.json").unwrap(), text);
    assert_eq!(entries(&ct, "/root/.llmx"), [".", "..", "auth.json"], "temp files left: {}", r.all());
    assert_no_secret(&r.all(), &c);
}

#[test]
fn symlinked_auth_json_in_a_container_is_refused() {
    let (local, c, _) = chatgpt_local("symlink");
    // A tar holding /home/app/.llmx/auth.json -> /home/app/elsewhere.json, put with `docker cp`.
    let link_tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o700);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(0);
        b.append_data(&mut h, ".llmx/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(0);
        b.append_link(&mut h, ".llmx/auth.json", "/home/app/elsewhere.json").unwrap();
        b.into_inner().unwrap()
    };
    // Running (exec path) and stopped (archive path).
    for ct in [Container::run("symlink", IMAGE_APP, &[]), Container::created("symlinkstopped", IMAGE_APP, &[])] {
        ct.put("/home/app", "elsewhere.json", b"someone else's file", 1000);
        let out = docker_raw(&["cp", "-", &format!("{}:/home/app", ct.name)], Some(&link_tar));
        assert!(out.status.success(), "docker cp: {}", String::from_utf8_lossy(&out.stderr));
        let r = local.llmx(&["auth", "push", &ct.target(), "--force"], &[]);
        assert_eq!(r.code(), 1, "{}", r.all());
        assert!(r.stdout.contains("refusing to write /home/app/.llmx/auth.json: it is a symbolic link"), "{}", r.all());
        assert_eq!(ct.read("/home/app/elsewhere.json").unwrap(), "someone else's file");
        let s = local.llmx(&["auth", "status", &ct.target()], &[]);
        assert_eq!(s.code(), 1, "{}", s.all());
        assert!(s.stderr.contains("it is a symbolic link"), "{}", s.all());
        assert_no_secret(&r.all(), &c);
    }
}

#[test]
fn oversized_auth_json_in_a_container_is_refused() {
    let (local, c, _) = chatgpt_local("huge");
    let huge = vec![b' '; 5 * 1024 * 1024];
    for ct in [Container::run("huge", IMAGE_ROOT, &[]), Container::created("hugestopped", IMAGE_ROOT, &[])] {
        ct.put("/root", ".llmx/auth.json", &huge, 0);
        let r = local.llmx(&["auth", "push", &ct.target()], &[]);
        assert_eq!(r.code(), 1, "{}", r.all());
        assert!(r.stdout.contains("larger than expected"), "{}", r.all());
        assert_eq!(ct.stat("/root/.llmx/auth.json").map(|s| s.0.len()), Some(huge.len()), "left as it was");
        assert_no_secret(&r.all(), &c);
    }
}

/// Put a directory (`link: None`) or a symbolic link `dir/name -> link` in the container, owned
/// by `uid` (with `docker cp`, no shell needed).
fn put_entry(ct: &Container, dir: &str, name: &str, mode: u32, uid: u64, link: Option<&str>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(if link.is_some() { tar::EntryType::Symlink } else { tar::EntryType::Directory });
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_size(0);
    match link {
        Some(target) => b.append_link(&mut h, name, target).unwrap(),
        None => b.append_data(&mut h, format!("{name}/"), std::io::empty()).unwrap(),
    }
    let out = docker_raw(&["cp", "-", &format!("{}:{dir}", ct.name)], Some(&b.into_inner().unwrap()));
    assert!(out.status.success(), "docker cp: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every file under `dir` in the container whose content holds `needle` (busybox grep).
fn files_holding(ct: &Container, dir: &str, needle: &str) -> String {
    let out = docker_raw(&["exec", &ct.name, "grep", "-rl", needle, dir], None);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shared_sticky_or_group_writable_credential_home_in_a_container_is_refused() {
    // LLMX_HOME=/tmp: any container user could pre-create or read the temp file there. Refused
    // on the exec path (running) and the archive path (stopped), for a non-root and a root
    // user, by LLMX_HOME and by --remote-home; and a shared directory of the user's own is
    // refused too instead of being silently tightened to 0700.
    let (local, c, _) = chatgpt_local("sticky");
    let cases: [(&str, &str, &[&str], &str); 5] = [
        ("stickyapp", IMAGE_APP, &["-e", "LLMX_HOME=/tmp"], "/tmp"),
        ("stickyroot", IMAGE_ROOT, &["-e", "LLMX_HOME=/tmp/"], "/tmp"),
        ("stickyflag", IMAGE_APP, &[], "/tmp"),
        ("sharedown", IMAGE_APP, &[], "/home/app/shared"),
        ("shareddeep", IMAGE_ROOT, &[], "/srv"),
    ];
    for (tag, image, opts, dir) in cases {
        for ct in [Container::run(tag, image, opts), Container::created(&format!("{tag}s"), image, opts)] {
            let uid = if image == IMAGE_APP { 1000 } else { 0 };
            if dir != "/tmp" {
                // An existing directory of the user's, writable by the group.
                let (parent, name) = dir.rsplit_once('/').unwrap();
                put_entry(&ct, if parent.is_empty() { "/" } else { parent }, name, 0o2775, uid, None);
            }
            let before = ct.stat(dir).map(|s| (s.1, s.3));
            let flag: &[&str] = if opts.is_empty() { &["--remote-home", dir] } else { &[] };
            let mut args = vec!["auth", "push", "--force"];
            let target = ct.target();
            args.push(&target);
            args.extend(flag);
            let r = local.llmx(&args, &[]);
            assert_eq!(r.code(), 1, "{tag}: {}", r.all());
            assert!(r.stdout.contains("writable by other users"), "{tag}: {}", r.all());
            assert!(r.stdout.contains(&format!("refusing to write {dir}")), "{tag}: {}", r.all());
            assert_eq!(ct.stat(dir).map(|s| (s.1, s.3)), before, "{tag}: {dir} was re-owned or re-moded");
            assert_eq!(ct.stat(&format!("{dir}/auth.json")), None, "{tag}: written anyway");
            docker(&["start", &ct.name]);
            assert_eq!(files_holding(&ct, dir, &c.refresh_token), "", "{tag}: the credential landed in {dir}");
            assert!(!entries(&ct, dir).iter().any(|n| n.starts_with(".auth.json")), "{tag}: temp file left");
            assert_no_secret(&r.all(), &c);
        }
    }
}

#[test]
fn archive_fallback_never_follows_a_linked_or_foreign_credential_directory() {
    // A container user who links ~/.llmx to root's directory, or names /etc with --remote-home,
    // must not get root's login replaced and handed to them, or /etc chowned to them: on the
    // exec path (which used to fall back to the archive API as root) and on the archive path.
    let (local, c, _) = chatgpt_local("dirlink");
    let root_auth = api_key_auth();
    for ct in [Container::run("dirlink", IMAGE_APP, &[]), Container::created("dirlinks", IMAGE_APP, &[])] {
        ct.put("/root", ".llmx/auth.json", root_auth.as_bytes(), 0);
        put_entry(&ct, "/home/app", ".llmx", 0o777, 1000, Some("/root/.llmx"));
        let cases: [(&[&str], &str, &str); 4] = [
            (&[], "/home/app/.llmx", "symbolic link"),
            (&["--remote-home", "/etc"], "/etc", "belongs to uid 0"),
            (&["--remote-home", "/root/.llmx"], "/root/.llmx", "belongs to uid 0"),
            (&["--remote-home", "/home/app/.llmx/"], "/home/app/.llmx", "symbolic link"),
        ];
        for (flags, dir, why) in cases {
            let before = (ct.stat("/etc").map(|s| (s.1, s.3)), ct.stat("/root/.llmx").map(|s| (s.1, s.3)));
            let target = ct.target();
            let mut args = vec!["auth", "push", "--force", target.as_str()];
            args.extend(flags);
            let r = local.llmx(&args, &[]);
            assert_eq!(r.code(), 1, "{dir}: {}", r.all());
            assert!(r.stdout.contains(&format!("refusing to write {dir}")) && r.stdout.contains(why), "{}", r.all());
            let after = (ct.stat("/etc").map(|s| (s.1, s.3)), ct.stat("/root/.llmx").map(|s| (s.1, s.3)));
            assert_eq!(after, before, "{dir}: /etc or /root/.llmx re-owned or re-moded");
            assert_eq!(before.0, Some((0, 0o755)));
            let (bytes, uid, _, mode) = ct.stat("/root/.llmx/auth.json").unwrap();
            assert_eq!((String::from_utf8(bytes).unwrap(), uid, mode), (root_auth.clone(), 0, 0o600));
            assert_eq!(ct.stat("/etc/auth.json"), None);
            assert_no_secret(&r.all(), &c);
        }
    }
}

#[test]
fn root_owned_auth_json_left_by_docker_cp_is_replaced_on_the_fast_path_and_re_owned() {
    // The seed's recipe (`docker cp auth.json app:/home/app/.llmx/`) leaves root's 0600 file in the
    // user's own 0700 directory. The user cannot read it, but may replace it: one exec conversation
    // (the current file read through the archive API), not the root archive path (two more execs).
    let (local, c, text) = chatgpt_local("rootowned");
    let ct = Container::run("rootowned", IMAGE_APP, &[]);
    put_entry(&ct, "/home/app", ".llmx", 0o700, 1000, None);
    let old = chatgpt_auth(&c, "acc-1", "2024-06-01T00:00:00Z");
    ct.put("/home/app/.llmx", "auth.json", old.as_bytes(), 0);
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let r = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        squeezed(&r.stdout).contains(&format!("{}  updated /home/app/.llmx/auth.json", ct.target())),
        "{}",
        r.all()
    );
    let (bytes, uid, gid, mode) = ct.stat("/home/app/.llmx/auth.json").unwrap();
    assert_eq!((String::from_utf8(bytes).unwrap(), uid, gid, mode), (text.clone(), 1000, 1000, 0o600));
    let events = ct.events_since(since);
    let execs = events.iter().filter(|a| a.starts_with("exec_create")).count();
    assert_eq!(execs, 1, "one exec conversation, no fallback to the root archive path: {events:?}");
    assert!(
        !events.iter().any(|a| a.starts_with("extract-to-dir")),
        "nothing uploaded through the archive API: {events:?}"
    );
    assert_eq!(entries(&ct, "/home/app/.llmx"), [".", "..", "auth.json"], "no temp file left");
    assert_no_secret(&r.all(), &c);

    // The rotation guard still sees root's file: a fresher one is not overwritten.
    let theirs = creds("acc-1", "rootowned-fresher");
    let fresher = chatgpt_auth(&theirs, "acc-1", NEW);
    ct.put("/home/app/.llmx", "auth.json", fresher.as_bytes(), 0);
    let skip = local.llmx(&["auth", "push", &ct.target()], &[]);
    assert_eq!(skip.code(), 0, "{}", skip.all());
    assert!(skip.stdout.contains("skipped: your copy here is retired"), "{}", skip.stdout);
    assert_eq!(ct.read("/home/app/.llmx/auth.json").as_deref(), Some(fresher.as_str()), "left as it was");
    assert_eq!(ct.stat("/home/app/.llmx/auth.json").map(|s| s.1), Some(0), "still root's");
}

/// Issue 20 item 3: a socket this user may not open says to join the docker group, with no
/// HTTP-client internals ("hyper", "client error") in the line.
#[test]
fn a_docker_socket_the_user_may_not_open_says_to_join_the_docker_group() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = crate::support::harness::Llmx::via("runuser", ["-u", "nobody", "--"])
        .env("HOME", home.path())
        .env("LLMX_HOME", home.path().join("llmx"))
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .args(["auth", "status", "docker:web"])
        .run_blocking();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr.contains("permission denied on") && r.stderr.contains("docker group"), "{}", r.stderr);
    assert!(!r.stderr.contains("hyper") && !r.stderr.contains("client error"), "{}", r.stderr);
}

/// `auth status docker:label=…` takes a selector as push does and reports on every container it
/// matches: one aligned row each with its mark, then a recap; --json one object each and a
/// summary (issue 20 item 5; on main it refused: "matches 2 containers").
#[test]
fn status_of_a_label_reports_every_matching_container_in_rows_with_marks() {
    let (local, c, _) = chatgpt_local("stlabel");
    let label = format!("llmx.test={}", unique_name("stl"));
    let cts: Vec<Container> =
        (0..2).map(|i| Container::run(&format!("stl{i}"), IMAGE_ROOT, &["--label", &label])).collect();
    let r = local.llmx(&["auth", "push", &cts[0].target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let s = local.llmx(&["auth", "status", &format!("docker:label={label}")], &[]);
    assert_eq!(s.code(), 1, "one holds nothing: {}", s.all());
    let rows: Vec<&str> = s.stdout.lines().collect();
    assert!(rows.iter().any(|l| l.starts_with(&format!("✓ {}  ChatGPT", cts[0].target()))), "{}", s.stdout);
    assert!(rows.iter().any(|l| l.starts_with(&format!("✗ {}  no credential", cts[1].target()))), "{}", s.stdout);
    assert_eq!(rows.last(), Some(&"2 targets: 1 logged in, 1 not logged in"), "{}", s.stdout);
    let j = local.llmx(&["auth", "status", "--json", &format!("docker:label={label}")], &[]);
    let lines = json_lines(&j.stdout);
    assert_eq!(lines.len(), 3, "{}", j.stdout);
    assert_eq!(lines[2]["logged_in"], 1, "{}", j.stdout);
    assert_no_secret(&format!("{}{}", s.all(), j.all()), &c);
}

/// `auth remove --dry-run` reaches the target and says what it would remove, and deletes
/// nothing, on the target or in the ledger (issue 20 item 5; on main the flag did not exist).
#[test]
fn remove_dry_run_says_what_would_go_and_deletes_nothing() {
    let (local, c, _) = chatgpt_local("rmdry");
    let ct = Container::run("rmdry", IMAGE_ROOT, &[]);
    assert_eq!(local.llmx(&["auth", "push", &ct.target()], &[]).code(), 0);
    let ledger = || std::fs::read_to_string(local.auth_path().with_file_name("ledger.json")).unwrap();
    let before = ledger();
    let r = local.llmx(&["auth", "remove", "--dry-run", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        squeezed(&r.stdout).contains(&format!("✓ {}  would remove /root/.llmx/auth.json", ct.target())),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 target: would remove 1 (dry run: nothing written)"), "{}", r.stdout);
    assert!(ct.stat("/root/.llmx/auth.json").is_some(), "deleted by a dry run");
    assert_eq!(ledger(), before, "the ledger changed on a dry run");
    let r = local.llmx(&["auth", "remove", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(ct.stat("/root/.llmx/auth.json").is_none());
    assert_no_secret(&r.all(), &c);
}
