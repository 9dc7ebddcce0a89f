//! Users: registration, login, profiles and name search.

mod known;
pub mod routes;
pub mod sql;
mod types;

pub use crate::ids::UserId;
pub use crate::input::IdInput;
pub use known::KnownUsers;
pub use types::{
    optional_text, Birthdate, NamePrefix, NewUser, Password, PersonName, User, BIOGRAPHY_MAX_CHARS,
    CITY_MAX_CHARS, NAME_MAX_CHARS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
