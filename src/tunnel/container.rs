//! The container side of `llmx auth tunnel docker:NAME`: the container (inspected through the
//! Engine API, its user resolved from its own `/etc/passwd`), the llmx to run in it (named by
//! `--remote-llmx`, found on its `PATH` or in `~/.llmx/bin` through the archive API, or copied in
//! by `--install` when its architecture and C library fit), and the login run through one exec as
//! the container's user, argv as words (no shell needed), its stdin held here ([`Exec`]).
//!
//! The login runs with `--end-on-stdin-eof`: closing the exec's stdin stops it, and so does the
//! engine when this process dies and the attach connection drops, so it never outlives the tunnel
//! for long even in a container without a shell to signal it.

use super::remote_login::{Lost, Out};
use super::{EventSink, INSTALL_PATH, TunnelError, TunnelEvent, TunnelOptions};
use crate::ssh::ExitStatus;
use crate::targets::docker::archive::{self, Upload};
use crate::targets::docker::connect::{Engine, error_text};
use crate::targets::docker::container_user;
use crate::targets::{DirKind, judge_dir};
use crate::text::printable;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The `PATH` the engine gives an exec when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most of an exec's output kept by [`Container::run`] (`--version`, `login status`).
const RUN_OUTPUT: usize = 64 * 1024;

/// A running container and who its processes run as.
pub(super) struct Container {
    docker: Docker,
    /// `docker:NAME`, for messages.
    pub(super) label: String,
    id: String,
    /// `Config.User` as set (`""`: root), and what it resolves to.
    pub(super) user: String,
    uid: u32,
    gid: u32,
    home: String,
    env: Vec<String>,
}

/// Inspect the container: it must run; its user is resolved from its own passwd database.
pub(super) async fn open(name: &str, opts: &super::TunnelOptions) -> Result<Container, TunnelError> {
    let label = format!("docker:{name}");
    let fail = |e: crate::targets::TargetError| TunnelError::Container {
        target: label.clone(),
        message: e.message,
        hint: e.hint,
    };
    let docker = Engine::from_env(&opts.docker, &opts.ssh).get().await.map_err(fail)?.clone();
    let info = match docker.inspect_container(name, None).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            return Err(TunnelError::Container {
                target: label,
                message: format!("no such container: {name}"),
                hint: Some("list containers with `docker ps`".into()),
            });
        }
        Err(e) => return Err(TunnelError::Container { target: label, message: error_text(&e), hint: None }),
    };
    let id = info.id.clone().unwrap_or_else(|| name.to_string());
    let state = info.state.as_ref();
    if !state.and_then(|s| s.running).unwrap_or(false) || state.and_then(|s| s.paused).unwrap_or(false) {
        return Err(TunnelError::Container {
            target: label,
            message: "the container is not running (a login runs inside it)".into(),
            hint: Some(format!("start it with `docker start {name}` (or unpause it) and run the tunnel again")),
        });
    }
    let config = info.config.unwrap_or_default();
    let user = config.user.unwrap_or_default();
    let who = container_user(&docker, &id, &user).await.map_err(fail)?;
    let env = config.env.unwrap_or_default();
    // The login resolves ~/.llmx from HOME: give it the passwd home when the image sets none.
    let home = env_value(&env, "HOME").map(str::to_string).unwrap_or_else(|| who.home.clone());
    let mut extra = Vec::new();
    if env_value(&env, "HOME").is_none() {
        extra.push(format!("HOME={home}"));
    }
    let path = env_value(&env, "PATH").unwrap_or(DEFAULT_PATH).to_string();
    extra.push(format!("PATH={path}"));
    Ok(Container { docker, label, id, user, uid: who.uid, gid: who.gid, home, env: extra })
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('='))).filter(|v| !v.is_empty())
}

impl Container {
    /// The container ID, as `docker ps` shows it (12 characters).
    pub(super) fn id_short(&self) -> String {
        self.id.chars().take(12).collect()
    }

