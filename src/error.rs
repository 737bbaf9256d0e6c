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
        }
    }
}

impl std::error::Error for Error {}

impl Error {
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
    /// Shorthand for a content error in `path`.
    pub fn format(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Error {
        Error::Format {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
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
