//! Preflight checks (placeholder; implemented next).
