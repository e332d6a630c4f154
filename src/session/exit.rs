//! Exit codes (an interface: scripts and CI read them; see the README) and a failure
//! that carries one. The command line maps its errors to these in one place
//! (`cli::Error`); a run reports its own outcome as one of them.

/// Exit code for an internal error.
pub const EXIT_INTERNAL: u8 = 1;
/// Exit code for invalid input (a release file, a flag).
pub const EXIT_INVALID: u8 = 2;
/// Exit code when something rolled back (or, in a replay, would have).
pub const EXIT_ROLLED_BACK: u8 = 3;
/// Exit code when the operator stopped a release before its end (quit the console
/// leaving it paused, or interrupted twice): nothing failed, `resume` carries on.
pub const EXIT_UNFINISHED: u8 = 6;

/// A failure with its exit code and message.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INTERNAL,
            message: message.into(),
        }
    }
}
