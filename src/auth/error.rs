//! Why a request is not authenticated: the 401 reasons, their metric
//! labels and the details clients are told (never the token).

use super::{jwt, AUTHORIZATION_BYTES_MAX, TOKEN_BODY_CHARS, TOKEN_PREFIX};

/// Why a request is not authenticated (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    NotBearer,
    /// Longer than [`AUTHORIZATION_BYTES_MAX`] (or [`jwt::JWT_BYTES_MAX`]).
    Oversized,
    /// Not the shape of a Stele key.
    Malformed,
    /// Well formed, but no configured key has its hash.
    Unknown,
    /// A JWT, and this server accepts none (no `[auth.jwt]`).
    JwtNotAccepted,
    /// A JWT whose parts do not decode.
    JwtMalformed,
    /// `alg: none`.
    JwtAlgNone,
    /// An algorithm no configured key is for.
    JwtAlgorithm,
    /// A `kid` no configured key has.
    JwtUnknownKid,
    /// The signature does not verify.
    JwtSignature,
    /// `exp` has passed.
    JwtExpired,
    /// `nbf` is still ahead.
    JwtNotYetValid,
    /// `aud` is not a configured audience.
    JwtAudience,
    /// `iss` is not a configured issuer.
    JwtIssuer,
    /// A claim is missing or unusable (what is wrong).
    JwtClaim(&'static str),
    /// The configured key material could not be read (at a reload that
    /// bypassed validation): every JWT is refused until it can.
    JwtKeysUnavailable,
}

/// Every label value of `stele_auth_failures_total{reason}`, in the order
/// of [`AuthError::reason_index`].
pub const AUTH_FAILURE_REASONS: [&str; 15] = [
    "missing",
    "not_bearer",
    "oversized",
    "malformed",
    "unknown",
    "jwt_malformed",
    "jwt_algorithm",
    "jwt_unknown_kid",
    "jwt_signature",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_audience",
    "jwt_issuer",
    "jwt_claims",
    "jwt_keys_unavailable",
];

impl AuthError {
    /// A metrics label.
    pub fn reason(self) -> &'static str {
        AUTH_FAILURE_REASONS[self.reason_index()]
    }

    /// The index of its label in [`AUTH_FAILURE_REASONS`].
    pub fn reason_index(self) -> usize {
        match self {
            AuthError::Missing => 0,
            AuthError::NotBearer => 1,
            AuthError::Oversized => 2,
            AuthError::Malformed => 3,
            AuthError::Unknown => 4,
            AuthError::JwtNotAccepted | AuthError::JwtMalformed => 5,
            AuthError::JwtAlgNone | AuthError::JwtAlgorithm => 6,
            AuthError::JwtUnknownKid => 7,
            AuthError::JwtSignature => 8,
            AuthError::JwtExpired => 9,
            AuthError::JwtNotYetValid => 10,
            AuthError::JwtAudience => 11,
            AuthError::JwtIssuer => 12,
            AuthError::JwtClaim(_) => 13,
            AuthError::JwtKeysUnavailable => 14,
        }
    }

    /// What the client is told (never the token).
    pub fn detail(self) -> String {
        match self {
            AuthError::Missing => {
                "this route needs an API key: send `Authorization: Bearer <key>`".into()
            }
            AuthError::NotBearer => {
                "the Authorization header must be `Bearer <key>` (no other scheme is accepted)"
                    .into()
            }
            AuthError::Oversized => format!(
                "the Authorization header is longer than {AUTHORIZATION_BYTES_MAX} bytes (API \
                 keys) or {} bytes (JWTs)",
                jwt::JWT_BYTES_MAX
            ),
            AuthError::Malformed => format!(
                "not a Stele API key: keys are `{TOKEN_PREFIX}` followed by {TOKEN_BODY_CHARS} \
                 base64url characters (make one with `stele keygen`)"
            ),
            AuthError::Unknown => {
                "the API key is not configured (revoked, or never added): ask an operator".into()
            }
            AuthError::JwtNotAccepted => {
                "the token is a JWT and this server accepts API keys only (no [auth.jwt])".into()
            }
            AuthError::JwtMalformed => {
                "malformed JWT: its header, claims or signature do not decode".into()
            }
            AuthError::JwtAlgNone => "the JWT is unsigned (alg \"none\"): never accepted".into(),
            AuthError::JwtAlgorithm => {
                "the JWT's algorithm (alg) is not one this server has a key for".into()
            }
            AuthError::JwtUnknownKid => {
                "the JWT names a key id (kid) this server does not know".into()
            }
            AuthError::JwtSignature => {
                "the JWT's signature does not verify (wrong key, or altered token)".into()
            }
            AuthError::JwtExpired => "the JWT has expired (exp)".into(),
            AuthError::JwtNotYetValid => "the JWT is not valid yet (nbf)".into(),
            AuthError::JwtAudience => {
                "the JWT is for another audience (aud): not this server".into()
            }
            AuthError::JwtIssuer => {
                "the JWT is from an issuer (iss) this server does not accept".into()
            }
            AuthError::JwtClaim(what) => format!("the JWT was refused: {what}"),
            AuthError::JwtKeysUnavailable => {
                "JWTs cannot be verified now: the server could not read its JWT keys (its log \
                 says why); API keys still work"
                    .into()
            }
        }
    }
}
