//! Fingerprints (placeholder; implemented next).
