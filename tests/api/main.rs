//! One integration-test binary: every test spawns the real server on its own fresh database.

mod bench;
mod commands;
mod fake;
mod helpers;
mod http_shell;
mod login;
mod openapi;
mod register;
mod search;
mod user_get;
