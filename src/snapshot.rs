//! Snapshots (placeholder).
