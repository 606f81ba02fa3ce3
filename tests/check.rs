//! Validation of unit directories: every mistake is reported, at the right file, line and
//! column, with what was expected; valid directories compile.

use std::path::{Path, PathBuf};

use launchgraph::compile::compile_dir;
use launchgraph::diag::Diagnostic;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn errors(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<Diagnostic>) {
    let dir = dir_with(files);
    let diags = match compile_dir(dir.path()) {
        Ok(_) => panic!("expected errors for {files:?}"),
        Err(d) => d,
    };
    (dir, diags)
}

/// Asserts that exactly one diagnostic contains `needle`, at `file:line`, and returns it.
fn find<'d>(
    diags: &'d [Diagnostic],
    dir: &Path,
    file: &str,
    line: usize,
    needle: &str,
) -> &'d Diagnostic {
    let hits: Vec<_> = diags
        .iter()
        .filter(|d| d.message.contains(needle))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "one diagnostic with {needle:?} expected, got {diags:#?}"
    );
    let d = hits[0];
    assert_eq!(d.file, dir.join(file), "{d}");
    assert_eq!(d.line, line, "{d}");
    d
}

const OK_EXEC: &str = "[exec]\ncommand = [\"/bin/sleep\", \"100\"]\n";

#[test]
fn syntax_errors_name_the_line() {
    let (dir, d) = errors(&[("a.toml", "[exec]\ncommand = [\"/bin/true\"\nx = 1\n")]);
    assert!(
        d.iter().all(|d| d.message.starts_with("TOML syntax error")),
        "{d:#?}"
    );
    assert!(d.iter().any(|d| d.line == 3 || d.line == 2), "{d:#?}");
    assert!(d.iter().all(|d| d.file == dir.path().join("a.toml")));
}

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    let text = "descripton = \"x\"\n[exec]\ncomand = [\"/bin/true\"]\ncommand = [\"/bin/true\"]\n[ready]\ntcp = \"127.0.0.1:1\"\nintreval = \"1s\"\n[preflight]\nanything = 1\n";
    let (dir, d) = errors(&[("a.toml", text)]);
    let p = dir.path();
    let top = find(
        &d,
        p,
        "a.toml",
        1,
        "unknown key `descripton` at the top level",
    );
    assert_eq!(top.hint.as_deref(), Some("did you mean `description`?"));
    assert_eq!(top.column, 1);
    let e = find(&d, p, "a.toml", 3, "unknown key `comand` in [exec]");
    assert_eq!(e.key.as_deref(), Some("exec.comand"));
    find(&d, p, "a.toml", 7, "unknown key `intreval` in [ready]");
    let pf = find(&d, p, "a.toml", 9, "unknown key `anything` in [preflight]");
    assert_eq!(pf.hint.as_deref(), Some("[preflight] takes no keys"));
    assert_eq!(d.len(), 4, "{d:#?}");
}

#[test]
fn wrong_types_say_what_was_expected() {
    let text = "requires = \"b\"\n[exec]\ncommand = \"/bin/true\"\nenv = { A = 1 }\nlog-keep = \"3\"\n[alive]\ntcp = \"127.0.0.1:1\"\nfailures = 1.5\n";
    let (dir, d) = errors(&[("a.toml", text), ("b.toml", OK_EXEC)]);
    let p = dir.path();
    find(
        &d,
        p,
        "a.toml",
        1,
        "`requires`: expected an array of unit names",
    );
    find(
        &d,
        p,
        "a.toml",
        3,
        "`exec.command`: expected an array of strings",
    );
    find(&d, p, "a.toml", 4, "`exec.env.A`: expected a string");
    find(
        &d,
        p,
        "a.toml",
        5,
        "`exec.log-keep`: expected an integer, found string",
    );
    find(
        &d,
        p,
        "a.toml",
        8,
        "`alive.failures`: expected an integer, found float",
    );
}

