//! The exec conversation: one shell, started through a container runtime's exec API as the
//! target's own user, reads the current auth.json, then writes, moves and reads back the new one,
//! talking over its stdin and stdout. This module owns the script and the parsing of its answers;
//! it knows no runtime: it is generic over the exec's output (a stream of [`Chunk`]s: stdout and
//! stderr) and its stdin (any `AsyncWrite`). `docker/session.rs` is the bollard adapter,
//! `k8s/session.rs` the kube one.
//!
//! The protocol, in order:
//!
//! 1. The script prints `llmx1 UID GID HOME`, then `store VALUE`: the home's config.toml's
//!    `cli_auth_credentials_store` (`-` when unset; read with shell builtins only, so no extra
//!    process and no extra connection), then `dir MODE UID` of the credential directory
//!    (`dir none` when it is missing or a link), then the current auth.json (its `ls -ln` line, whose
//!    size field says how many bytes follow, then the bytes; both from one open descriptor, so a
//!    rename in between cannot make them disagree), `none`, `symlink` or `dirlink` (auth.json or
//!    its directory is a symbolic link:
//!    refused by the caller, never read through) or `unreadable`, then waits for one
//!    line on stdin (a first line `llmx`, which the SSH transport sends, is skipped). Anything
//!    but `write N SUFFIX` ends it without a write. The temp file's
//!    random SUFFIX travels on stdin, never in the exec's argv (which other users of the
//!    container can read in /proc before the file exists).
//! 2. On `write`, it creates the credential directory when missing (`mkdir -p` under umask 077:
//!    0700) and takes `dir link`, or `dir MODE UID` of the directory (not following a link).
//!    The caller applies [`judge_dir`] — the same rule as the SSH and archive paths — whose
//!    answer is `keep`, `tighten` (chmod 700) or `no` (a refusal: nothing is written, and the
//!    caller must not fall back to a path that writes as root). **Judged ahead:** the caller
//!    judges the directory of the header (or, when missing, the `drwx------ UID` that `mkdir`
//!    makes) and sends `write N SUFFIX VERDICT MODE UID` with the N bytes right behind it, without
//!    waiting. When the directory is still exactly that, the script goes on with VERDICT; when
//!    not, it discards the N bytes, prints the directory's line and waits for an answer and the
//!    bytes again, as a plain `write N SUFFIX` (no verdict) always does.
//! 3. It removes temp files an earlier push left (`.auth.json.llmx-*`, and `.auth.json.tmp-*` of
//!    older versions, older than ten minutes: a younger one may be another write's; `find` runs only
//!    when the shell's glob sees one), creates the temp file
//!    exclusively (`set -C`, umask 077: mode 0600 before any byte is written) on a descriptor it
//!    keeps, copies N bytes of stdin into it (`head -c N`: the input need not end, since a
//!    Kubernetes 1.20 exec cannot half-close stdin without losing the answer). Before the move it
//!    checks, from one `ls -ln` of the temp file, that it is still a regular file (not a link),
//!    0600, owned by the user, with one link, and exactly N bytes long (a connection cut
//!    mid-transfer ends the input early: the short temp file is removed, auth.json is untouched);
//!    then `mv -f`s it over auth.json (one `rename(2)`: readers see the old file or the new one)
//!    and prints `done` and the file again: the check's `ls` line, then the bytes read back through
//!    a descriptor opened on the temp file before the move, once `-ef` has shown it is now
//!    auth.json (else as in step 1, from the path). A last word `file` on the write
//!    line (`write N SUFFIX VERDICT MODE UID file`, or `write N SUFFIX - - - file` when not judged
//!    ahead: push `--store file`) first sets `cli_auth_credentials_store = "file"` in the home's
//!    config.toml and prints `store file` (or `store kept` when it could not).
//!
//! Every process the script starts costs the target a fork and an exec (about 1.8 ms of CPU each
//! on the benchmark machine, more than the rest of the script), so it starts few: one `ls` (the
//! directory and the open auth.json in one call) and `cat` for the header; `ls` of the directory,
//! `head`, the `ls` of the check, `mv` and `cat` for a write (`mkdir` and `find` only when
//! needed). Everything else is a builtin: the uid and gid come from `/proc/self/status` (`id`
//! only where there is no `/proc`), and the file read back after the move is the temp file's
//! descriptor, opened before the `mv` and shown to be auth.json's (`[ /dev/fd/4 -ef auth.json ]`),
//! so the `ls` of the check stands for it (the old way, `ls` of the path, where that test fails).
//!
//! When a step fails for another reason (a directory the user cannot create) the script exits
//! non-zero and [`WriteError::Failed`] lets the caller use another path.
//!
//! **Bounded in time and size, whatever the target sends.** Each stage (the header; the
//! directory answer; the confirmation and the file read back) has one deadline, [`STAGE_TIMEOUT`]
//! from its start, not a timeout per chunk: a target that keeps writing a byte now and then cannot
//! stretch a stage. Stdout is bounded by the protocol (a line is at most 64 KiB, a file at most
//! [`MAX_READ`]); stderr is counted, and past [`MAX_READ`] bytes in all the conversation ends with
//! [`StartError::hostile`] (a hostile `/bin/sh` or an `~/.ssh/rc` that floods it): final, the
//! caller fails the target rather than trying another path.

use crate::targets::{DirFacts, DirKind, DirVerdict, FileEntry, MAX_READ, TargetError, judge_dir};
use crate::text::printable;
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How long the target may take for each stage of the protocol, from the stage's start.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest protocol line we hold (an `ls -ln` line is under 200 bytes).
const MAX_LINE: usize = 64 * 1024;
/// How much of the script's stderr is kept for error messages.
const STDERR_KEEP: usize = 4096;

