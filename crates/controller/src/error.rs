//! The controller's errors: what failed — Azure, the store, a node's bootstrap — with the
//! source chain kept, so a store failure is never taken (or recorded) for an ARM error, and a
//! log line shows every cause ([`chain`]: `error = %chain(&e)`).
//!
//! `Display`s do not repeat their sources (the store's convention), so `{e}` alone says what
//! failed and [`chain`] says why, down to the database's or the operating system's words.

use std::fmt;

use azure::{ArmError, ErrorKind};
use store::StoreError;

/// Something the controller could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Azure answered with an error, or could not be reached: what is recorded as `arm.error`.
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// The store failed: the daemon's own trouble, never recorded as an ARM error.
    #[error("store")]
    Store(#[from] StoreError),
    /// A node's bootstrap script could not be made (a secret that cannot be resolved, a
    /// script too large...): the create fails before Azure is called.
    #[error("bootstrap of {node}: {message}")]
    Bootstrap { node: String, message: String },
    /// The activation reached its deadline (`activation_timeout_seconds`) while `doing`.
    #[error(
        "cut at the activation deadline ({seconds} s, activation_timeout_seconds) while {doing}, nothing planned"
    )]
    Deadline { seconds: u64, doing: &'static str },
    /// What was being done when `source` failed.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

pub use rb_core::task::{BOOTSTRAP_ERROR, STORE_ERROR};
/// The code of an activation cut at its deadline.
pub const ACTIVATION_DEADLINE: &str = "ActivationDeadline";

impl Error {
    /// The same error, saying what was being done.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error under its context.
    pub fn root(&self) -> &Self {
        match self {
            Self::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// A stable code for records and conditions: ARM's code, or the controller's own
    /// ([`STORE_ERROR`], [`BOOTSTRAP_ERROR`]).
    pub fn code(&self) -> &str {
        match self.root() {
            Self::Arm(e) => &e.code,
            Self::Store(_) => STORE_ERROR,
            Self::Bootstrap { .. } => BOOTSTRAP_ERROR,
            Self::Deadline { .. } => ACTIVATION_DEADLINE,
            Self::Context { .. } => unreachable!("root is never a context"),
        }
    }

    /// What a person reads after the [`code`](Self::code): ARM's message, or what failed
    /// and why, every cause included.
    pub fn message(&self) -> String {
        match self {
            Self::Arm(e) => e.message.clone(),
            Self::Store(e) => chain(e).to_string(),
            Self::Context { context, source } => format!("{context}: {}", source.message()),
            other => other.to_string(),
        }
    }

    /// The ARM error, if that is what failed.
    pub fn arm(&self) -> Option<&ArmError> {
        match self.root() {
            Self::Arm(e) => Some(e),
            _ => None,
        }
    }

    /// How the failure of a write is recorded in the event log (`arm.error`), the intent and
    /// the pool's backoff: an ARM error as it is; a bootstrap that could not be made as the
    /// `BootstrapError` it has always been recorded as (a permanent error: it holds the
    /// pool's creates, and the API redacts its message). `None` for a store failure, which is
    /// not Azure's answer and is logged, not recorded as one.
    pub fn recorded_as_arm(&self) -> Option<ArmError> {
        match self.root() {
            Self::Arm(e) => Some(e.clone()),
            bootstrap @ Self::Bootstrap { .. } => Some(ArmError::new(
                ErrorKind::Config,
                BOOTSTRAP_ERROR,
                bootstrap.to_string(),
            )),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a failure of any of the controller's kinds.
pub(crate) trait ResultExt<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}

/// An error and every source under it, `: `-separated: `error = %chain(&e)` in a log line.
pub fn chain<'a>(err: &'a (dyn std::error::Error + 'a)) -> Chain<'a> {
    Chain(err)
}

/// See [`chain`].
pub struct Chain<'a>(&'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> StoreError {
        StoreError::Io {
            path: "/var/lib/renderburst/rb.db".into(),
            source: std::io::Error::other("disk full"),
        }
    }

    #[test]
    fn the_chain_names_every_cause() {
        let e = Error::from(io_error()).context("cannot store the node token of maya-00001");
        assert_eq!(
            chain(&e).to_string(),
            "cannot store the node token of maya-00001: store: cannot use /var/lib/renderburst/rb.db: disk full"
        );
        assert_eq!(e.code(), STORE_ERROR);
        assert_eq!(
            e.message(),
            "cannot store the node token of maya-00001: cannot use /var/lib/renderburst/rb.db: disk full"
        );
        assert!(e.arm().is_none());
        assert!(
            e.recorded_as_arm().is_none(),
            "a store failure is no ARM error"
        );
    }

    #[test]
    fn arm_errors_stay_as_they_are() {
        let mut arm = ArmError::new(ErrorKind::Http, "AllocationFailed", "no capacity");
        arm.status = Some(409);
        let e = Error::from(arm.clone()).context("observe");
        assert_eq!(
            chain(&e).to_string(),
            "observe: HTTP 409 AllocationFailed: no capacity"
        );
        assert_eq!(e.code(), "AllocationFailed");
        assert_eq!(e.message(), "observe: no capacity");
        assert_eq!(e.arm().map(|a| a.status), Some(Some(409)));
        let recorded = e.recorded_as_arm().unwrap();
        assert_eq!(
            (recorded.code.as_str(), recorded.message.as_str()),
            ("AllocationFailed", "no capacity")
        );
    }

    #[test]
    fn a_bootstrap_failure_is_recorded_as_before() {
        let e = Error::Bootstrap {
            node: "maya-00001".into(),
            message: "bootstrap.env.A: no secret".into(),
        };
        assert_eq!(e.code(), BOOTSTRAP_ERROR);
        let recorded = e.recorded_as_arm().unwrap();
        assert_eq!(recorded.code, "BootstrapError");
        assert_eq!(
            recorded.message,
            "bootstrap of maya-00001: bootstrap.env.A: no secret"
        );
        assert!(recorded.is_permanent(), "it holds the pool's creates");
    }
}
