//! The CLI's end of the control socket: connect, send one request line, read the answer.
//!
//! It owns the framing on the client side and turns a failure to reach the daemon into an
//! error the CLI can print as it is. What to do with an answer (printing, exit codes) is the
//! CLI's business. No call here times out on its own: a caller that must not wait on a wedged
//! daemon wraps the call in `tokio::time::timeout`.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::protocol::{Envelope, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, Request, Response};

/// How many responses of a stream wait for the caller before the socket is no longer read.
const STREAM_BUFFER: usize = 64;

/// Why no answer came back. Each message is one line the CLI can print.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path: no such file, or a socket left by a daemon that is gone.
    #[error("launchgraph is not running (no daemon at {})", path.display())]
    NotRunning { path: PathBuf },
    /// The socket is there, but the caller may not open it.
    #[error(
        "permission denied on {}: the control socket is open to root and to the daemon's admin group",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("control socket {}: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
}

/// Sends `req` and returns the daemon's one response (which may be a [`Response::Error`]).
pub async fn request(path: &Path, req: Request) -> Result<Response, ClientError> {
    let mut reader = send(path, req).await?;
    let mut line = Vec::new();
    match read_response(&mut reader, &mut line, path).await? {
        Some(response) => Ok(response),
        None => Err(protocol(
            path,
            "the daemon closed the connection without answering",
        )),
    }
}

/// Sends `req` (`events --follow`) and returns the responses as they come. The channel ends
/// when the daemon closes the connection; a broken or malformed line is its last item.
/// Dropping the receiver closes the connection, which tells the daemon to stop.
pub async fn stream(
    path: &Path,
    req: Request,
) -> Result<mpsc::Receiver<Result<Response, ClientError>>, ClientError> {
    let mut reader = send(path, req).await?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut line = Vec::new();
        loop {
            let next = tokio::select! {
                // Nobody reads any more: stop reading, which closes the connection.
                _ = tx.closed() => return,
                next = read_response(&mut reader, &mut line, &path) => next,
            };
            let item = match next {
                Ok(Some(response)) => Ok(response),
                Ok(None) => return,
                Err(error) => Err(error),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    Ok(rx)
}

/// Connects and writes the request line.
async fn send(path: &Path, req: Request) -> Result<BufReader<UnixStream>, ClientError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| connect_error(path, e))?;
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        request: req,
    };
    let mut line = serde_json::to_vec(&envelope)
        .map_err(|e| protocol(path, format!("cannot encode the request: {e}")))?;
    line.push(b'\n');
    if let Err(source) = stream.write_all(&line).await {
        // A daemon that refuses a connection (too many open) answers and closes at once,
        // possibly before the request is written: its answer is still there to read.
        if !matches!(
            source.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(ClientError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    Ok(BufReader::new(stream))
}

fn connect_error(path: &Path, source: io::Error) -> ClientError {
    let path = path.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { path }
        }
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
        // A component of the path is a file, not a directory: nothing can listen there.
        _ if source.raw_os_error() == Some(libc::ENOTDIR) => ClientError::NotRunning { path },
        _ => ClientError::Io { path, source },
    }
}

fn protocol(path: &Path, message: impl Into<String>) -> ClientError {
    ClientError::Protocol {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads one response line, at most [`MAX_RESPONSE_BYTES`] long; `None` at a clean end.
async fn read_response(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    path: &Path,
) -> Result<Option<Response>, ClientError> {
    line.clear();
    let limit = MAX_RESPONSE_BYTES as u64 + 1;
    reader
        .take(limit)
        .read_until(b'\n', line)
        .await
        .map_err(|source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.is_empty() {
        return Ok(None);
    } else if line.len() > MAX_RESPONSE_BYTES {
        return Err(protocol(
            path,
            format!("a response is longer than {MAX_RESPONSE_BYTES} bytes"),
        ));
    } else {
        return Err(protocol(
            path,
            "the daemon closed the connection in the middle of a response",
        ));
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| protocol(path, format!("not a response: {e}")))
}
