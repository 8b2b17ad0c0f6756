//! Load errors: one clear message naming the file and the JSON path.

use std::path::PathBuf;

/// A problem that stops an app from loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{}`: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not valid JSON: {source}", file.display())]
    Json {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{}` at `{path}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        /// JSON path of the offending value, e.g. `$.acls[2].accessType`.
        path: String,
        message: String,
    },
}

/// Where in which file a value sits, so errors and warnings can say exactly.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub file: PathBuf,
    pub path: String,
}

impl Loc {
    pub fn root(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            path: "$".into(),
        }
    }

    pub fn key(&self, key: &str) -> Self {
        let simple = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        let path = if simple && !key.is_empty() {
            format!("{}.{key}", self.path)
        } else {
            format!("{}[{key:?}]", self.path)
        };
        Self {
            file: self.file.clone(),
            path,
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self {
            file: self.file.clone(),
            path: format!("{}[{i}]", self.path),
        }
    }

    pub fn err(&self, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            file: self.file.clone(),
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub fn describe(&self) -> String {
        format!("`{}` at `{}`", self.file.display(), self.path)
    }
}
