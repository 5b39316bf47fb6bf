//! A client of Chromium's DevTools protocol over its browser websocket,
//! just what [`super::renderer`] needs: commands answered by id (each with a
//! timeout), and events of flat sessions (`sessionId`) routed to the tab
//! that listens for them, through a bounded queue (a flood of events drops
//! the excess rather than growing memory). Messages are bounded by the
//! websocket's maximum size, set from the largest DOM a crawl reads.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

/// Longest wait to connect to the DevTools websocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one DevTools command's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;
type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<(String, Value)>>>>;

/// A DevTools connection: commands by id, events routed by session.
pub struct Cdp {
    out: mpsc::Sender<String>,
    pending: Pending,
    sessions: Sessions,
    next: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cdp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cdp {
    pub async fn connect(ws_url: &str, max_message: usize) -> Result<Self, String> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let (socket, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(ws_url, Some(config), false),
        )
        .await
        .map_err(|_| "DevTools connection timed out".to_string())?
        .map_err(|e| format!("DevTools connection failed: {e}"))?;
        let (mut sink, mut stream) = socket.split();
        let (out, mut rx) = mpsc::channel::<String>(64);
        let pending: Pending = Arc::default();
        let sessions: Sessions = Arc::default();
        let writer = tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        });
        let reader = {
            let (pending, sessions) = (pending.clone(), sessions.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v["id"].as_u64() {
                        let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(tx) = tx {
                            let r = match v.get("error") {
                                Some(e) => {
                                    Err(e["message"].as_str().unwrap_or("error").to_string())
                                }
                                None => Ok(v["result"].clone()),
                            };
                            let _ = tx.send(r);
                        }
                    } else if let (Some(method), Some(session)) =
                        (v["method"].as_str(), v["sessionId"].as_str())
                    {
                        let tx = sessions.lock().ok().and_then(|s| s.get(session).cloned());
                        if let Some(tx) = tx {
                            let _ = tx.try_send((method.to_string(), v["params"].clone()));
                        }
                    }
                }
                // The browser went away: fail whatever waits.
                if let Ok(mut p) = pending.lock() {
                    p.clear();
                }
            })
        };
        Ok(Self {
            out,
            pending,
            sessions,
            next: AtomicU64::new(1),
            tasks: vec![writer, reader],
        })
    }

    /// The events of `session` from now on, at most `queue` waiting.
    pub fn listen(&self, session: &str, queue: usize) -> mpsc::Receiver<(String, Value)> {
        let (tx, rx) = mpsc::channel(queue);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(session.to_string(), tx);
        }
        rx
    }

    /// Stops routing `session`'s events.
    pub fn forget(&self, session: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(session);
        }
    }

    /// Sends `method` (to `session`, or to the browser) and waits for its result.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| "DevTools state poisoned".to_string())?
            .insert(id, tx);
        self.out
            .send(msg.to_string())
            .await
            .map_err(|_| "Chromium is gone".to_string())?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx).await;
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
        match answer {
            Ok(Ok(r)) => r.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err("Chromium is gone".into()),
            Err(_) => Err(format!("{method} timed out")),
        }
    }
}
