//! Argon2id password hashing on a few dedicated threads, each reusing one memory buffer.
//!
//! Why not `spawn_blocking`: argon2 needs `m_cost` KiB per hash (19 MiB by default). Allocated per
//! call on whichever blocking thread runs it, that memory is kept by the allocator's per-thread
//! arenas, and resident memory grows with the number of threads that ever hashed (see
//! docs/benchmarks/users.md for a login load before and after). Here `concurrency` threads
//! each own one buffer for their lifetime, so memory stays at `concurrency × m_cost`, and a
//! semaphore with a timeout turns a login storm into fast 503s instead of an unbounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use tokio::sync::{oneshot, Semaphore};

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread stayed busy for the whole queue timeout: retry later.
    #[error("password hashing is saturated")]
    Saturated,
    #[error("password hashing is shut down")]
    ShutDown,
    /// A stored hash that does not parse, or a failure of the hashing itself.
    #[error(transparent)]
    Failed(anyhow::Error),
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    jobs: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Requests waiting for a slot now (for `/metrics`).
    waiting: Arc<AtomicUsize>,
    queue_timeout: Duration,
}

/// How loaded the hashing threads are: hashes running, and requests waiting for a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLoad {
    pub busy: usize,
    pub waiting: usize,
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
        let concurrency = concurrency.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..concurrency {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return, // every hasher handle is gone
                        }
                    }
                })?;
        }
        Ok(PasswordHasher {
            params,
            jobs,
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            waiting: Arc::new(AtomicUsize::new(0)),
            queue_timeout,
        })
    }

    /// Hashes a new password into a PHC string (algorithm, parameters and salt included).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move |memory| {
            hash_with_memory(&password, params, memory)
                .map_err(|e| HashError::Failed(anyhow::anyhow!("hashing password: {e}")))
        })
        .await
    }

    /// Verifies a password against a stored PHC string. The stored parameters are used, so hashes
    /// made with other settings keep working.
    pub async fn verify(
        &self,
        password: String,
        stored: String,
    ) -> Result<PasswordVerdict, HashError> {
        self.run(move |memory| {
            verify_with_memory(&password, &stored, memory)
                .map_err(|e| HashError::Failed(anyhow::anyhow!("verifying password: {e}")))
        })
        .await
    }

    /// Hashes running and requests waiting now.
    pub fn load(&self) -> HashLoad {
        HashLoad {
            busy: self.concurrency - self.slots.available_permits().min(self.concurrency),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Hashes on the calling thread; for command-line tools.
    pub fn hash_blocking(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        // The permit travels with the job: a request that gives up (timeout, client gone) still
        // holds its slot until its hash is done, so abandoned work cannot pile up.
        let waiting = Waiting::enter(&self.waiting);
        let acquired =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        drop(waiting);
        let permit = acquired
            .map_err(|_| HashError::Saturated)?
            .map_err(|_| HashError::ShutDown)?;
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _permit = permit;
            let _ = reply.send(work(memory));
        });
        self.jobs
            .send(job)
            .map_err(|_| HashError::Failed(anyhow::anyhow!("hashing threads are gone")))?;
        result
            .await
            .map_err(|_| HashError::Failed(anyhow::anyhow!("hashing thread failed")))?
    }
}

/// One request counted as waiting for a slot, until it has one, gives up or is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn hash_with_memory(
    password: &str,
    params: Params,
    memory: &mut Vec<Block>,
) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; 32];
    grow(memory, params.block_count());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            &mut memory[..params.block_count()],
        )?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params.try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(hash.to_string())
}

fn verify_with_memory(
    password: &str,
    stored: &str,
    memory: &mut Vec<Block>,
) -> Result<PasswordVerdict, argon2::password_hash::Error> {
    use argon2::password_hash::Error;
    let parsed = PasswordHash::new(stored)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let expected = parsed.hash.ok_or(Error::PhcStringField)?;
    let salt = parsed.salt.ok_or(Error::SaltInvalid(
        argon2::password_hash::errors::InvalidValue::Malformed,
    ))?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let mut out = vec![0u8; expected.len()];
    grow(memory, params.block_count());
    Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password.as_bytes(),
        salt_bytes,
        &mut out,
        &mut memory[..params.block_count()],
    )?;
    // `Output` compares in constant time.
    Ok(if Output::new(&out)? == expected {
        PasswordVerdict::Match
    } else {
        PasswordVerdict::Mismatch
    })
}

fn grow(memory: &mut Vec<Block>, blocks: usize) {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(memory_kib: u32) -> PasswordHasher {
        PasswordHasher::new(memory_kib, 1, 2, Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = hasher(1024);
        let stored = hasher.hash("пароль-123".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{stored}"
        );
        assert_eq!(
            hasher
                .verify("пароль-123".into(), stored.clone())
                .await
                .unwrap(),
            PasswordVerdict::Match
        );
        assert_eq!(
            hasher.verify("пароль-124".into(), stored).await.unwrap(),
            PasswordVerdict::Mismatch
        );
    }

    #[tokio::test]
    async fn hashes_made_elsewhere_or_with_other_settings_verify() {
        // Made by the argon2 crate's own API with bigger parameters.
        let stored = hasher(4096).hash_blocking("correct horse").unwrap();
        let small = hasher(1024);
        assert_eq!(
            small
                .verify("correct horse".into(), stored.clone())
                .await
                .unwrap(),
            PasswordVerdict::Match
        );
        // And ours verify with the crate's own verifier.
        use argon2::PasswordVerifier;
        let ours = small.hash("correct horse".into()).await.unwrap();
        Argon2::default()
            .verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap())
            .unwrap();
    }

    #[tokio::test]
    async fn a_garbage_stored_hash_is_an_error_not_a_match() {
        let result = hasher(1024)
            .verify("x".into(), "not a phc string".into())
            .await;
        assert!(matches!(result, Err(HashError::Failed(_))));
    }

    #[tokio::test]
    async fn a_saturated_hasher_answers_503_after_its_queue_timeout() {
        let hasher = PasswordHasher::new(1024, 1, 1, Duration::from_millis(50)).unwrap();
        let busy = hasher.clone();
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn(async move {
            busy.run(move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
                Ok(())
            })
            .await
        });
        started_rx.await.unwrap();
        let result = hasher.hash("another password".into()).await;
        assert!(matches!(result, Err(HashError::Saturated)));
        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
    }
}
