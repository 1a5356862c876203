//! Why a command failed, and the exit code that says so.

use hybridstore::core::{Error, ErrorKind};

/// Exit codes, stable for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An operation failed (I/O, backend, an unreachable server); the message says which.
    Failure = 1,
    /// The command line, a key, an input file or the configuration is invalid.
    Usage = 2,
    /// What the command names does not exist: a key (`get`, `head`, `rm`), a vector record
    /// or collection, the analytics database.
    NotFound = 3,
    /// Data is damaged (`verify`, `get`), or some files of an ingest/export failed.
    Damaged = 4,
    /// The data directory is in use by another process.
    Busy = 5,
    /// `health`: the system works, but an engine is slow, short of space or down while the
    /// key/value path still answers.
    Degraded = 6,
    /// `health`: a critical engine (the primary, the chunk store, the disk) is down.
    Down = 7,
}

/// A command's failure: the error to print and the exit code it maps to, or the reader of
/// standard output having gone away (`hybridstore get k | head -c1`), which ends the command
/// quietly with success, as `ripgrep` and `cat` do.
#[derive(Debug)]
pub enum Failure {
    /// Print the error, exit with the code.
    Error {
        /// What went wrong.
        error: Error,
        /// The exit code.
        code: ExitCode,
    },
    /// Standard output is a closed pipe: stop, exit 0, print nothing.
    OutputClosed,
}

impl Failure {
    /// An input named on the command line (a file to put, a configuration file) cannot be
    /// read: invalid input (exit code 2) if it is missing or not allowed, a failure otherwise.
    pub fn input(error: Error) -> Self {
        let code = match error.kind() {
            ErrorKind::NotFound | ErrorKind::InvalidInput => ExitCode::Usage,
            _ => ExitCode::Failure,
        };
        Failure::Error { error, code }
    }
}

impl From<Error> for Failure {
    /// By kind: `InvalidInput` 2, `NotFound` 3 (a missing key, record or database), `Corrupted`
    /// 4, `Locked` 5, everything else
    /// (`Unavailable` included: a server down is not a busy data directory) 1. Errors of
    /// reading an input file go through [`Failure::input`] instead, so a missing file is
    /// invalid input, not a missing key.
    fn from(error: Error) -> Self {
        let code = match error.kind() {
            ErrorKind::InvalidInput => ExitCode::Usage,
            ErrorKind::NotFound => ExitCode::NotFound,
            ErrorKind::Corrupted => ExitCode::Damaged,
            ErrorKind::Locked => ExitCode::Busy,
            _ => ExitCode::Failure,
        };
        Failure::Error { error, code }
    }
}

/// Maps the result of writing to standard output: a broken pipe ends the command quietly.
pub fn output(result: std::io::Result<()>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::OutputClosed),
        Err(e) => Err(Error::from(e)
            .with_operation("write to standard output")
            .into()),
    }
}
