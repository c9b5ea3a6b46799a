//! Bearer-token authentication: RS256 JWTs verified against configured public keys.

use crate::error::ApiError;
use crate::router::AppState;
use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vrs_domain::UserId;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

/// What an access token must carry.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    /// The user's UUID.
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    /// When present, must be `access` (refresh or ID tokens are refused).
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

impl Claims {
    /// Whether the token grants the admin role (`role: admin` or `roles` containing `admin`).
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
            || self
                .roles
                .as_ref()
                .is_some_and(|r| r.iter().any(|r| r == "admin"))
    }
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm must be RS256")]
    WrongAlgorithm,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token is not an access token")]
    NotAccessToken,
    #[error("token subject must be a user UUID")]
    BadSubject,
}

/// A public key and the `kid` that selects it.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Verification settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub keys: Vec<VerifyingKey>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl AuthConfig {
    /// Parses PEM public keys (`SubjectPublicKeyInfo` or PKCS#1), each with an optional `kid`.
    pub fn from_pems<'a>(
        pems: impl IntoIterator<Item = (Option<String>, &'a [u8])>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, String> {
        let keys = pems
            .into_iter()
            .map(|(kid, pem)| {
                DecodingKey::from_rsa_pem(pem)
                    .map(|key| VerifyingKey {
                        kid: kid.clone(),
                        key,
                    })
                    .map_err(|e| {
                        format!("public key {}: {e}", kid.as_deref().unwrap_or("(no kid)"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no public key configured".into());
        }
        Ok(Self {
            keys,
            issuer,
            audience,
        })
    }
}

/// Verifies access tokens.
pub struct Authenticator {
    keys: Vec<VerifyingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "keys",
                &self.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        // Only RS256: `none`, HS* (key confusion with a public key as HMAC secret) and every other
        // algorithm are refused before any signature check.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // jsonwebtoken only compares `iss`/`aud` when the token carries them: a configured one must
        // also be required, or a token simply leaving it out would pass.
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self {
            keys: config.keys,
            validation,
        }
    }

    /// Verifies a token and returns the user it was issued to, with its claims.
    pub fn verify(&self, token: &str) -> Result<(UserId, Claims), AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let candidates: Vec<&VerifyingKey> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut last = AuthError::UnknownKey;
        for key in candidates {
            match decode::<Claims>(token, &key.key, &self.validation) {
                Ok(data) => return Self::check_claims(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                        ErrorKind::ExpiredSignature => AuthError::Invalid("token expired".into()),
                        ErrorKind::ImmatureSignature => {
                            AuthError::Invalid("token not yet valid".into())
                        }
                        ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                        ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                        ErrorKind::MissingRequiredClaim(c) => {
                            AuthError::Invalid(format!("missing claim `{c}`"))
                        }
                        _ => AuthError::Invalid("token could not be verified".into()),
                    };
                    // Only a bad signature is worth trying the next key for.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn check_claims(claims: Claims) -> Result<(UserId, Claims), AuthError> {
        // The claim is required: a token that does not say it is an access token (an ID token
        // of the same issuer, say) is not taken for one.
        if claims.token_type.as_deref() != Some("access") {
            return Err(AuthError::NotAccessToken);
        }
        let user = Uuid::parse_str(&claims.sub)
            .map(UserId)
            .map_err(|_| AuthError::BadSubject)?;
        Ok((user, claims))
    }
}

/// Per-user request rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// A keyed token-bucket limiter (governor).
pub struct UserRateLimiter(DefaultKeyedRateLimiter<UserId>);

impl std::fmt::Debug for UserRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRateLimiter")
            .field("users", &self.0.len())
            .finish()
    }
}

impl UserRateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self(RateLimiter::keyed(
            Quota::per_second(limit.per_second).allow_burst(limit.burst),
        ))
    }

    pub fn check(&self, user: &UserId) -> bool {
        self.0.check_key(user).is_ok()
    }

    /// Takes `n` units (e.g. the events of a batch) at once; false when they are not available.
    pub fn check_n(&self, user: &UserId, n: usize) -> bool {
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return true;
        };
        matches!(self.0.check_key_n(user, n), Ok(Ok(())))
    }

    /// Forgets users whose bucket is full again, bounding memory.
    pub fn retain_recent(&self) {
        self.0.retain_recent();
    }
}

