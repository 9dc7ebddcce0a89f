//! The secret that signs tokens. `TOKEN_SECRET` when it is set, refused when it is short, plainly
//! not random (padding, a few characters, one piece repeated) or a published placeholder (anyone
//! who knows or guesses it can sign a token for any user); otherwise one made
//! at random by the first instance and kept in the database, where every instance of the
//! deployment finds the same one. Whoever can read the database can then sign tokens: a
//! deployment whose database is shared more widely sets `TOKEN_SECRET` from its secret store.

use tokio_postgres::GenericClient;

use crate::db::DbError;

/// The shortest secret taken: 256 bits, HS256's own key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// The fewest different characters a secret may have: any random text of 32 has many more
/// (hex about 15, base64 about 25), a padded or typed-in one fewer.
pub const MIN_DISTINCT_BYTES: usize = 8;

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
        "TOKEN_SECRET is {0} bytes long without the spaces at its ends and must be at least \
         {MIN_SECRET_BYTES} (`openssl rand -hex 32` makes one), or unset to have one generated"
    )]
    TooShort(usize),
    #[error(
        "TOKEN_SECRET is not random: {0}; make one with `openssl rand -hex 32`, or leave it \
         unset to have one generated"
    )]
    NotRandom(&'static str),
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
    let core = secret.trim().as_bytes();
    if core.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort(core.len()));
    }
    let mut seen = [false; 256];
    for &byte in core {
        seen[usize::from(byte)] = true;
    }
    if seen.iter().filter(|&&seen| seen).count() < MIN_DISTINCT_BYTES {
        return Err(SecretError::NotRandom(
            "it has fewer than 8 different characters",
        ));
    }
    if repeats_a_shorter_piece(core) {
        return Err(SecretError::NotRandom("it is one shorter piece repeated"));
    }
    Ok(())
}

/// Whether `text` is some shorter piece written over and over (`abcabcabc`, or `passwordpass`:
/// the last copy may be cut short).
fn repeats_a_shorter_piece(text: &[u8]) -> bool {
    (1..=text.len() / 2).any(|period| text.iter().zip(&text[period..]).all(|(a, b)| a == b))
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
        assert!(check("J3mSx0Qk1bV7+Yw9aR2uE5tH8cL4nP6z/A==").is_ok());
    }

    #[test]
    fn padding_few_characters_and_repeats_are_refused() {
        // Forty spaces signed tokens that anyone could forge.
        let spaces = " ".repeat(40);
        assert!(matches!(check(&spaces), Err(SecretError::TooShort(0))));
        let padded = format!("  {}  ", "3f8a1c0e9b7d6a5f4e3d2c1b0a");
        assert!(matches!(check(&padded), Err(SecretError::TooShort(26))));
        for weak in [
            "a".repeat(40),
            "0101".repeat(10),
            "11111111111111111111111111111112".to_owned(),
            "passwordpasswordpasswordpasswordpass".to_owned(),
            "qwertyuiop".repeat(4),
        ] {
            assert!(
                matches!(check(&weak), Err(SecretError::NotRandom(_))),
                "{weak}"
            );
        }
    }
}
