//! Real kernel signals for root tests: tmpfs mounts, a swap file in use, a memory-limited
//! cgroup and a process in it touching more memory than its limit, so that the kernel swaps
//! it out (`pswpout` of /proc/vmstat rises) and stalls on memory (the PSI totals of
//! /proc/pressure/memory rise). Each is undone when dropped, on every exit path of a test (a
//! failed assertion unwinds through the drops).
//!
//! Swap and memory pressure are host-wide: two benches at once would blur each other's
//! "pressure is gone". [`Swapping`] holds a lock of the test binary for its lifetime (cargo
//! runs test binaries one after another, and a binary's tests on threads).
//!
//! Without root none of this is possible: swapon, cgroup writes and mounts need
//! CAP_SYS_ADMIN, and there is no unprivileged way to make the kernel swap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Runs `argv`; panics with its output when it fails.
#[track_caller]
fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv[0]));
    assert!(out.status.success(), "{argv:?} failed: {out:?}");
}

/// Runs `argv`, and says why it failed.
fn try_run(argv: &[&str]) -> Result<(), String> {
    match Command::new(argv[0]).args(&argv[1..]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{argv:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", argv[0])),
    }
}

/// A tmpfs mounted for one test (mode 0700: only root reaches it), unmounted (lazily,
/// whatever is still open in it) and its mount point removed when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`"8m"`, `"256k"`) at `dir`, creating it.
    #[track_caller]
    pub fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let options = format!("size={size},mode=0700");
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &options,
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Self {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
    }
}

/// An ext4 file system in an image file, loop-mounted: where a swap file goes when the file
/// system of /var/tmp takes none. Unmounted when dropped (`mount -o loop` sets the loop device
/// to detach itself then).
struct LoopExt4 {
    dir: PathBuf,
}