#[test]
fn bad_durations() {
    let text = format!(
        "{OK_EXEC}stop-timeout = \"5 parsecs\"\n[ready]\ntcp = \"127.0.0.1:1\"\ninterval = 5\ntimeout = \"0s\"\n[restart]\ninitial = \"10s\"\nmax = \"1s\"\n"
    );
    let (dir, d) = errors(&[("a.toml", &text)]);
    let p = dir.path();
    let e = find(&d, p, "a.toml", 3, "\"5 parsecs\" is not a duration");
    assert_eq!(e.column, 16);
    assert!(e.hint.as_deref().unwrap().contains("\"250ms\""));
    find(
        &d,
        p,
        "a.toml",
        6,
        "`ready.interval`: expected a duration string, found integer",
    );
    find(
        &d,
        p,
        "a.toml",
        7,
        "`ready.timeout`: must be greater than zero",
    );
    find(
        &d,
        p,
        "a.toml",
        10,
        "`max` (1s) is less than `initial` (10s)",
    );
}

/// Every duration key has a maximum (docs/units.md): a duration past it, such as the largest
/// number of seconds humantime accepts, is an error at its place naming the key and the
/// maximum, not a value that overflows the daemon's clock arithmetic later.
#[test]
fn every_duration_key_has_a_maximum() {
    const HUGE: &str = "18446744073709551615s";
    // (section, key, maximum, the section's other required lines)
    let keys = [
        ("exec", "stop-timeout", "24h", ""),
        ("ready", "interval", "24h", "tcp = \"127.0.0.1:1\"\n"),
        ("ready", "timeout", "24h", "tcp = \"127.0.0.1:1\"\n"),
        ("ready", "start-timeout", "24h", "tcp = \"127.0.0.1:1\"\n"),
        ("alive", "interval", "24h", "tcp = \"127.0.0.1:1\"\n"),
        ("alive", "timeout", "24h", "tcp = \"127.0.0.1:1\"\n"),
        ("restart", "initial", "7days", "max = \"7days\"\n"),
        ("restart", "max", "7days", ""),
        ("restart", "reset-after", "7days", ""),
        ("restart", "start-limit-period", "7days", ""),
    ];
    for (section, key, max, others) in keys {
        let table = |value: &str| {
            let head = if section == "exec" {
                OK_EXEC.to_string()
            } else {
                format!("{OK_EXEC}[{section}]\n{others}")
            };
            format!("{head}{key} = \"{value}\"\n")
        };
        let line = table(HUGE).lines().count();
        for value in [HUGE, &format!("{max} 1ms")] {
            let (dir, d) = errors(&[("a.toml", &table(value))]);
            let e = find(
                &d,
                dir.path(),
                "a.toml",
                line,
                &format!("`{section}.{key}`: {value:?} is longer than the maximum of {max}"),
            );
            assert_eq!(e.column, key.len() + 4, "{e}");
            assert_eq!(d.len(), 1, "{d:#?}");
        }
        let dir = dir_with(&[("a.toml", &table(max))]);
        if let Err(d) = compile_dir(dir.path()) {
            panic!("{section}.{key} = {max:?} is allowed: {d:#?}");
        }
    }
}

/// A NUL byte cannot cross into execve, open or getpwnam: in any string that becomes an argv
/// element, a path, an environment entry or an account name it is an error at its place,
/// rather than a unit that passes check and then fails every spawn.
#[test]
fn nul_bytes_are_refused_wherever_they_would_reach_the_system() {
    let nul = "\\u0000";
    let exec = format!(
        "[exec]\ncommand = [\"/bin/sleep\", \"10{nul}0\"]\nworking-directory = \"/tmp{nul}x\"\nuser = \"no{nul}body\"\ngroup = \"no{nul}group\"\nstdout = \"/tmp/out{nul}\"\nstderr = \"/tmp/err{nul}\"\nenv = {{ A = \"x{nul}\" }}\n[ready]\nexec = [\"/bin/true\", \"{nul}\"]\n"
    );
    let first = format!("[exec]\ncommand = [\"/bin/sle{nul}ep\"]\n");
    let launchd = format!(
        "[launchd]\nlabel = \"a.b{nul}\"\nplist = \"/Library/LaunchDaemons/a{nul}.plist\"\n"
    );
    let (dir, d) = errors(&[("a.toml", &exec), ("b.toml", &first), ("c.toml", &launchd)]);
    let p = dir.path();
    for (file, line, column, key) in [
        ("a.toml", 2, 26, "exec.command"),
        ("a.toml", 3, 21, "exec.working-directory"),
        ("a.toml", 4, 8, "exec.user"),
        ("a.toml", 5, 9, "exec.group"),
        ("a.toml", 6, 10, "exec.stdout"),
        ("a.toml", 7, 10, "exec.stderr"),
        ("a.toml", 8, 13, "exec.env.A"),
        ("a.toml", 10, 22, "ready.exec"),
        ("b.toml", 2, 12, "exec.command"),
        ("c.toml", 2, 9, "launchd.label"),
        ("c.toml", 3, 9, "launchd.plist"),
    ] {
        let hits: Vec<_> = d
            .iter()
            .filter(|x| x.file == p.join(file) && x.key.as_deref() == Some(key))
            .collect();
        assert_eq!(hits.len(), 1, "{file} {key}: {d:#?}");
        let x = hits[0];
        assert!(x.message.contains("NUL"), "{x}");
        assert_eq!((x.line, x.column), (line, column), "{x}");
    }
    assert_eq!(d.len(), 11, "{d:#?}");
}

