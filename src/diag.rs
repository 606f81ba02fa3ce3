//! diag (placeholder)
