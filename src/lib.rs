//! socialnet: a social-network backend built to measure which techniques make web applications fast.
//!
//! The floors, top down (each imports only from below): `cli` and `app` (commands, wiring);
//! `http` (router, middleware, OpenAPI); the domains' routes; `api` and `state` (what handlers
//! speak and reach); the domains' logic, SQL and types (`users`, `friends`, `posts`, `dialogs`,
//! `live`) beside `broker`, which carries post events between them; the infrastructure (`db`,
//! `cache`, `auth`, `shards`, `tarantool`, `upstream`) and the shared ground (`config`, `ids`, `input`, `json`, `backoff`).
//! `lab` stands beside the server and uses the library as a client would.

pub mod api;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod dialogs;
pub mod friends;
pub mod http;
pub mod ids;
pub mod input;
pub mod json;
pub mod lab;
pub mod limits;
pub mod live;
pub mod posts;
pub mod shards;
pub mod state;
pub mod tarantool;
pub mod telemetry;
pub mod upstream;
pub mod users;

pub use app::Application;
pub use config::Config;
