//! Friends: who follows whom. Directional: following someone puts their posts in your feed.

pub mod routes;
pub mod sql;
