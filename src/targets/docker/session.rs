//! The fast path for a running container with a shell: one `exec`, as the container's own user,
//! carries the whole push as a short conversation over its stdin and stdout.
//!
//! Why: each archive request costs the engine a helper process (~50 ms of CPU on Docker 20.10),
//! and a push through the archive API needs four of them (passwd, upload, move, read back). The
//! conversation needs one exec, so pushing to many containers is bounded by the engine's exec
//! rate, not by four times it. It also resolves the user exactly as the agent will see it: the
//! engine sets `HOME` from the container's `/etc/passwd` for the exec, and the container's
//! environment (`LLMX_HOME`) is the exec's.
//!
//! The script prints a header (`llmx1 UID GID HOME`), then the current auth.json (`ls -ln` line,
//! byte count, bytes), `none`, or `symlink` (refused by the caller, as the SSH target does), then
//! waits for one line on stdin. On `write N` it removes temp files an earlier push left behind
//! (`.auth.json.llmx-*`), reads the new
//! file to end of input into a temp file (umask 077, chmod 600) in the credential directory
//! (created, and chmod 700 unless sticky), checks that exactly N bytes arrived (a connection cut
//! mid-transfer ends the input early: the short temp file is removed, auth.json is untouched),
//! `mv -f`s it over auth.json (one `rename(2)`: readers see the old file or the new one), and
//! prints it back. Anything else ends it without a write.
//! When a step fails (say the directory is not writable by that user) it exits non-zero and the
//! caller falls back to the archive path, which writes as root with explicit owner and modes.

use super::archive::{FileEntry, MAX_READ};
use super::connect::error_text;
use crate::targets::TargetError;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How long the container may take to answer at each stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

const SCRIPT: &str = r#"umask 077
d=$1; [ -n "$d" ] || d=$LLMX_HOME; [ -n "$d" ] || d=${HOME:-/}/.llmx
f=$d/auth.json
printf 'llmx1 %s %s %s\n' "$(id -u)" "$(id -g)" "$d"
if [ -L "$f" ]; then echo symlink
elif [ ! -e "$f" ]; then echo none
elif [ -f "$f" ] && [ -r "$f" ]; then ls -ln "$f"; wc -c < "$f"; cat "$f"
else echo unreadable; fi
read -r go n || exit 0
[ "$go" = write ] || exit 0
case $n in ''|*[!0-9]*) exit 3;; esac
t=$d/.auth.json.llmx-$2
mkdir -p "$d" && { [ -k "$d" ] || chmod 700 "$d"; } && [ ! -L "$f" ] &&
{ find "$d" -maxdepth 1 -name '.auth.json.llmx-*' -mmin +10 -exec rm -f -- {} + 2>/dev/null; :; } &&
cat > "$t" && s=$(wc -c < "$t") && [ $s -eq "$n" ] &&
chmod 600 "$t" && mv -f "$t" "$f" || { rm -f -- "$t"; exit 3; }
echo done; ls -ln "$f"; wc -c < "$f"; cat "$f"
"#;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;
type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// What the container said before any write.
#[derive(Debug, Clone)]
pub struct Header {
    pub uid: u32,
    pub gid: u32,
    /// The credential directory as the shell computed it (not yet validated).
    pub home: String,
    pub current: Option<FileEntry>,
    /// auth.json is a symbolic link (then `current` is `None`).
    pub symlink: bool,
}

/// A conversation in progress: dropped without `write`, the script reads end of input and exits.
pub struct Session {
    output: Output,
    input: Input,
    buf: Vec<u8>,
    stderr: String,
}

