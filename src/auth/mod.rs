//! Who the caller is: signed tokens, their secret, and password hashing.

mod password;
pub mod secret;
mod token;

pub use password::{HashError, HashLoad, PasswordHasher, PasswordVerdict};
pub use token::{Claims, TokenError, TokenKeys};
