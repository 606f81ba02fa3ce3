//! launchd, reached only through `launchctl` (placeholder; implemented next).
