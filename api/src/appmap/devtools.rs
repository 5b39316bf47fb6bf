//! A client of Chromium's DevTools protocol over `--remote-debugging-pipe`,
//! just what [`super::renderer`] needs: commands answered by id (each with a
//! timeout), and events of flat sessions (`sessionId`) routed to the tab
//! that listens for them, through a bounded queue (a flood of events drops
//! the excess rather than growing memory).
//!
//! Why a pipe and not the DevTools port: a port on 127.0.0.1 takes commands
//! from any local process, unauthenticated (navigate to `file:///…`, read
//! it back); a pipe belongs to this process alone. And Chromium exits when
//! the pipe closes, so a server that dies, even by `SIGKILL`, leaves no
//! browser behind. The protocol on the pipe is JSON messages ended by a NUL
//! byte, Chromium reading fd 3 and writing fd 4; [`super::renderer`] gives
//! it our stdin and stdout pipes as those. Two threads carry the blocking
//! pipe I/O; a message longer than the limit is dropped whole.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// Longest wait for one DevTools command's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;
type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<(String, Value)>>>>;

/// A DevTools connection: commands by id, events routed by session.
/// Dropping it closes the pipe, and Chromium exits.
pub struct Cdp {
    out: mpsc::Sender<String>,
    pending: Pending,
    sessions: Sessions,
    next: AtomicU64,
}

/// Reads one NUL-ended message of at most `max` bytes; `None` at the end of the pipe.
/// A longer message is skipped to its end and read as empty.
fn read_message(reader: &mut impl BufRead, max: usize) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().ok()?;
        if buf.is_empty() {
            return None;
        }
        let (chunk, done) = match buf.iter().position(|b| *b == 0) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long && msg.len() + chunk.len() <= max {
            msg.extend_from_slice(chunk);
        } else {
            too_long = true;
            msg.clear();
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Some(msg);
        }
    }
}

impl Cdp {
    /// Speaks the protocol over `to` (Chromium's fd 3) and `from` (its fd 4),
    /// reading messages of at most `max_message` bytes.
    pub fn over_pipes(
        mut to: impl Write + Send + 'static,
        from: impl Read + Send + 'static,
        max_message: usize,
    ) -> Self {
        let (out, mut rx) = mpsc::channel::<String>(64);
        let pending: Pending = Arc::default();
        let sessions: Sessions = Arc::default();
        std::thread::spawn(move || {
            while let Some(text) = rx.blocking_recv() {
                if to.write_all(text.as_bytes()).is_err()
                    || to.write_all(&[0]).is_err()
                    || to.flush().is_err()
                {
                    return;
                }
            }
            // Dropping `to` closes the pipe: Chromium exits.
        });
        {
            let (pending, sessions) = (pending.clone(), sessions.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, from);
                while let Some(msg) = read_message(&mut reader, max_message) {
                    let Ok(v) = serde_json::from_slice::<Value>(&msg) else {
                        continue;
                    };
                    dispatch(&pending, &sessions, v);
                }
                // The browser went away: fail whatever waits.
                if let Ok(mut p) = pending.lock() {
                    p.clear();
                }
            });
        }
        Self {
            out,
            pending,
            sessions,
            next: AtomicU64::new(1),
        }
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

/// Hands an answer to its caller, or an event to its session's queue.
fn dispatch(pending: &Pending, sessions: &Sessions, v: Value) {
    if let Some(id) = v["id"].as_u64() {
        let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(tx) = tx {
            let r = match v.get("error") {
                Some(e) => Err(e["message"].as_str().unwrap_or("error").to_string()),
                None => Ok(v["result"].clone()),
            };
            let _ = tx.send(r);
        }
    } else if let (Some(method), Some(session)) = (v["method"].as_str(), v["sessionId"].as_str()) {
        let tx = sessions.lock().ok().and_then(|s| s.get(session).cloned());
        if let Some(tx) = tx {
            let _ = tx.try_send((method.to_string(), v["params"].clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_at_nul_and_long_ones_are_dropped() {
        let mut r = BufReader::with_capacity(4, &b"{\"a\":1}\0xxxxxxxxxxxx\0{}\0tail"[..]);
        assert_eq!(read_message(&mut r, 10).unwrap(), b"{\"a\":1}");
        assert_eq!(read_message(&mut r, 10).unwrap(), b"");
        assert_eq!(read_message(&mut r, 10).unwrap(), b"{}");
        assert_eq!(read_message(&mut r, 10), None);
    }
}