/// Checks that `$1` is a regular file (not a link), 0600, owned by `$U`, with one link.
/// Shared with the SSH target's move.
pub const PRIVATE_FILE_FN: &str = r#"private() { [ -f "$1" ] && [ ! -L "$1" ] && l=$(ls -ln "$1") || return 1
set -f; set -- $l; set +f
case $1 in -rw-------*) [ "$2" = 1 ] && [ "$3" = "$U" ];; *) return 1;; esac; }
"#;

const SCRIPT_BODY: &str = r#"umask 077
d=$1; [ -n "$d" ] || d=$LLMX_HOME; [ -n "$d" ] || d=${HOME:-/}/.llmx
d=${d%"${d##*[!/]}"}; [ -n "$d" ] || d=/
f=${d%/}/auth.json
U=; G=
[ ! -r /proc/self/status ] || while read -r k a b; do
  case $k in Uid:) U=$a;; Gid:) G=$a; break;; esac
done </proc/self/status
case $U in ''|*[!0-9]*) U=$(id -u);; esac; case $G in ''|*[!0-9]*) G=$(id -g);; esac
printf 'llmx1 %s %s %s\n' "$U" "$G" "$d"
s=-; c=${d%/}/config.toml
if [ -f "$c" ] && [ -r "$c" ] && [ ! -L "$c" ]; then
  while IFS= read -r k || [ -n "$k" ]; do
    k=${k#"${k%%[! 	]*}"}
    case $k in \[*) break;; cli_auth_credentials_store*) ;; *) continue;; esac
    r=${k#cli_auth_credentials_store}; r=${r#"${r%%[! 	]*}"}
    case $r in =*) ;; *) continue;; esac
    r=${r#=}; r=${r#"${r%%[! 	]*}"}; r=${r#[\"\']}; s=${r%%[\"\' 	#]*}
    case $s in ''|*[!a-z]*) s=?;; esac
    break
  done <"$c"
fi
echo "store $s"
setfile() {
  [ ! -L "$c" ] || return 1
  if [ ! -e "$c" ]; then echo 'cli_auth_credentials_store = "file"' >"$c"; return; fi
  [ -f "$c" ] && [ -r "$c" ] && [ -w "$c" ] || return 1
  q=${d%/}/.config.toml.llmx-$x; p=1
  { echo 'cli_auth_credentials_store = "file"'
    while IFS= read -r k || [ -n "$k" ]; do
      j=${k#"${k%%[! 	]*}"}
      case $j in \[*) p=0;; esac
      if [ $p = 1 ]; then
        case $j in cli_auth_credentials_store*)
          r=${j#cli_auth_credentials_store}; r=${r#"${r%%[! 	]*}"}
          case $r in =*) continue;; esac;; esac
      fi
      printf '%s\n' "$k"
    done <"$c"; } >"$q" && cat "$q" >"$c"; e=$?; rm -f -- "$q"; return $e
}
o=none; l=; a=
if [ -L "$d" ]; then o=dirlink
elif [ -L "$f" ]; then o=symlink
elif [ ! -e "$f" ]; then :
elif [ -f "$f" ] && [ -r "$f" ]; then command exec 4<"$f" && o=file
else o=unreadable; fi
if [ -d "$d" ] && [ ! -L "$d" ]; then
  if [ $o = file ]; then l=$(ls -lndL -- "$d" /dev/fd/4 2>/dev/null); else l=$(ls -lnd -- "$d"); fi
  a=${l#*"
"}; l=${l%%"
"*}
  case $l in *' /dev/fd/4') k=$l; l=$a; a=$k;; esac
fi
case $l in d*) set -f; set -- $l; set +f; echo "dir $1 $3";; *) echo 'dir none';; esac
case $o in
file) case $a in -*' /dev/fd/4') printf '%s\n' "$a";; *) ls -ln "$f" || { o=; echo unreadable; };; esac
  [ -z "$o" ] || cat <&4; exec 4<&-;;
*) echo $o;;
esac
read -r go n x v m o w || exit 0
[ "$go" != llmx ] || read -r go n x v m o w || exit 0
[ "$v" != - ] || v=
[ "$go" = write ] || exit 0
case $n in ''|*[!0-9]*) exit 3;; esac
case $x in ''|*[!A-Za-z0-9]*) exit 3;; esac
if [ -L "$d" ]; then l='dir link'
else
  { [ -d "$d" ] || mkdir -p "$d"; } && l=$(ls -lnd "$d") || exit 3
  set -f; set -- $l; set +f; l="dir $1 $3"
fi
if [ -z "$v" ] || [ "$l" != "dir $m $o" ]; then
  [ -z "$v" ] || head -c "$n" >/dev/null || exit 3
  echo "$l"
  read -r v || exit 0
fi
case $v in keep) ;; tighten) chmod 700 "$d" || exit 3;; *) exit 0;; esac
[ ! -L "$f" ] || exit 3
t=${d%/}/.auth.json.llmx-$x
for s in "${d%/}"/.auth.json.llmx-* "${d%/}"/.auth.json.tmp-*; do
  [ -e "$s" ] || [ -L "$s" ] || continue
  find "${d%/}" -maxdepth 1 '(' -name '.auth.json.llmx-*' -o -name '.auth.json.tmp-*' ')' -mmin +10 -exec rm -f -- {} + 2>/dev/null
  break
