//! Users: registration, login, profiles and name search.

pub mod routes;
pub mod sql;
mod types;

pub use crate::ids::UserId;
pub use types::{
    optional_text, Birthdate, IdInput, NamePrefix, NewUser, Password, PersonName, User,
    BIOGRAPHY_MAX_CHARS, CITY_MAX_CHARS, NAME_MAX_CHARS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
