//! The shell conversation ([`crate::targets::conversation`]) over one SSH exec channel. This file
//! only adapts the transport: it starts the script as a streamed remote process
//! ([`Session::spawn`]), turns its events into [`Chunk`]s and gives the conversation the
//! process's stdin as an `AsyncWrite`; the script, its protocol and its checks live in the
//! conversation.
//!
//! Three things are SSH's own, all in the command line or the first bytes, none in the protocol:
//!
//! - **The home, as the SSH rules have it.** sshd runs the command through the user's login
//!   shell, which the transport only asks to `exec /bin/sh -c` the quoted line (fish and csh are
//!   other languages). A short preamble gives the script its first argument: `--remote-home`, else
//!   the `LLMX_HOME` of the non-interactive environment (`~/.ssh/environment`, `SetEnv`), each
//!   with `~`, `~/…` and relative paths taken from the login directory (`pwd -P`, what SFTP's
//!   `realpath .` answers), else the login directory + `/.llmx`. So the script's own default
//!   (`$HOME/.llmx`) is never used here, and the home is the one the SFTP path computes.
//! - **A first line on stdin** (`llmx`), which the script skips when it reads its first
//!   instruction (after the header: waiting for it first would cost a round trip). A restricted
//!   account whose every session is `ForceCommand internal-sftp` runs an SFTP server instead of
//!   the script: those five bytes are a malformed SFTP packet, so it quits at once and we fall back
//!   to SFTP without waiting for a timeout.
//! - **Banners.** Output before the `llmx1` header line (an rc file of the login shell that
//!   prints) is skipped, as the old probe's marker did, up to 64 KiB.

use super::sftp::Shell as Commands;
use crate::ssh::{ExecEvent, ProcessInput, RemoteProcess, Session, shell_quote};
use crate::targets::conversation::{self, Chunk, Conversation, Header};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// The conversation as the SSH transport carries it.
pub type Shell = Conversation<BoxStream<'static, Result<Chunk, String>>, Stdin>;

