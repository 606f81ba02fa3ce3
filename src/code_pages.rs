//! Gives back the pages of code and read-only data that only starting up touched.
//!
//! Most of the daemon's resident memory is not its own: it is the pages of its binary and of
//! the C library mapped from the page cache. Loading units, compiling the graph, preflight,
//! spawning and the first probes run code that idling never runs again, yet every page they
//! touched stays mapped, and counted in the daemon's resident set, for as long as it lives
//! (the kernel maps up to 64 KiB around each page faulted in, "fault-around", so a few
//! hundred functions run once keep most of a 4 MB text segment resident).
//!
//! [`release`] unmaps them: `madvise(MADV_DONTNEED)` on every file-backed, private mapping
//! that is not writable and holds no page of its own (no copy-on-write copy: `Anonymous: 0`
//! in `/proc/self/smaps`). For such a mapping it only drops page-table entries; the pages stay
//! in the page cache, and the next instruction or read that needs one maps it again (a minor
//! fault, no disk read while the cache has it). Nothing is lost: the data is the file's. The
//! runtime calls it once the supervisor has been quiet for a moment after a burst of work
//! (start-up, a reload, a command); what idling touches comes back within a probe interval,
//! the rest stays out. See madvise(2): <https://man7.org/linux/man-pages/man2/madvise.2.html>.
//!
//! Linux only; elsewhere [`release`] does nothing.

/// The most of `/proc/self/smaps` read: a few hundred mappings of two dozen lines each.
#[cfg(target_os = "linux")]
const SMAPS_CAP: u64 = 4 << 20;

/// One mapping that may be released: its address range and resident size.
#[cfg(any(target_os = "linux", test))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Releasable {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// The mappings listed in `/proc/self/smaps` whose pages are the file's and nobody writes: a
/// path (not `[vdso]` or anonymous), private (`p`), not writable, no anonymous page. Mappings
/// not resident at all are left out (nothing to give back). Read as bytes, looking only at
/// the headers and the `Rss` and `Anonymous` lines: paths need not be UTF-8, and a release
/// should cost as little as it can.
#[cfg(any(target_os = "linux", test))]
fn releasable(smaps: &[u8]) -> Vec<Releasable> {
    /// A number in ASCII.
    fn number(text: &[u8], radix: u32) -> Option<u64> {
        u64::from_str_radix(std::str::from_utf8(text).ok()?, radix).ok()
    }
    /// The value of a "Key:   123 kB" line.
    fn kib(rest: &[u8]) -> Option<u64> {
        number(
            rest.split(u8::is_ascii_whitespace)
                .find(|f| !f.is_empty())?,
            10,
        )
    }
    let mut out = Vec::new();
    // The mapping being read, if its header allows it; Anonymous is unknown (taken as
    // holding pages of its own) until its line is read.
    let mut current: Option<(Releasable, u64)> = None;
    let finish = |m: Option<(Releasable, u64)>, out: &mut Vec<Releasable>| {
        if let Some((m, anon)) = m
            && m.rss_kib > 0
            && anon == 0
        {
            out.push(m);
        }
    };
    for line in smaps.split(|b| *b == b'\n') {
        match line.first() {
            Some(b'R') => {
                if let (Some(rest), Some((m, _))) = (line.strip_prefix(b"Rss:"), current.as_mut()) {
                    m.rss_kib = kib(rest).unwrap_or(0);
                }
            }
            Some(b'A') => {
                if let (Some(rest), Some((_, anon))) =
                    (line.strip_prefix(b"Anonymous:"), current.as_mut())
                {
                    *anon = kib(rest).unwrap_or(u64::MAX);
                }
            }
            Some(b'0'..=b'9' | b'a'..=b'f') => {
                // A header: "start-end perms offset dev inode [path]".
                finish(current.take(), &mut out);
                let mut fields = line
                    .split(u8::is_ascii_whitespace)
                    .filter(|f| !f.is_empty());
                let range = fields.next().unwrap_or(b"");
                let perms = fields.next().unwrap_or(b"");
                let path = fields.nth(3).unwrap_or(b"");
                let Some(dash) = range.iter().position(|b| *b == b'-') else {
                    continue;
                };
                let (Some(start), Some(end)) =
                    (number(&range[..dash], 16), number(&range[dash + 1..], 16))
                else {
                    continue;
                };
                let eligible = matches!(perms, [b'r', b'-', _, b'p'])
                    && path.first() == Some(&b'/')
                    && end > start;
                if eligible {
                    current = Some((
                        Releasable {
                            start: start as usize,
                            end: end as usize,
                            rss_kib: 0,
                        },
                        u64::MAX,
                    ));
                }
            }
            _ => {}
        }
    }
    finish(current.take(), &mut out);
    out
}

