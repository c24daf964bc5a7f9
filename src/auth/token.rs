//! Access and refresh tokens: jwt-simple HS256 with the claims of SPEC §4.

use jwt_simple::prelude::{Claims, Duration, HS256Key, MACLike, VerificationOptions};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// Our claims beside the registered ones (`sub`, `exp`, `iat`, `nbf`, `jti`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    pub user_id: String,
    pub username: String,
    pub organization_id: String,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    /// The login session this token belongs to.
    pub sid: String,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: TokenClaims,
    pub jti: String,
}

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

pub struct Tokens {
    key: HS256Key,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

/// Who a token is issued to.
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub organization_id: &'a str,
}

impl Tokens {
    pub fn new(secret: &[u8], access_ttl_minutes: u64, refresh_ttl_days: u64) -> Tokens {
        Tokens {
            key: HS256Key::from_bytes(secret),
            access_ttl: Duration::from_mins(access_ttl_minutes),
            refresh_ttl: Duration::from_days(refresh_ttl_days),
        }
    }

    pub fn access_ttl_seconds(&self) -> u64 {
        self.access_ttl.as_secs()
    }

    pub fn refresh_ttl_seconds(&self) -> u64 {
        self.refresh_ttl.as_secs()
    }

    /// Signs an access token and a refresh token (whose id is `refresh_jti`) for session `sid`.
    pub fn issue(&self, who: &Subject<'_>, sid: &str, refresh_jti: &str) -> ApiResult<TokenPair> {
        let access = self.sign(who, sid, TokenType::Access, &uuid::Uuid::new_v4().to_string(), self.access_ttl)?;
        let refresh = self.sign(who, sid, TokenType::Refresh, refresh_jti, self.refresh_ttl)?;
        Ok(TokenPair { access_token: access, refresh_token: refresh, expires_in: self.access_ttl_seconds() })
    }

    fn sign(&self, who: &Subject<'_>, sid: &str, token_type: TokenType, jti: &str, ttl: Duration) -> ApiResult<String> {
        let custom = TokenClaims {
            user_id: who.user_id.to_string(),
            username: who.username.to_string(),
            organization_id: who.organization_id.to_string(),
            token_type,
            sid: sid.to_string(),
        };
        let claims = Claims::with_custom_claims(custom, ttl).with_subject(who.user_id).with_jwt_id(jti);
        self.key.authenticate(claims).map_err(ApiError::internal)
    }

    /// Checks signature, expiry and type; any failure is a 401.
    pub fn verify(&self, token: &str, expected: TokenType) -> ApiResult<Verified> {
        let options = VerificationOptions { time_tolerance: Some(Duration::from_secs(0)), ..Default::default() };
        let claims = self
            .key
            .verify_token::<TokenClaims>(token, Some(options))
            .map_err(|_| ApiError::unauthorized("Invalid or expired token"))?;
        // jwt-simple accepts a token without `exp` as one that never expires; we never issue one
        if claims.expires_at.is_none() {
            return Err(ApiError::unauthorized("Invalid or expired token"));
        }
        if claims.custom.token_type != expected {
            return Err(ApiError::unauthorized(match expected {
                TokenType::Access => "An access token is required",
                TokenType::Refresh => "A refresh token is required",
            }));
        }
        let jti = claims.jwt_id.ok_or_else(|| ApiError::unauthorized("Invalid or expired token"))?;
        if claims.subject.as_deref() != Some(claims.custom.user_id.as_str()) {
            return Err(ApiError::unauthorized("Invalid or expired token"));
        }
        Ok(Verified { claims: claims.custom, jti })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(b"0123456789abcdef0123456789abcdef", 30, 7)
    }

    const WHO: Subject<'static> = Subject { user_id: "u1", username: "alice", organization_id: "o1" };

    #[test]
    fn access_and_refresh_are_not_interchangeable() {
        let t = tokens();
        let pair = t.issue(&WHO, "s1", "r1").unwrap();
        let v = t.verify(&pair.access_token, TokenType::Access).unwrap();
        assert_eq!((v.claims.user_id.as_str(), v.claims.sid.as_str()), ("u1", "s1"));
        assert_eq!(t.verify(&pair.refresh_token, TokenType::Refresh).unwrap().jti, "r1");
        assert!(t.verify(&pair.access_token, TokenType::Refresh).is_err());
        assert!(t.verify(&pair.refresh_token, TokenType::Access).is_err());
        assert_eq!(pair.expires_in, 1800);
    }

    #[test]
    fn other_key_and_tampering_are_rejected() {
        let pair = tokens().issue(&WHO, "s1", "r1").unwrap();
        let other = Tokens::new(b"another-secret-another-secret-xx", 30, 7);
        assert!(other.verify(&pair.access_token, TokenType::Access).is_err());
        let mut tampered = pair.access_token.clone();
        tampered.pop();
        tampered.push('A');
        assert!(tokens().verify(&tampered, TokenType::Access).is_err() || tampered == pair.access_token);
    }
}
