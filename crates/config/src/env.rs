//! Loading `.env`.

use std::path::PathBuf;

/// Loads `.env` from the working directory (or the file named by `PUSHSERVICE_ENV_FILE`) into
/// the process environment, without overriding variables that are already set.
///
/// Returns the file that was loaded, if any. A missing file is fine; a file that exists but
/// cannot be parsed is an error that names the file and the offending line.
pub fn load_dotenv() -> Result<Option<PathBuf>, String> {
    let explicit = std::env::var_os("PUSHSERVICE_ENV_FILE").map(PathBuf::from);
    let path = explicit.clone().unwrap_or_else(|| PathBuf::from(".env"));
    if !path.exists() {
        return match explicit {
            Some(path) => Err(format!(
                "PUSHSERVICE_ENV_FILE: {} does not exist; point it at a readable .env file",
                path.display()
            )),
            None => Ok(None),
        };
    }
    dotenvy::from_path(&path)
        .map(|()| Some(path.clone()))
        .map_err(|e| format!("{}: cannot load it: {e}", path.display()))
}
