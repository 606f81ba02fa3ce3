//! The compiled dependency graph (placeholder; implemented next).