impl LoopExt4 {
    fn mount(image: &Path, dir: &Path, size_mib: u64) -> Result<Self, String> {
        let image = image.to_str().unwrap();
        try_run(&["fallocate", "-l", &format!("{size_mib}M"), image])?;
        try_run(&["mkfs.ext4", "-q", "-F", image])?;
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        try_run(&[
            "mount",
            "-o",
            "loop",
            "-t",
            "ext4",
            image,
            dir.to_str().unwrap(),
        ])?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// A swap file in use; swapped off and removed when dropped.
pub struct SwapFile {
    pub path: PathBuf,
    // Dropped in this order: after swapoff, the image's mount, then the directory.
    image: Option<LoopExt4>,
    dir: tempfile::TempDir,
}

impl SwapFile {
    /// A swap file of `size_mib` in /var/tmp, which is on the root file system (swap files on
    /// tmpfs or overlayfs are refused); where that file system takes no swap file, in an ext4
    /// image loop-mounted there.
    #[track_caller]
    pub fn enable(size_mib: u64) -> Self {
        let dir = swap_dir();
        let path = dir.path().join("swapfile");
        let direct = match enable_swap(&path, size_mib) {
            Ok(()) => return Self::noting(path, None, dir),
            Err(e) => e,
        };
        let _ = fs::remove_file(&path);
        let mnt = dir.path().join("ext4");
        let image = LoopExt4::mount(&dir.path().join("ext4.img"), &mnt, size_mib + 32)
            .unwrap_or_else(|e| {
                panic!("no swap file: {direct}; and no ext4 image to put one in: {e}")
            });
        let path = mnt.join("swapfile");
        if let Err(e) = enable_swap(&path, size_mib) {
            panic!("no swap file: {direct}; nor in a loop-mounted ext4 image: {e}");
        }
        Self::noting(path, Some(image), dir)
    }

    /// A swap file of `size_mib` in an ext4 image loop-mounted in /var/tmp, whatever file
    /// system /var/tmp is.
    #[track_caller]
    pub fn enable_in_image(size_mib: u64) -> Self {
        let dir = swap_dir();
        let mnt = dir.path().join("ext4");
        let image = LoopExt4::mount(&dir.path().join("ext4.img"), &mnt, size_mib + 32)
            .unwrap_or_else(|e| panic!("no ext4 image for a swap file: {e}"));
        let path = mnt.join("swapfile");
        enable_swap(&path, size_mib).unwrap_or_else(|e| panic!("no swap file: {e}"));
        Self::noting(path, Some(image), dir)
    }

    fn noting(path: PathBuf, image: Option<LoopExt4>, dir: tempfile::TempDir) -> Self {
        eprintln!(
            "swap file {}{}",
            path.display(),
            if image.is_some() {
                " (in a loop-mounted ext4 image)"
            } else {
                ""
            }
        );
        Self { path, image, dir }
    }

    /// Whether the kernel lists it in /proc/swaps.
    pub fn in_use(&self) -> bool {
        swaps().contains(&self.path)
    }
}

/// Where a swap file goes: a directory in /var/tmp named after this test process, so that a
/// later run can tell what a killed one left (see [`sweep_leftovers`]).
fn swap_dir() -> tempfile::TempDir {
    sweep_leftovers();
    tempfile::Builder::new()
        .prefix(&format!("{LEFTOVER_PREFIX}{}-", std::process::id()))
        .tempdir_in("/var/tmp")
        .expect("a directory in /var/tmp")
}

/// What the swap directories and the cgroups of these tests are named after: the prefix, then
/// the test process's pid.
const LEFTOVER_PREFIX: &str = "launchgraph-test-";

/// The pid in a leftover's name, when it names a process that no longer runs: a test run
/// killed before its drops ran (SIGKILL, a CI timeout).
fn dead_owner(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(LEFTOVER_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Undoes what killed earlier runs left: their swap files are swapped off, their ext4 images
/// unmounted, their directories removed, their cgroups emptied and removed. Without it, one
/// killed run would leave a swap file in use until the next reboot.
pub fn sweep_leftovers() {
    let Ok(dirs) = fs::read_dir("/var/tmp") else {
        return;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !dead_owner(&name) {
            continue;
        }
        let dir = dir.path();
        for swap in swaps().iter().filter(|s| s.starts_with(&dir)) {
            let _ = Command::new("swapoff").arg(swap).status();
        }
        let image = dir.join("ext4");
        if fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == image.to_str())
        {
            let _ = Command::new("umount").arg(&image).status();
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => eprintln!("removed {}, left by a killed test run", dir.display()),
            Err(e) => eprintln!("could not remove {}: {e}", dir.display()),
        }
    }
    let roots = [Some(PathBuf::from(V1_MEMORY)), cgroup2_with_memory()];
    for root in roots.into_iter().flatten() {
        let Ok(groups) = fs::read_dir(&root) else {
            continue;
        };
        for group in groups.flatten() {
            let name = group.file_name().to_string_lossy().into_owned();
            if group.path().is_dir() && dead_owner(&name) {
                let version = if root == Path::new(V1_MEMORY) {
                    CgroupVersion::V1
                } else {
                    CgroupVersion::V2
                };
                eprintln!(
                    "removing the cgroup {}, left by a killed test run",
                    group.path().display()
                );
                drop(MemoryCgroup {
                    path: group.path(),
                    version,
                });
            }
        }
    }
}

/// What a test run killed before its drops leaves: a swap file in use (in an ext4 image
/// loop-mounted in its directory) and a memory cgroup, both named after `owner`. For the test
/// of [`sweep_leftovers`].
pub struct Leftovers {
    pub dir: PathBuf,
    pub swap: PathBuf,
    pub cgroup: PathBuf,
}

/// Leaves [`Leftovers`] named after `owner` (a pid that no longer runs), as a killed run would.
#[track_caller]
pub fn abandon(owner: u32) -> Leftovers {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{LEFTOVER_PREFIX}{owner}-"))
        .tempdir_in("/var/tmp")
        .expect("a directory in /var/tmp")
        .keep();
    let mnt = dir.join("ext4");
    let image = LoopExt4::mount(&dir.join("ext4.img"), &mnt, 64)
        .unwrap_or_else(|e| panic!("no ext4 image for a swap file: {e}"));
    std::mem::forget(image);
    let swap = mnt.join("swapfile");
    enable_swap(&swap, 32).unwrap_or_else(|e| panic!("no swap file: {e}"));
    let cgroup = MemoryCgroup::create(&format!("{LEFTOVER_PREFIX}{owner}-left"), 64 << 20);
    let path = cgroup.path.clone();
    std::mem::forget(cgroup);
    Leftovers {
        dir,
        swap,
        cgroup: path,
    }
}

/// The swap areas the kernel uses, from /proc/swaps.
pub fn swaps() -> Vec<PathBuf> {
    fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(PathBuf::from))
        .collect()
}

/// fallocate, mkswap and swapon: mkswap(8) asks for a file without holes, mode 0600.
fn enable_swap(path: &Path, size_mib: u64) -> Result<(), String> {
    let p = path.to_str().unwrap();
    try_run(&["fallocate", "-l", &format!("{size_mib}M"), p])?;
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("chmod {p}: {e}"))?;
    try_run(&["mkswap", "-q", p])?;
    try_run(&["swapon", p])
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.path).status();
        let _ = fs::remove_file(&self.path);
        drop(self.image.take());
    }
}

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A memory cgroup limited to some bytes; its processes killed and the group removed when
/// dropped.
pub struct MemoryCgroup {
    pub path: PathBuf,
    pub version: CgroupVersion,
}

const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

