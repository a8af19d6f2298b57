//! The HTTP client of the load tasks: one keep-alive connection to whichever daemon
//! is current, re-established after an error or a restart (waiting while the daemon
//! is down), with a timeout on every answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

use crate::common::{connect, exchange, request};
use crate::state::Run;
use crate::REQUEST_TIMEOUT;

/// Why a call got no answer.
pub enum CallError {
    /// The run is stopping (no daemon to wait for).
    Stopping,
    /// The connection failed or timed out.
    Transport(String),
}

/// One keep-alive connection to whichever daemon is current, re-established after an
/// error or a restart (waiting while the daemon is down).
pub struct Client {
    run: Arc<Run>,
    addr: watch::Receiver<Option<SocketAddr>>,
    conn: Option<(SocketAddr, SendRequest<Full<Bytes>>)>,
}

/// Waits until a daemon is listening (or the run stops: `None`).
pub async fn current_addr(
    run: &Run,
    rx: &mut watch::Receiver<Option<SocketAddr>>,
) -> Option<SocketAddr> {
    loop {
        if let Some(a) = *rx.borrow_and_update() {
            return Some(a);
        }
        if run.stopping() {
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

impl Client {
    pub fn new(run: &Arc<Run>) -> Client {
        Client {
            run: run.clone(),
            addr: run.addr.clone(),
            conn: None,
        }
    }

    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let Some(addr) = current_addr(&self.run, &mut self.addr).await else {
            return Err(CallError::Stopping);
        };
        if self.conn.as_ref().is_some_and(|(a, _)| *a != addr) {
            self.conn = None;
        }
        let sender = match &mut self.conn {
            Some((_, s)) => s,
            None => {
                let s = connect(addr).await.map_err(CallError::Transport)?;
                &mut self.conn.insert((addr, s)).1
            }
        };
        if let Err(e) = sender.ready().await {
            self.conn = None;
            return Err(CallError::Transport(format!("the connection closed: {e}")));
        }
        let req = request(&addr.to_string(), None, method, path, ctype, body);
        let exchange = exchange(sender, req);
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.conn = None;
                Err(CallError::Transport(format!("{path}: {e}")))
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Transport(format!(
                    "{path}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// A GET answered 200 with JSON; other answers are failures (`None`), transport
    /// errors are counted in `errors` and `None`.
    pub async fn get_json(&mut self, path: &str, errors: &AtomicU64) -> Option<Value> {
        match self.call(Method::GET, path, None, Bytes::new()).await {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice(&body) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.run
                        .fail(format!("GET {path}: 200 with invalid JSON: {e}"));
                    None
                }
            },
            Ok((status, body)) => {
                self.run
                    .fail(format!("GET {path} answered {status}: {}", snippet(&body)));
                None
            }
            Err(CallError::Stopping) => None,
            Err(CallError::Transport(_)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        }
    }
}

pub fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}