done
set -C
command exec 3>"$t" || exit 3
set +C
head -c "$n" >&3 && exec 3>&- && private "$t" && set -f && set -- $l && set +f && [ "$5" = "$n" ] &&
command exec 4<"$t" && mv -f -- "$t" "$f" || { rm -f -- "$t"; exit 3; }
[ "$w" != file ] || { setfile && echo 'store file' || echo 'store kept'; }
echo done
if [ /dev/fd/4 -ef "$f" ] 2>/dev/null; then printf '%s\n' "$l"
else command exec 4<"$f" && { ls -lnL /dev/fd/4 2>/dev/null || ls -ln "$f"; }; fi && cat <&4
"#;

/// The whole script: the shared helper, then the conversation.
pub fn script() -> String {
    format!("{PRIVATE_FILE_FN}{SCRIPT_BODY}")
}

/// The exec's command line: `/bin/sh -c SCRIPT llmx HOME` (`HOME` empty: the target's own
/// `LLMX_HOME`, else `$HOME/.llmx`). Nothing secret and no temp file name in it.
pub fn command(remote_home: Option<&str>) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script(), "llmx".into(), remote_home.unwrap_or("").into()]
}

/// One piece of the exec's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// What a write left on the target.
#[derive(Debug, Clone)]
pub struct Written {
    /// auth.json as read back after the move.
    pub file: FileEntry,
    /// Asked to set `cli_auth_credentials_store = "file"`: whether config.toml now says so.
    pub file_store: Option<bool>,
}

/// What the target said before any write.
#[derive(Debug, Clone)]
pub struct Header {
    pub uid: u32,
    pub gid: u32,
    /// The credential directory as the shell computed it (not yet validated).
    pub home: String,
    pub current: Option<FileEntry>,
    /// auth.json is a symbolic link (then `current` is `None`).
    pub symlink: bool,
    /// The credential directory is a symbolic link (then `current` is `None`).
    pub dir_link: bool,
    /// The credential directory's `MODE UID` as `ls -lnd` shows them (`None`: missing or a
    /// link), for judging it ahead of the write.
    pub dir: Option<(String, u32)>,
    /// auth.json exists but the target's user cannot read it (then `current` is `None`): left by
    /// a writer running as root, such as `docker cp`. The caller reads it another way or refuses;
    /// the conversation can still replace it (a rename in the user's own directory).
    pub unreadable: bool,
    /// `cli_auth_credentials_store` in the home's config.toml (top-level key; `file` when unset,
    /// `?` for a value that is not a plain word).
    pub store: Option<String>,
}

/// Why a conversation did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// What went wrong, with the script's stderr (made printable).
    pub why: String,
    /// The target flooded its error output past [`MAX_READ`]: final; do not try another path
    /// on this target (it would be the same shell, or the same `~/.ssh/rc`).
    pub hostile: bool,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// What ended a read from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadError {
    /// The target wrote more than [`MAX_READ`] bytes to stderr.
    Flood,
    Other(String),
}

impl From<String> for ReadError {
    fn from(s: String) -> ReadError {
        ReadError::Other(s)
    }
}

impl From<&str> for ReadError {
    fn from(s: &str) -> ReadError {
        ReadError::Other(s.to_string())
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Flood => write!(
                f,
                "the target wrote more than {} MiB to its error output without answering (a shell or login \
                 script that never stops writing); gave up on it",
                MAX_READ / (1024 * 1024)
            ),
            ReadError::Other(s) => f.write_str(s),
        }
    }
}

/// Why a write through the conversation did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The directory is refused by [`judge_dir`]: final, nothing was written; do not retry
    /// another way.
    Refused(TargetError),
    /// The conversation broke or the script failed; another path may work.
    Failed(TargetError),
}

/// A conversation in progress: dropped without `write`, the script reads end of input and exits.
pub struct Conversation<O, I> {
    output: O,
    input: I,
    buf: Vec<u8>,
    stderr: String,
    /// Bytes of stderr seen in all (kept or not).
    stderr_seen: usize,
    /// How long each stage may take ([`STAGE_TIMEOUT`]).
    stage: Duration,
    /// When the current stage must be over.
    deadline: tokio::time::Instant,
    uid: u32,
    home: String,
    /// The header's `dir`: what the write is judged on ahead.
    dir: Option<(String, u32)>,
}

