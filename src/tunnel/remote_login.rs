//! The running remote `llmx login`, however it runs ([`Proc`]: an SSH channel or a container's
//! exec): its stdout read line by line, with a bounded buffer, as its pid (SSH: the wrapper prints
//! it first) and then its JSON events ([`LoginEvent`], the `llmx login --json` protocol); the tail
//! of its stderr kept for error messages; lines written to its stdin (the container's paste-back
//! relay); and a bounded wait for it to end.

use super::container::Exec;
use crate::auth::login::LoginEvent;
use crate::ssh::{ExecEvent, ExitStatus, RemoteProcess, SshError};
use crate::text::printable;
use std::collections::VecDeque;
use std::time::Duration;

/// How much of the remote's stderr is kept for error messages.
const STDERR_TAIL: usize = 2048;
/// The longest line of the remote login's stdout we hold (its events are a few hundred bytes):
/// a program that never sends a newline must not grow our buffer without end.
pub(super) const MAX_LINE: usize = 64 * 1024;

/// How the remote login runs.
pub(super) enum Proc {
    /// Over SSH, wrapped so that it dies with the session (`bound_to_session`).
    Ssh(RemoteProcess),
    /// Through the Engine's exec API in a container, its stdin held by us.
    Exec(Exec),
}

/// One thing a [`Proc`] says.
pub(super) enum Out {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitStatus),
    Lost(Lost),
}

/// The connection to the remote login was lost: it may still run.
#[derive(Debug)]
pub(super) enum Lost {
    Ssh(SshError),
    /// The Engine's exec stream failed or ended without an exit status.
    Engine(String),
}

impl Proc {
    async fn next(&mut self) -> Out {
        match self {
            Proc::Ssh(p) => match p.next().await {
                Some(ExecEvent::Stdout(b)) => Out::Stdout(b),
                Some(ExecEvent::Stderr(b)) => Out::Stderr(b),
                Some(ExecEvent::Exit(s)) => Out::Exit(s),
                Some(ExecEvent::Error(e)) => Out::Lost(Lost::Ssh(e)),
                None => {
                    Out::Lost(Lost::Ssh(SshError::Closed { host: String::new(), during: "the remote login".into() }))
                }
            },
            Proc::Exec(e) => e.next().await,
        }
    }
}

/// What the remote login process says, parsed.
pub(super) enum Msg {
    Pid(u32),
    Event(LoginEvent),
    Exit(ExitStatus),
    Lost(Lost),
    /// A stdout line passed [`MAX_LINE`]; it was dropped.
    LineTooLong,
}

/// The remote `llmx login` process and its output, parsed into [`Msg`]s. `next` is cancel-safe
/// (its only await is a channel receive), so it can sit in a `select!`. The default has no
/// process yet: `new` gives it one; the tests feed its stdout by hand.
#[derive(Default)]
pub(super) struct RemoteLogin {
    pub(super) proc: Option<Proc>,
    pub(super) pid: Option<u32>,
    pub(super) ended: bool,
    /// It "ended" because the connection was lost: it may still run on the host.
    pub(super) lost: bool,
    line: Vec<u8>,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
    stderr: Vec<u8>,
    queue: VecDeque<Msg>,
}

impl RemoteLogin {
    /// An SSH login: its first stdout line is its pid.
    pub(super) fn new(proc: RemoteProcess) -> RemoteLogin {
        RemoteLogin { proc: Some(Proc::Ssh(proc)), ..RemoteLogin::default() }
    }

    /// A container's login: its pid is known (`pid`, as the engine reports it), every stdout line
    /// is an event.
    pub(super) fn exec(exec: Exec, pid: u32) -> RemoteLogin {
        RemoteLogin { proc: Some(Proc::Exec(exec)), pid: Some(pid), ..RemoteLogin::default() }
    }

    /// Write `line` (and a newline) to the login's stdin; whether it went out.
    pub(super) async fn send_line(&mut self, line: &str) -> bool {
        match &mut self.proc {
            Some(Proc::Exec(e)) if !self.ended => e.send_line(line).await,
            _ => false,
        }
    }

