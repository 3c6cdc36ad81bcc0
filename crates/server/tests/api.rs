//! End-to-end tests of the HTTP server, each on SQLite and on PostgreSQL;
//! one module per area, every server started by [`harness`].

use commonlab_core::auth::Role;
use commonlab_server::{Clock, Config};
use commonlab_store::testing::{both_backends, TestDb};
use harness::*;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod auth;
mod console;
mod events;
mod flags;
mod harness;
mod http;
mod observe;
mod ofrep;
mod openapi;
mod privacy;
mod surveys;
mod trials;
