//! Loading `.env`.
//!
//! A setting left empty in the file (`SENDER_EXTRA_CA_FILE=`, as `.env.example` lists the
//! optional ones) means "not set": such lines are skipped, so copying `.env.example` to `.env`
//! gives every default instead of flags complaining that a value is required.

use std::path::PathBuf;

/// Loads `.env` from the working directory (or the file named by `PUSHSERVICE_ENV_FILE`) into
/// the process environment, without overriding variables that are already set and skipping
/// settings left empty.
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
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    dotenvy::from_read(without_empty_settings(&text).as_bytes())
        .map(|()| Some(path.clone()))
        .map_err(|e| format!("{}: cannot load it: {e}", path.display()))
}

/// `text` with every `KEY=` line whose value is empty (or `""` / `''`) blanked; blanked rather
/// than removed so the parser's line numbers still match the file. Line by line: a `KEY=` line
/// inside a multi-line quoted value would be blanked too (no setting of ours spans lines).
fn without_empty_settings(text: &str) -> String {
    text.lines()
        .map(|line| if is_empty_setting(line) { "" } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` is `[export ]KEY=` with nothing (or an empty quoted string) after the `=`.
fn is_empty_setting(line: &str) -> bool {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let Some((key, value)) = line.split_once('=') else {
        return false;
    };
    let key = key.trim();
    !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && matches!(value.trim(), "" | "\"\"" | "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_are_blanked_and_everything_else_kept() {
        let text = "# comment\nA=1\nB=\nexport C=\"\"\nD= ''\nURL=http://x/?a=b\n";
        assert_eq!(
            without_empty_settings(text),
            "# comment\nA=1\n\n\n\nURL=http://x/?a=b"
        );
        assert!(!is_empty_setting("A=0"));
        assert!(!is_empty_setting("=x"));
        assert!(!is_empty_setting("not a setting"));
    }

    #[test]
    fn a_file_like_env_example_loads_without_its_empty_settings() {
        let dir = std::env::temp_dir().join(format!("pushservice-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join(".env");
        std::fs::write(
            &file,
            "PUSHSERVICE_ENV_TEST_EMPTY=\nPUSHSERVICE_ENV_TEST_SET=value\n",
        )
        .expect("write");
        let text = std::fs::read_to_string(&file).expect("read");
        dotenvy::from_read(without_empty_settings(&text).as_bytes()).expect("loads");
        assert_eq!(
            std::env::var("PUSHSERVICE_ENV_TEST_SET").as_deref(),
            Ok("value")
        );
        assert!(std::env::var_os("PUSHSERVICE_ENV_TEST_EMPTY").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
