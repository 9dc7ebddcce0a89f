//! The secret that signs tokens. `TOKEN_SECRET` when it is set, refused when it is short or a
//! published placeholder (anyone who knows it can sign a token for any user); otherwise one made
//! at random by the first instance and kept in the database, where every instance of the
//! deployment finds the same one. Whoever can read the database can then sign tokens: a
//! deployment whose database is shared more widely sets `TOKEN_SECRET` from its secret store.

use tokio_postgres::GenericClient;

use crate::db::DbError;

/// The shortest secret taken: 256 bits, HS256's own key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets that have been published as examples, here or in the usual templates.
const PLACEHOLDERS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "change-me-please",
    "changeit",
    "secret",
    "password",
    "your-secret",
    "your-secret-here",
    "test-secret",
    "local-balancer-secret",
];

/// Why the server refuses to start with this secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "TOKEN_SECRET is a published placeholder: anyone could sign a token for any user; set one \
         of your own (`openssl rand -hex 32`) or leave it unset to have one generated"
    )]
    Placeholder,
    #[error(
        "TOKEN_SECRET is {0} bytes long and must be at least {MIN_SECRET_BYTES} \
         (`openssl rand -hex 32` makes one), or unset to have one generated"
    )]
    TooShort(usize),
    #[error("reading the shared token secret: {0}")]
    Db(#[from] DbError),
}

/// Whether a configured secret may sign tokens.
pub fn check(secret: &str) -> Result<(), SecretError> {
    let lowered = secret.trim().to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lowered.as_str())
        || lowered.contains("change-me")
        || lowered.contains("changeme")
    {
        return Err(SecretError::Placeholder);
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort(secret.len()));
    }
    Ok(())
}

/// The secret to sign tokens with: the configured one (checked), or the deployment's own.
pub async fn token_secret(
    configured: Option<&str>,
    db: &impl GenericClient,
) -> Result<Vec<u8>, SecretError> {
    match configured.filter(|s| !s.is_empty()) {
        Some(secret) => {
            check(secret)?;
            Ok(secret.as_bytes().to_vec())
        }
        None => Ok(shared_secret(db).await?),
    }
}

/// The deployment's generated secret: made by whichever instance comes first (the others' insert
/// does nothing), then read by all.
#[tracing::instrument(name = "sql.shared_secret", skip_all)]
pub async fn shared_secret(db: &impl GenericClient) -> Result<Vec<u8>, DbError> {
    let fresh: [u8; 32] = rand::random();
    db.execute(
        "insert into server_secrets (name, value) values ('token', $1) on conflict (name) do nothing",
        &[&fresh.as_slice()],
    )
    .await?;
    Ok(db
        .query_one("select value from server_secrets where name = 'token'", &[])
        .await?
        .get(0))
}

/// The deployment's generated secret if there is one (for tools that mint tokens, like the
/// benchmark); `None` before a server has made it.
pub async fn stored_secret(db: &impl GenericClient) -> Result<Option<Vec<u8>>, DbError> {
    Ok(db
        .query_opt("select value from server_secrets where name = 'token'", &[])
        .await?
        .map(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_short_secrets_are_refused() {
        for placeholder in [
            "change-me",
            "CHANGE-ME",
            "changeme-changeme-changeme-changeme-x",
            "secret",
        ] {
            assert!(
                matches!(check(placeholder), Err(SecretError::Placeholder)),
                "{placeholder}"
            );
        }
        assert!(matches!(
            check("short-but-own"),
            Err(SecretError::TooShort(13))
        ));
        assert!(check("3f8a1c0e9b7d6a5f4e3d2c1b0a9f8e7d").is_ok());
    }
}