/// Sets `$1` for the script (see the module doc). The first line of stdin is left for the script,
/// which skips it where it reads its first instruction: the header goes out without waiting for it.
const PREAMBLE: &str = r#"{ cd -P . 2>/dev/null && L=$PWD; } || L=$HOME
d=$1; [ -n "$d" ] || d=$LLMX_HOME
case $d in
'') d=${L%/}/.llmx ;;
'~') d=$L ;;
'~/'*) d=${L%/}/${d#'~/'} ;;
/*) ;;
*) d=${L%/}/$d ;;
esac
set -- "$d"
"#;

/// The first bytes sent on stdin (see the module doc).
const HELLO: &[u8] = b"llmx\n";

/// The most output skipped before the header.
const MAX_BANNER: usize = 64 * 1024;

/// The command line (a POSIX shell script, which the transport wraps for the login shell):
/// `remote_home` quoted into `set --`, the preamble, the conversation's script. Nothing secret
/// and no temp file name in it.
pub fn command(remote_home: Option<&str>) -> String {
    format!("set -- {}\n{PREAMBLE}{}", shell_quote(remote_home.unwrap_or("")), conversation::script())
}

/// Why the conversation could not start; the caller uses SFTP.
#[derive(Debug)]
pub struct Unavailable {
    /// Whether the script ran at all (its header came back), i.e. whether commands work.
    pub commands: Commands,
    pub why: String,
    /// The host flooded the channel's error output (an `~/.ssh/rc` or login shell that never
    /// stops): final, SFTP would meet the same `~/.ssh/rc`.
    pub hostile: bool,
}

/// Start the script on a new channel of `session` and read its header.
pub async fn open(session: &Session, remote_home: Option<&str>) -> Result<(Shell, Header), Unavailable> {
    let unusable = |why: String| Unavailable { commands: Commands::Unusable, why, hostile: false };
    let process = session.spawn(&command(remote_home)).await.map_err(|e| unusable(e.to_string()))?;
    let input = process.input();
    input.write(HELLO.to_vec()).map_err(|e| unusable(e.to_string()))?;
    let header_seen = Arc::new(AtomicBool::new(false));
    let chunks = output(process, header_seen.clone());
    Conversation::start(chunks, Stdin(input)).await.map_err(|e| Unavailable {
        commands: if header_seen.load(Ordering::SeqCst) { Commands::Works } else { Commands::Unusable },
        why: e.why,
        hostile: e.hostile,
    })
}

/// The process's stdout and stderr as [`Chunk`]s, banners before the header skipped; ends with
/// the process. `header_seen` is set when the header line starts.
fn output(process: RemoteProcess, header_seen: Arc<AtomicBool>) -> BoxStream<'static, Result<Chunk, String>> {
    struct State {
        process: RemoteProcess,
        header_seen: Arc<AtomicBool>,
        skipping: bool,
        banner: Vec<u8>,
        ended: bool,
    }
    let state = State { process, header_seen, skipping: true, banner: Vec::new(), ended: false };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let chunk = match st.process.next().await {
                Some(ExecEvent::Stdout(b)) if !st.skipping => Ok(Chunk::Stdout(b)),
                Some(ExecEvent::Stdout(b)) => {
                    st.banner.extend_from_slice(&b);
                    let found = header_start(&st.banner);
                    if found.is_some() {
                        st.header_seen.store(true, Ordering::SeqCst);
                    } else if st.banner.len() <= MAX_BANNER {
                        continue;
                    }
                    // Found, or too much to be a banner: from here on, everything passes (the
                    // conversation refuses what is not a header).
                    st.skipping = false;
                    let at = found.unwrap_or(0);
                    let from_header = st.banner.split_off(at);
                    st.banner = Vec::new();
                    Ok(Chunk::Stdout(from_header))
                }
                Some(ExecEvent::Stderr(b)) => Ok(Chunk::Stderr(b)),
                Some(ExecEvent::Exit(_)) | None => {
                    st.ended = true;
                    // What came instead of a header (nologin's message) goes to the conversation,
                    // which names the failure.
                    if st.banner.is_empty() {
                        return None;
                    }
                    Ok(Chunk::Stdout(std::mem::take(&mut st.banner)))
                }
                Some(ExecEvent::Error(e)) => {
                    st.ended = true;
                    Err(e.to_string())
                }
            };
            return Some((chunk, st));
        }
    })
    .boxed()
}

/// Where the header line `llmx1 ` starts at the beginning of a line of `buf`.
fn header_start(buf: &[u8]) -> Option<usize> {
    const HEADER: &[u8] = b"llmx1 ";
    (0..buf.len()).find(|&i| (i == 0 || buf[i - 1] == b'\n') && buf[i..].starts_with(HEADER))
}

/// The process's stdin for the conversation. Writes are queued on the connection's thread at
/// once (the owner sends them as the channel's window allows); a shutdown is an EOF.
pub struct Stdin(ProcessInput);

impl AsyncWrite for Stdin {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write(buf.to_vec()).map(|()| buf.len()).map_err(std::io::Error::other))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.close().map_err(std::io::Error::other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_found_after_banners_only_at_a_line_start() {
        assert_eq!(header_start(b"llmx1 0 0 /h\n"), Some(0));
        assert_eq!(header_start(b"welcome\nllmx1 0 0 /h\n"), Some(8));
        assert_eq!(header_start(b"say llmx1 0\nllmx1 1"), Some(12));
        assert_eq!(header_start(b"llmx1"), None);
        assert_eq!(header_start(b"xllmx1 "), None);
    }

    /// The preamble and the script as sshd would run them: through a login shell that is asked
    /// to `exec /bin/sh -c` the quoted line, from the login directory; the first header line.
    fn header_line(login: &std::path::Path, home: Option<&str>, llmx_home: Option<&str>) -> String {
        use std::io::Write;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(crate::ssh::posix_command(&command(home))).current_dir(login);
        cmd.env_remove("LLMX_HOME");
        if let Some(h) = llmx_home {
            cmd.env("LLMX_HOME", h);
        }
        let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(HELLO).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn the_preamble_gives_the_home_of_the_ssh_rules() {
        let t = tempfile::tempdir().unwrap();
        let login = std::fs::canonicalize(t.path()).unwrap();
        let l = login.display().to_string();
        let home = |h: Option<&str>, env: Option<&str>| {
            let line = header_line(&login, h, env);
            line.splitn(4, ' ').nth(3).unwrap_or_else(|| panic!("{line:?}")).to_string()
        };
        assert_eq!(home(None, None), format!("{l}/.llmx"));
        assert_eq!(home(Some("~"), None), l);
        assert_eq!(home(Some("~/a/b/"), None), format!("{l}/a/b"));
        assert_eq!(home(Some("rel"), Some("/env")), format!("{l}/rel"), "--remote-home wins");
        assert_eq!(home(Some("/abs//"), None), "/abs");
        assert_eq!(home(None, Some("/env/h")), "/env/h");
        assert_eq!(home(None, Some("envrel")), format!("{l}/envrel"));
        assert_eq!(home(None, Some("")), format!("{l}/.llmx"), "an empty LLMX_HOME is unset");
        assert_eq!(home(Some("it's a $(dir)"), None), format!("{l}/it's a $(dir)"));
        assert_eq!(home(Some("/"), None), "/");
    }
}
