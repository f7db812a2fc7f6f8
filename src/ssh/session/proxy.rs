//! `ProxyCommand`: run the command with `/bin/sh` (as OpenSSH runs it with the user's shell) and
//! give it one end of a socket pair as its stdin and stdout; the session speaks SSH over the other
//! end. Its stderr is left to the terminal, as ssh leaves it.
//!
//! A proxy command never outlives the run that started it: when its connection ends, it is killed
//! and reaped with the processes it started (a `sh -c '… | …'` pipeline, a helper it left in the
//! background), and [`end_all`] kills whatever is still running when the binary exits (an
//! interrupted run whose connections are still open). Only a descendant that left the command's
//! session on purpose (`setsid`, a daemon such as an `ssh` master with `ControlPersist`) is
//! left alone, as it would be by OpenSSH.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex, PoisonError};

/// Process ids of the proxy commands running now (not yet reaped, so never a recycled pid).
static LIVE: LazyLock<Mutex<HashSet<u32>>> = LazyLock::new(Mutex::default);

/// The running proxy command; dropping it kills and reaps it.
pub(crate) struct ProxyChild(Child);

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let pid = self.0.id();
        // Out of the list first, then the /proc scan without the lock (other connections' proxies
        // start and end meanwhile); the pid is not reaped yet, so it cannot have been reused.
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).remove(&pid);
        kill_tree(pid);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` (tokens already expanded) and return it with our end of its stdio.
pub(super) fn spawn(cmd: &str) -> std::io::Result<(ProxyChild, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::from(theirs.try_clone()?))
        .stdout(Stdio::from(theirs))
        .stderr(Stdio::inherit())
        .spawn()?;
    live.insert(child.id());
    Ok((ProxyChild(child), ours))
}

/// Kill every proxy command still running, with what it started: the binary calls this as it
/// exits, when threads that own connections are not going to drop them.
pub fn end_all() {
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    for &pid in live.iter() {
        kill_tree(pid);
    }
}

/// SIGKILL `pid` and its descendants that stayed in its session.
fn kill_tree(pid: u32) {
    let procs = processes();
    let Some(&(_, session)) = procs.iter().find(|((p, _), _)| *p == pid) else { return };
    let mut doomed = vec![pid];
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(procs.iter().filter(|((_, ppid), s)| *ppid == parent && *s == session).map(|((p, _), _)| *p));
        i += 1;
    }
    for p in doomed {
        let Ok(p) = libc::pid_t::try_from(p) else { continue };
        // SAFETY: kill(2) with a pid read from /proc this moment: ours or a descendant of ours.
        #[allow(unsafe_code, reason = "kill(2): std only kills its own direct children")]
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
}

/// `((pid, parent pid), session id)` of every process /proc shows.
fn processes() -> Vec<((u32, u32), u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat_fields(&stat).map(|(ppid, sid)| ((pid, ppid), sid))
    })
    .collect()
}

/// The parent pid and session id of a `/proc/PID/stat` line (after the command name, which may
/// hold spaces and parentheses: `pid (comm) state ppid pgrp session …`).
fn stat_fields(stat: &str) -> Option<(u32, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let session = f.next()?.parse().ok()?;
    Some((ppid, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(stat_fields("4242 (a (b) c) S 17 4242 99 0 -1 4194304"), Some((17, 99)));
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn a_proxy_command_and_the_helper_it_left_in_the_background_die_with_its_connection() {
        let marker = format!("{}.{}", 3000 + std::process::id() % 1000, std::process::id());
        let (child, _ours) = spawn(&format!("sh -c 'sleep {marker} & exec sleep {marker}'")).unwrap();
        let running = || {
            processes()
                .iter()
                .filter(|((p, _), _)| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
                })
                .count()
        };
        for _ in 0..50 {
            if running() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(running(), 2, "the proxy command and its helper did not start");
        drop(child);
        // The helper, reparented to init when killed, may take a moment to be reaped.
        for _ in 0..50 {
            if running() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(running(), 0, "a process of the proxy command outlived its connection");
    }
}
