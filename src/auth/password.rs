//! Argon2id password hashing, kept off the async worker threads and bounded in concurrency so that
//! a login storm queues (and fails fast with 503) instead of starving every other request.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

/// Hashes and verifies passwords on blocking threads, at most `concurrency` at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// Whether a password matched its stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordVerdict {
    Match,
    Mismatch,
}

impl PasswordHasher {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        concurrency: usize,
        queue_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        Ok(PasswordHasher {
            argon2: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
        })
    }

    /// Hashes a new password into a PHC string (algorithm, parameters and salt included).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let argon2 = self.argon2.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing password: {e}")))
        })
        .await
    }

    /// Verifies a password against a stored PHC string. The stored parameters are used, so hashes
    /// made with other settings keep working.
    pub async fn verify(
        &self,
        password: String,
        stored: String,
    ) -> Result<PasswordVerdict, ApiError> {
        let argon2 = self.argon2.clone();
        self.run(move || {
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
            Ok(match argon2.verify_password(password.as_bytes(), &parsed) {
                Ok(()) => PasswordVerdict::Match,
                Err(argon2::password_hash::Error::Password) => PasswordVerdict::Mismatch,
                Err(e) => {
                    return Err(ApiError::Internal(anyhow::anyhow!(
                        "verifying password: {e}"
                    )))
                }
            })
        })
        .await
    }

    /// Hashes without the async machinery; for command-line tools.
    pub fn hash_blocking(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Unavailable("password hashing is saturated".into()))?
            .map_err(|_| ApiError::Unavailable("password hashing is shut down".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing task failed: {e}")))?
    }
}