impl MemoryCgroup {
    /// A new group named `name`, its memory limited to `limit` bytes with swap allowed:
    /// cgroup v1's memory controller where it is mounted at /sys/fs/cgroup/memory, else the
    /// cgroup v2 hierarchy that has the memory controller (found in /proc/self/mounts).
    #[track_caller]
    pub fn create(name: &str, limit: u64) -> Self {
        let v1 = Path::new(V1_MEMORY);
        let group = if v1.join("memory.limit_in_bytes").exists() {
            let path = v1.join(name);
            fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            let group = Self {
                path,
                version: CgroupVersion::V1,
            };
            group.write("memory.limit_in_bytes", &limit.to_string());
            // A v1 group takes its swappiness from its parent; at 0 it would rather be
            // OOM-killed than swap. 60 is the kernel's default
            // (https://docs.kernel.org/admin-guide/cgroup-v1/memory.html, 5.3 swappiness).
            group.write("memory.swappiness", "60");
            group
        } else {
            let root = cgroup2_with_memory().unwrap_or_else(|| {
                panic!(
                    "no memory controller: neither cgroup v1's at {V1_MEMORY} nor a cgroup2 \
                     mount with \"memory\" in its cgroup.controllers"
                )
            });
            // Enabled for children already on systemd hosts; enabled here otherwise, and left so.
            let enabled =
                fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                fs::write(root.join("cgroup.subtree_control"), "+memory")
                    .unwrap_or_else(|e| panic!("enable memory in {}: {e}", root.display()));
            }
            let path = root.join(name);
            fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            let group = Self {
                path,
                version: CgroupVersion::V2,
            };
            group.write("memory.max", &limit.to_string());
            // Swap beyond memory.max is what the tests need; a child's default is "max", said
            // here so that the bench does not rest on it
            // (https://docs.kernel.org/admin-guide/cgroup-v2.html, memory.swap.max).
            group.write("memory.swap.max", "max");
            group
        };
        eprintln!(
            "memory cgroup {:?} at {}, limited to {limit} bytes",
            group.version,
            group.path.display()
        );
        group
    }

    #[track_caller]
    fn write(&self, file: &str, value: &str) {
        let path = self.path.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// The pids in the group.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// The mount point of a cgroup2 hierarchy whose root offers the memory controller.
fn cgroup2_with_memory() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dir = PathBuf::from(f.get(1)?);
        let controllers = fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
        (f.get(2) == Some(&"cgroup2") && controllers.split_whitespace().any(|c| c == "memory"))
            .then_some(dir)
    })
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A group with processes cannot be removed: kill what is left (a hog whose handle
        // was lost, its children), then remove it once the kernel has let them go.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            if Instant::now() > until {
                eprintln!("could not remove the cgroup {}", self.path.display());
                return;
            }
            // Nothing announces that a killed process has left its group.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A process in a memory cgroup writing one byte per page of its `bytes`, over and over:
/// with `bytes` above the group's limit, the kernel keeps swapping its pages out and in.
/// Killed when dropped.
pub struct Hog {
    child: Child,
}

impl Hog {
    #[track_caller]
    pub fn start(group: &MemoryCgroup, bytes: u64) -> Self {
        // The shell joins the group, then becomes perl: every page perl touches is charged
        // to the group.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && exec perl -e '$s = q(x) x {bytes}; \
                 while (1) {{ for ($i = 0; $i < length($s); $i += 4096) {{ substr($s, $i, 1) = q(y) }} }}'",
                group.path.join("cgroup.procs").display()
            ))
            .spawn()
            .expect("start the memory hog (/bin/sh and perl)");
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it and reaps it: the pressure is gone, its swapped pages freed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs (it did not fail to join its group, nor was OOM-killed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One bench at a time in a test binary.
static BENCH: Mutex<()> = Mutex::new(());

/// A memory-limited group swapping: a 256 MiB swap file, a group limited to 64 MiB and, while
/// pressed, a hog of 128 MiB in it. Measured on a 2-vCPU VM (kernel 6.18, cgroup v1): 45–130
/// MiB/s written to swap, and 11–31% of each second with some task stalled on memory (PSI
/// `some`), both back to 0 within a second of the hog's end.
///
/// Dropped in field order: the hog, its group, the swap file, then the lock.
pub struct Swapping {
    pub hog: Option<Hog>,
    pub cgroup: MemoryCgroup,
    pub swap: SwapFile,
    _bench: MutexGuard<'static, ()>,
}

impl Swapping {
    /// The swap file and the group, nothing in it yet: from here until it is dropped, no other
    /// test of the binary presses on memory, so what the host measures now is its calm.
    #[track_caller]
    pub fn prepare() -> Self {
        let bench = BENCH.lock().unwrap_or_else(PoisonError::into_inner);
        let swap = SwapFile::enable(256);
        let name = format!(
            "{LEFTOVER_PREFIX}{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("main")
                .replace("::", "-")
        );
        let cgroup = MemoryCgroup::create(&name, 64 << 20);
        Self {
            hog: None,
            cgroup,
            swap,
            _bench: bench,
        }
    }

    /// Prepared and pressed at once.
    #[track_caller]
    pub fn start() -> Self {
        let mut bench = Self::prepare();
        bench.press();
        bench
    }

    /// Starts the hog in the group, and waits until it is there.
    #[track_caller]
    pub fn press(&mut self) {
        let mut hog = Hog::start(&self.cgroup, 128 << 20);
        let cgroup = &self.cgroup;
        super::wait_until("the hog is in its memory cgroup", || {
            assert!(hog.running(), "the memory hog exited at once");
            cgroup.pids().contains(&(hog.pid() as i32))
        });
        self.hog = Some(hog);
    }

    /// Ends the pressure: the hog is killed. The swap file stays until the bench is dropped.
    pub fn relieve(&mut self) {
        if let Some(mut hog) = self.hog.take() {
            hog.kill();
        }
    }
}
