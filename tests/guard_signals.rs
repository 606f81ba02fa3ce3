//! Guard signals against real things: commands run as real child processes, a real loopback
//! HTTP server serving Prometheus text, a scripted Ollama and a scripted llama-server on
//! loopback (real sockets, real streaming, chosen delays and durations), and, as root, a real
//! tmpfs filled to a known share and real swap writes from a memory-limited cgroup (the
//! mounts, swap file and cgroup are the harness's, `support::pressure`).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use launchgraph::guard::signal::disk::{DiskFree, DiskFreeParams};
use launchgraph::guard::signal::exec::{CommandParams, ExecParams, ExecSignal};
use launchgraph::guard::signal::prometheus::Selector;
use launchgraph::guard::signal::queue::{JsonSelect, QueueDepth, QueueDepthParams};
use launchgraph::guard::signal::swap::{SwapOutParams, SwapOutRate};
use launchgraph::guard::signal::ttft::{Api, Idleness, Ttft, TtftParams};
use launchgraph::guard::signal::{Quantity, Reading, Sample, Signal, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::pressure::{SwapFile, Swapping, Tmpfs};

fn sh(script: &str) -> CommandParams {
    CommandParams::new(["/bin/sh", "-c", script])
}

async fn exec(params: CommandParams) -> Sample<Quantity> {
    ExecSignal::new(ExecParams { command: params })
        .sample()
        .await
}

#[tokio::test]
async fn exec_reads_one_number_with_its_unit_from_a_real_command() {
    let s = exec(sh("echo 12MiB/s")).await;
    assert_eq!(
        s,
        Sample::Known(Quantity::new(12.0 * 1024.0 * 1024.0, Unit::BytesPerSecond))
    );

    // The environment is exactly the one given.
    let mut p = sh("printf '%s\\n' \"$DEPTH${HOME:+home-leaked}\"");
    p.env = BTreeMap::from([
        ("DEPTH".to_owned(), "7".to_owned()),
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
    ]);
    assert_eq!(
        exec(p).await,
        Sample::Known(Quantity::new(7.0, Unit::Count))
    );
}

#[tokio::test]
async fn exec_anything_but_a_number_is_unknown_with_why() {
    let long = "w".repeat(400);
    let cases = [
        (sh("echo three apples"), "not a number"),
        (sh("echo 3; echo 4"), "more than one line"),
        (
            sh("echo 5 >&2; echo oops >&2; exit 3"),
            "exited 3; stderr: \"5\\noops\"",
        ),
        (sh("kill -9 $$"), "killed by signal 9"),
        (sh(&format!("echo {long}")), "..."),
        (CommandParams::new(["/nonexistent/lanes"]), "cannot start"),
        (CommandParams::new(Vec::<String>::new()), "empty command"),
    ];
    for (params, why) in cases {
        let argv = params.argv.clone();
        let s = exec(params).await;
        let reason = s.reason().unwrap_or_else(|| panic!("{argv:?}: {s:?}"));
        assert!(reason.contains(why), "{argv:?}: {reason}");
        // At most 200 characters of output are quoted.
        assert!(reason.len() < 300, "{reason}");
    }

    let mut slow = sh("sleep 30");
    slow.deadline = Duration::from_millis(300);
    let s = exec(slow).await;
    assert!(
        s.reason().unwrap().contains("no exit within 300ms"),
        "{s:?}"
    );

    let mut chatty = sh("head -c 100000 /dev/zero | tr '\\0' 1");
    chatty.output_cap = 1000;
    let s = exec(chatty).await;
    assert!(
        s.reason().unwrap().contains("more than 1000 bytes"),
        "{s:?}"
    );
}

#[tokio::test]
async fn queue_depth_from_a_command_printing_openclaw_lanes() {
    let lanes = r#"{"ts":1764892800123,"lanes":[{"lane":"background","queuedCount":9,"activeCount":1,"maxConcurrent":2,"draining":false,"generation":0,"blockedBy":null},{"lane":"main","queuedCount":4,"activeCount":8,"maxConcurrent":8,"draining":false,"generation":0,"blockedBy":null}],"dynamic":null}"#;
    let mut command = sh("printf '%s' \"$LANES\"");
    command.env = BTreeMap::from([("LANES".to_owned(), lanes.to_owned())]);
    let mut q = QueueDepth::new(QueueDepthParams::Command {
        command: command.clone(),
        select: JsonSelect::Lane {
            lane: "main".into(),
            field: "queuedCount".into(),
        },
    });
    assert_eq!(
        q.sample().await,
        Sample::Known(Quantity::new(4.0, Unit::Count))
    );

    let mut q = QueueDepth::new(QueueDepthParams::Command {
        command: sh("echo 'gateway closed (1006)' >&2; exit 1"),
        select: JsonSelect::Pointer("/lanes/0/queuedCount".into()),
    });
    let s = q.sample().await;
    assert!(
        s.reason().unwrap().contains("gateway closed (1006)"),
        "{s:?}"
    );

    // The preset for OpenClaw runs `<openclaw> gateway call diagnostics.lanes --json`.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("openclaw");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$*\" = 'gateway call diagnostics.lanes --json' ] || exit 2\n\
             printf '%s' '{lanes}'\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut q = QueueDepth::new(QueueDepthParams::openclaw_main_lane(fake.to_str().unwrap()));
    assert_eq!(q.sample().await.quantity().unwrap().value, 4.0);
}

/// A loopback HTTP server answering each request with what `route` returns for its path,
/// recording the requests (path and body) it saw.
struct Server {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the server does for one request.
enum Answer {
    /// Status and body, with a Content-Length.
    Whole(u16, String),
    /// 200, chunked, each chunk written after its delay. `hold` keeps the connection open
    /// without a last chunk.
    Stream {
        content_type: &'static str,
        chunks: Vec<(Duration, String)>,
        hold: bool,
    },
}

impl Server {
    async fn start(route: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route = Arc::new(route);
        let task = {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (seen, route) = (Arc::clone(&seen), Arc::clone(&route));
                    tokio::spawn(async move {
                        let _ = serve(sock, &seen, &*route).await;
                    });
                }
            })
        };
        Self { addr, seen, task }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn body_of(&self, path: &str) -> serde_json::Value {
        let seen = self.seen.lock().unwrap();
        let (_, body) = seen.iter().find(|(p, _)| p == path).expect(path);
        serde_json::from_str(body).unwrap()
    }
}

