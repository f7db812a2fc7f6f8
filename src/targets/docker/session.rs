//! The fast path for a running container with a shell: the exec conversation
//! ([`crate::targets::conversation`]) over one bollard `exec`, run as the container's own user.
//! This file only adapts bollard's types: it starts the exec and turns its multiplexed output
//! into [`Chunk`]s; the script, its protocol and its checks live in the conversation.
//!
//! Why one exec: each archive request costs the engine a helper process (~50 ms of CPU on Docker
//! 20.10), and a push through the archive API needs four of them (passwd, upload, move, read
//! back). The conversation needs one exec, so pushing to many containers is bounded by the
//! engine's exec rate, not by four times it. It also resolves the user exactly as the agent will
//! see it: the engine sets `HOME` from the container's `/etc/passwd` for the exec, and the
//! container's environment (`LLMX_HOME`) is the exec's.

use super::connect::error_text;
use crate::targets::conversation::{self, Chunk, Conversation, Header};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::pin::Pin;
use tokio::io::AsyncWrite;

/// The conversation as bollard carries it.
pub type Session = Conversation<BoxStream<'static, Result<Chunk, String>>, Pin<Box<dyn AsyncWrite + Send>>>;

/// Why the conversation could not be used; the caller then uses the archive path.
#[derive(Debug)]
pub enum Unavailable {
    /// Exec cannot run the script, or it did not answer as expected: the archive path may work.
    Exec(String),
    /// The container's shell flooded its error output: final, the target fails.
    Hostile(String),
}

/// Start the script; `Err(Unavailable)` when exec cannot run it or it does not answer as
/// expected (the caller falls back to the archive API).
pub async fn open(docker: &Docker, id: &str, remote_home: Option<&str>) -> Result<(Session, Header), Unavailable> {
    let opts = CreateExecOptions {
        cmd: Some(conversation::command(remote_home)),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = docker.create_exec(id, opts).await.map_err(|e| Unavailable::Exec(error_text(&e)))?;
    let (output, input) = match docker.start_exec(&created.id, None).await {
        Ok(StartExecResults::Attached { output, input }) => (output, input),
        Ok(StartExecResults::Detached) => return Err(Unavailable::Exec("exec detached".into())),
        Err(e) => return Err(Unavailable::Exec(error_text(&e))),
    };
    let chunks = output
        .filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(Chunk::Stdout(message.to_vec()))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(Chunk::Stderr(message.to_vec()))),
                Ok(_) => None,
                Err(e) => Some(Err(error_text(&e))),
            }
        })
        .boxed();
    Conversation::start(chunks, input)
        .await
        .map_err(|e| if e.hostile { Unavailable::Hostile(e.why) } else { Unavailable::Exec(e.why) })
}
