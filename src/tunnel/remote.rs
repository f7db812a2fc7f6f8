//! The remote llmx, by command: which one to run (named by `--remote-llmx`, found on the PATH of a
//! non-interactive shell or in `~/.llmx/bin`, or uploaded by `--install`), how the words of its
//! command line are quoted for the remote shell, and what its `llmx login status --json` reports
//! once the login is over.

use super::install::install;
use super::{EventSink, INSTALL_PATH, Link, RemoteStatus, Tunnel, TunnelError, TunnelEvent, TunnelOptions};
use crate::ssh::{Session, shell_quote};
use crate::text::printable;
use std::time::Duration;

/// How long the final `llmx login status` may take.
const STATUS_LIMIT: Duration = Duration::from_secs(10);

/// ` --config='K=V'` for each override, quoted for the remote shell. The `--config=` form keeps
/// an override that starts with `-` one value for the remote clap, never a flag of its own.
pub(super) fn overrides_words(overrides: &[String]) -> String {
    overrides.iter().map(|o| format!(" --config={}", shell_quote(o))).collect()
}

/// A remote path as a shell word: `~` and `~/…` start from `$HOME`, the rest is quoted.
fn path_word(path: &str) -> String {
    if path == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("\"$HOME\"/{}", shell_quote(rest))
    } else {
        shell_quote(path)
    }
}

/// The script that prints the path of the llmx to run (exit 0), or exits 127.
fn find_script(explicit: Option<&str>) -> String {
    match explicit {
        Some(p) if p.contains('/') || p.starts_with('~') => {
            format!("p={}; [ -f \"$p\" ] && [ -x \"$p\" ] && printf '%s\\n' \"$p\" || exit 127", path_word(p))
        }
        Some(name) => format!(
            "p=$(command -v {} 2>/dev/null) && [ -x \"$p\" ] && printf '%s\\n' \"$p\" || exit 127",
            shell_quote(name)
        ),
        None => format!(
            "p=$(command -v llmx 2>/dev/null) && [ -x \"$p\" ] && {{ printf '%s\\n' \"$p\"; exit 0; }}; \
             [ -f \"$HOME/{INSTALL_PATH}\" ] && [ -x \"$HOME/{INSTALL_PATH}\" ] && \
             {{ printf '%s\\n' \"$HOME/{INSTALL_PATH}\"; exit 0; }}; exit 127"
        ),
    }
}

/// The remote llmx to run: named, found, or installed.
pub(super) async fn remote_llmx(
    session: &Session,
    host: &str,
    opts: &TunnelOptions,
    events: &EventSink,
) -> Result<String, TunnelError> {
    if opts.install {
        return install(session, host, opts, events).await;
    }
    let script = find_script(opts.remote_llmx.as_deref());
    let out = session.call(move |c| c.exec(&script, b"")).await?;
    let found = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    if out.status.success() && !found.is_empty() {
        return Ok(found);
    }
    Err(match &opts.remote_llmx {
        Some(p) => TunnelError::RemoteLlmxMissing { host: host.to_string(), path: p.clone() },
        None => TunnelError::NoRemoteLlmx { host: host.to_string() },
    })
}

impl Tunnel {
    /// The remote's `llmx login status --json` (with the same `-c` overrides as the login).
    pub(super) async fn status(&self, overrides: &[String]) -> Option<RemoteStatus> {
        // Bounded: after a lost connection this must not wait for the I/O timeout.
        let parsed = match tokio::time::timeout(STATUS_LIMIT, self.status_output(overrides)).await {
            Err(_) => Err(format!("no answer within {} s", STATUS_LIMIT.as_secs())),
            Ok(Err(e)) => Err(e),
            Ok(Ok((stdout, stderr))) => serde_json::from_slice::<RemoteStatus>(&stdout).map_err(|e| {
                let err = String::from_utf8_lossy(&stderr);
                format!("unexpected answer ({e}) {}", printable(err.trim()))
            }),
        };
        match parsed {
            Ok(s) => Some(s),
            Err(e) => {
                (self.events)(TunnelEvent::Warning {
                    message: format!("{}: `llmx login status` after the login failed: {e}", self.host),
                });
                None
            }
        }
    }

    /// `llmx login status --json` run where the login ran: its stdout and stderr.
    async fn status_output(&self, overrides: &[String]) -> Result<(Vec<u8>, Vec<u8>), String> {
        match &self.link {
            Link::Ssh(session) => {
                let cmd = format!("exec {}{} login status --json", shell_quote(&self.llmx), overrides_words(overrides));
                let out = session.call(move |c| c.exec(&cmd, b"")).await.map_err(|e| e.to_string())?;
                Ok((out.stdout, out.stderr))
            }
            Link::Container(c) => {
                let mut cmd = vec![self.llmx.clone()];
                cmd.extend(overrides.iter().map(|o| format!("--config={o}")));
                cmd.extend(["login", "status", "--json"].map(String::from));
                let (_, out, err) = c.run(cmd).await.map_err(|e| e.to_string())?;
                Ok((out, err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_are_quoted_and_tilde_means_home() {
        assert_eq!(path_word("~/bin/ll x"), "\"$HOME\"/'bin/ll x'");
        assert_eq!(path_word("/opt/$(x)"), "'/opt/$(x)'");
        assert_eq!(
            overrides_words(&["auth_issuer=http://h:1/ x'y".into()]),
            " --config='auth_issuer=http://h:1/ x'\\''y'"
        );
    }

    #[test]
    fn override_starting_with_a_dash_stays_a_value_for_the_remote() {
        // `llmx --config=--port=1 auth tunnel h` is valid here; `-c '--port=1'` made the remote
        // clap read a flag. Through sh, each override must arrive as exactly one `--config=` word.
        let words = overrides_words(&["--port=1".into(), "a=b c".into()]);
        let out = std::process::Command::new("sh").arg("-c").arg(format!("printf '%s\\n'{words}")).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "--config=--port=1\n--config=a=b c\n");
    }

    #[test]
    fn find_scripts_run_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("my llmx");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No llmx on this PATH, so the default looks in ~/.llmx/bin only.
        let run = |script: String| {
            let mut cmd = std::process::Command::new("/bin/sh");
            let out = cmd.arg("-c").arg(script).env("HOME", dir.path()).env("PATH", "/nonexistent").output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let found = (Some(0), bin.to_str().unwrap().to_string());
        assert_eq!(run(find_script(Some(bin.to_str().unwrap()))), found);
        assert_eq!(run(find_script(Some("~/my llmx"))), found);
        assert_eq!(run(find_script(Some("~/nope"))).0, Some(127));
        assert_eq!(run(find_script(None)).0, Some(127));
        let installed = dir.path().join(INSTALL_PATH);
        std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
        std::fs::copy(&bin, &installed).unwrap();
        assert_eq!(run(find_script(None)), (Some(0), installed.to_str().unwrap().to_string()));
    }
}
