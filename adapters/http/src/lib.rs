//! The REST API of the video ranking service (axum).
//!
//! Transport types live here and convert into the application's requests; application errors map
//! to HTTP statuses in one place ([`error`]). Every non-2xx response carries a JSON error body.

mod admin;
pub mod auth;
pub mod cursor;
pub mod dto;
pub mod error;
mod events;
pub mod experiments;
mod health;
pub mod metrics;
mod openapi;
mod reels;
pub mod router;
mod trace;

pub use auth::{AuthConfig, AuthError, Authenticator, Claims, RateLimit};
pub use cursor::{CursorCodec, CursorError};
pub use openapi::ApiDoc;
pub use router::{AppState, HttpConfig, router};
