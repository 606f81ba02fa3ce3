//! A launchctl test double (placeholder; implemented next).
fn main() {}
