//! The device-code login (DESIGN.md §8), for machines the browser's redirect cannot reach: ask
//! the issuer for a user code, show it with the page to enter it on, poll until the user has
//! approved it there, then exchange the authorization code it yields (with the PKCE verifier the
//! issuer hands back) like a browser login. No port is opened; nothing is written until the end.

use super::{EventSink, LoginError, LoginEvent, LoginSucceeded, Obtained, Timing, save};
use crate::auth::oauth::{DeviceCode, DevicePoll, OAuthClient, OAuthError};
use std::future::Future;

use std::time::{Duration, Instant};

/// How long a device code lives at the issuer; polling never goes on longer.
pub const CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The poll interval when the issuer names none (or one that is not a number).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long past the deadline (`--timeout`) the poll made at it may take to be answered.
const LAST_POLL_GRACE: Duration = Duration::from_secs(1);
/// The longest poll interval honoured: a larger one (up to `u64::MAX` seconds) is taken as this,
/// so a person who approves the code is noticed within it.
pub const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// What a device-code login needs.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    pub issuer: String,
    pub client_id: String,
    /// Give up sooner than the code's 15 minutes (`--timeout`); `None`: the full lifetime.
    pub timeout: Option<Duration>,
    /// Where the login is saved.
    pub store: crate::auth::store::Store,
}

/// Run a device-code login. [`LoginError::DeviceCodeOff`] means the issuer does not offer it
/// (the caller may fall back to the browser login); `interrupt` stops polling and writes nothing.
pub async fn run(
    opts: DeviceOptions,
    events: EventSink,
    interrupt: impl Future<Output = ()> + Send,
) -> Result<LoginSucceeded, LoginError> {
    let client = OAuthClient::new(&opts.issuer, &opts.client_id).map_err(LoginError::Issuer)?;
    let limit = opts.timeout.map_or(CODE_LIFETIME, |t| t.min(CODE_LIFETIME));
    tokio::pin!(interrupt);
    let code = tokio::select! {
        r = client.device_usercode() => r.map_err(LoginError::DeviceStart)?.ok_or(LoginError::DeviceCodeOff)?,
        () = &mut interrupt => return Err(LoginError::Interrupted),
    };
    events(LoginEvent::DeviceCode {
        verification_url: client.device_verification_url(),
        user_code: code.user_code.clone(),
        expires_in: limit.as_secs(),
    });
    let interval = code
        .interval
        .filter(|&s| s > 0)
        .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.min(MAX_INTERVAL.as_secs())));
    let grant = tokio::select! {
        r = poll(&client, &code, interval, limit) => r?,
        () = &mut interrupt => return Err(LoginError::Interrupted),
    };
    events(LoginEvent::CallbackReceived);
    let received = Instant::now();
    let redirect_uri = client.device_redirect_uri();
    let exchange = client.exchange_code(grant.authorization_code.expose(), &redirect_uri, &grant.code_verifier);
    let tokens = tokio::select! {
        r = exchange => r.map_err(LoginError::Exchange)?,
        () = &mut interrupt => return Err(LoginError::Interrupted),
    };
    // No API-key exchange on this path (DESIGN.md §8).
    let timing = Timing { started: received, issuer_time: client.issuer_time() };
    save(&opts.store, Obtained::ChatGpt { tokens, api_key: None, timing: Some(timing) })
}

/// Poll every `interval` until approved, declined or `limit`. A poll the network (or a gateway)
/// fails is retried: the issuer being briefly away must not end a login the user is finishing.
/// `limit` is kept: the last poll is made at the deadline (never skipped because the next
/// interval would pass it), and a poll still unanswered at the deadline is abandoned.
async fn poll(
    client: &OAuthClient,
    code: &DeviceCode,
    interval: Duration,
    limit: Duration,
) -> Result<crate::auth::oauth::DeviceGrant, LoginError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let now = tokio::time::Instant::now();
        let next = now.checked_add(interval).unwrap_or(deadline).min(deadline);
        // The last poll (made at the deadline) gets a moment to be answered.
        let answer = match tokio::time::timeout_at(deadline + LAST_POLL_GRACE, client.device_poll(code)).await {
            Ok(answer) => answer,
            Err(_) => return Err(LoginError::TimedOut { after: limit }),
        };
        let last_transient = match answer {
            Ok(DevicePoll::Approved(grant)) => return Ok(grant),
            Ok(DevicePoll::Pending) => None,
            Err(e @ OAuthError::Unreachable { .. }) => Some(e),
            Err(e @ OAuthError::Status { status: 502..=504, .. }) => Some(e),
            Err(OAuthError::Status { status: 401, code: Some(c) }) if c == "authorization_declined" => {
                return Err(LoginError::Declined);
            }
            Err(e) => return Err(LoginError::DevicePoll(e)),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_transient {
                Some(e) => LoginError::DevicePoll(e),
                None => LoginError::TimedOut { after: limit },
            });
        }
        tokio::time::sleep_until(next).await;
    }
}