impl<O, I> Conversation<O, I>
where
    O: Stream<Item = Result<Chunk, String>> + Unpin + Send,
    I: AsyncWrite + Unpin + Send,
{
    /// Read the header from a started script; `Err` (with the script's stderr) when it does not
    /// answer as expected.
    pub async fn start(output: O, input: I) -> Result<(Self, Header), StartError> {
        Conversation::start_with(output, input, STAGE_TIMEOUT).await
    }

    /// [`start`](Conversation::start) with stages of `stage` each.
    async fn start_with(output: O, input: I, stage: Duration) -> Result<(Self, Header), StartError> {
        let mut c = Conversation {
            stage,
            output,
            input,
            buf: Vec::new(),
            stderr: String::new(),
            stderr_seen: 0,
            deadline: tokio::time::Instant::now() + stage,
            uid: 0,
            home: String::new(),
            dir: None,
        };
        match c.header().await {
            Ok(h) => {
                c.uid = h.uid;
                c.home = h.home.clone();
                c.dir = h.dir.clone();
                Ok((c, h))
            }
            Err(ReadError::Flood) => Err(StartError { why: ReadError::Flood.to_string(), hostile: true }),
            Err(e) => Err(StartError { why: format!("{e}; {}", printable(c.stderr.trim())), hostile: false }),
        }
    }

    async fn header(&mut self) -> Result<Header, ReadError> {
        let line = self.line().await?;
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        let (uid, gid, home) = match f.as_slice() {
            ["llmx1", u, g, h] => (
                u.parse().map_err(|_| format!("bad uid {:?}", printable(u)))?,
                g.parse().map_err(|_| format!("bad gid {:?}", printable(g)))?,
                h.to_string(),
            ),
            _ => return Err("the target's shell did not run the script".into()),
        };
        let mut next = self.line().await?;
        let mut store = None;
        if let Some(value) = next.strip_prefix("store ") {
            store = Some(if value == "-" { "file".to_string() } else { printable(value) });
            next = self.line().await?;
        }
        let dir = match next.as_str() {
            "dir none" => None,
            l => {
                let (perms, owner) = l.strip_prefix("dir ").and_then(|r| r.split_once(' ')).unwrap_or_default();
                match (parse_dir_line(l), owner.parse::<u32>()) {
                    (Some(_), Ok(o)) if perms.bytes().all(|b| b.is_ascii_graphic()) => Some((perms.to_string(), o)),
                    _ => return Err(format!("unexpected directory line {:?}", printable(l)).into()),
                }
            }
        };
        let (mut dir_link, mut symlink, mut unreadable) = (false, false, false);
        let current = match self.line().await?.as_str() {
            "none" => None,
            "symlink" => {
                symlink = true;
                None
            }
            "dirlink" => {
                dir_link = true;
                None
            }
            "unreadable" => {
                unreadable = true;
                None
            }
            ls => Some(self.file(ls).await?),
        };
        Ok(Header { uid, gid, home, dir, current, symlink, dir_link, unreadable, store })
    }

    /// `ls -ln` line already read (its size field says how many bytes follow); then the bytes.
    async fn file(&mut self, ls: &str) -> Result<FileEntry, ReadError> {
        let e = parse_ls(ls).ok_or_else(|| format!("unexpected ls output {:?}", printable(ls)))?;
        let size = e.size;
        // The target says how much follows: never buffer more than any file we accept.
        if size > MAX_READ {
            return Err(
                format!("auth.json is larger than expected ({size} bytes, over {} KiB)", MAX_READ / 1024).into()
            );
        }
        let bytes = self.exact(size).await?;
        Ok(FileEntry { bytes, uid: e.uid, gid: e.gid, mode: e.mode })
    }

    /// Send `bytes` to be written; returns the file as read back after the move. The directory
    /// is judged ahead from the header (`dir`), so that the bytes go with the request; when the
    /// script finds the directory changed since, it asks again (step 2 of the protocol). With
    /// `file_store`, the script also sets `cli_auth_credentials_store = "file"` in the home's
    /// config.toml once auth.json is in place (the top-level key replaced, everything else kept
    /// byte for byte, the file rewritten in place so its mode and owner stay); whether it did is
    /// [`Written::file_store`].
    pub async fn write(mut self, bytes: &[u8], file_store: bool) -> Result<Written, WriteError> {
        let store = if file_store { " file" } else { "" };
        let dir = self.dir.take();
        let suffix = crate::home::random_suffix();
        self.deadline = tokio::time::Instant::now() + self.stage;
        // What the directory will be: as the header saw it, or what `mkdir` under umask 077 makes.
        let (perms, owner) = dir.unwrap_or_else(|| ("drwx------".to_string(), self.uid));
        let ahead = parse_dir_line(&format!("dir {perms} {owner}")).map(|f| judge_dir(&self.home, &f, Some(self.uid)));
        let sent = match ahead {
            Some(Err(reason)) => return Err(self.refused(&reason)),
            Some(Ok(v)) => {
                let request = format!("write {} {suffix} {} {perms} {owner}{store}\n", bytes.len(), verdict_word(v));
                async {
                    self.send(request.as_bytes(), false).await?;
                    self.send(bytes, false).await
                }
                .await
            }
            None => {
                let request = if file_store {
                    format!("write {} {suffix} - - - file\n", bytes.len())
                } else {
                    format!("write {} {suffix}\n", bytes.len())
                };
                self.send(request.as_bytes(), false).await
            }
        };
        if let Err(e) = sent {
            return Err(self.failed(e.into()));
        }
        let (mut line, mut store_set) = match self.store_answer().await {
            Ok(l) => l,
            Err(e) => return Err(self.failed(e)),
        };
        if line != "done" {
            // Not judged ahead, or the directory changed since the header: judge it now.
            let Some(facts) = parse_dir_line(&line) else {
                return Err(self.failed("unexpected answer about the directory".into()));
            };
            let verdict = match judge_dir(&self.home, &facts, Some(self.uid)) {
                Ok(v) => v,
                Err(reason) => {
                    let _ = self.send(b"no\n", true).await;
                    return Err(self.refused(&reason));
                }
            };
            self.deadline = tokio::time::Instant::now() + self.stage;
            let sent = async {
                self.send(format!("{}\n", verdict_word(verdict)).as_bytes(), false).await?;
                self.send(bytes, true).await
            }
            .await;
            if let Err(e) = sent {
                return Err(self.failed(e.into()));
            }
            match self.store_answer().await {
                Ok((l, set)) if l == "done" => {
                    (line, store_set) = (l, set);
                }
                Ok(_) => return Err(self.failed("no confirmation".into())),
                Err(e) => return Err(self.failed(e)),
            }
        }
        debug_assert_eq!(line, "done");
        let result = async {
            let ls = self.line().await?;
            Ok(Written { file: self.file(&ls).await?, file_store: store_set })
        }
        .await;
        result.map_err(|e| self.failed(e))
    }

    /// The next line, after the `store file`/`store kept` a write with `file` prints before
    /// `done` (whether config.toml now says `file`).
    async fn store_answer(&mut self) -> Result<(String, Option<bool>), ReadError> {
        let line = self.line().await?;
        match line.strip_prefix("store ") {
            Some(answer) => Ok((self.line().await?, Some(answer == "file"))),
            None => Ok((line, None)),
        }
    }

    fn refused(&self, reason: &str) -> WriteError {
        WriteError::Refused(TargetError::new(format!("refusing to write {}: {reason}", printable(&self.home))))
    }

    fn failed(&self, e: ReadError) -> WriteError {
        let why = printable(self.stderr.trim());
        let e = e.to_string();
        WriteError::Failed(TargetError::new(format!(
            "writing through exec failed: {}",
            if why.is_empty() || self.stderr_seen > MAX_READ { e } else { why }
        )))
    }

    async fn send(&mut self, bytes: &[u8], last: bool) -> Result<(), String> {
        let send = async {
            self.input.write_all(bytes).await?;
            if last { self.input.shutdown().await } else { self.input.flush().await }
        };
        tokio::time::timeout_at(self.deadline, send)
            .await
            .map_err(|_| "the target did not take the file in time".to_string())?
            .map_err(|e| format!("sending to the target: {e}"))
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        loop {
            let next = tokio::time::timeout_at(self.deadline, self.output.next())
                .await
                .map_err(|_| format!("the target did not answer within {}s", self.stage.as_secs()))?;
            match next {
                None => return Err("the script ended early".into()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Chunk::Stdout(message))) => {
                    self.buf.extend_from_slice(&message);
                    return Ok(());
                }
                Some(Ok(Chunk::Stderr(message))) => {
                    self.stderr_seen = self.stderr_seen.saturating_add(message.len());
                    if self.stderr_seen > MAX_READ {
                        return Err(ReadError::Flood);
                    }
                    if self.stderr.len() < STDERR_KEEP {
                        let room = STDERR_KEEP - self.stderr.len();
                        let text = String::from_utf8_lossy(&message[..message.len().min(room)]).into_owned();
                        self.stderr.push_str(&text);
                    }
                }
            }
        }
    }

    async fn line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err("unexpected output (a line over 64 KiB)".into());
            }
            self.fill().await?;
        }
    }

    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

