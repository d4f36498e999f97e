//! The listener: plain HTTP or HTTPS (rustls) on `ipa-listen-host:ipa-listen-port`, one hyper
//! HTTP/1.1 connection task per client, stopped when the agent stops serving.

use super::routes::Router;
use crate::context::ServeState;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that has not finished by then is dropped (a stuck client must not pile up).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("starting the agent API on {addr} failed: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves until `stop` leaves [`ServeState::Serving`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Arc<Router>,
    stop: watch::Receiver<ServeState>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, acceptor.clone(), router.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!("accepting a connection on the agent API failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stopped(stop.clone()) => break,
        }
    }
    tracing::info!("the agent API stopped accepting connections");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Arc<Router>,
    stop: watch::Receiver<ServeState>,
) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => http(TokioIo::new(stream), router, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => http(TokioIo::new(tls), router, stop).await,
                Ok(Err(e)) => tracing::warn!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::warn!("TLS handshake with {peer} timed out"),
            }
        }
    }
}

/// Resolves once the agent no longer serves (the watch guard is dropped before returning, so
/// the future stays `Send`).
async fn stopped(mut stop: watch::Receiver<ServeState>) {
    let _ = stop
        .wait_for(|s| *s != ServeState::Serving)
        .await
        .map(|_| ());
}

async fn http<I>(io: I, router: Arc<Router>, stop: watch::Receiver<ServeState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let router = router.clone();
        async move { Ok::<_, std::convert::Infallible>(router.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => if let Err(e) = res {
            tracing::debug!("agent API connection ended with an error: {e}");
        },
        _ = stopped(stop) => {
            // Lockdown and rescue must not leave a kept-alive connection able to run commands.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
