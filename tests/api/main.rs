//! One integration-test binary: every test spawns the real server on its own fresh database.

// A failed unwrap is a failed test, with its line: helpers unwrap as the tests do.
#![expect(
    clippy::unwrap_used,
    reason = "in tests a failed unwrap is a failed test"
)]

mod balancer;
mod bench;
mod broker;
mod citus;
mod commands;
mod contract;
mod dialog_service;
mod dialogs;
mod failover;
mod fake;
mod feed;
mod feed_cache;
mod friends;
mod hardening;
mod helpers;
mod http_shell;
mod lab_page;
mod limits;
mod live;
mod live_page;
mod login;
mod monitoring;
mod openapi;
mod posts;
mod rabbit;
mod register;
mod replicas;
mod request_trace;
mod search;
mod tarantool;
mod tokens;
mod unread;
mod user_get;
