//! What a person sees: llmx under a real pseudo-terminal (util-linux `script`) with `TERM=dumb`
//! and `TERM=xterm`, and with no terminal at all, against the real Docker Engine. Issue 13's
//! terminal-only bugs: the rotation warning hidden on a dumb terminal, a failed target marked ✓
//! while others still ran.

use crate::support::docker::*;
use crate::support::harness::LLMX;
use std::net::TcpListener;

const OLD: &str = "2025-01-01T00:00:00Z";

/// Run `llmx args` on a pty with `TERM=term` (`None`: no TERM at all); stdout and stderr both
/// come back through the pty, as a person sees them, without the escape sequences (colour,
/// cursor moves) and line breaks.
fn on_pty(local: &Local, term: Option<&str>, args: &[&str]) -> (i32, String) {
    let line: Vec<String> = std::iter::once(LLMX).chain(args.iter().copied()).map(llmx::ssh::shell_quote).collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qfec", &line.join(" "), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", local.home())
        .env("LLMX_HOME", local.dir.path().join("llmx"))
        .stdin(std::process::Stdio::null());
    if let Some(t) = term {
        cmd.env("TERM", t);
    }
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", h);
    }
    let out = cmd.output().expect("util-linux `script` runs (scripts/test installs it)");
    (out.status.code().unwrap_or(-1), llmx::text::terminal_safe(&String::from_utf8_lossy(&out.stdout)))
}

fn chatgpt_local(tag: &str) -> Local {
    let local = Local::new();
    local.write_auth(&chatgpt_auth(&creds("acc-1", tag), "acc-1", OLD));
    local
}

#[test]
fn rotation_warning_reaches_every_kind_of_terminal_and_quiet_does_not_hide_it() {
    let ct = Container::run("ptywarn", IMAGE_ROOT, &[]);
    let want = "warning: --full copied a whole ChatGPT login (its refresh token) to 1 target";
    for term in [Some("dumb"), Some("xterm"), None] {
        for quiet in [false, true] {
            let local = chatgpt_local("ptywarn");
            let target = ct.target();
            let mut args = vec!["auth", "push", "--full", target.as_str()];
            if quiet {
                args.push("-q");
            }
            let (code, seen) = on_pty(&local, term, &args);
            assert_eq!(code, 0, "TERM={term:?} -q={quiet}: {seen}");
            assert!(seen.contains(want), "TERM={term:?} -q={quiet}: no warning in {seen:?}");
            assert!(seen.contains("llmx auth tunnel"), "TERM={term:?}: the hint is missing: {seen:?}");
            assert!(seen.contains("created /root/.llmx/auth.json"), "{seen:?}");
            let _ = ct.exec(&["rm", "-rf", "/root/.llmx"]);
        }
    }
    // No terminal: the same warning on stderr.
    let local = chatgpt_local("ptywarn");
    let r = local.llmx(&["auth", "push", "--full", &ct.target()], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr.contains(want), "{}", r.stderr);
    // Nothing written, no hazard: not on a dry run, not when every target is unchanged.
    for extra in ["--dry-run", ""] {
        let mut args = vec!["auth", "push", "-q", "--full"];
        let target = ct.target();
        args.push(&target);
        if !extra.is_empty() {
            args.push(extra);
        }
        let (code, seen) = on_pty(&local, Some("xterm"), &args);
        assert_eq!(code, 0, "{seen}");
        assert!(!seen.contains("warning:"), "{extra:?}: {seen:?}");
    }
}

#[test]
fn a_failed_target_is_never_marked_done_while_others_run() {
    let local = chatgpt_local("ptymark");
    let ct = Container::run("ptymark", IMAGE_ROOT, &[]);
    // A host that accepts TCP and never speaks SSH: that target runs until the timeout, while
    // the missing container has long failed.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = format!("ssh:nobody@127.0.0.1:{}", silent.local_addr().unwrap().port());
    let missing = format!("docker:{}", unique_name("nosuch"));
    let target = ct.target();
    let args = ["auth", "push", &missing, &target, &slow, "--connect-timeout", "2"];
    let (code, seen) = on_pty(&local, Some("xterm"), &args);
    assert_eq!(code, 1, "{seen}");
    assert!(seen.contains(&format!("✗ {missing}")), "{seen:?}");
    assert!(!seen.contains(&format!("✓ {missing}")), "the failed target was shown with ✓: {seen:?}");
    assert!(seen.contains(&format!("✓ {target}")), "{seen:?}");
    // Off a terminal: the same lines, aligned, in the order given.
    let r = local.llmx(&args, &[]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("✗ {missing}")), "{}", r.stdout);
    assert!(lines[1].starts_with(&format!("✓ {target}")), "{}", r.stdout);
    assert!(lines[2].starts_with(&format!("✗ {slow}")), "{}", r.stdout);
    let column = |l: &str| l.find(" failed").or_else(|| l.find(" unchanged")).unwrap();
    assert_eq!(column(lines[0]), column(lines[2]), "aligned: {}", r.stdout);
    assert_eq!(lines[3], "3 targets: 1 unchanged, 2 failed", "{}", r.stdout);
}
