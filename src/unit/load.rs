//! Reading unit files (placeholder).
use std::path::Path;
#[derive(Debug)]
pub struct LoadError;
pub fn load_dir(_dir: &Path) -> Result<Vec<super::Unit>, LoadError> { todo!() }
