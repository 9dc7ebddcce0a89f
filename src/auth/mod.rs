//! Who the caller is: signed tokens and password hashing.

mod password;
mod token;

pub use password::{HashError, PasswordHasher, PasswordVerdict};
pub use token::{Claims, TokenError, TokenKeys};
