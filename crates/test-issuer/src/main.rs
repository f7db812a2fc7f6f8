//! `llmx-test-issuer`: run the test double of the OAuth issuer (this crate's library) as a process,
//! for `scripts/demo` and `scripts/bench-login` / `bench-tunnel`.
//!
//! The first line on stdout is the base URL (`http://ADDR:PORT`), to pass as
//! `-c auth_issuer=...`; it serves until SIGINT or SIGTERM. Not a production issuer: it approves
//! every sign-in.

use clap::Parser;
use llmx_test_issuer::{DEFAULT_CLIENT_ID, Issuer, IssuerConfig};
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "llmx-test-issuer", version, about = "A local test double of the llmx OAuth issuer")]
struct Args {
    /// Address to listen on; port 0 picks a free one. Defaults to loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Email in issued id_tokens
    #[arg(long, default_value = "dev@example.com")]
    email: String,
    /// chatgpt_plan_type in issued tokens
    #[arg(long, default_value = "plus")]
    plan: String,
    /// chatgpt_account_id in issued tokens
    #[arg(long, default_value = "acc-test-0001")]
    account_id: String,
    /// OAuth client id to accept
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    client_id: String,
    /// Wait this long before every /oauth/token answer (for benchmarks)
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Lifetime of issued access tokens
    #[arg(long, default_value_t = 3600)]
    access_token_ttl_secs: u64,
    /// Answer every sign-in with error=access_denied
    #[arg(long)]
    deny: bool,
    /// Refuse the API-key token exchange
    #[arg(long)]
    no_api_key: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = IssuerConfig {
        client_id: args.client_id,
        email: args.email,
        plan: args.plan,
        account_id: args.account_id,
        delay: Duration::from_millis(args.delay_ms),
        access_token_ttl: Duration::from_secs(args.access_token_ttl_secs),
        deny: args.deny,
        api_keys: !args.no_api_key,
    };
    match run(args.listen, config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmx-test-issuer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn run(listen: std::net::SocketAddr, config: IssuerConfig) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}")?;
    out.flush()?;
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    Issuer::new(config).serve(listener, stop).await
}
