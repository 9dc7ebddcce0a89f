//! The database layer's error: whether the caller may retry (the server is away, cut off or
//! saturated) or not (a bug, a broken query). Callers above map it to their own errors once.

/// What a database call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Unreachable, cut off, saturated or timed out: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug, a constraint nobody expected, a row that does not decode.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl DbError {
    /// An unexpected failure, with what was being done.
    pub fn internal(cause: impl Into<anyhow::Error>, doing: &'static str) -> Self {
        DbError::Internal(cause.into().context(doing))
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Timeout(_) => {
                DbError::Unavailable("database busy: no free connection in time".into())
            }
            PoolError::Backend(e) => DbError::Unavailable(format!("database unreachable: {e}")),
            other => DbError::internal(other, "database pool"),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io_failure = std::error::Error::source(&e)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
        match e.code() {
            // No SQLSTATE and a closed or failing socket: the server is gone or the network cut.
            None if e.is_closed() || io_failure => {
                DbError::Unavailable(format!("database connection lost: {e}"))
            }
            // No SQLSTATE otherwise: a client-side error (a parameter that does not serialise…).
            None => DbError::internal(e, "database client"),
            // Retryable conditions: connection trouble (08), insufficient resources (53),
            // operator intervention and statement timeouts (57), a replica that became read-only
            // (25006), serialization failures and deadlocks (40001, 40P01).
            Some(code)
                if ["08", "53", "57"]
                    .iter()
                    .any(|class| code.code().starts_with(class))
                    || ["25006", "40001", "40P01"].contains(&code.code()) =>
            {
                DbError::Unavailable(format!("database unavailable: {}", code.code()))
            }
            Some(_) => DbError::internal(e, "database query"),
        }
    }
}
