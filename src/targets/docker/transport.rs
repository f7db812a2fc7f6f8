//! The Engine API spoken over a stream we open ourselves: a TLS connection made with our own
//! rustls configuration ([`super::tls`]) or a channel of llmx's own SSH session
//! ([`super::over_ssh`]). bollard's custom-transport hook hands us each request; it goes over an
//! idle HTTP/1.1 connection of this client when one is ready (keep-alive: a push to many
//! containers of a remote engine makes one TLS handshake, or opens one SSH channel, for all its
//! requests that do not overlap), else over a new stream from the dial. A connection that was
//! upgraded (the exec API's hijacked stream) or closed is never used again.

use bollard::{BollardRequest, Docker};
use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A byte stream to the engine.
pub trait EngineIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> EngineIo for T {}

/// Opens a new stream to the engine for each request.
pub type Dial = Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<Box<dyn EngineIo>>> + Send + Sync>;

/// The body type of a request (bollard does not export its name).
trait BodyOf {
    type Body;
}
impl<B> BodyOf for hyper::Request<B> {
    type Body = B;
}

/// An HTTP/1.1 connection to the engine, ready for requests.
type Sender = hyper::client::conn::http1::SendRequest<<BollardRequest as BodyOf>::Body>;

/// A bollard client whose requests go over connections from `dial`, kept open and used again
/// while they are idle. `first`: a stream already dialled (the handshake that checked the
/// engine's certificate), used for the first request. `name` is what the `Host` header says (the
/// engine ignores it; it is the endpoint for readers of its logs).
pub fn docker_over(
    dial: Dial,
    first: Option<Box<dyn EngineIo>>,
    name: &str,
    timeout_secs: u64,
) -> Result<Docker, bollard::errors::Error> {
    let host = name.to_string();
    let idle: Arc<Mutex<Vec<Sender>>> = Arc::default();
    let first = Arc::new(Mutex::new(first));
    let transport = move |req: BollardRequest| {
        let (dial, host, idle, first) = (dial.clone(), host.clone(), idle.clone(), first.clone());
        async move {
            let reused = {
                let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
                idle.retain(|s| !s.is_closed());
                idle.iter().position(Sender::is_ready).map(|i| idle.swap_remove(i))
            };
            let mut sender = match reused {
                Some(s) => s,
                None => {
                    let taken = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                    let io = match taken {
                        Some(io) => io,
                        None => dial().await?,
                    };
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                    // Runs the connection until the engine or this process closes it; its errors
                    // reach the caller through the response.
                    tokio::spawn(async move {
                        let _ = conn.with_upgrades().await;
                    });
                    sender
                }
            };
            let response = sender.send_request(origin_form(req, &host)?).await.map_err(bollard::errors::Error::from)?;
            // Ready again once this response's body has been read; an upgraded one never is.
            if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
                idle.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
            }
            Ok(response)
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("http://{name}")),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )
}

/// bollard builds absolute URIs (`http://host/v1.47/...`); on a connection of our own the request
/// line carries only the path, and the authority goes into `Host`, as HTTP/1.1 clients send it.
fn origin_form(req: BollardRequest, host: &str) -> Result<BollardRequest, bollard::errors::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    parts.uri = path.parse().map_err(bollard::errors::Error::from)?;
    if !parts.headers.contains_key(hyper::header::HOST) {
        let value =
            hyper::header::HeaderValue::from_str(host).map_err(|e| bollard::errors::Error::from(http_error(e)))?;
        parts.headers.insert(hyper::header::HOST, value);
    }
    Ok(BollardRequest::from_parts(parts, body))
}

fn http_error(e: hyper::header::InvalidHeaderValue) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// A stream and what must live as long as it (the SSH forward that carries it).
pub struct Held<S> {
    pub io: S,
    pub _keep: Box<dyn Send>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
