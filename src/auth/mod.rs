//! Authentication: passwords, tokens, and the Bearer scheme that turns an access token into the
//! current user, loaded from the database on every request. Imports `authz`, `store`, `db` and
//! `model`; never `api`, `llm` or `knowledge`.

pub mod api_key;
pub mod password;
pub mod token;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{AppState, authz::CurrentUser, error::ApiError, middleware, store};

/// `Authorization: Bearer <access token>`. In the docs UI it authorizes through the login
/// endpoint (OAuth2 password flow).
#[derive(SecurityScheme)]
#[oai(ty = "oauth2", flows(password(token_url = "/api/v1/auth/login")), checker = "authenticate")]
pub struct BearerAuth(pub CurrentUser);

/// The caller, then `[limits] requests_per_minute` counted for them (per key or per user).
async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<CurrentUser> {
    let state = req.data::<AppState>().ok_or_else(|| ApiError::internal("application state missing"))?;
    let mut user = match bearer.token.trim().strip_prefix(api_key::PREFIX) {
        Some(key) => api_key::authenticate(state, key).await?,
        None => {
            let verified = state.tokens.verify(bearer.token.trim(), token::TokenType::Access)?;
            let claims = verified.claims;
            state
                .store
                .lookup(move |c| store::auth::current_user(c, &claims.sid, &claims.user_id))
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| ApiError::unauthorized("Session revoked or user deactivated"))?
        }
    };
    state.rate_limits.check_caller(&user).await?;
    user.client = middleware::client_of(req, &state.config.server.trusted_proxies);
    Ok(user)
}