    fn path_env(&self) -> &str {
        self.env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH)
    }

    fn under_home(&self, rel: &str) -> String {
        format!("{}/{rel}", self.home.trim_end_matches('/'))
    }

    async fn exists(&self, path: &str) -> Result<bool, TunnelError> {
        archive::exists(&self.docker, &self.id, path).await.map_err(|e| TunnelError::Container {
            target: self.label.clone(),
            message: format!("looking for {path}: {e}"),
            hint: None,
        })
    }

    /// The llmx to run: `--install`ed, named, found on the container's PATH, or `~/.llmx/bin/llmx`.
    pub(super) async fn llmx(&self, opts: &TunnelOptions, events: &EventSink) -> Result<String, TunnelError> {
        if opts.install {
            return self.install(opts, events).await;
        }
        let candidates: Vec<String> = match opts.remote_llmx.as_deref() {
            Some("~") => vec![self.home.clone()],
            Some(p) if p.starts_with("~/") => vec![self.under_home(&p[2..])],
            Some(p) if p.contains('/') => vec![p.to_string()],
            Some(name) => self.path_env().split(':').filter(|d| d.starts_with('/')).map(|d| join(d, name)).collect(),
            None => {
                let mut c: Vec<String> =
                    self.path_env().split(':').filter(|d| d.starts_with('/')).map(|d| join(d, "llmx")).collect();
                c.push(self.under_home(INSTALL_PATH));
                c
            }
        };
        for c in candidates {
            if self.exists(&c).await? {
                return Ok(c);
            }
        }
        Err(match &opts.remote_llmx {
            Some(p) => TunnelError::RemoteLlmxMissing { host: self.label.clone(), path: p.clone() },
            None => TunnelError::NoContainerLlmx { target: self.label.clone(), home: self.home.clone() },
        })
    }

    /// `--install`: the container's architecture and C library must fit this build; copy this
    /// binary to `~/.llmx/bin/llmx` (dirs 0700, file 0700, the user's) through the archive API
    /// and check that it runs there.
    async fn install(&self, opts: &TunnelOptions, events: &EventSink) -> Result<String, TunnelError> {
        let from = match &opts.install_from {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|source| TunnelError::ReadBinary {
                path: std::path::PathBuf::from("(current executable)"),
                source,
            })?,
        };
        let bytes =
            tokio::fs::read(&from).await.map_err(|source| TunnelError::ReadBinary { path: from.clone(), source })?;
        let (os, arch) = self.platform().await?;
        let (local_os, local_arch) = (std::env::consts::OS, std::env::consts::ARCH);
        if os != local_os || arch != local_arch {
            return Err(TunnelError::PlatformMismatch {
                host: self.label.clone(),
                remote: format!("{os}/{arch}"),
                local: format!("{local_os}/{local_arch}"),
            });
        }
        // A dynamically linked build needs its program interpreter (glibc's loader) there.
        if let Some(loader) = interpreter(&bytes)
            && !self.exists(&loader).await?
        {
            return Err(TunnelError::NoLoader { target: self.label.clone(), loader });
        }
        let dest = self.under_home(INSTALL_PATH);
        self.check_install_dirs(&dest).await?;
        events(TunnelEvent::Installing { path: dest.clone(), bytes: bytes.len() as u64, os, arch });
        let up = Upload {
            at: &self.home,
            parents: &[".llmx"],
            dir_rel: ".llmx/bin",
            dir_entry: true,
            file_name: "llmx",
            file_mode: 0o700,
            bytes: &bytes,
            uid: self.uid,
            gid: self.gid,
        };
        let placed = archive::upload(&self.docker, &self.id, &up).await.map_err(|e| TunnelError::InstallRefused {
            host: self.label.clone(),
            path: dest.clone(),
            what: format!("cannot be written: {e}"),
        })?;
        if !placed {
            return Err(TunnelError::InstallRefused {
                host: self.label.clone(),
                path: dest,
                what: format!("cannot be written: the home directory {} does not exist", self.home),
            });
        }
        let (status, out, err) = self.run(vec![dest.clone(), "--version".into()]).await?;
        if !status.success() || !out.starts_with(b"llmx") {
            let detail = match String::from_utf8_lossy(&err).trim() {
                "" => format!("`--version` exited with {}", status.code),
                e => printable(e),
            };
            return Err(TunnelError::InstalledDoesNotRun { host: self.label.clone(), path: dest, detail });
        }
        events(TunnelEvent::Installed { path: dest.clone(), unchanged: false });
        Ok(dest)
    }

    /// `~/.llmx` and `~/.llmx/bin` must be missing or the user's own (never a link, never
    /// another user's), and the destination no link: the archive API writes as root.
    async fn check_install_dirs(&self, dest: &str) -> Result<(), TunnelError> {
        let refuse = |path: String, what: String| TunnelError::InstallRefused { host: self.label.clone(), path, what };
        for dir in [self.under_home(".llmx"), self.under_home(".llmx/bin")] {
            let facts =
                archive::lstat(&self.docker, &self.id, &dir).await.map_err(|e| refuse(dir.clone(), e.to_string()))?;
            if let Some(f) = facts {
                judge_dir(&dir, &f, Some(self.uid)).map_err(|why| refuse(dir.clone(), why))?;
            }
        }
        let at =
            archive::lstat(&self.docker, &self.id, dest).await.map_err(|e| refuse(dest.to_string(), e.to_string()))?;
        if at.is_some_and(|f| f.kind == DirKind::Link) {
            return Err(refuse(dest.to_string(), "is a symbolic link; refusing to replace it".into()));
        }
        Ok(())
    }

    /// The container's `(os, arch)` in `std::env::consts` terms, from its image.
    async fn platform(&self) -> Result<(String, String), TunnelError> {
        let info = self.docker.inspect_container(&self.id, None).await.map_err(|e| TunnelError::Container {
            target: self.label.clone(),
            message: error_text(&e),
            hint: None,
        })?;
        let image = info.image.unwrap_or_default();
        let img = self.docker.inspect_image(&image).await.map_err(|e| TunnelError::UnknownPlatform {
            host: self.label.clone(),
            detail: format!("inspecting its image: {}", error_text(&e)),
        })?;
        let os = img.os.unwrap_or_default();
        let arch = match img.architecture.as_deref().unwrap_or("") {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "386" => "x86",
            "arm" => "arm",
            "ppc64le" => "powerpc64",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "" => {
                return Err(TunnelError::UnknownPlatform {
                    host: self.label.clone(),
                    detail: "its image names no architecture".into(),
                });
            }
            other => other,
        };
        Ok((os, arch.to_string()))
    }

    fn exec_options(&self, cmd: Vec<String>, stdin: bool) -> CreateExecOptions<String> {
        CreateExecOptions {
            cmd: Some(cmd),
            env: Some(self.env.clone()),
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        }
    }

    /// Start `cmd` as the container's user with its stdin attached; its pid as the engine reports it.
    pub(super) async fn spawn(&self, cmd: Vec<String>) -> Result<(Exec, u32), TunnelError> {
        let fail = |e: bollard::errors::Error| TunnelError::Container {
            target: self.label.clone(),
            message: format!("starting the login: {}", error_text(&e)),
            hint: None,
        };
        let created = self.docker.create_exec(&self.id, self.exec_options(cmd, true)).await.map_err(fail)?;
        let (mut output, input) = match self.docker.start_exec(&created.id, None).await.map_err(fail)? {
            StartExecResults::Attached { output, input } => (output, input),
            StartExecResults::Detached => {
                return Err(TunnelError::Container {
                    target: self.label.clone(),
                    message: "the engine started the login detached".into(),
                    hint: None,
                });
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (docker, exec_id) = (self.docker.clone(), created.id.clone());
        let task = tokio::spawn(async move {
            while let Some(item) = output.next().await {
                let out = match item {
                    Ok(LogOutput::StdOut { message }) => Out::Stdout(message.to_vec()),
                    Ok(LogOutput::StdErr { message }) => Out::Stderr(message.to_vec()),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Out::Lost(Lost::Engine(error_text(&e))));
                        return;
                    }
                };
                if tx.send(out).is_err() {
                    return;
                }
            }
            let _ = tx.send(match exit_code(&docker, &exec_id).await {
                Some(code) => Out::Exit(ExitStatus { code, signal: None }),
                None => Out::Lost(Lost::Engine("the engine reported no exit status".into())),
            });
        });
        let pid = match self.docker.inspect_exec(&created.id).await {
            Ok(i) => i.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
            Err(_) => 0,
        };
        Ok((Exec { rx, input: Some(input), task }, pid))
    }

    /// Run `cmd` as the container's user to its end (bounded output): status, stdout, stderr.
    pub(super) async fn run(&self, cmd: Vec<String>) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), TunnelError> {
        let (mut exec, _) = self.spawn(cmd).await?;
        exec.close_input().await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match exec.next().await {
                Out::Stdout(b) if out.len() < RUN_OUTPUT => out.extend_from_slice(&b),
                Out::Stderr(b) if err.len() < RUN_OUTPUT => err.extend_from_slice(&b),
                Out::Stdout(_) | Out::Stderr(_) => {}
                Out::Exit(s) => return Ok((s, out, err)),
                Out::Lost(Lost::Engine(e)) => {
                    return Err(TunnelError::Container { target: self.label.clone(), message: e, hint: None });
                }
                Out::Lost(Lost::Ssh(e)) => return Err(TunnelError::Ssh(e)),
            }
        }
    }
}