/// The fields of an `ls -ln` line we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ls {
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: usize,
}

/// Permission string (`drwxrwxrwt`, `-rw-------.`) to type letter and mode bits.
fn parse_mode(perms: &str) -> Option<(u8, u32)> {
    let p = perms.as_bytes();
    if p.len() < 10 {
        return None;
    }
    let mut mode = 0;
    for (i, c) in p[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        match (i % 3, c) {
            (_, b'-') | (2, b'S' | b'T') => {}
            (0, b'r') | (1, b'w') | (2, b'x' | b's' | b't') => mode |= bit,
            _ => return None,
        }
    }
    match p[3] {
        b's' | b'S' => mode |= 0o4000,
        _ => {}
    }
    match p[6] {
        b's' | b'S' => mode |= 0o2000,
        _ => {}
    }
    match p[9] {
        b't' | b'T' => mode |= 0o1000,
        _ => {}
    }
    Some((p[0], mode))
}

/// `-rw-------    1 1000     1000    376 Nov 29 04:19 /path`.
fn parse_ls(line: &str) -> Option<Ls> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (kind, mode) = parse_mode(f.first()?)?;
    let (uid, gid, size) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?, f.get(4)?.parse().ok()?);
    Some(Ls { kind, mode, uid, gid, size })
}

/// The answer to the directory question.
fn verdict_word(v: DirVerdict) -> &'static str {
    if v == DirVerdict::Tighten { "tighten" } else { "keep" }
}

