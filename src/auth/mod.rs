//! Who the caller is: signed tokens, password hashing, and the extractor that checks a bearer token.

mod password;
mod token;

pub use password::{PasswordHasher, PasswordVerdict};
pub use token::{AuthUser, Claims, TokenKeys};
