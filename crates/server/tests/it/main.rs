//! One integration-test binary: every test drives the real HTTP server on port 0 over a fresh SQLite file.

mod api;
mod engine;
mod helpers;
mod leads;
mod restart;
