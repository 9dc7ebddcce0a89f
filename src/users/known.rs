//! The users this instance has found in the database: a call whose answer would be empty asks
//! whether its caller exists (a valid token of a user who does not, say after a database reset
//! under a kept secret, is a 401 there too), and a user found once is not asked about again, so
//! an instance pays one lookup per user, not one per empty feed or unread count. No API deletes
//! a user, so a user found stays found.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use super::sql;
use crate::api::ApiError;
use crate::db::Db;
use crate::ids::UserId;

/// Users remembered at most; past it the set starts afresh (a lookup each, again).
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub struct KnownUsers(Mutex<HashSet<i64>>);

impl KnownUsers {
    /// Ok when `me` exists; a 401 when the token's user does not.
    pub async fn require(&self, db: &Db, me: UserId) -> Result<(), ApiError> {
        if self.lock().contains(&me.0) {
            return Ok(());
        }
        if !sql::user_exists(&db.get().await?, me).await? {
            return Err(ApiError::unknown_token_user());
        }
        let mut known = self.lock();
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(me.0);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
