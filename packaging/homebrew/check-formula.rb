# Test-only (tests/packaging.rs; not a formula, never copied into a tap): loads a Homebrew
# formula against a small stand-in for the parts of Homebrew's formula DSL it uses, then runs
# its install (with `system` recorded instead of run, so no cargo build), post_install and
# test blocks (for real, against the binary in $CHECK_BIN), and evaluates its service block
# with the methods Homebrew's Service class accepts. Prints what it saw as JSON on stdout.
#
#   ruby check-formula.rb FORMULA.rb SOURCE_DIR WORK_DIR
#
# SOURCE_DIR plays the unpacked source tarball (its units/ are copied into the build
# directory); WORK_DIR receives the Homebrew prefix, the keg, the build and the test dirs.
require "fileutils"
require "json"
require "open3"
require "pathname"

formula_file, source_dir, work_dir = ARGV
abort "usage: ruby check-formula.rb FORMULA.rb SOURCE_DIR WORK_DIR" unless work_dir

work = Pathname.new(work_dir).expand_path
HOMEBREW_PREFIX = work/"prefix"

# Homebrew's Pathname#install moves files into the directory; an existing file that differs
# stays and the new one is written as <name>.default (Homebrew's InstallRenamed, used for etc).
class Pathname
  def install(*sources)
    mkpath
    sources.flatten.each do |source|
      source = Pathname.new(source)
      destination = self/source.basename
      if destination.file? && !FileUtils.identical?(source, destination)
        destination = Pathname.new("#{destination}.default")
      end
      FileUtils.mv(source, destination)
    end
  end
end

# Homebrew's Service DSL, as far as the block may call it: anything else is a NoMethodError,
# as it would be in Homebrew.
class ServiceStub
  METHODS = %i[
    run run_type interval cron keep_alive launch_only_once run_at_load require_root
    environment_variables working_dir root_dir input_path log_path error_log_path
    restart_delay stop_timeout throttle_interval process_type macos_legacy_timers
    sockets nice name
  ].freeze

  attr_reader :settings

  def initialize(formula)
    @formula = formula
    @settings = {}
  end

  %i[bin etc libexec opt_bin opt_libexec opt_pkgshare opt_prefix opt_sbin var].each do |m|
    define_method(m) { @formula.public_send(m) }
  end

  def std_service_path_env
    "#{HOMEBREW_PREFIX}/bin:#{HOMEBREW_PREFIX}/sbin:/usr/bin:/bin:/usr/sbin:/sbin"
  end

  def method_missing(name, *args, **kwargs)
    return super unless METHODS.include?(name)

    @settings[name] = kwargs.empty? ? args.first : kwargs
  end

  def respond_to_missing?(name, include_private = false)
    METHODS.include?(name) || super
  end
end

# The formula base class: class-level DSL calls are recorded; paths follow Homebrew's table.
class Formula
  include FileUtils

  class << self
    attr_reader :calls, :service_block, :test_block

    def inherited(subclass)
      super
      (@subclasses ||= []) << subclass
    end

    def defined_formulae
      @subclasses || []
    end

    def service(&block)
      @service_block = block
    end

    def test(&block)
      @test_block = block
    end

    def method_missing(name, *args, **kwargs)
      (@calls ||= []) << [name, args, kwargs]
      nil
    end

    def respond_to_missing?(*)
      true
    end
  end

  attr_reader :system_calls

  def initialize(work)
    @work = work
    @system_calls = []
  end

  def name
    self.class.name.downcase
  end

  def version
    url = self.class.calls.find { |c| c[0] == :url }&.dig(1, 0).to_s
    url[/v?(\d+(?:\.\d+)+)\.tar\.gz\z/, 1]
  end

  def prefix = @work/"Cellar/#{name}/#{version}"
  def bin = prefix/"bin"
  def pkgshare = prefix/"share/#{name}"
  def opt_prefix = HOMEBREW_PREFIX/"opt/#{name}"
  def opt_bin = opt_prefix/"bin"
  def opt_libexec = opt_prefix/"libexec"
  def opt_pkgshare = opt_prefix/"share/#{name}"
  def opt_sbin = opt_prefix/"sbin"
  def libexec = prefix/"libexec"
  def etc = HOMEBREW_PREFIX/"etc"
  def var = HOMEBREW_PREFIX/"var"
  def testpath = @work/"test"

  def std_cargo_args
    ["--jobs", "2", "--locked", "--root=#{prefix}", "--path=."]
  end

  def system(*args)
    @system_calls << args.map(&:to_s)
    true
  end

  def shell_output(command, status = 0)
    output, result = Open3.capture2e("/bin/sh", "-c", command)
    unless result.exitstatus == status
      raise "`#{command}` exited #{result.exitstatus}, expected #{status}:\n#{output}"
    end

    output
  end

  def assert_match(expected, actual)
    matched = expected.is_a?(Regexp) ? expected.match?(actual) : actual.include?(expected.to_s)
    raise "expected #{actual.inspect} to match #{expected.inspect}" unless matched
  end
end

load formula_file
klass = Formula.defined_formulae.last or abort "no Formula subclass in #{formula_file}"
formula = klass.new(work)

build = work/"build"
build.mkpath
FileUtils.cp_r(File.join(source_dir, "units"), build/"units")
Dir.chdir(build) { formula.install }
formula.post_install if formula.respond_to?(:post_install)

# The test block runs against the real binary, installed where `cargo install` would put it.
formula.bin.mkpath
FileUtils.ln_sf(ENV.fetch("CHECK_BIN"), formula.bin/"launchgraph")
formula.testpath.mkpath
Dir.chdir(formula.testpath) { formula.instance_eval(&klass.test_block) }

service = ServiceStub.new(formula)
service.instance_eval(&klass.service_block)

stringify = lambda do |value|
  case value
  when Hash then value.to_h { |k, v| [k.to_s, stringify.call(v)] }
  when Array then value.map { |v| stringify.call(v) }
  when Pathname, Symbol then value.to_s
  else value
  end
end

installed = Dir.glob("**/*", base: work.to_s).select { |p| File.file?(work/p) || File.symlink?(work/p) }.sort
puts JSON.pretty_generate(
  "homebrew_prefix" => HOMEBREW_PREFIX.to_s,
  "keg"             => formula.prefix.to_s,
  "version"         => formula.version,
  "dsl"             => stringify.call(klass.calls.map { |n, a, k| [n, a, k] }),
  "system"          => formula.system_calls,
  "installed"       => installed,
  "service"         => stringify.call(service.settings),
)
