//! `--install`: check that the remote's `uname -s`/`uname -m` match this build, upload this binary
//! to `~/.llmx/bin/llmx` (private directories, a temp file moved into place, never through a
//! symbolic link) and check that it runs there.

use super::{EventSink, INSTALL_PATH, TunnelError, TunnelEvent, TunnelOptions};
use crate::ssh::{Session, shell_quote};
use crate::text::printable;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// `(os, arch)` in `std::env::consts` terms from `uname -s` and `uname -m`.
pub fn platform_from_uname(sys: &str, machine: &str) -> (String, String) {
    let os = match sys {
        "Linux" => "linux",
        "Darwin" => "macos",
        "FreeBSD" => "freebsd",
        "NetBSD" => "netbsd",
        "OpenBSD" => "openbsd",
        "DragonFly" => "dragonfly",
        "SunOS" => "solaris",
        other => return (other.to_lowercase(), arch_from_uname(machine)),
    };
    (os.to_string(), arch_from_uname(machine))
}

fn arch_from_uname(machine: &str) -> String {
    match machine {
        "x86_64" | "amd64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        m if m.starts_with("armv") => "arm",
        "riscv64" => "riscv64",
        "ppc64le" | "ppc64" => "powerpc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
    .to_string()
}

/// `--install`: check the platform, upload `install_from` to `~/.llmx/bin/llmx` (dirs 0700, file
/// 0700, temp file + `mv -f`), and check that it runs.
pub(super) async fn install(
    session: &Session,
    host: &str,
    opts: &TunnelOptions,
    events: &EventSink,
) -> Result<String, TunnelError> {
    let out = session.call(|c| c.exec("uname -s && uname -m", b"")).await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::trim);
    let (Some(sys), Some(machine), true) = (lines.next(), lines.next(), out.status.success()) else {
        let detail = printable(&format!("{} {}", text.trim(), String::from_utf8_lossy(&out.stderr).trim()));
        return Err(TunnelError::UnknownPlatform { host: host.to_string(), detail });
    };
    let (os, arch) = platform_from_uname(sys, machine);
    let (local_os, local_arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if os != local_os || arch != local_arch {
        return Err(TunnelError::PlatformMismatch {
            host: host.to_string(),
            remote: format!("{os}/{arch} ({sys} {machine})"),
            local: format!("{local_os}/{local_arch}"),
        });
    }
    let from = match &opts.install_from {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|source| TunnelError::ReadBinary { path: PathBuf::from("(current executable)"), source })?,
    };
    let bytes =
        tokio::fs::read(&from).await.map_err(|source| TunnelError::ReadBinary { path: from.clone(), source })?;
    let home = session.call(|c| c.realpath(".")).await?;
    let dest = format!("{}/{INSTALL_PATH}", home.trim_end_matches('/'));
    // The same binary already there (an earlier --install): no upload, only the check below.
    let unchanged = remote_sha256(session, &dest).await.is_some_and(|h| h == hex::encode(Sha256::digest(&bytes)));
    if !unchanged {
        events(TunnelEvent::Installing { path: dest.clone(), bytes: bytes.len() as u64, os, arch });
        let (h, d) = (host.to_string(), dest.clone());
        session.call(move |c| Ok(upload_binary(c, &h, &home, &d, &bytes))).await??;
    }
    let check = format!("{} --version", shell_quote(&dest));
    let out = session.call(move |c| c.exec(&check, b"")).await?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.starts_with("llmx") {
        let detail = match String::from_utf8_lossy(&out.stderr).trim() {
            "" => format!("`--version` exited with {}", out.status.code),
            e => printable(e),
        };
        return Err(TunnelError::InstalledDoesNotRun { host: host.to_string(), path: dest, detail });
    }
    events(TunnelEvent::Installed { path: dest.clone(), unchanged });
    Ok(dest)
}

/// The SHA-256 of the regular file `path` on the host (`sha256sum`, as coreutils and busybox
/// have it); `None` when there is none, it is not a regular file, or the host cannot say.
async fn remote_sha256(session: &Session, path: &str) -> Option<String> {
    let q = shell_quote(path);
    let cmd = format!("[ -f {q} ] && [ ! -L {q} ] && sha256sum -- {q}");
    let out = session.call(move |c| c.exec(&cmd, b"")).await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.split_whitespace().next()?;
    (out.status.success() && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
}

/// On the session thread: make `~/.llmx` and `~/.llmx/bin` private directories, write the binary
/// to a temp file beside `dest` (0700) and move it into place.
fn upload_binary(
    c: &mut crate::ssh::Conn,
    host: &str,
    home: &str,
    dest: &str,
    bytes: &[u8],
) -> Result<(), TunnelError> {
    let llmx_dir = format!("{}/.llmx", home.trim_end_matches('/'));
    let bin_dir = format!("{llmx_dir}/bin");
    for dir in [&llmx_dir, &bin_dir] {
        match c.stat(dir)? {
            None => {
                c.mkdir(dir, 0o700)?;
                c.chmod(dir, 0o700)?;
            }
            Some(st) if st.is_dir() => {
                if st.perm.is_some_and(|p| p & 0o777 != 0o700) {
                    c.chmod(dir, 0o700)?;
                }
            }
            Some(_) => {
                return Err(TunnelError::InstallRefused {
                    host: host.to_string(),
                    path: dir.clone(),
                    what: "exists and is not a directory".into(),
                });
            }
        }
    }
    if c.lstat(dest)?.is_some_and(|st| st.file_type().is_symlink()) {
        return Err(TunnelError::InstallRefused {
            host: host.to_string(),
            path: dest.to_string(),
            what: "is a symbolic link; refusing to replace it".into(),
        });
    }
    let tmp = format!("{bin_dir}/.llmx.tmp-{}", crate::home::random_suffix());
    let placed = c.create_file(&tmp, bytes, 0o700).map_err(TunnelError::from).and_then(|()| {
        let out = c.exec(&format!("mv -f -- {} {}", shell_quote(&tmp), shell_quote(dest)), b"")?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TunnelError::InstallRefused {
                host: host.to_string(),
                path: dest.to_string(),
                what: format!("cannot be replaced: {}", printable(String::from_utf8_lossy(&out.stderr).trim())),
            })
        }
    });
    if placed.is_err() {
        let _ = c.unlink(&tmp);
    }
    placed?;
    c.chmod(dest, 0o700)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_maps_to_rust_platform_names() {
        assert_eq!(platform_from_uname("Linux", "x86_64"), ("linux".into(), "x86_64".into()));
        assert_eq!(platform_from_uname("Darwin", "arm64"), ("macos".into(), "aarch64".into()));
        assert_eq!(platform_from_uname("Linux", "armv7l"), ("linux".into(), "arm".into()));
        assert_eq!(platform_from_uname("Plan9", "mips"), ("plan9".into(), "mips".into()));
    }

    #[test]
    fn this_machine_matches_itself() {
        let sys = std::process::Command::new("uname").arg("-s").output().unwrap();
        let machine = std::process::Command::new("uname").arg("-m").output().unwrap();
        let (os, arch) = platform_from_uname(
            String::from_utf8_lossy(&sys.stdout).trim(),
            String::from_utf8_lossy(&machine.stdout).trim(),
        );
        assert_eq!((os.as_str(), arch.as_str()), (std::env::consts::OS, std::env::consts::ARCH));
    }
}
