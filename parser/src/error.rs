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
}

impl Error {
    pub fn new(path: &str, origin: Origin, message: impl Into<String>) -> Error {
        Error { path: path.to_string(), origin, message: message.into(), io: None }
    }

    pub fn io(path: &str, err: std::io::Error) -> Error {
        Error { path: path.to_string(), origin: Origin::None, message: err.to_string(), io: Some(err) }
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}
