//! The `launchgraph` binary: parses the command line, runs one subcommand, and maps how it
//! ended to a documented exit code, here and nowhere else. The subcommands are in [`cmd`];
//! everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

use launchgraph::exit;

mod cli;
mod cmd;

use cmd::Failure;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` are "errors" to clap that print to stdout.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            return ExitCode::from(code);
        }
    };
    let failure = match cmd::run(cli.command) {
        Ok(()) => return ExitCode::from(exit::OK),
        Err(failure) => failure,
    };
    let (code, message) = match failure {
        Failure::Usage(m) => (exit::USAGE, Some(m)),
        Failure::Preflight => (exit::PREFLIGHT, None),
        Failure::Data(m) => (exit::PREFLIGHT, Some(m)),
        Failure::Unavailable(m) => (exit::UNAVAILABLE, Some(m)),
        Failure::Software(m) => (exit::SOFTWARE, Some(m)),
        Failure::Io(m) => (exit::IO, m),
        Failure::NoPermission(m) => (exit::NOPERM, Some(m)),
        Failure::Config(m) => (exit::CONFIG, m),
        Failure::Daemon(code) => (code, None),
    };
    if let Some(message) = message {
        eprintln!("launchgraph: {message}");
    }
    ExitCode::from(code)
}
