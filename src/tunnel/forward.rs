//! Forwarding: once the remote login listens, every connection to 127.0.0.1:PORT here goes to the
//! remote's 127.0.0.1:PORT over its own `direct-tcpip` channel (several at once: browsers open more
//! than one). A failed forward is reported and the others keep running.

use crate::ssh::{Session, SshError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The accept loop: forwards each local connection to the remote's 127.0.0.1:PORT. Stopping it
/// drops the listener and closes every forward still open.
pub(super) struct Forwarder {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Forwarder {
    pub(super) fn start(
        listener: TcpListener,
        session: Session,
        port: u16,
        failures: mpsc::UnboundedSender<String>,
    ) -> Forwarder {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, session, port, failures, stopped));
        Forwarder { stop, task }
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    session: Session,
    port: u16,
    failures: mpsc::UnboundedSender<String>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let (session, failures) = (session.clone(), failures.clone());
                    conns.spawn(async move {
                        let r = match sock.into_std() {
                            Ok(sock) => match session.forward(sock, "127.0.0.1", port).await {
                                Ok(fwd) => fwd.finished().await.map(drop),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(SshError::Remote {
                                host: session.info().host.clone(),
                                what: "forwarding".into(),
                                reason: e.to_string(),
                            }),
                        };
                        if let Err(e) = r {
                            let _ = failures.send(format!("connection from {peer}: {e}"));
                        }
                    });
                }
                Err(e) => {
                    let _ = failures.send(format!("accepting a connection on 127.0.0.1:{port}: {e}"));
                    // Out of descriptors and the like: give the system a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}
