//! A Docker Engine on another machine reached through llmx's own SSH transport
//! (`DOCKER_HOST=ssh://[user@]host[:port]`, an ssh context): the same `~/.ssh/config`
//! (ProxyJump, HostKeyAlias, …), known_hosts check, agent and identities as `ssh:` targets.
//!
//! The docker CLI runs `docker system dial-stdio` on the remote; we open the remote engine's socket
//! directly over a `direct-streamlocal@openssh.com` channel (what `ssh -L local.sock:remote.sock`
//! does), one channel per API request, which needs no docker CLI on the remote. One short command
//! first finds the socket (the remote's own `DOCKER_HOST` when its environment sets a `unix://`
//! one, else `/var/run/docker.sock`) and checks that it exists and that the login user may use
//! it, so a missing engine or a user outside the `docker` group is one clear line.

use crate::ssh::{Session, SshAddress, SshOptions, posix_command};
use crate::targets::TargetError;
use crate::targets::docker::transport::{Dial, EngineIo, Held};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Finds the remote socket; exit 3: no socket there, 4: `DOCKER_HOST` is not a socket, 5: the
/// user may not use it. Prints the path (or the remote `DOCKER_HOST`).
const PROBE: &str = r#"h=${DOCKER_HOST:-unix:///var/run/docker.sock}
case $h in unix://*) s=${h#unix://} ;; *) printf '%s' "$h"; exit 4 ;; esac
printf '%s' "$s"
[ -S "$s" ] || exit 3
{ [ -r "$s" ] && [ -w "$s" ]; } || exit 5"#;

/// Connect to `addr` and return a dialer of the remote engine's socket and the socket's path.
pub async fn dial_over_ssh(addr: &SshAddress, opts: &SshOptions, shown: &str) -> Result<(Dial, String), TargetError> {
    let session = Session::connect(addr, opts).await.map_err(|e| {
        let t = TargetError::from(e);
        TargetError { message: format!("Docker engine {shown}: {}", t.message), ..t }
    })?;
    let user = session.info().user.clone();
    let out = session.exec(&posix_command(PROBE), Vec::new()).await?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let host = addr.host.clone();
    let fail = |m: String, h: String| Err(TargetError::new(format!("Docker engine {shown}: {m}")).with_hint(h));
    match out.status.code {
        0 => {}
        3 => {
            return fail(
                format!("no Docker Engine socket at {said} on {host}"),
                format!("is Docker installed and running there? (`ssh {host} docker info`)"),
            );
        }
        4 => {
            return fail(
                format!("the remote DOCKER_HOST is {said}, not a local socket"),
                "point the remote's DOCKER_HOST at its unix:// socket, or set DOCKER_HOST here to that engine".into(),
            );
        }
        5 => {
            return fail(
                format!("{user} on {host} may not use {said}"),
                format!(
                    "add {user} to the docker group on {host} (usermod -aG docker {user}), or connect as a user who can"
                ),
            );
        }
        c => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return fail(
                format!("cannot look for the engine's socket (exit {c}): {err}"),
                "check `ssh HOST sh` works".into(),
            );
        }
    }
    let path = said;
    let socket = path.clone();
    let dial: Dial = Arc::new(move || {
        let session = session.clone();
        let socket = socket.clone();
        Box::pin(async move {
            let (ours, theirs) = UnixStream::pair()?;
            let forward = session.forward_unix(ours, &socket).await.map_err(std::io::Error::other)?;
            theirs.set_nonblocking(true)?;
            let io = tokio::net::UnixStream::from_std(theirs)?;
            Ok(Box::new(Held { io, _keep: Box::new(forward) }) as Box<dyn EngineIo>)
        })
    });
    Ok((dial, path))
}