#[test]
fn relative_program_paths() {
    let (dir, d) = errors(&[
        (
            "a.toml",
            "[exec]\ncommand = [\"python3\", \"-m\", \"http.server\"]\n",
        ),
        (
            "b.toml",
            "[exec]\ncommand = [\"/bin/true\"]\nworking-directory = \"var/lib\"\n[ready]\nexec = [\"bin/check\"]\n",
        ),
    ]);
    let p = dir.path();
    let a = find(
        &d,
        p,
        "a.toml",
        2,
        "the program \"python3\" is not an absolute path",
    );
    assert!(a.hint.as_deref().unwrap().contains("command -v python3"));
    find(&d, p, "b.toml", 3, "\"var/lib\" is not an absolute path");
    find(
        &d,
        p,
        "b.toml",
        5,
        "the program \"bin/check\" is not an absolute path",
    );
}

#[test]
fn unknown_and_self_dependencies() {
    let (dir, d) = errors(&[
        (
            "gateway.toml",
            &format!("requires = [\"olama\", \"gateway\"]\n{OK_EXEC}"),
        ),
        ("ollama.toml", OK_EXEC),
    ]);
    let p = dir.path();
    let u = find(
        &d,
        p,
        "gateway.toml",
        1,
        "unit \"gateway\" requires \"olama\", which does not exist",
    );
    assert_eq!(u.column, 13);
    assert_eq!(u.hint.as_deref(), Some("did you mean \"ollama\"?"));
    let s = find(&d, p, "gateway.toml", 1, "unit \"gateway\" requires itself");
    assert_eq!(s.column, 22);
}

#[test]
fn a_requirement_on_a_broken_unit_is_not_reported_twice() {
    let (dir, d) = errors(&[
        (
            "gateway.toml",
            &format!("requires = [\"ollama\"]\n{OK_EXEC}"),
        ),
        ("ollama.toml", "[exec]\ncommand = [\"ollama\"]\n"),
    ]);
    assert_eq!(d.len(), 1, "{d:#?}");
    find(&d, dir.path(), "ollama.toml", 2, "is not an absolute path");
}

#[test]
fn both_or_neither_runner() {
    let (dir, d) = errors(&[
        (
            "both.toml",
            "[launchd]\nlabel = \"x\"\nplist = \"/x.plist\"\n[exec]\ncommand = [\"/bin/true\"]\n",
        ),
        ("neither.toml", "description = \"nothing to run\"\n"),
    ]);
    let p = dir.path();
    find(&d, p, "both.toml", 1, "has both [launchd] and [exec]");
    let n = find(
        &d,
        p,
        "neither.toml",
        1,
        "needs exactly one of [launchd], [exec] or [external]",
    );
    assert!(n.hint.is_some());
}