/// `dir link` or `dir MODE UID` from step 2 of the protocol.
fn parse_dir_line(line: &str) -> Option<DirFacts> {
    let rest = line.strip_prefix("dir ")?;
    if rest == "link" {
        return Some(DirFacts { kind: DirKind::Link, uid: None, mode: 0 });
    }
    let (perms, uid) = rest.split_once(' ')?;
    let (kind, mode) = parse_mode(perms)?;
    let kind = match kind {
        b'd' => DirKind::Dir,
        b'l' => DirKind::Link,
        _ => DirKind::Other,
    };
    Some(DirFacts { kind, uid: Some(uid.trim().parse().ok()?), mode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ls_lines() {
        let e = parse_ls("-rw-------    1 1000     1000   376 Nov 29 04:19 /a b").unwrap();
        assert_eq!((e.kind, e.mode, e.uid, e.gid), (b'-', 0o600, 1000, 1000));
        assert_eq!(parse_ls("-rwxr-x--x 1 0 0 1 Jan 1 2020 /x").map(|e| e.mode), Some(0o751));
        assert_eq!(parse_ls("-rw-------. 1 0 0 1 Jan 1 2020 /x").map(|e| e.mode), Some(0o600));
        assert_eq!(parse_ls("total 0"), None);
        assert_eq!(parse_dir_line("dir drwxrwxrwt 0").map(|f| (f.kind, f.mode)), Some((DirKind::Dir, 0o1777)));
        assert_eq!(parse_dir_line("dir drwxrwsr-T 5").map(|f| f.mode), Some(0o3774));
        assert_eq!(parse_dir_line("dir link").map(|f| f.kind), Some(DirKind::Link));
        assert_eq!(parse_dir_line("dir \x1b]52;c;x\x07 0"), None);
        assert_eq!(parse_dir_line("done"), None);
    }

    /// Run the script in a local `sh` as the conversation would, answering the directory
    /// question with `verdict`; the exit code and stdout.
    fn run_script_with(home: &std::path::Path, write: &[u8], verdict: &[u8], body: &[u8]) -> (Option<i32>, String) {
        use std::io::{BufRead, Read, Write};
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &script(), "llmx", home.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(write).unwrap();
        stdin.flush().unwrap();
        let mut all = String::new();
        if write.starts_with(b"write ") && write.ends_with(b"\n") {
            // Wait for the `dir` line before answering, as the caller does (the header's own
            // `dir` line comes first).
            let mut dir_lines = 0;
            loop {
                let mut l = String::new();
                if out.read_line(&mut l).unwrap() == 0 {
                    break;
                }
                all.push_str(&l);
                // (A file in the header has no newline of its own: its last line runs on.)
                dir_lines += l.matches("dir ").count();
                if dir_lines >= 2 {
                    let _ = stdin.write_all(verdict);
                    let _ = stdin.write_all(body);
                    break;
                }
            }
        }
        drop(stdin);
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).unwrap();
        all.push_str(&String::from_utf8_lossy(&rest));
        (child.wait().unwrap().code(), all)
    }

    /// A temp dir holding `h`, an existing 0700 credential directory.
    fn private_home() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        (t, home)
    }

    fn run_script(home: &std::path::Path, n: usize, body: &[u8]) -> Option<i32> {
        run_script_with(home, format!("write {n} t1\n").as_bytes(), b"keep\n", body).0
    }

    /// A conversation fed `output` as the target's stdout; its input goes nowhere.
    fn conversation_with(
        output: Vec<Vec<u8>>,
        endless: bool,
    ) -> (impl Stream<Item = Result<Chunk, String>> + Unpin + Send, tokio::io::Sink) {
        let head = futures_util::stream::iter(output).map(|m| Ok(Chunk::Stdout(m)));
        let tail = futures_util::stream::repeat_with(|| Ok(Chunk::Stdout(vec![b'x'; 65536]))).take(if endless {
            usize::MAX
        } else {
            0
        });
        (Box::pin(head.chain(tail)), tokio::io::sink())
    }

    #[tokio::test]
    async fn target_reported_size_is_capped_at_max_read() {
        // The target claims a file just over MAX_READ and keeps sending: refused at once,
        // before any of it is buffered.
        let head = format!("llmx1 0 0 /root/.llmx\ndir none\n-rw------- 1 0 0 {} Jan 1 2020 /f\n", MAX_READ + 1);
        let (o, i) = conversation_with(vec![head.into_bytes()], true);
        let e = Conversation::start(o, i).await.err().unwrap().why;
        assert!(e.contains("larger than expected"), "{e}");
        // Up to the limit it is read.
        let (o, i) =
            conversation_with(vec![b"llmx1 0 0 /h\ndir none\n-rw------- 1 0 0 3 Jan 1 2020 /f\nabc".to_vec()], false);
        assert_eq!(Conversation::start(o, i).await.unwrap().1.current.unwrap().bytes, b"abc");
    }

    #[tokio::test]
    async fn a_target_flooding_stderr_is_given_up_past_the_cap_as_hostile() {
        // Endless stderr before any header (a hostile /bin/sh, an ~/.ssh/rc): ends after
        // MAX_READ bytes with a final error, not after a timeout that each chunk renews.
        let flood = futures_util::stream::repeat_with(|| Ok(Chunk::Stderr(vec![b'e'; 65536])));
        let start = std::time::Instant::now();
        let e = Conversation::start(Box::pin(flood), tokio::io::sink()).await.err().unwrap();
        assert!(e.hostile && e.why.contains("more than 4 MiB to its error output"), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // The same flood after the header, while a write waits for its answer.
        let head = futures_util::stream::iter(vec![Ok(Chunk::Stdout(b"llmx1 0 0 /h\ndir none\nnone\n".to_vec()))]);
        let flood = futures_util::stream::repeat_with(|| Ok(Chunk::Stderr(vec![b'e'; 65536])));
        let (c, _) = Conversation::start(Box::pin(head.chain(flood)), tokio::io::sink()).await.unwrap();
        match c.write(b"{}", false).await {
            Err(WriteError::Failed(e)) => assert!(e.message.contains("more than 4 MiB"), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stage_has_one_deadline_that_a_trickle_of_stderr_does_not_renew() {
        // A byte of stderr every 10 ms, never a header: the stage ends at its deadline.
        let stage = Duration::from_secs(1);
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok(Chunk::Stderr(b".".to_vec())), ()))
        });
        let start = tokio::time::Instant::now();
        let e = Conversation::start_with(Box::pin(trickle), tokio::io::sink(), stage).await.err().unwrap();
        assert!(!e.hostile && e.why.contains("did not answer within 1s"), "{e:?}");
        let took = start.elapsed();
        assert!(took >= stage && took < stage * 2, "{took:?}");
    }

    #[tokio::test]
    async fn hostile_target_output_is_refused_and_never_echoed_raw() {
        // Escape sequences, a header line that never ends, a truncated file, garbage in the
        // numbers, and a stream that stops mid-protocol: each is a clean error with nothing raw.
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![b"\x1b]52;c;aGk=\x07\x1b[2J llmx1\n".to_vec()],
            vec![b"llmx1 \x1b[31m0 0 /h\n".to_vec()],
            vec![b"llmx1 0 0 /h\ndir none\n-rw------- 1 0 0 10 Jan 1 2020 /f\nabc".to_vec()],
            vec![b"llmx1 0 0 /h\ndir none\n\x1b]0;title\x07-rw------- x y\n".to_vec()],
            vec![b"llmx1 0 0 /h\ndir \x1b]0;t\x07 0\nnone\n".to_vec()],
            vec![b"llmx1 0 0 /h\ndir none\n-rw------- 1 0 0 -1 Jan 1 2020 /f\n".to_vec()],
            vec![b"llmx1 0 0".to_vec()],
            vec![vec![b'y'; MAX_LINE + 2]],
        ];
        for (n, output) in cases.into_iter().enumerate() {
            let (o, i) = conversation_with(output, false);
            let e = Conversation::start(o, i).await.err().unwrap_or_else(|| panic!("case {n} accepted")).why;
            assert!(!e.contains('\x1b') && !e.contains('\x07'), "case {n}: {e:?}");
        }
    }

    #[test]
    fn the_agents_credentials_store_is_read_from_the_top_level_of_config_toml() {
        let t = tempfile::tempdir().unwrap();
        let store_of = |config: &str| {
            std::fs::write(t.path().join("config.toml"), config).unwrap();
            let (_, out) = run_script_with(t.path(), b"", b"", b"");
            out.lines().nth(1).map(str::to_string)
        };
        assert_eq!(
            store_of("model = \"m\"\n  cli_auth_credentials_store\t= \"keyring\" # c\n").as_deref(),
            Some("store keyring")
        );
        assert_eq!(
            store_of("cli_auth_credentials_store_x = 'auto'\ncli_auth_credentials_store='auto'").as_deref(),
            Some("store auto")
        );
        assert_eq!(store_of("[tui]\ncli_auth_credentials_store = \"keyring\"\n").as_deref(), Some("store -"));
        assert_eq!(store_of("cli_auth_credentials_store = \"$(id)\"\n").as_deref(), Some("store ?"));
    }

    #[test]
    fn store_file_replaces_the_top_level_key_and_keeps_the_rest_of_config_toml() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let config = t.path().join("config.toml");
        let before =
            "# mine\nmodel = \"m\"\n  cli_auth_credentials_store = \"keyring\"\n[p]\ncli_auth_credentials_store = 1";
        std::fs::write(&config, before).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, out) = run_script_with(t.path(), b"write 3 t1 - - - file\n", b"keep\n", b"new");
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("\nstore file\ndone\n"), "{out}");
        let after = std::fs::read_to_string(&config).unwrap();
        assert_eq!(
            after,
            "cli_auth_credentials_store = \"file\"\n# mine\nmodel = \"m\"\n[p]\ncli_auth_credentials_store = 1\n"
        );
        assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o644, "rewritten in place");
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn symlinked_auth_json_is_reported_and_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        std::fs::create_dir(&home).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, "theirs").unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join("auth.json")).unwrap();
        let (code, out) = run_script_with(&home, b"", b"", b"");
        assert_eq!((code, out.lines().nth(1), out.lines().nth(3)), (Some(0), Some("store -"), Some("symlink")));
        assert_eq!(run_script(&home, 3, b"new"), Some(3));
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "theirs");
        assert!(std::fs::symlink_metadata(home.join("auth.json")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn exec_write_removes_stale_temp_files_and_its_own_on_failure() {
        let (_t, home) = private_home();
        let stale = |home: &std::path::Path| {
            // This version's temp files and those of llmx before the conversation.
            for name in [".auth.json.llmx-stale", ".auth.json.tmp-123-abc"] {
                let f = std::fs::File::create(home.join(name)).unwrap();
                f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
            }
            // A young one belongs to a write under way (another alias of the host): it stays.
            std::fs::write(home.join(".auth.json.llmx-young"), "another write").unwrap();
        };
        let names = |home: &std::path::Path| {
            let mut n: Vec<_> = std::fs::read_dir(home).unwrap().map(|e| e.unwrap().file_name()).collect();
            n.sort();
            n
        };
        stale(&home);
        // A failed write (short input) leaves neither the stale file nor its own.
        assert_eq!(run_script(&home, 9, b"new"), Some(3));
        assert_eq!(names(&home), [".auth.json.llmx-young"]);
        stale(&home);
        assert_eq!(run_script(&home, 3, b"new"), Some(0));
        assert_eq!(names(&home), [".auth.json.llmx-young", "auth.json"]);
    }

    #[test]
    fn truncated_exec_input_leaves_the_old_auth_json() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        let auth = home.join("auth.json");
        assert_eq!(run_script(&home, 9, b"old-login"), Some(0), "9 of 9 bytes: a complete write");
        assert_eq!(std::fs::read(&auth).unwrap(), b"old-login");
        assert_eq!(std::fs::metadata(&home).unwrap().permissions().mode() & 0o7777, 0o700, "created 0700");
        // The connection dies after 3 of the 9 bytes announced: end of input comes early.
        assert_eq!(run_script(&home, 9, b"new"), Some(3));
        assert_eq!(std::fs::read(&auth).unwrap(), b"old-login");
        assert_eq!(std::fs::read_dir(&home).unwrap().count(), 1, "the short temp file was removed");
        // A complete write replaces it.
        assert_eq!(run_script(&home, 9, b"new-login"), Some(0));
        assert_eq!(std::fs::read(&auth).unwrap(), b"new-login");
    }

    #[test]
    fn exec_temp_file_is_created_exclusively_and_checked_before_the_move() {
        let (_t, home) = private_home();
        std::fs::write(home.join("auth.json"), "old").unwrap();
        // Hostile or malformed write lines: bad counts, suffixes that try to leave the directory
        // or inject words, a missing suffix. None writes.
        for line in [
            &b"write 3 ../../x\n"[..],
            b"write 3 a/b\n",
            b"write 3\n",
            b"write 3 a;b\n",
            b"write -3 ab\n",
            b"write 3 $(id)\n",
            b"write 3 `id`\n",
        ] {
            let (code, _) = run_script_with(&home, line, b"keep\n", b"new");
            assert_eq!(code, Some(3), "{}", String::from_utf8_lossy(line));
            assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"old");
        }
        // A verdict other than keep/tighten writes nothing.
        let (code, out) = run_script_with(&home, b"write 3 t1\n", b"no\n", b"new");
        assert_eq!(code, Some(0));
        assert!(!out.contains("done"), "{out}");
        assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"old");
        // The check before the move: a regular file, 0600, ours, one link; not a link to one.
        let private = |p: &std::path::Path| {
            let check = format!("{PRIVATE_FILE_FN}U=$(id -u); private \"$1\" && echo private");
            let out = std::process::Command::new("/bin/sh").args(["-c", &check, "sh"]).arg(p).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "private"
        };
        let auth = home.join("auth.json");
        assert!(!private(&auth), "0644 is not private");
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(private(&auth));
        std::fs::hard_link(&auth, home.join("second-link")).unwrap();
        assert!(!private(&auth), "two links is not private");
        std::fs::remove_file(home.join("second-link")).unwrap();
        std::os::unix::fs::symlink(&auth, home.join("link")).unwrap();
        assert!(!private(&home.join("link")), "a link is not private");
        std::fs::create_dir(home.join("sub")).unwrap();
        assert!(!private(&home.join("sub")), "a directory is not private");
        // The temp file's name never appears in the command line.
        assert!(command(None).iter().all(|w| !w.contains("llmx-t1")));
    }

    /// The whole conversation against a local `sh` whose PATH holds wrappers that log each
    /// command the script starts: a write over an existing auth.json starts seven processes (an
    /// `ls` and a `cat` for the header; `ls`, `head`, `ls`, `mv`, `cat` for the write) and reads
    /// both files back byte for byte.
    #[tokio::test]
    async fn a_write_over_an_existing_file_starts_seven_processes_and_reads_both_files() {
        use std::os::unix::fs::MetadataExt;
        use tokio::io::AsyncReadExt;
        let (t, home) = private_home();
        let auth = home.join("auth.json");
        std::fs::write(&auth, b"{\"old\": 1}\n").unwrap();
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (bin, log) = (t.path().join("bin"), t.path().join("started"));
        std::fs::create_dir(&bin).unwrap();
        for cmd in ["id", "ls", "cat", "head", "mv", "mkdir", "find", "chmod", "rm", "stat", "dd"] {
            let real =
                ["/usr/bin", "/bin"].iter().map(|d| format!("{d}/{cmd}")).find(|p| std::path::Path::new(p).exists());
            let Some(real) = real else { continue };
            let wrapper = format!("#!/bin/sh\necho {cmd} >>'{}'\nexec {real} \"$@\"\n", log.display());
            std::fs::write(bin.join(cmd), wrapper).unwrap();
            std::fs::set_permissions(bin.join(cmd), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", &script(), "llmx", home.to_str().unwrap()])
            .env("PATH", &bin)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = Box::pin(futures_util::stream::unfold(child.stdout.take().unwrap(), |mut out| async move {
            let mut buf = vec![0u8; 8192];
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some((Ok(Chunk::Stdout(buf[..n].to_vec())), out)),
            }
        }));
        let (c, header) = Conversation::start(output, input).await.unwrap();
        let current = header.current.expect("the current file");
        assert_eq!((current.bytes.as_slice(), current.mode), (&b"{\"old\": 1}\n"[..], 0o600));
        let written = c.write(b"{\"new\": 2}", false).await.unwrap();
        assert_eq!(child.wait().await.unwrap().code(), Some(0));
        let uid = std::fs::metadata(&home).unwrap().uid();
        assert_eq!(
            (written.file.bytes.as_slice(), written.file.mode, written.file.uid),
            (&b"{\"new\": 2}"[..], 0o600, uid)
        );
        assert_eq!(std::fs::read(&auth).unwrap(), b"{\"new\": 2}");
        let started = std::fs::read_to_string(&log).unwrap();
        assert_eq!(started.split_whitespace().collect::<Vec<_>>(), ["ls", "cat", "ls", "head", "ls", "mv", "cat"]);
    }

    #[test]
    fn a_write_judged_ahead_goes_on_only_while_the_directory_is_as_judged() {
        use std::os::unix::fs::MetadataExt;
        let (_t, home) = private_home();
        let uid = std::fs::metadata(&home).unwrap().uid();
        // The header shows the directory; the verdict and the bytes go with the request.
        let (code, out) = run_script_with(&home, b"", b"", b"");
        assert_eq!((code, out.lines().nth(2)), (Some(0), Some(format!("dir drwx------ {uid}").as_str())));
        let ahead = format!("write 3 a1 keep drwx------ {uid}\nnew");
        let (code, out) = run_script_with(&home, ahead.as_bytes(), b"", b"");
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(out.matches("dir ").count(), 1, "asked again: {out}");
        assert!(out.contains("done"), "{out}");
        assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"new");
        // Judged on another directory (it changed since the header): the bytes are discarded,
        // the script asks, and the answer decides.
        let stale = format!("write 4 a2 keep drwxr-xr-x {uid}\nold\n");
        let (code, out) = run_script_with(&home, stale.as_bytes(), b"keep\n", b"ne2\n");
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("dir drwx------ {uid}\ndone")), "{out}");
        assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"ne2\n");
        let (code, out) = run_script_with(&home, stale.as_bytes(), b"no\n", b"ne3\n");
        assert_eq!((code, out.contains("done")), (Some(0), false), "{out}");
        assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"ne2\n");
        // A missing directory: judged as what mkdir makes under umask 077.
        std::fs::remove_dir_all(&home).unwrap();
        let (code, out) = run_script_with(&home, ahead.as_bytes(), b"", b"");
        assert_eq!((code, out.matches("dir ").count()), (Some(0), 1), "{out}");
        assert_eq!(std::fs::read(home.join("auth.json")).unwrap(), b"new");
    }
}