async fn serve(
    mut sock: TcpStream,
    seen: &Mutex<Vec<(String, String)>>,
    route: &(dyn Fn(&str) -> Answer + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    seen.lock().unwrap().push((path.clone(), body));
    match route(&path) {
        Answer::Whole(status, body) => {
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(reply.as_bytes()).await?;
        }
        Answer::Stream {
            content_type,
            chunks,
            hold,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await?;
            for (delay, data) in chunks {
                // The scripted server's own pacing: the delay under test.
                tokio::time::sleep(delay).await;
                let framed = format!("{:x}\r\n{data}\r\n", data.len());
                sock.write_all(framed.as_bytes()).await?;
            }
            if hold {
                std::future::pending::<()>().await;
            }
            sock.write_all(b"0\r\n\r\n").await?;
        }
    }
    sock.shutdown().await
}

#[tokio::test]
async fn queue_depth_from_a_prometheus_metric_on_loopback() {
    let exposition = "# HELP llamacpp:requests_processing Number of requests processing.\n\
        # TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 1\n\
        # HELP llamacpp:requests_deferred Number of requests deferred.\n\
        # TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 3\n\
        lanes{name=\"a \\\"b\\\" }\",kind=\"x\"} 2.5e0\n";
    let server = Server::start(move |path| match path {
        "/metrics" => Answer::Whole(200, exposition.to_owned()),
        _ => Answer::Whole(404, "no such page".into()),
    })
    .await;
    let metrics = server.url().join("/metrics").unwrap();

    let mut q = QueueDepth::new(QueueDepthParams::llamacpp_deferred(metrics.clone()));
    assert_eq!(
        q.sample().await,
        Sample::Known(Quantity::new(3.0, Unit::Count))
    );

    let labelled = |selector| QueueDepthParams::Prometheus {
        url: metrics.clone(),
        selector,
        deadline: Duration::from_secs(10),
        cap: 1 << 20,
    };
    let mut q = QueueDepth::new(labelled(Selector::new("lanes").label("name", "a \"b\" }")));
    assert_eq!(q.sample().await.quantity().unwrap().value, 2.5);
    let mut q = QueueDepth::new(labelled(Selector::new("lanes").label("kind", "y")));
    assert!(
        q.sample()
            .await
            .reason()
            .unwrap()
            .contains("none with the labels")
    );

    let mut q = QueueDepth::new(QueueDepthParams::llamacpp_deferred(
        server.url().join("/nowhere").unwrap(),
    ));
    let s = q.sample().await;
    assert!(
        s.reason().unwrap().contains("HTTP 404") && s.reason().unwrap().contains("no such page")
    );

    let mut small = labelled(Selector::new("llamacpp:requests_deferred"));
    if let QueueDepthParams::Prometheus { cap, .. } = &mut small {
        *cap = 64;
    }
    let s = QueueDepth::new(small).sample().await;
    assert!(
        s.reason().unwrap().contains("larger than 64 bytes"),
        "{s:?}"
    );

    let far = QueueDepthParams::llamacpp_deferred("http://192.0.2.1:9/metrics".parse().unwrap());
    let s = QueueDepth::new(far).sample().await;
    assert!(
        s.reason().unwrap().contains("not a loopback address"),
        "{s:?}"
    );
}

fn ollama_ps(models: &[&str]) -> String {
    let entries: Vec<String> = models
        .iter()
        .map(|m| format!(r#"{{"name":"{m}","model":"{m}","size":1,"size_vram":1}}"#))
        .collect();
    format!(r#"{{"models":[{}]}}"#, entries.join(","))
}

/// A scripted Ollama: `/api/ps` lists `loaded`; `/api/generate` streams two token chunks
/// (the first after `first_delay`) and a final chunk with the given durations (ms).
fn ollama(
    loaded: &'static [&'static str],
    first_delay: Duration,
    durations_ms: [u64; 4],
    hold: bool,
) -> impl Fn(&str) -> Answer + Send + Sync + 'static {
    move |path| match path {
        "/api/ps" => Answer::Whole(200, ollama_ps(loaded)),
        "/api/generate" => {
            let [total, load, prompt, eval] = durations_ms.map(|ms| ms * 1_000_000);
            let token = |t: &str| {
                format!(
                    r#"{{"model":"m","created_at":"2026-12-05T00:00:00Z","response":"{t}","done":false}}"#
                ) + "\n"
            };
            let mut chunks = vec![(first_delay, token("O")), (Duration::ZERO, token("k"))];
            if !hold {
                chunks.push((
                    Duration::ZERO,
                    format!(
                        r#"{{"model":"m","response":"","done":true,"done_reason":"length","total_duration":{total},"load_duration":{load},"prompt_eval_count":1,"prompt_eval_duration":{prompt},"eval_count":1,"eval_duration":{eval}}}"#
                    ) + "\n",
                ));
            }
            Answer::Stream {
                content_type: "application/x-ndjson",
                chunks,
                hold,
            }
        }
        _ => Answer::Whole(404, "404 page not found".into()),
    }
}

fn ttft_params(server: &Server, api: Api, model: &str) -> TtftParams {
    let mut p = TtftParams::new(server.url(), api, model);
    p.keep_alive = Some("15m".into());
    p.deadline = Duration::from_secs(20);
    p
}

#[tokio::test]
async fn ttft_splits_a_slow_first_token_into_phases_and_reads_ollamas_durations() {
    let server = Server::start(ollama(
        &["llama3.1:8b"],
        Duration::from_millis(300),
        [500, 20, 30, 10],
        false,
    ))
    .await;
    let s = Ttft::new(ttft_params(&server, Api::Ollama, "llama3.1:8b"))
        .sample()
        .await;
    let r = *s.known().unwrap_or_else(|| panic!("{s:?}"));
    let ph = r.phases;
    let ttft = ph.first_token.unwrap();
    assert!(ttft >= Duration::from_millis(300), "{ph:?}");
    assert!(
        ph.connect * 3 < ttft,
        "connect is the host leg, far under ttft: {ph:?}"
    );
    assert!(
        ph.headers.unwrap() <= ttft && ttft <= ph.total.unwrap(),
        "{ph:?}"
    );
    assert_eq!(
        r.quantity(),
        Quantity::new(ttft.as_secs_f64(), Unit::Seconds)
    );
    assert!(!r.timed_out);

    let split = r.server.unwrap();
    assert_eq!(split.total, Duration::from_millis(500));
    assert_eq!(split.load, Duration::from_millis(20));
    assert_eq!(split.prompt_eval, Duration::from_millis(30));
    assert_eq!(split.eval, Duration::from_millis(10));
    assert_eq!(split.queue_wait, Duration::from_millis(440));
    assert_eq!(
        r.idle,
        Idleness::Busy,
        "440 ms waiting for a slot is not idle"
    );

    assert_eq!(server.paths(), ["/api/ps", "/api/generate"]);
    let body = server.body_of("/api/generate");
    assert_eq!(body["model"], "llama3.1:8b");
    assert_eq!(body["stream"], true);
    assert_eq!(body["keep_alive"], "15m");
    assert_eq!(body["options"]["num_predict"], 1);
}

#[tokio::test]
async fn ttft_is_idle_when_ollama_reports_no_wait_and_no_load() {
    let server = Server::start(ollama(
        &["smollm2:latest"],
        Duration::ZERO,
        [70, 5, 50, 10],
        false,
    ))
    .await;
    let s = Ttft::new(ttft_params(&server, Api::Ollama, "smollm2"))
        .sample()
        .await;
    let r = s.known().unwrap_or_else(|| panic!("{s:?}"));
    assert_eq!(r.server.unwrap().queue_wait, Duration::from_millis(5));
    assert_eq!(r.idle, Idleness::Idle);
}

/// A model that was unloaded between the `/api/ps` check and the request: Ollama's
/// `load_duration` carries the load, which is split out of the queue wait and makes the
/// sample not idle, even with no wait for a slot.
#[tokio::test]
async fn ttft_splits_out_a_load_and_counts_it_as_not_idle() {
    let server = Server::start(ollama(
        &["llama3.1:8b"],
        Duration::ZERO,
        [900, 600, 200, 60],
        false,
    ))
    .await;
    let s = Ttft::new(ttft_params(&server, Api::Ollama, "llama3.1:8b"))
        .sample()
        .await;
    let r = s.known().unwrap_or_else(|| panic!("{s:?}"));
    let split = r.server.unwrap();
    assert_eq!(split.load, Duration::from_millis(600));
    assert_eq!(split.prompt_eval, Duration::from_millis(200));
    assert_eq!(split.eval, Duration::from_millis(60));
    assert_eq!(split.queue_wait, Duration::from_millis(40));
    assert_eq!(r.idle, Idleness::Busy, "a load over 100 ms is not idle");
}

#[tokio::test]
async fn ttft_never_loads_a_model_it_does_not_see_loaded() {
    let server = Server::start(ollama(&["other:7b"], Duration::ZERO, [1, 0, 0, 0], false)).await;
    let s = Ttft::new(ttft_params(&server, Api::Ollama, "llama3.1:8b"))
        .sample()
        .await;
    assert!(s.reason().unwrap().contains("not loaded"), "{s:?}");
    assert_eq!(server.paths(), ["/api/ps"], "no /api/generate was sent");

    // A server that does not answer /api/ps at all is unknown too, and also left alone.
    let server = Server::start(|_| Answer::Whole(500, "boom".into())).await;
    let s = Ttft::new(ttft_params(&server, Api::Ollama, "m"))
        .sample()
        .await;
    assert!(s.reason().unwrap().contains("HTTP 500"), "{s:?}");
    assert_eq!(server.paths(), ["/api/ps"]);
}

/// A guard without `model` measures whatever the server has loaded, and loads nothing when
/// nothing is.
#[tokio::test]
async fn ttft_without_a_model_measures_the_loaded_one() {
    let server = Server::start(ollama(
        &["qwen2.5:7b", "llama3.1:8b"],
        Duration::ZERO,
        [10, 0, 5, 1],
        false,
    ))
    .await;
    let mut p = TtftParams::any_loaded(server.url(), Api::Ollama);
    p.deadline = Duration::from_secs(20);
    let s = Ttft::new(p).sample().await;
    assert!(s.known().is_some(), "{s:?}");
    assert_eq!(server.paths(), ["/api/ps", "/api/generate"]);
    assert_eq!(server.body_of("/api/generate")["model"], "qwen2.5:7b");

    let server = Server::start(ollama(&[], Duration::ZERO, [1, 0, 0, 0], false)).await;
    let mut p = TtftParams::any_loaded(server.url(), Api::Ollama);
    p.deadline = Duration::from_secs(20);
    let s = Ttft::new(p).sample().await;
    assert_eq!(
        s.reason(),
        Some("no model is loaded; a probe never loads a model"),
        "{s:?}"
    );
    assert_eq!(server.paths(), ["/api/ps"], "no /api/generate was sent");
}

#[tokio::test]
async fn a_probe_past_its_deadline_is_a_sample_equal_to_the_deadline() {
    let server = Server::start(ollama(&["m:latest"], Duration::ZERO, [0; 4], true)).await;
    let mut p = ttft_params(&server, Api::Ollama, "m");
    p.deadline = Duration::from_millis(800);
    let s = Ttft::new(p).sample().await;
    let r = s.known().unwrap_or_else(|| panic!("{s:?}"));
    assert!(r.timed_out);
    assert_eq!(r.idle, Idleness::Undetermined);
    // The tokens came; the final chunk never did.
    assert!(r.phases.first_token.is_some() && r.phases.total.is_none());

    // No token at all before the deadline: the value is the deadline.
    let server = Server::start(ollama(
        &["m:latest"],
        Duration::from_secs(600),
        [0; 4],
        true,
    ))
    .await;
    let mut p = ttft_params(&server, Api::Ollama, "m");
    p.deadline = Duration::from_millis(500);
    let s = Ttft::new(p).sample().await;
    let r = s.known().unwrap_or_else(|| panic!("{s:?}"));
    assert!(r.timed_out && r.phases.first_token.is_none());
    assert_eq!(r.quantity(), Quantity::new(0.5, Unit::Seconds));
}

/// A scripted llama-server: `/v1/models`, `/slots` (one slot, `processing` or not) and a
/// streamed chat completion whose first token comes after `first_delay`.
fn llama_server(
    model: &'static str,
    slots: Option<bool>,
    first_delay: Duration,
) -> impl Fn(&str) -> Answer + Send + Sync + 'static {
    move |path| {
        match path {
        "/v1/models" => Answer::Whole(
            200,
            format!(r#"{{"object":"list","data":[{{"id":"{model}","object":"model","owned_by":"llamacpp"}}]}}"#),
        ),
        "/slots" => match slots {
            Some(busy) => Answer::Whole(200, format!(r#"[{{"id":0,"n_ctx":4096,"is_processing":{busy}}}]"#)),
            None => Answer::Whole(501, r#"{"error":{"code":501,"message":"This server does not support slots endpoint."}}"#.into()),
        },
        "/metrics" => Answer::Whole(
            200,
            "llamacpp:requests_processing 0\nllamacpp:requests_deferred 0\n".into(),
        ),
        "/v1/chat/completions" => Answer::Stream {
            content_type: "text/event-stream",
            chunks: vec![
                (Duration::ZERO, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n".into()),
                (first_delay, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Ok\"}}]}\n\n".into()),
                (Duration::ZERO, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n".into()),
            ],
            hold: false,
        },
        _ => Answer::Whole(404, "not found".into()),
    }
    }
}

#[tokio::test]
async fn ttft_of_an_openai_compatible_server_with_slots_as_the_idle_test() {
    let server = Server::start(llama_server(
        "smollm2",
        Some(true),
        Duration::from_millis(200),
    ))
    .await;
    let s = Ttft::new(ttft_params(&server, Api::OpenAi, "smollm2"))
        .sample()
        .await;
    let r = s.known().unwrap_or_else(|| panic!("{s:?}"));
    assert!(
        r.phases.first_token.unwrap() >= Duration::from_millis(200),
        "{r:?}"
    );
    assert_eq!(r.idle, Idleness::Busy);
    assert!(r.server.is_none());
    assert_eq!(
        server.paths(),
        ["/v1/models", "/slots", "/v1/chat/completions"]
    );
    let body = server.body_of("/v1/chat/completions");
    assert_eq!(body["max_tokens"], 1);
    assert_eq!(body["stream"], true);

    // Without /slots, /metrics decides.
    let server = Server::start(llama_server("smollm2", None, Duration::ZERO)).await;
    let s = Ttft::new(ttft_params(&server, Api::OpenAi, "smollm2"))
        .sample()
        .await;
    assert_eq!(s.known().unwrap().idle, Idleness::Idle);

    let server = Server::start(llama_server("smollm2", Some(false), Duration::ZERO)).await;
    let s = Ttft::new(ttft_params(&server, Api::OpenAi, "qwen"))
        .sample()
        .await;
    assert!(s.reason().unwrap().contains("not loaded"), "{s:?}");
    assert_eq!(server.paths(), ["/v1/models"]);
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_disk_free_of_a_tmpfs_filled_to_three_quarters() {
    support::needs_root("mount a tmpfs");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "64m");
    let mut disk = DiskFree::new(DiskFreeParams::new(&mnt));

    let empty = disk.sample().await;
    let r = *empty.known().unwrap_or_else(|| panic!("{empty:?}"));
    assert_eq!(r.total_bytes, 64 << 20);
    assert_eq!(r.ratio, 1.0);

    // 48 MiB of 64: a quarter left, tmpfs reserves nothing for root.
    fs::write(mnt.join("fill"), vec![1u8; 48 << 20]).unwrap();
    let s = disk.sample().await;
    let r = *s.known().unwrap();
    assert_eq!(r.available_bytes, 16 << 20);
    assert_eq!(r.quantity(), Quantity::new(0.25, Unit::Ratio));
    assert_eq!(r.ratio_including_reserved, 0.25);
}

/// Real swap writes: the rate rises above 1 MiB/s within the deadline. Needs a memory
/// cgroup controller and perl.
#[tokio::test]
#[ignore = "needs root"]
async fn root_swap_out_rate_sees_a_memory_limited_group_swapping() {
    support::needs_root("swapon and a memory cgroup");
    let bench = Swapping::start();
    let mut rate = SwapOutRate::new(SwapOutParams::default());
    assert!(
        rate.sample()
            .await
            .reason()
            .unwrap()
            .starts_with("first sample")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        // A rate needs an interval; 500 ms is the sampling period here, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = rate.sample().await;
        let r = *s.known().unwrap_or_else(|| panic!("{s:?}"));
        seen.push(r.bytes_per_second);
        if r.bytes_per_second > 1024.0 * 1024.0 {
            eprintln!("swap-out rates seen (bytes/s): {seen:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no swap writes seen: {seen:?}"
        );
    }
    drop(bench);
}

/// The fallback for a checkout whose file system takes no swap file: a swap file in a
/// loop-mounted ext4 image is used by the kernel, and gone from /proc/swaps, its mount gone,
/// once dropped.
#[test]
#[ignore = "needs root"]
fn root_a_swap_file_in_a_loop_mounted_ext4_image_is_used_and_then_removed() {
    support::needs_root("swapon and a loop mount");
    let swap = SwapFile::enable_in_image(64);
    assert!(
        swap.in_use(),
        "{} is not in /proc/swaps",
        swap.path.display()
    );
    let path = swap.path.clone();
    let mnt = path.parent().unwrap().to_owned();
    drop(swap);
    assert!(
        !support::pressure::swaps().contains(&path),
        "{} still in use",
        path.display()
    );
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(mnt.to_str().unwrap()),
        "{} still mounted",
        mnt.display()
    );
    assert!(!mnt.exists());
}

/// A test run killed before its drops (SIGKILL, a CI timeout) leaves a swap file in use and a
/// cgroup; the next run's first swap file sweeps them away, and leaves alone what belongs to a
/// process that still runs.
#[test]
#[ignore = "needs root"]
fn root_what_a_killed_run_left_is_swept_by_the_next() {
    support::needs_root("swapon, a loop mount and a cgroup");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let left = support::pressure::abandon(gone.id());
    assert!(support::pressure::swaps().contains(&left.swap));
    assert!(left.cgroup.is_dir());
    // Ours, alive: kept.
    let ours = SwapFile::enable_in_image(32);

    support::pressure::sweep_leftovers();

    assert!(
        !support::pressure::swaps().contains(&left.swap),
        "{} still in use",
        left.swap.display()
    );
    assert!(!left.dir.exists(), "{} still there", left.dir.display());
    assert!(
        !left.cgroup.exists(),
        "{} still there",
        left.cgroup.display()
    );
    assert!(ours.in_use(), "the sweep took a live run's swap file");
}
