//! Reads an app folder from disk and hands its text to the core's parser.

use std::path::{Path, PathBuf};

use switchboard_core::app::{AppFiles, AppOptions, AppSpec, FunctionFiles, SpecError, parse_app};

/// Files larger than this are not read (a function.json or settings file is a few KB).
const MAX_FILE: u64 = 1 << 20;
/// Files listed per function folder, at most (deeper trees are not needed to check scripts).
const MAX_LISTED: usize = 10_000;

/// Why an app folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder or one of its files could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is larger than any app file should be.
    #[error("{path}: larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The folder's content is not a valid app.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Loads and parses the app in `dir`.
pub fn load_app(dir: &Path, options: &AppOptions) -> Result<AppSpec, LoadError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| LoadError::Io { path: dir.to_owned(), source })?;
    let mut files = AppFiles {
        directory: dir.to_string_lossy().into_owned(),
        host_json: read_optional(&dir.join("host.json"))?,
        local_settings: read_optional(&dir.join("local.settings.json"))?,
        functions: Vec::new(),
    };
    let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::Io { path: dir.clone(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io { path: dir.clone(), source })?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(function_json) = read_optional(&path.join("function.json"))? else {
            continue; // shared code folders have no function.json
        };
        let mut listed = Vec::new();
        list_files(&path, &path, &mut listed)?;
        files.functions.push(FunctionFiles {
            name: entry.file_name().to_string_lossy().into_owned(),
            function_json,
            files: listed,
        });
    }
    files.functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(parse_app(&files, options)?)
}

fn read_optional(path: &Path) -> Result<Option<String>, LoadError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Io { path: path.to_owned(), source }),
        Ok(meta) if meta.len() > MAX_FILE => return Err(LoadError::TooLarge { path: path.to_owned() }),
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io { path: dir.to_owned(), source })?;
    for entry in entries {
        if out.len() >= MAX_LISTED {
            return Ok(());
        }
        let entry = entry.map_err(|source| LoadError::Io { path: dir.to_owned(), source })?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| LoadError::Io { path: path.clone(), source })?;
        if file_type.is_dir() {
            if entry.file_name() != "__pycache__" {
                list_files(root, &path, out)?;
            }
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
    }

    #[test]
    fn loads_the_example_apps() {
        let hello = load_app(&examples().join("hello"), &AppOptions::default()).unwrap();
        assert_eq!(hello.name.as_str(), "hello");
        assert_eq!(hello.language, "python");
        let names: Vec<&str> = hello.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["echo", "fail", "hello", "items", "setting", "slow", "trace"]);
        assert_eq!(hello.settings["GREETING"], "hello from hello");
        let shop = load_app(&examples().join("shop"), &AppOptions::default()).unwrap();
        assert!(
            shop.functions.iter().all(|f| f.name != "shared"),
            "folders without function.json are skipped"
        );
    }

    #[test]
    fn missing_folder_names_the_path() {
        let err = load_app(Path::new("/no/such/app"), &AppOptions::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/app"), "{err}");
    }
}
