# Homebrew formula for launchgraph: builds the binary from source with cargo, installs the
# shipped units (as live units under etc, and as reference copies under share), and declares
# the root LaunchDaemon that `sudo brew services start launchgraph` installs. How to install
# it from this repository, and why url/sha256 are what they are: docs/install.md.
class Launchgraph < Formula
  desc "Start launchd jobs and processes in dependency order, gated on readiness probes"
  # The repository address in homepage, url and head, and the sha256, are placeholders until
  # the first tagged release is published: the release sets the real url and sha256 of its
  # source tarball (`brew bump-formula-pr` writes both). Before that, docs/install.md installs
  # from a checkout by pointing url at a `git archive` tarball of it in a local tap.
  homepage "https://github.com/launchgraph/launchgraph"
  url "https://github.com/launchgraph/launchgraph/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/launchgraph/launchgraph.git", branch: "main"

  depends_on "rust" => :build

  def install
    # std_cargo_args passes --locked: the build uses the committed Cargo.lock (launchd.md §7.1).
    system "cargo", "install", *std_cargo_args

    # The live units: files installed into etc are kept on upgrade when an admin edited them
    # (the new version arrives next to it as <name>.toml.default, which launchgraph ignores).
    cp_r "units", "units-etc"
    (etc/"launchgraph/units").install Dir["units-etc/*.toml"]
    # Reference copies that stay as shipped: `brew test` checks them, and admins can diff.
    pkgshare.install "units"
  end

  def post_install
    # launchd creates the log file but not its directory; the state directory holds the
    # fingerprints of each unit's last good run.
    (var/"log").mkpath
    (var/"launchgraph").mkpath
  end

  # The same job as packaging/com.launchgraph.daemon.plist, with Homebrew's paths; Homebrew
  # writes it as /Library/LaunchDaemons/homebrew.mxcl.launchgraph.plist when started with sudo
  # (launchd.md §7.1). Why each value: docs/install.md.
  service do
    run [opt_bin/"launchgraph", "up", "--units", etc/"launchgraph/units", "--state-dir", var/"launchgraph",
         "--log-file", var/"log/launchgraph.log"]
    # A root LaunchDaemon in the system domain: it starts at boot with nobody logged in and
    # drives jobs in every domain. Homebrew only hints at sudo; docs/install.md says to use it.
    require_root true
    keep_alive true
    # ExitTimeOut: launchd's SIGTERM-to-SIGKILL time must cover the ordered stop of all units.
    stop_timeout 120
    # Unspecified (or :standard) means launchd throttles CPU and I/O; probes are timed and the
    # exec units are launchgraph's children, so the supervisor is not throttled.
    process_type :interactive
    # No log_path: launchgraph opens its log itself (--log-file), so that it follows the file
    # when it is rotated; error_log_path keeps what is written before (a bad argument).
    error_log_path var/"log/launchgraph.log"
    environment_variables PATH: std_service_path_env, LAUNCHGRAPH_LOG: "info"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/launchgraph --version")
    # The shipped units are valid (no host checks: their plists need not exist here).
    output = shell_output("#{bin}/launchgraph check --config-only --units #{pkgshare}/units")
    assert_match "ok: 3 units", output
    # A broken unit is reported with its file and line, and exits 78 (EX_CONFIG).
    (testpath/"units").mkpath
    (testpath/"units/broken.toml").write "requires = 1\n"
    output = shell_output("#{bin}/launchgraph check --config-only --units #{testpath}/units 2>&1", 78)
    assert_match "broken.toml:1", output
  end
end
