//! Process spawning and reaping (placeholder; implemented next).
