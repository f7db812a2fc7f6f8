//! `ProxyCommand`: run the command with `/bin/sh` (as OpenSSH runs it with the user's shell) and
//! give it one end of a socket pair as its stdin and stdout; the session speaks SSH over the other
//! end. Its stderr is left to the terminal, as ssh leaves it. The child is killed and reaped when
//! the connection ends.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

/// The running proxy command; dropping it kills and reaps it.
pub(crate) struct ProxyChild(Child);

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` (tokens already expanded) and return it with our end of its stdio.
pub(super) fn spawn(cmd: &str) -> std::io::Result<(ProxyChild, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::from(theirs.try_clone()?))
        .stdout(Stdio::from(theirs))
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok((ProxyChild(child), ours))
}
