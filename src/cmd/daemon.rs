//! `launchgraph up`: the supervisor in the foreground, with its logging set up. The
//! supervisor itself is the library's; this only builds its runtime and hands it the options.

use std::path::Path;

use launchgraph::daemon_log::FollowedLog;
use launchgraph::exit;

use super::Failure;

pub(crate) fn up(
    dir: &Path,
    config: launchgraph::daemon::UpConfig,
    log_file: Option<&Path>,
    log_format: &str,
) -> Result<(), Failure> {
    // On standard error, so that a panic's message lands in it too.
    let log_file = match log_file {
        None => None,
        Some(path) => match FollowedLog::open(path, libc::STDERR_FILENO) {
            // Lives as long as the daemon: every log line goes through it.
            Ok(log) => Some(&*Box::leak(Box::new(log))),
            Err(e) => {
                return Err(Failure::Io(Some(format!(
                    "cannot open the log file {}: {e}",
                    path.display()
                ))));
            }
        },
    };
    init_logging(log_format == "json", log_file);
    // One thread owns the supervisor; a few more do blocking lookups (users, log files) at
    // starts. Each extra thread costs memory for as long as the daemon lives.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(r) => r,
        Err(e) => return Err(Failure::Software(format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(launchgraph::daemon::up(dir.to_path_buf(), config)) {
        exit::OK => Ok(()),
        code => Err(Failure::Daemon(code)),
    }
}

/// Logs to stderr (text for people, or JSON lines), or to `--log-file` followed across its
/// rotation, and on macOS to the unified log too.
fn init_logging(json: bool, log_file: Option<&'static FollowedLog>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_env("LAUNCHGRAPH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let color = log_file.is_none()
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    // Standard error either way: `FollowedLog` moves the current file onto it before a line.
    let writer = BoxMakeWriter::new(std::io::stderr);
    let writer = match log_file {
        Some(log) => BoxMakeWriter::new(log),
        None => writer,
    };
    let (text, json) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_target(false);
        (None, Some(layer))
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .with_ansi(color);
        (Some(layer), None)
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json);
    #[cfg(target_os = "macos")]
    let registry = registry.with(tracing_oslog::OsLogger::new(
        "com.launchgraph.daemon",
        "default",
    ));
    registry.init();
}