/// Why the conversation could not be used; the caller then uses the archive path.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Session {
    /// Start the script; `Err(Unavailable)` when exec cannot run it or it does not answer as
    /// expected (the caller falls back to the archive API).
    pub async fn open(
        docker: &Docker,
        id: &str,
        remote_home: Option<&str>,
        tmp_suffix: &str,
    ) -> Result<(Session, Header), Unavailable> {
        let cmd = ["/bin/sh", "-c", SCRIPT, "llmx", remote_home.unwrap_or(""), tmp_suffix];
        let opts = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = docker.create_exec(id, opts).await.map_err(|e| Unavailable(error_text(&e)))?;
        let (output, input) = match docker.start_exec(&created.id, None).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => return Err(Unavailable("exec detached".into())),
            Err(e) => return Err(Unavailable(error_text(&e))),
        };
        let mut s = Session { output, input, buf: Vec::new(), stderr: String::new() };
        let header = s.header().await.map_err(|e| Unavailable(format!("{e}; {}", s.stderr.trim())))?;
        Ok((s, header))
    }

    async fn header(&mut self) -> Result<Header, String> {
        let line = self.line().await?;
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        let (uid, gid, home) = match f.as_slice() {
            ["llmx1", u, g, h] => (
                u.parse().map_err(|_| format!("bad uid {u:?}"))?,
                g.parse().map_err(|_| format!("bad gid {g:?}"))?,
                h.to_string(),
            ),
            _ => return Err("the container's shell did not run the script".into()),
        };
        let (current, symlink) = match self.line().await?.as_str() {
            "none" => (None, false),
            "symlink" => (None, true),
            "unreadable" => return Err("auth.json is not readable by the container's user".into()),
            ls => (Some(self.file(ls).await?), false),
        };
        Ok(Header { uid, gid, home, current, symlink })
    }

    /// `ls -ln` line already read; then the byte count and the bytes.
    async fn file(&mut self, ls: &str) -> Result<FileEntry, String> {
        let (mode, uid, gid) = parse_ls(ls).ok_or_else(|| format!("unexpected ls output {ls:?}"))?;
        let size: usize = self.line().await?.trim().parse().map_err(|_| "bad byte count".to_string())?;
        // The container says how much follows: never buffer more than any file we accept.
        if size > MAX_READ {
            return Err(format!("auth.json is larger than expected ({size} bytes)"));
        }
        let bytes = self.exact(size).await?;
        Ok(FileEntry { bytes, uid, gid, mode })
    }

    /// Send `bytes` to be written; returns the file as read back after the move.
    pub async fn write(mut self, bytes: &[u8]) -> Result<FileEntry, TargetError> {
        let send = async {
            // The length lets the script tell a complete file from input cut short.
            self.input.write_all(format!("write {}\n", bytes.len()).as_bytes()).await?;
            self.input.write_all(bytes).await?;
            self.input.shutdown().await
        };
        tokio::time::timeout(STAGE_TIMEOUT, send)
            .await
            .map_err(|_| TargetError::new("the container did not take the file in time"))?
            .map_err(|e| TargetError::new(format!("sending the file to the container: {e}")))?;
        let result = async {
            if self.line().await? != "done" {
                return Err("no confirmation".to_string());
            }
            let ls = self.line().await?;
            self.file(&ls).await
        }
        .await;
        result.map_err(|e| {
            let why = self.stderr.trim();
            TargetError::new(format!("writing through exec failed: {}", if why.is_empty() { e.as_str() } else { why }))
        })
    }

    async fn fill(&mut self) -> Result<(), String> {
        loop {
            let next = tokio::time::timeout(STAGE_TIMEOUT, self.output.next())
                .await
                .map_err(|_| "the container did not answer in time".to_string())?;
            match next {
                None => return Err("the script ended early".into()),
                Some(Err(e)) => return Err(error_text(&e)),
                Some(Ok(LogOutput::StdOut { message })) => {
                    self.buf.extend_from_slice(&message);
                    return Ok(());
                }
                Some(Ok(LogOutput::StdErr { message })) if self.stderr.len() < 4096 => {
                    self.stderr.push_str(&String::from_utf8_lossy(&message));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return Err("unexpected output".into());
            }
            self.fill().await?;
        }
    }

    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

/// `-rw-------    1 1000     1000    376 Nov 29 04:19 /path` → (0o600, 1000, 1000).
fn parse_ls(line: &str) -> Option<(u32, u32, u32)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let perms = f.first()?.as_bytes();
    if perms.len() < 10 {
        return None;
    }
    let mut mode = 0;
    for (i, c) in perms[1..10].iter().enumerate() {
        if !matches!(c, b'-') {
            mode |= 1 << (8 - i);
        }
    }
    Some((mode, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines() {
        assert_eq!(parse_ls("-rw-------    1 1000     1000   376 Nov 29 04:19 /a b"), Some((0o600, 1000, 1000)));
        assert_eq!(parse_ls("-rwxr-x--x 1 0 0 1 Jan 1 2020 /x"), Some((0o751, 0, 0)));
        assert_eq!(parse_ls("total 0"), None);
    }

    /// Run the script in a local `sh` with `stdin`; the exit code.
    fn run_script(home: &std::path::Path, stdin: &[u8]) -> Option<i32> {
        use std::io::Write;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "llmx", home.to_str().unwrap(), "t1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait().unwrap().code()
    }

    /// A session fed `output` as the container's stdout; its input goes nowhere.
    fn session_with(output: Vec<Vec<u8>>, endless: bool) -> Session {
        let head = futures_util::stream::iter(output).map(|m| Ok(LogOutput::StdOut { message: m.into() }));
        let tail = futures_util::stream::repeat_with(|| Ok(LogOutput::StdOut { message: vec![b'x'; 65536].into() }))
            .take(if endless { usize::MAX } else { 0 });
        Session {
            output: Box::pin(head.chain(tail)),
            input: Box::pin(tokio::io::sink()),
            buf: Vec::new(),
            stderr: String::new(),
        }
    }

    #[tokio::test]
    async fn container_reported_size_is_capped_at_max_read() {
        // The container claims a file just over MAX_READ and keeps sending: refused at once,
        // before any of it is buffered.
        let head = format!("llmx1 0 0 /root/.llmx\n-rw------- 1 0 0 1 Jan 1 2020 /f\n{}\n", MAX_READ + 1);
        let mut s = session_with(vec![head.into_bytes()], true);
        let e = s.header().await.unwrap_err();
        assert!(e.contains("larger than expected"), "{e}");
        assert!(s.buf.len() <= 65536, "buffered {} bytes", s.buf.len());
        // Up to the limit it is read.
        let mut s = session_with(vec![b"llmx1 0 0 /h\n-rw------- 1 0 0 1 Jan 1 2020 /f\n3\nabc".to_vec()], false);
        assert_eq!(s.header().await.unwrap().current.unwrap().bytes, b"abc");
    }

    #[test]
    fn symlinked_auth_json_is_reported_and_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        std::fs::create_dir(&home).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, "theirs").unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join("auth.json")).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "llmx", home.to_str().unwrap(), "t1"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().nth(1), Some("symlink"));
        assert_eq!(run_script(&home, b"write 3\nnew"), Some(3));
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "theirs");
        assert!(std::fs::symlink_metadata(home.join("auth.json")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn exec_write_removes_stale_temp_files_and_its_own_on_failure() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        std::fs::create_dir(&home).unwrap();
        let stale = |home: &std::path::Path| {
            let f = std::fs::File::create(home.join(".auth.json.llmx-stale")).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
            // A young one belongs to a write under way: it stays.
            std::fs::write(home.join(".auth.json.llmx-young"), "another write").unwrap();
        };
        stale(&home);
        // A failed write (short input) leaves neither the stale file nor its own.
        assert_eq!(run_script(&home, b"write 9\nnew"), Some(3));
        let names = |home: &std::path::Path| {
            let mut n: Vec<_> = std::fs::read_dir(home).unwrap().map(|e| e.unwrap().file_name()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&home), [".auth.json.llmx-young"]);
        stale(&home);
        assert_eq!(run_script(&home, b"write 3\nnew"), Some(0));
        assert_eq!(names(&home), [".auth.json.llmx-young", "auth.json"]);
    }

    #[test]
    fn truncated_exec_input_leaves_the_old_auth_json() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        let auth = home.join("auth.json");
        assert_eq!(run_script(&home, b"write 9\nold-login"), Some(0), "9 of 9 bytes: a complete write");
        assert_eq!(std::fs::read(&auth).unwrap(), b"old-login");
        // The connection dies after 3 of the 9 bytes announced: end of input comes early.
        assert_eq!(run_script(&home, b"write 9\nnew"), Some(3));
        assert_eq!(std::fs::read(&auth).unwrap(), b"old-login");
        assert_eq!(std::fs::read_dir(&home).unwrap().count(), 1, "the short temp file was removed");
        // A complete write replaces it.
        assert_eq!(run_script(&home, b"write 9\nnew-login"), Some(0));
        assert_eq!(std::fs::read(&auth).unwrap(), b"new-login");
    }
}
