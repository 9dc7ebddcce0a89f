//! socialnet: a social-network backend built to measure which techniques make web applications fast.

pub mod app;
pub mod auth;
pub mod broker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod dialogs;
pub mod friends;
pub mod http;
pub mod lab;
pub mod live;
pub mod posts;
pub mod shards;
pub mod telemetry;
pub mod users;

pub use app::Application;
pub use config::Config;
