//! The exec conversation ([`crate::targets::conversation`]) over one Kubernetes exec, run as the
//! container's own user (the API has no other). This file only adapts kube's types: it starts
//! the exec and turns its stdout and stderr, read concurrently, into [`Chunk`]s.
//!
//! The 1.20 API servers speak `v4.channel.k8s.io`, which cannot half-close stdin: closing it
//! closes the whole stream and the exit status is lost. So the conversation announces an exact
//! byte count, the script reads that many bytes (`head -c N`), and [`OpenStdin`] keeps stdin open
//! (a shutdown is a flush) until the script has answered. The script and every argument travel in
//! the exec URL (audit and kubelet logs): nothing secret is ever in them.

use crate::targets::conversation::{self, Chunk, Conversation, Header, StartError, WriteError};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncWrite, SimplexStream, WriteHalf};
use tokio_util::io::ReaderStream;

/// The conversation as kube carries it, with the exec it runs in (dropping it ends the exec).
pub struct Session {
    conversation: Conversation<BoxStream<'static, Result<Chunk, String>>, OpenStdin>,
    _process: AttachedProcess,
}

impl Session {
    /// Send `bytes` to be written; the file as read back after the move.
    pub async fn write(self, bytes: &[u8], file_store: bool) -> Result<conversation::Written, WriteError> {
        self.conversation.write(bytes, file_store).await
    }
}

/// How much of stdout and stderr kube buffers before the exec waits for us.
const STREAM_BUF: usize = 256 * 1024;

/// The exec's stdin, never closed by us (see the module doc).
pub struct OpenStdin {
    inner: WriteHalf<SimplexStream>,
}

impl AsyncWrite for OpenStdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

/// Why the conversation did not start.
pub enum OpenError {
    /// The exec could not be created (its kube error).
    Exec(kube::Error),
    /// The container has no shell that runs the script (exit 126/127 from the runtime).
    NoShell,
    /// The script did not answer as expected.
    Script(String),
}

/// Start the script in `container` of `pod`.
pub async fn open(
    api: &Api<Pod>,
    pod: &str,
    container: &str,
    remote_home: Option<&str>,
) -> Result<(Session, Header), OpenError> {
    let mut process =
        api.exec(pod, conversation::command(remote_home), &params(container, true)).await.map_err(OpenError::Exec)?;
    let status = process.take_status();
    let (Some(stdin), Some(stdout), Some(stderr)) = (process.stdin(), process.stdout(), process.stderr()) else {
        return Err(OpenError::Script("the exec has no stdin, stdout or stderr".into()));
    };
    // Both streams are polled together, so a chatty stderr never stalls stdout.
    let out = ReaderStream::new(stdout).map(|r| r.map(|b| Chunk::Stdout(b.to_vec())));
    let err = ReaderStream::new(stderr).map(|r| r.map(|b| Chunk::Stderr(b.to_vec())));
    let chunks = futures_util::stream::select(out, err).map(|r| r.map_err(|e| e.to_string())).boxed();
    // The exec lives in `process` (its drop ends it): kept until the status has been read.
    match Conversation::start(chunks, OpenStdin { inner: stdin }).await {
        Ok((conversation, header)) => Ok((Session { conversation, _process: process }, header)),
        Err(e) if e.hostile => Err(OpenError::Script(e.why)),
        Err(StartError { why, .. }) => {
            let code = match status {
                Some(s) => tokio::time::timeout(Duration::from_secs(5), s).await.ok().flatten(),
                None => None,
            };
            match exit_code(code.as_ref()) {
                Some(126 | 127) => Err(OpenError::NoShell),
                _ => Err(OpenError::Script(why)),
            }
        }
    }
}

fn params(container: &str, stdin: bool) -> AttachParams {
    let mut p = AttachParams::default().container(container).stdin(stdin).stdout(true).stderr(true);
    p.max_stdout_buf_size = Some(STREAM_BUF);
    p.max_stderr_buf_size = Some(STREAM_BUF);
    p
}

/// The exit code in an exec's final status: 0 on success, the `ExitCode` cause on failure
/// (parsed from `details.causes`, never from the message text); `None` when there is no status.
pub fn exit_code(status: Option<&Status>) -> Option<i32> {
    let s = status?;
    if s.status.as_deref() == Some("Success") {
        return Some(0);
    }
    s.details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

/// Run `cmd` (no stdin) and wait for its exit code and output (first 4 KiB).
pub fn run<'a>(
    api: &'a Api<Pod>,
    pod: &'a str,
    container: &'a str,
    cmd: Vec<String>,
) -> BoxFuture<'a, Result<(Option<i32>, String), kube::Error>> {
    Box::pin(async move {
        let mut process = api.exec(pod, cmd, &params(container, false)).await?;
        let status = process.take_status();
        let mut output = String::new();
        if let (Some(stdout), Some(stderr)) = (process.stdout(), process.stderr()) {
            let mut both = futures_util::stream::select(ReaderStream::new(stdout), ReaderStream::new(stderr));
            while let Some(Ok(b)) = both.next().await {
                if output.len() < 4096 {
                    output.push_str(&String::from_utf8_lossy(&b));
                }
            }
        }
        let code = match status {
            Some(s) => exit_code(s.await.as_ref()),
            None => None,
        };
        Ok((code, output))
    })
}