/// The exec's exit code once the engine has it (it may lag the end of the output briefly).
async fn exit_code(docker: &Docker, exec_id: &str) -> Option<i32> {
    for _ in 0..20 {
        match docker.inspect_exec(exec_id).await {
            Ok(i) if i.running != Some(true) => return i.exit_code.and_then(|c| i32::try_from(c).ok()),
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return None,
        }
    }
    None
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF file, e.g.
/// `/lib64/ld-linux-x86-64.so.2`; `None` for a static binary or anything else.
pub(super) fn interpreter(elf: &[u8]) -> Option<String> {
    if elf.get(..5)? != b"\x7fELF\x02" || elf.get(5) != Some(&1) {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?) as usize);
    let (phoff, size, count) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    (0..count).find_map(|i| {
        let ph = phoff.checked_add(i.checked_mul(size)?)?;
        let kind = u32::from_le_bytes(elf.get(ph..ph + 4)?.try_into().ok()?);
        if kind != 3 {
            return None;
        }
        let (off, len) = (u64_at(ph + 8)?, u64_at(ph + 32)?);
        let text = elf.get(off..off.checked_add(len)?)?;
        let text = text.split(|&b| b == 0).next()?;
        std::str::from_utf8(text).ok().filter(|t| t.starts_with('/')).map(str::to_string)
    })
}

/// The login's exec: its output as [`Out`]s (a task reads the engine's stream), its stdin here.
/// Dropping it closes the attach connection, and with it the login's stdin.
pub(super) struct Exec {
    rx: mpsc::UnboundedReceiver<Out>,
    input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exec {
    /// Cancel-safe: its only await is a channel receive.
    pub(super) async fn next(&mut self) -> Out {
        match self.rx.recv().await {
            Some(o) => o,
            None => std::future::pending().await,
        }
    }

    pub(super) async fn send_line(&mut self, line: &str) -> bool {
        let Some(input) = &mut self.input else { return false };
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        input.write_all(&bytes).await.is_ok() && input.flush().await.is_ok()
    }

    /// Half-close the attach connection: the login reads end of input.
    pub(super) async fn close_input(&mut self) {
        if let Some(mut input) = self.input.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), input.shutdown()).await;
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_names_its_loader_and_a_static_one_none() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let loader = interpreter(&me);
        assert!(loader.as_deref().is_some_and(|l| l.starts_with('/') && l.contains("ld")), "{loader:?}");
        assert_eq!(interpreter(b"\x7fELF\x02\x01"), None);
        assert_eq!(interpreter(b"#!/bin/sh\n"), None);
    }
}