    /// Close the login's stdin: a container's login (`--end-on-stdin-eof`) then stops.
    pub(super) async fn close_input(&mut self) {
        if let Some(Proc::Exec(e)) = &mut self.proc {
            e.close_input().await;
        }
    }

    pub(super) async fn next(&mut self) -> Msg {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return m;
            }
            let ev = match (&mut self.proc, self.ended) {
                (Some(p), false) => p.next().await,
                _ => return std::future::pending().await,
            };
            match ev {
                Out::Stdout(b) => self.stdout(&b),
                Out::Stderr(b) => {
                    self.stderr.extend_from_slice(&b);
                    if self.stderr.len() > STDERR_TAIL {
                        self.stderr.drain(..self.stderr.len() - STDERR_TAIL);
                    }
                }
                Out::Exit(s) => {
                    self.ended = true;
                    self.queue.push_back(Msg::Exit(s));
                }
                Out::Lost(e) => {
                    self.ended = true;
                    self.lost = true;
                    self.queue.push_back(Msg::Lost(e));
                }
            }
        }
    }

    fn stdout(&mut self, mut bytes: &[u8]) {
        if self.skipping {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => return,
            }
        }
        self.line.extend_from_slice(bytes);
        while let Some(i) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if self.pid.is_none() {
                if let Ok(pid) = text.parse::<u32>() {
                    self.pid = Some(pid);
                    self.queue.push_back(Msg::Pid(pid));
                }
                continue;
            }
            // Lines that are not events we know (newer llmx versions add some) are skipped.
            if let Ok(ev) = serde_json::from_str::<LoginEvent>(text) {
                self.queue.push_back(Msg::Event(ev));
            }
        }
        if self.line.len() > MAX_LINE {
            self.line = Vec::new();
            self.skipping = true;
            self.queue.push_back(Msg::LineTooLong);
        }
    }

    /// Wait until the process ends or `limit` passes; whether it ended.
    pub(super) async fn wait_end(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended || !self.queue.is_empty() {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Msg::Exit(_) | Msg::Lost(_)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        true
    }

    pub(super) fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let last: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let start = last.len().saturating_sub(3);
        printable(&last[start..].join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::TunnelError;

    #[test]
    fn remote_output_is_split_into_pid_and_events() {
        let mut r = RemoteLogin::default();
        r.stdout(b"4242\n{\"event\":\"callback_rec");
        r.stdout(b"eived\"}\n{\"event\":\"something_new\"}\nnot json\n");
        assert!(matches!(r.queue.pop_front(), Some(Msg::Pid(4242))));
        assert!(matches!(r.queue.pop_front(), Some(Msg::Event(LoginEvent::CallbackReceived))));
        assert!(r.queue.is_empty());
    }

    #[test]
    fn remote_output_without_newline_is_bounded() {
        let mut r = RemoteLogin::default();
        r.stdout(b"4242\n");
        let chunk = vec![b'x'; 8192];
        for _ in 0..1024 {
            r.stdout(&chunk); // 8 MiB, never a newline
            assert!(r.line.len() <= MAX_LINE + chunk.len(), "buffer grew to {}", r.line.len());
        }
        assert!(matches!(r.queue.pop_front(), Some(Msg::Pid(4242))));
        assert!(matches!(r.queue.pop_front(), Some(Msg::LineTooLong)));
        assert!(r.queue.is_empty(), "reported once per line");
        // The rest of that line is dropped; the lines after it are read again.
        r.stdout(b"xxx\n{\"event\":\"callback_received\"}\n");
        assert!(matches!(r.queue.pop_front(), Some(Msg::Event(LoginEvent::CallbackReceived))));
        let e = TunnelError::LineTooLong { host: "h".into() };
        assert_eq!(e.reason(), "protocol");
        assert!(e.to_string().contains("longer than 64 KiB"), "{e}");
    }
}
