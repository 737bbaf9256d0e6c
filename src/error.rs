//! The project's error type. Errors are values that tell the user what went wrong, where
//! (file, tensor, op, line), what was expected versus found, and, where we can, a hint.

use std::fmt;

/// Every fallible function in the crate returns `Result<T>`.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An op received tensors whose shapes do not fit together.
    Shape { op: &'static str, msg: String },
    /// An op received a tensor of a dtype it does not accept.
    DType {
        op: &'static str,
        expected: String,
        found: String,
    },
    /// An index (token id, item id, position) outside its valid range.
    Index {
        op: &'static str,
        index: i64,
        bound: usize,
    },
    /// Autograd misuse: backward through an op without a backward, a non-scalar loss, ...
    Autograd(String),
    /// A file could not be read or written.
    Io { path: String, msg: String },
    /// A file was read but its content is wrong (bad field, truncated, corrupt).
    Format { path: String, msg: String },
    /// A configuration or command-line value is invalid; `hint` says what would work.
    Config { msg: String, hint: String },
    /// A CUDA driver or kernel failure (feature `cuda`).
    Cuda(String),
    /// Training diverged (a non-finite loss or gradient); the run stops, the last checkpoint
    /// is the last good state.
    Training(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: shape mismatch: {msg}"),
            Error::DType {
                op,
                expected,
                found,
            } => {
                write!(f, "{op}: wrong dtype: expected {expected}, found {found}")
            }
            Error::Index { op, index, bound } => {
                write!(f, "{op}: index {index} out of range 0..{bound}")
            }
            Error::Autograd(m) => write!(f, "autograd: {m}"),
            Error::Io { path, msg } => write!(f, "{path}: {msg}"),
            Error::Format { path, msg } => write!(f, "{path}: {msg}"),
            Error::Config { msg, hint } if hint.is_empty() => write!(f, "{msg}"),
            Error::Config { msg, hint } => write!(f, "{msg} (hint: {hint})"),
            Error::Cuda(m) => write!(f, "cuda: {m}"),
            Error::Training(m) => write!(
                f,
                "training stopped: {m} (hint: the last checkpoint is intact; lower --lr or \
                 --clip-norm and continue with --resume)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// A training error with the stage and step it happened at; other errors pass unchanged.
    pub fn in_stage(self, stage: &str, step: usize) -> Error {
        match self {
            Error::Training(m) => Error::Training(format!("stage {stage}, step {step}: {m}")),
            other => other,
        }
    }

    /// Shorthand for a shape error.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, e: impl fmt::Display) -> Error {
        Error::Io {
            path: path.as_ref().display().to_string(),
            msg: e.to_string(),
        }
    }
    /// Shorthand for a content error in `path`. The message is made one line and bounded
    /// ([`MAX_MESSAGE_CHARS`]): content errors quote values read from the file, and a corrupt
    /// file's token or key can be kilobytes long or hold line breaks.
    pub fn format(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Error {
        Error::Format {
            path: path.as_ref().display().to_string(),
            msg: one_bounded_line(&msg.into()),
        }
    }
    /// Shorthand for a configuration error with a hint.
    pub fn config(msg: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Config {
            msg: msg.into(),
            hint: hint.into(),
        }
    }
}

/// The longest content-error message kept whole; the rest is cut and counted.
pub const MAX_MESSAGE_CHARS: usize = 400;

/// `msg` on one line (line breaks and tabs as spaces), cut after [`MAX_MESSAGE_CHARS`].
fn one_bounded_line(msg: &str) -> String {
    let flat = msg.replace(['\n', '\r', '\t'], " ");
    let total = flat.chars().count();
    if total <= MAX_MESSAGE_CHARS {
        return flat;
    }
    let kept: String = flat.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{kept}... ({} more characters)", total - MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file value quoted in a message (a 2 KB token with a line break) stays one bounded line.
    #[test]
    fn content_errors_are_one_bounded_line() {
        let token = "x".repeat(2000) + "\nnext";
        let shown = Error::format("f.json", format!("token {token:?} is bad\nreally")).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(
            shown.chars().count() < MAX_MESSAGE_CHARS + 60,
            "{} chars",
            shown.len()
        );
        assert!(shown.starts_with("f.json: token \"xxx") && shown.ends_with("more characters)"));
        let short = Error::format("f.json", "line 3: bad\tvalue").to_string();
        assert_eq!(short, "f.json: line 3: bad value");
    }
}