#[test]
fn external_table_checks() {
    let (dir, d) = errors(&[
        // Two runners, the third one [external]: one error naming all three.
        (
            "three.toml",
            "[launchd]\nlabel = \"x\"\nplist = \"/x.plist\"\n[exec]\ncommand = [\"/bin/true\"]\n\
             [external]\n[ready]\ntcp = \"127.0.0.1:1\"\n",
        ),
        // No probe at all: launchgraph could never know it is up.
        (
            "blind.toml",
            "description = \"x\"\n[external]\nrun-by = \"Ollama.app\"\n",
        ),
        // A near miss of `run-by`, an empty `run-by`, [restart], a start-timeout.
        (
            "typo.toml",
            "[external]\nrun_by = \"Ollama.app\"\n[ready]\nhttp = \"http://127.0.0.1:11434/api/version\"\n\
             start-timeout = \"90s\"\n[restart]\npolicy = \"always\"\n",
        ),
        (
            "empty.toml",
            "[external]\nrun-by = \"\"\n[alive]\ntcp = \"127.0.0.1:1\"\n",
        ),
        (
            "misspelt.toml",
            "[externl]\nrun-by = \"x\"\n[ready]\ntcp = \"127.0.0.1:1\"\n",
        ),
    ]);
    let p = dir.path();
    find(
        &d,
        p,
        "three.toml",
        1,
        "a unit has [launchd], [exec] and [external]; it must have exactly one",
    );
    let blind = find(
        &d,
        p,
        "blind.toml",
        2,
        "an [external] unit needs a [ready] or an [alive] probe",
    );
    assert_eq!(blind.key.as_deref(), Some("external"));
    assert!(
        blind.hint.as_deref().unwrap().contains("[ready]"),
        "{blind}"
    );
    let typo = find(&d, p, "typo.toml", 2, "unknown key `run_by` in [external]");
    assert_eq!(typo.hint.as_deref(), Some("did you mean `run-by`?"));
    assert_eq!(typo.key.as_deref(), Some("external.run_by"));
    let st = find(
        &d,
        p,
        "typo.toml",
        5,
        "an [external] unit has no start to time out",
    );
    assert_eq!(st.key.as_deref(), Some("ready.start-timeout"));
    let r = find(
        &d,
        p,
        "typo.toml",
        6,
        "[restart] does not apply to an [external] unit",
    );
    assert_eq!(r.key.as_deref(), Some("restart"));
    let e = find(&d, p, "empty.toml", 2, "must not be empty");
    assert_eq!(e.key.as_deref(), Some("external.run-by"));
    let m = find(
        &d,
        p,
        "misspelt.toml",
        1,
        "unknown key `externl` at the top level",
    );
    assert_eq!(m.hint.as_deref(), Some("did you mean `external`?"));
}

#[test]
fn an_external_unit_gets_its_defaults_and_its_alive_probe_gates_readiness() {
    let dir = dir_with(&[
        (
            "ollama.toml",
            "[external]\n[alive]\nhttp = \"http://127.0.0.1:11434/\"\ninterval = \"3s\"\ntimeout = \"500ms\"\n",
        ),
        (
            "gateway.toml",
            &format!("requires = [\"ollama\"]\n{OK_EXEC}"),
        ),
    ]);
    let c = compile_dir(dir.path()).unwrap_or_else(|d| panic!("{d:#?}"));
    let u = &c.units[c
        .index_of(&launchgraph::unit::UnitName::parse("ollama").unwrap())
        .unwrap()];
    let launchgraph::unit::Runner::External(x) = &u.runner else {
        panic!("{:?}", u.runner)
    };
    assert_eq!(x.run_by, "outside launchgraph");
    // Without [ready], the [alive] probe says when it is ready: its dependents never start
    // before it answers.
    let ready = u.ready.as_ref().expect("a readiness probe");
    assert_eq!(Some(&ready.probe), u.alive.as_ref().map(|a| &a.probe));
    assert_eq!(ready.interval, std::time::Duration::from_secs(3));
    assert_eq!(ready.timeout, std::time::Duration::from_millis(500));
    assert!(c.notes().is_empty(), "{:?}", c.notes());
}

#[test]
fn an_external_unit_with_only_a_ready_probe_is_also_watched_by_it_once_ready() {
    let dir = dir_with(&[(
        "ollama.toml",
        "[external]\nrun-by = \"Ollama.app\"\n[ready]\ntcp = \"127.0.0.1:11434\"\ntimeout = \"700ms\"\n",
    )]);
    let c = compile_dir(dir.path()).unwrap_or_else(|d| panic!("{d:#?}"));
    let u = &c.units[0];
    // It has no exit to see: without a liveness probe, nothing could ever say it went away.
    let alive = u.alive.as_ref().expect("a liveness probe");
    assert_eq!(Some(&alive.probe), u.ready.as_ref().map(|r| &r.probe));
    assert_eq!(alive.interval, std::time::Duration::from_secs(5));
    assert_eq!(alive.timeout, std::time::Duration::from_millis(700));
    assert_eq!(alive.failures, 3);
}

