//! A plain HTTP/1.1 client for samplers that talk to loopback services (Ollama, llama.cpp,
//! a Prometheus endpoint): one connection per request, a deadline over the whole exchange,
//! a cap on the bytes of body read, and monotonic timestamps of each phase.
//!
//! Built on hyper's connection API rather than reqwest, because a sampler of time to first
//! token must know when the TCP connection was established and when the request was written,
//! which a pooled client hides: the socket is wrapped so that its first read and its writes
//! are timestamped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Why an exchange gave no (complete) answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: not a plain http:// URL with a host")]
    Url(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Protocol(#[from] hyper::Error),
}

impl HttpError {
    pub fn is_deadline(&self) -> bool {
        matches!(self, Self::Deadline(_))
    }
}

/// Timestamps the socket saw.
#[derive(Debug, Default)]
struct Marks {
    /// The last write before the first read: the request fully handed to the kernel.
    request_sent: Option<Instant>,
    first_read: Option<Instant>,
}

/// A TCP stream that timestamps writes (until the first read) and the first read.
struct TimedStream {
    inner: TcpStream,
    marks: Arc<Mutex<Marks>>,
}

impl TimedStream {
    fn mark(&self, f: impl FnOnce(&mut Marks)) {
        if let Ok(mut m) = self.marks.lock() {
            f(&mut m);
        }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let now = Instant::now();
            self.mark(|m| {
                m.first_read.get_or_insert(now);
            });
        }
        polled
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            let now = Instant::now();
            self.mark(|m| {
                if m.first_read.is_none() {
                    m.request_sent = Some(now);
                }
            });
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            let now = Instant::now();
            self.mark(|m| {
                if m.first_read.is_none() {
                    m.request_sent = Some(now);
                }
            });
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request under way: its status and headers are in, its body is read with
/// [`next_chunk`](Self::next_chunk) or [`body`](Self::body). Dropping it closes the
/// connection.
pub struct Exchange {
    pub status: StatusCode,
    /// Before the connect.
    pub started: Instant,
    pub connected: Instant,
    /// The status line and headers were parsed.
    pub headers: Instant,
    marks: Arc<Mutex<Marks>>,
    body: Incoming,
    read: usize,
    cap: usize,
    deadline: tokio::time::Instant,
    budget: Duration,
    connection: JoinHandle<()>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Exchange {
    /// When the request was fully written to the socket (after the connect, before the
    /// first byte of the answer).
    pub fn request_sent(&self) -> Instant {
        self.marks
            .lock()
            .ok()
            .and_then(|m| m.request_sent)
            .unwrap_or(self.connected)
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = tokio::time::timeout_at(self.deadline, self.body.frame())
                .await
                .map_err(|_| HttpError::Deadline(self.budget))?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            if let Ok(data) = frame?.into_data() {
                self.read = self.read.saturating_add(data.len());
                if self.read > self.cap {
                    return Err(HttpError::TooLarge(self.cap));
                }
                return Ok(Some(data));
            }
        }
    }

    /// The whole body, within the cap and the deadline.
    pub async fn body(mut self) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub url: &'a url::Url,
    /// `None`: GET; `Some`: POST of this JSON.
    pub json: Option<Vec<u8>>,
    /// Over the whole exchange: connect, request, headers and every body read.
    pub deadline: Duration,
    /// Bytes of body that may be read.
    pub cap: usize,
}

/// Connects, sends the request and reads the status and headers.
pub async fn send(call: Call<'_>) -> Result<Exchange, HttpError> {
    let url = call.url;
    let budget = call.deadline;
    let deadline = crate::clock::deadline_tokio(budget);
    let late = |_| HttpError::Deadline(budget);
    if url.scheme() != "http" {
        return Err(HttpError::Url(url.to_string()));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => return Err(HttpError::Url(url.to_string())),
    };
    let port = url.port_or_known_default().unwrap_or(80);

    let started = Instant::now();
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(late)?
        .map_err(|source| HttpError::Connect {
            addr: format!("{host}:{port}"),
            source,
        })?;
    let connected = Instant::now();
    // A small request goes out in one segment, now.
    let _ = tcp.set_nodelay(true);
    let marks = Arc::new(Mutex::new(Marks::default()));
    let io = TokioIo::new(TimedStream {
        inner: tcp,
        marks: Arc::clone(&marks),
    });
    let (mut sender, conn) =
        tokio::time::timeout_at(deadline, hyper::client::conn::http1::handshake(io))
            .await
            .map_err(late)??;
    let connection = tokio::spawn(async move {
        // Its error, if any, reaches the caller through the request or the body.
        let _ = conn.await;
    });

    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
        None => url.host_str().unwrap_or(&host).to_owned(),
    };
    let builder = Request::builder()
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "launchgraph");
    let request = match call.json {
        Some(body) => builder
            .method("POST")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body))),
        None => builder.method("GET").body(Full::new(Bytes::new())),
    }
    .map_err(|_| HttpError::Url(url.to_string()))?;

    let response = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
        Ok(r) => r,
        Err(_) => {
            connection.abort();
            return Err(HttpError::Deadline(budget));
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            connection.abort();
            return Err(e.into());
        }
    };
    let headers = Instant::now();
    let status = response.status();
    Ok(Exchange {
        status,
        started,
        connected,
        headers,
        marks,
        body: response.into_body(),
        read: 0,
        cap: call.cap,
        deadline,
        budget,
        connection,
    })
}

/// GET `url`: its status and whole body, within the deadline and the cap.
pub async fn get(
    url: &url::Url,
    deadline: Duration,
    cap: usize,
) -> Result<(StatusCode, Vec<u8>), HttpError> {
    let exchange = send(Call {
        url,
        json: None,
        deadline,
        cap,
    })
    .await?;
    let status = exchange.status;
    Ok((status, exchange.body().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn only_plain_http_is_spoken_and_a_refused_connect_says_where() {
        let e = get(&url("https://127.0.0.1:1/"), Duration::from_secs(5), 10)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Url(_)), "{e}");

        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get(
            &url(&format!("http://127.0.0.1:{port}/")),
            Duration::from_secs(5),
            10,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, HttpError::Connect { addr, .. } if *addr == format!("127.0.0.1:{port}")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn bodies_past_the_cap_are_refused_and_phases_are_in_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let body = "x".repeat(100);
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{body}");
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        let u = url(&format!("http://{addr}/metrics"));
        let e = get(&u, Duration::from_secs(5), 99).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(99)), "{e}");

        let ex = send(Call {
            url: &u,
            json: None,
            deadline: Duration::from_secs(5),
            cap: 100,
        })
        .await
        .unwrap();
        let sent = ex.request_sent();
        assert!(ex.started <= ex.connected && ex.connected <= sent && sent <= ex.headers);
        assert_eq!(ex.body().await.unwrap().len(), 100);
    }
}
