//! End-to-end tests of the web dashboard against a private `redis-server`:
//! pages, actions, auth, read-only and cross-site refusals over real HTTP,
//! and one headless Chromium session (`browser.rs`).

mod actions;
mod browser;
mod common;
mod lanes;
mod pages;
mod schedules;
mod security;