#[test]
fn launchd_table_checks() {
    let (dir, d) = errors(&[
        (
            "a.toml",
            "[launchd]\nlabel = \"a\"\nplist = \"/a.plist\"\ndomain = \"gui/abc\"\n",
        ),
        (
            "b.toml",
            "[launchd]\nlabel = \"b\"\nplist = \"/b.plist\"\ndomain = \"session/501\"\n",
        ),
        ("c.toml", "[launchd]\nplist = \"c.plist\"\n"),
    ]);
    let p = dir.path();
    find(&d, p, "a.toml", 4, "\"abc\" is not a numeric uid");
    find(
        &d,
        p,
        "b.toml",
        4,
        "\"session/501\" is not a launchd domain",
    );
    find(&d, p, "c.toml", 1, "[launchd] is missing `label`");
    find(&d, p, "c.toml", 2, "\"c.plist\" is not an absolute path");
}

#[test]
fn every_domain_form_is_accepted() {
    let mut files = Vec::new();
    for (i, domain) in ["system", "gui/501", "gui/console", "user/0"]
        .iter()
        .enumerate()
    {
        files.push((
            format!("u{i}.toml"),
            format!(
                "[launchd]\nlabel = \"l{i}\"\nplist = \"/p{i}.plist\"\ndomain = \"{domain}\"\n"
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = dir_with(&refs);
    let c = compile_dir(dir.path()).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(c.units.len(), 4);
}

#[test]
fn probe_addresses_and_urls() {
    let (dir, d) = errors(&[
        (
            "a.toml",
            &format!("{OK_EXEC}[ready]\ntcp = \"localhost:11434\"\n[alive]\ntcp = \"127.0.0.1\"\n"),
        ),
        (
            "b.toml",
            &format!(
                "{OK_EXEC}[ready]\nhttp = \"https://127.0.0.1:18789/startupz\"\n[alive]\nhttp = \"http://localhost:11434/\"\n"
            ),
        ),
        (
            "c.toml",
            &format!(
                "{OK_EXEC}[ready]\ntcp = \"127.0.0.1:1\"\nhttp = \"http://127.0.0.1:1/\"\n[alive]\nexec = [\"/bin/true\"]\nstatus = 200\n"
            ),
        ),
        ("d.toml", &format!("{OK_EXEC}[ready]\ninterval = \"1s\"\n")),
    ]);
    let p = dir.path();
    let host = find(
        &d,
        p,
        "a.toml",
        4,
        "`ready.tcp`: \"localhost:11434\" is not IP:port",
    );
    assert!(host.message.contains("host name"));
    find(&d, p, "a.toml", 6, "\"127.0.0.1\" is not IP:port");
    find(
        &d,
        p,
        "b.toml",
        4,
        "the scheme is \"https\", expected \"http\"",
    );
    find(
        &d,
        p,
        "b.toml",
        6,
        "\"http://localhost:11434/\" is not a probe URL",
    );
    find(&d, p, "c.toml", 5, "has 2 probes (tcp, http)");
    find(
        &d,
        p,
        "c.toml",
        8,
        "`status` applies only to an `http` probe",
    );
    find(&d, p, "d.toml", 3, "[ready] needs one probe");
}

/// A URL the HTTP client would refuse at every probe is refused when the unit is read, at its
/// line and column: here an IPv6 zone, which a socket address takes but a URL does not.
#[test]
fn a_probe_url_the_http_client_refuses_is_a_load_error() {
    let (dir, d) = errors(&[(
        "a.toml",
        &format!("{OK_EXEC}[ready]\nhttp = \"http://[fe80::1%2]:8080/health\"\n"),
    )]);
    let e = find(
        &d,
        dir.path(),
        "a.toml",
        4,
        "`ready.http`: \"http://[fe80::1%2]:8080/health\" is not a probe URL: invalid IPv6 address",
    );
    assert_eq!((e.column, e.key.as_deref()), (8, Some("ready.http")), "{e}");
    assert_eq!(d.len(), 1, "{d:#?}");
}

#[test]
fn duplicate_launchd_labels() {
    let (dir, d) = errors(&[
        (
            "a.toml",
            "[launchd]\nlabel = \"ai.openclaw.gateway\"\nplist = \"/a.plist\"\n",
        ),
        (
            "b.toml",
            "description = \"x\"\n[launchd]\nlabel = \"ai.openclaw.gateway\"\nplist = \"/b.plist\"\n",
        ),
    ]);
    let e = find(
        &d,
        dir.path(),
        "b.toml",
        3,
        "launchd label \"ai.openclaw.gateway\" is also driven by unit \"a\"",
    );
    assert!(e.message.contains("a.toml:2:1"), "{e}");
}

#[test]
fn empty_and_missing_directories() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README"), "not a unit").unwrap();
    let d = compile_dir(empty.path()).err().unwrap();
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("no unit files"), "{}", d[0]);
    assert_eq!(d[0].file, empty.path());

    let missing = empty.path().join("nope");
    let d = compile_dir(&missing).err().unwrap();
    assert_eq!(d.len(), 1);
    assert!(
        d[0].message.contains("cannot read the units directory"),
        "{}",
        d[0]
    );
    assert!(d[0].hint.as_deref().unwrap().contains("--units"));
}

#[test]
fn non_utf8_unreadable_and_odd_files() {
    let dir = dir_with(&[("ok.toml", OK_EXEC)]);
    let p = dir.path();
    std::fs::write(p.join("bin.toml"), b"description = \"caf\xe9\"\n").unwrap();
    std::os::unix::fs::symlink(p.join("gone"), p.join("dangling.toml")).unwrap();
    nix::unistd::mkfifo(
        &p.join("fifo.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::write(p.join("Upper.toml"), OK_EXEC).unwrap();
    std::fs::write(p.join(".hidden.toml"), "garbage [").unwrap();
    let d = compile_dir(p).err().unwrap();
    let b = find(&d, p, "bin.toml", 1, "not valid UTF-8");
    assert_eq!(b.column, 19);
    find(&d, p, "dangling.toml", 1, "the unit file cannot be read");
    find(
        &d,
        p,
        "fifo.toml",
        1,
        "the unit file is a FIFO, expected a regular file",
    );
    find(&d, p, "Upper.toml", 1, "bad unit name \"Upper\"");
    assert_eq!(d.len(), 4, "{d:#?}");
}

#[test]
fn every_error_of_a_directory_is_reported_at_once() {
    let (_dir, d) = errors(&[
        (
            "a.toml",
            "requires = [\"zzz\"]\n[exec]\ncommand = [\"rel\"]\nstop-signal = \"SIGNOPE\"\n",
        ),
        (
            "b.toml",
            "[exec]\ncommand = [\"/bin/true\"]\n[restart]\npolicy = \"sometimes\"\nfactor = 0.5\njitter = 2.0\nno-restart-exit-codes = [300]\n",
        ),
        ("c.toml", "x = [\n"),
    ]);
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    for needle in [
        "\"zzz\"",
        "\"rel\"",
        "SIGNOPE",
        "sometimes",
        "factor",
        "jitter",
        "300",
        "syntax",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(needle)),
            "{needle} missing from {messages:#?}"
        );
    }
}

#[test]
fn cycles_are_reported_as_paths_every_one() {
    let mut files = vec![
        (
            "a.toml".to_string(),
            format!("requires = [\"b\"]\n{OK_EXEC}"),
        ),
        (
            "b.toml".to_string(),
            format!("requires = [\"a\"]\n{OK_EXEC}"),
        ),
        (
            "c.toml".to_string(),
            format!("requires = [\"d\"]\n{OK_EXEC}"),
        ),
        (
            "d.toml".to_string(),
            format!("requires = [\"e\"]\n{OK_EXEC}"),
        ),
        (
            "e.toml".to_string(),
            format!("requires = [\"c\"]\n{OK_EXEC}"),
        ),
    ];
    // A long cycle too.
    for i in 0..50 {
        files.push((
            format!("l{i:02}.toml"),
            format!("requires = [\"l{:02}\"]\n{OK_EXEC}", (i + 1) % 50),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (dir, d) = errors(&refs);
    let p = dir.path();
    let ab = find(&d, p, "a.toml", 1, "dependency cycle: a -> b -> a");
    assert_eq!(ab.column, 13);
    find(&d, p, "c.toml", 1, "dependency cycle: c -> d -> e -> c");
    let long = find(&d, p, "l00.toml", 1, "dependency cycle: l00 -> l01 -> l02");
    assert!(long.message.ends_with("l49 -> l00"), "{long}");
    assert_eq!(d.len(), 3, "{d:#?}");
}

#[test]
fn valid_units_get_documented_defaults() {
    let dir = dir_with(&[
        ("a.toml", OK_EXEC),
        (
            "b.toml",
            &format!("requires = [\"a\"]\n{OK_EXEC}[ready]\nhttp = \"http://[::1]:8080/x\"\n"),
        ),
    ]);
    let c = compile_dir(dir.path()).unwrap_or_else(|d| panic!("{d:#?}"));
    let b = &c.units[c
        .index_of(&launchgraph::unit::UnitName::parse("b").unwrap())
        .unwrap()];
    let ready = b.ready.as_ref().unwrap();
    assert_eq!(ready.interval, std::time::Duration::from_secs(1));
    assert_eq!(ready.timeout, std::time::Duration::from_secs(1));
    assert_eq!(ready.start_timeout, std::time::Duration::from_secs(60));
    match &ready.probe {
        launchgraph::unit::Probe::Http { addr, status, .. } => {
            assert_eq!(addr.to_string(), "[::1]:8080");
            assert_eq!(*status, 200);
        }
        other => panic!("{other:?}"),
    }
    let launchgraph::unit::Runner::Exec(e) = &b.runner else {
        panic!()
    };
    assert_eq!(e.working_directory, PathBuf::from("/"));
    assert_eq!(e.stop_timeout, std::time::Duration::from_secs(10));
    assert_eq!(e.stop_signal.0, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(e.log_max_bytes, 10 * 1024 * 1024);
    assert_eq!(b.restart, launchgraph::unit::RestartSpec::default());
    assert_eq!(c.graph.waves().len(), 2);
}

proptest::proptest! {
    /// Whatever a unit file holds, reading it gives units or diagnostics, never a panic.
    #[test]
    fn any_text_is_read_without_panicking(text in "\\PC{0,400}") {
        let dir = dir_with(&[("a.toml", &text), ("b.toml", OK_EXEC)]);
        every_error_is_placed(dir.path());
    }

    /// The same for text built from the grammar's own keys and values, which gets deeper.
    #[test]
    fn unit_shaped_text_is_read_without_panicking(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("[exec]".to_string()),
                proptest::strategy::Just("[launchd]".to_string()),
                proptest::strategy::Just("[ready]".to_string()),
                proptest::strategy::Just("[alive]".to_string()),
                proptest::strategy::Just("[restart]".to_string()),
                proptest::strategy::Just("[preflight]".to_string()),
                proptest::strategy::Just("[external]".to_string()),
                "(command|run-by|env|requires|tcp|http|exec|status|interval|timeout|failures|policy|initial|max|factor|jitter|label|plist|domain|stop-signal|log-max-size|log-keep|no-restart-exit-codes) = (\"[a-z/:.0-9]{0,12}\"|[0-9.-]{1,6}|\\[\"/bin/[a-z]{1,4}\"\\]|\\{ A = \"b\" \\}|\\[\\]|true)",
            ],
            0..14,
        )
    ) {
        let dir = dir_with(&[("a.toml", &lines.join("\n")), ("b.toml", OK_EXEC)]);
        every_error_is_placed(dir.path());
    }
}

/// Either both units are read, or every error names a file of the directory and a position.
fn every_error_is_placed(dir: &Path) {
    match compile_dir(dir) {
        Ok(c) => assert_eq!(c.units.len(), 2),
        Err(d) => {
            assert!(!d.is_empty());
            for x in &d {
                assert!(x.file.starts_with(dir), "{x}");
                assert!(x.line >= 1 && x.column >= 1, "{x}");
                assert!(!x.message.is_empty(), "{x}");
            }
        }
    }
}
