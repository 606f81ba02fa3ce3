//! paths (placeholder)
