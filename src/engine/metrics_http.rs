//! `up --metrics-listen 127.0.0.1:PORT`: Prometheus scrapes `GET /metrics` over HTTP on a
//! loopback address. Served with hyper (the HTTP stack the probes already use); each scrape asks
//! the supervising task for the current text, like `launchgraph metrics` does.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::runtime::ControlRequest;
use crate::control::protocol::{Request, Response};

/// Binds `addr` (a loopback address; the caller checks) and serves until `shutdown`. Returns
/// the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    control: mpsc::Sender<ControlRequest>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let control = control.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, control.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(
    req: HttpRequest<Incoming>,
    control: mpsc::Sender<ControlRequest>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let respond = |status: StatusCode, body: String| {
        let mut r = HttpResponse::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        r
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".into(),
        ));
    }
    let (reply, mut rx) = mpsc::channel(1);
    let sent = control
        .send(ControlRequest {
            request: Request::Metrics,
            reply,
        })
        .await;
    match (sent, rx.recv().await) {
        (Ok(()), Some(Response::Metrics { text })) => Ok(respond(StatusCode::OK, text)),
        _ => Ok(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "launchgraph is shutting down\n".into(),
        )),
    }
}