/// Unmaps the file-backed, read-only pages of the daemon (its code, its constants, the C
/// library's), so that the ones idling does not use stop counting in its resident set.
/// Returns how many mappings were released; errors are ignored (the pages simply stay).
pub fn release() -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(bytes) =
            crate::fsutil::read_regular(std::path::Path::new("/proc/self/smaps"), SMAPS_CAP)
        else {
            return 0;
        };
        let mut released = 0;
        for m in releasable(&bytes) {
            // SAFETY: the range is one whole mapping of this process, file-backed, private,
            // not writable and holding no anonymous (copy-on-write) page, as smaps said just
            // now; nothing in this process writes to or remaps such a mapping (a write would
            // fault: it is read-only). MADV_DONTNEED then only drops page-table entries: every
            // later access faults the same bytes in again from the file's pages, so no memory
            // that Rust code can observe changes. A range that changed since (unmapped, say)
            // makes madvise fail or act on nothing, which is ignored.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc == 0 {
                released += 1;
            }
        }
        // The C library's allocator keeps what start-up freed; give back its free pages too.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim has no preconditions; it only returns free memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        released
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55a41aa5e000-55a41ab99000 r--p 00000000 fe:00 6146385                    /usr/bin/launchgraph
Size:               1260 kB
Rss:                 584 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55a41ab99000-55a41af67000 r-xp 0013b000 fe:00 6146385                    /usr/bin/launchgraph
Size:               3896 kB
Rss:                3640 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
55a41af67000-55a41af88000 r--p 00509000 fe:00 6146385                    /usr/bin/launchgraph
Size:                132 kB
Rss:                 132 kB
Anonymous:           132 kB
VmFlags: rd mr mw me ac sd
55a41af88000-55a41af8b000 rw-p 0052a000 fe:00 6146385                    /usr/bin/launchgraph
Size:                 12 kB
Rss:                  12 kB
Anonymous:            12 kB
VmFlags: rd wr mr mw me ac sd
55a457508000-55a4575f9000 rw-p 00000000 00:00 0                          [heap]
Size:                964 kB
Rss:                 484 kB
Anonymous:           484 kB
7f9c37932000-7f9c37a88000 r-xp 00026000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1368 kB
Rss:                1080 kB
Anonymous:             0 kB
7f9c37a90000-7f9c37a91000 r--s 00000000 fe:00 99                         /dev/shm/x
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
7f9c37b00000-7f9c37b10000 r--p 00000000 fe:00 77                         /usr/lib/empty.so
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
7ffcc0530000-7ffcc0532000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
7ffcc0540000-7ffcc0542000 r-xp 00000000 fe:00 78                         /usr/lib/truncated.so
Size:                  8 kB
Rss:                   8 kB
";

    #[test]
    fn only_private_read_only_file_mappings_without_pages_of_their_own_are_released() {
        let got = releasable(SMAPS.as_bytes());
        assert_eq!(
            got,
            vec![
                Releasable {
                    start: 0x55a41aa5e000,
                    end: 0x55a41ab99000,
                    rss_kib: 584,
                },
                Releasable {
                    start: 0x55a41ab99000,
                    end: 0x55a41af67000,
                    rss_kib: 3640,
                },
                Releasable {
                    start: 0x7f9c37932000,
                    end: 0x7f9c37a88000,
                    rss_kib: 1080,
                },
            ],
            "relocated (anonymous) read-only data, writable data, the heap, shared and \
             non-resident mappings, the vdso and a mapping whose Anonymous line is missing \
             must all be kept"
        );
    }

    /// The resident KiB of this process's releasable mappings.
    #[cfg(target_os = "linux")]
    fn resident_kib() -> u64 {
        let smaps = std::fs::read("/proc/self/smaps").unwrap();
        releasable(&smaps).iter().map(|m| m.rss_kib).sum()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn release_unmaps_read_only_file_pages_and_the_code_still_runs() {
        let before = resident_kib();
        assert!(before > 0, "a test binary has resident code");
        assert!(release() > 0);
        // Reading smaps again runs code that faults some pages back in, but far from all.
        let after = resident_kib();
        assert!(
            after < before,
            "resident read-only file pages: {before} KiB before, {after} KiB after"
        );
        // The code that was unmapped runs again from the page cache.
        assert_eq!(releasable(SMAPS.as_bytes()).len(), 3);
    }
}