/// Failed authentications allowed per client IP, in front of the (costly) RS256 verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailureLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Where a trusted proxy in front of the service puts the client's address (e.g.
    /// `x-forwarded-for`; its rightmost entry is used, the one the proxy appended). Without it,
    /// the peer address of the connection is the client.
    pub client_ip_header: Option<HeaderName>,
}

/// Counts failed authentications per client IP (a governor token bucket). An address whose
/// failure finds its bucket empty (after `burst` failures in a row, then `per_second`) is refused
/// before any signature is verified until the bucket allows one more attempt, so a flood of
/// forged tokens costs a table lookup, not an RS256 verification. While blocked, the address's
/// valid tokens are refused too (429 with `Retry-After`): telling them apart is the cost the
/// limit exists to avoid.
pub struct AuthFailureLimiter {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    clock: governor::clock::DefaultClock,
    /// Addresses refused until the instant they map to.
    blocked: moka::sync::Cache<IpAddr, Instant>,
    client_ip_header: Option<HeaderName>,
}

/// Counter of requests refused because their client IP failed authentication too often.
pub const AUTH_BLOCKED_METRIC: &str = "http_auth_failures_blocked_total";

impl std::fmt::Debug for AuthFailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFailureLimiter")
            .field("addresses", &self.failures.len())
            .field("blocked", &self.blocked.entry_count())
            .finish()
    }
}

impl AuthFailureLimiter {
    /// At most this many addresses are remembered as blocked (the oldest are forgotten first).
    const MAX_BLOCKED: u64 = 100_000;

    pub fn new(limit: AuthFailureLimit) -> Self {
        metrics::counter!(AUTH_BLOCKED_METRIC).increment(0);
        let clock = governor::clock::DefaultClock::default();
        Self {
            failures: RateLimiter::dashmap_with_clock(
                Quota::per_second(limit.per_second).allow_burst(limit.burst),
                clock.clone(),
            ),
            clock,
            blocked: moka::sync::Cache::builder()
                .max_capacity(Self::MAX_BLOCKED)
                .time_to_live(Duration::from_secs(60))
                .build(),
            client_ip_header: limit.client_ip_header,
        }
    }

    /// The client's address: the last entry of the configured proxy header (the one the proxy
    /// appended; entries before it are whatever the client sent), else the connection's peer.
    /// IPv6 addresses count per /64, the block one subscriber gets.
    pub fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let forwarded = self.client_ip_header.as_ref().and_then(|name| {
            let last = parts.headers.get_all(name).iter().next_back()?;
            let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
            entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        });
        let ip = forwarded.or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })?;
        Some(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(v6) & !((1u128 << 64) - 1),
                )),
            },
            v4 => v4,
        })
    }

    /// Seconds until `ip` may try again, when it is blocked now.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let until = self.blocked.get(&ip)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    /// Records a failed authentication from `ip`; blocks it once its failures run out.
    pub fn record_failure(&self, ip: IpAddr) {
        if let Err(not_until) = self.failures.check_key(&ip) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
            self.blocked.insert(ip, Instant::now() + wait);
        }
    }

    /// Forgets addresses whose bucket is full again, bounding memory.
    pub fn retain_recent(&self) {
        self.failures.retain_recent();
        self.blocked.run_pending_tasks();
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user_id: UserId,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let limiter = state.auth_failures.as_deref();
        let client_ip = limiter.and_then(|l| Some((l, l.client_ip(parts)?)));
        if let Some((limiter, ip)) = client_ip
            && let Some(wait) = limiter.blocked_for(ip)
        {
            metrics::counter!(AUTH_BLOCKED_METRIC).increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_auth_failures",
                "too many failed authentications from this address; retry later",
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        let fail = |e: ApiError| {
            if let Some((limiter, ip)) = client_ip {
                limiter.record_failure(ip);
            }
            e
        };
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| fail(ApiError::unauthorized(AuthError::Missing.to_string())))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                fail(ApiError::unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))
            })?;
        let (user_id, claims) = state
            .auth
            .verify(token)
            .map_err(|e| fail(ApiError::unauthorized(e.to_string())))?;
        if let Some(limiter) = &state.rate_limiter
            && !limiter.check(&user_id)
        {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this user; slow down",
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        Ok(Self { user_id, claims })
    }
}

/// An authenticated caller with the admin role.
#[derive(Clone, Debug)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.claims.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs the admin role",
            ));
        }
        Ok(Self(user))
    }
}
