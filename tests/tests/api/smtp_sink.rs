//! An SMTP server on loopback that records the mails it accepts, and can be
//! told to refuse the first N transactions (451 at MAIL FROM).

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// One accepted mail.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct Inner {
    mails: Vec<Mail>,
    refuse_next: u32,
    refused: u32,
}

/// A running sink.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    let (mut from, mut to, mut in_data, mut data) =
                        (String::new(), vec![], false, String::new());
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                shared.lock().unwrap().mails.push(Mail {
                                    from: from.clone(),
                                    to: to.clone(),
                                    data: std::mem::take(&mut data),
                                });
                                let _ = write.write_all(b"250 queued\r\n").await;
                            } else {
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                data.push('\n');
                            }
                            continue;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM") {
                            let refuse = {
                                let mut i = shared.lock().unwrap();
                                if i.refuse_next > 0 {
                                    i.refuse_next -= 1;
                                    i.refused += 1;
                                    true
                                } else {
                                    false
                                }
                            };
                            if refuse {
                                b"451 try again later\r\n"
                            } else {
                                from = line[10..].trim().to_string();
                                to.clear();
                                b"250 ok\r\n"
                            }
                        } else if upper.starts_with("RCPT TO") {
                            to.push(line[8..].trim().to_string());
                            b"250 ok\r\n"
                        } else if upper == "DATA" {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if upper == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        } else if upper == "RSET" || upper == "NOOP" {
                            b"250 ok\r\n"
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if write.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, inner }
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inner.lock().unwrap().mails.clone()
    }

    /// Refuse the next `n` mail transactions with a temporary error.
    pub fn refuse_next(&self, n: u32) {
        self.inner.lock().unwrap().refuse_next = n;
    }

    pub fn refused(&self) -> u32 {
        self.inner.lock().unwrap().refused
    }
}
