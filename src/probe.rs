//! Probes (placeholder; implemented next).
