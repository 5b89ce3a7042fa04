//! Errors that stop reading a trace. Each names the file, where in it
//! (line or byte offset) and what was expected there.

use crate::event::Origin;
use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub struct Error {
    /// The input's name as the user gave it (`-` for stdin).
    pub path: String,
    /// Where in the input, when it applies.
    pub origin: Origin,
    pub message: String,
    pub io: Option<std::io::Error>,
    /// A bug in nmitrace (a caught panic), not a problem of the input.
    pub internal: bool,
}

impl Error {
    pub fn new(path: &str, origin: Origin, message: impl Into<String>) -> Error {
        Error {
            path: path.to_string(),
            origin,
            message: message.into(),
            io: None,
            internal: false,
        }
    }

    pub fn io(path: &str, err: std::io::Error) -> Error {
        Error {
            path: path.to_string(),
            origin: Origin::None,
            message: err.to_string(),
            io: Some(err),
            internal: false,
        }
    }

    /// A panic caught while reading `path` at `origin`: a bug to report.
    pub fn internal(path: &str, origin: Origin, what: &str, panic: &str) -> Error {
        Error {
            internal: true,
            ..Error::new(path, origin, format!("internal error while {what} ({panic}); this is a bug in nmitrace: please report it with the input"))
        }
    }

    /// An error at a byte offset of a binary file.
    pub fn at(path: &str, offset: u64, message: impl Into<String>) -> Error {
        Error::new(path, Origin::Offset(offset), message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::None => write!(f, "{}: {}", self.path, self.message),
            o => write!(f, "{}: {}: {}", self.path, o, self.message),
        }
    }
}

/// The I/O error's text is the message already: no `source()`, so that a
/// chain printer (`{:#}`) says it once.
impl std::error::Error for Error {}
