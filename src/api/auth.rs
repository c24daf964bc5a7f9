//! `/auth`: register, login (JSON or OAuth2 form), refresh with rotation, me, change-password,
//! logout.

use crate::validate::Text;
use poem_openapi::{
    ApiRequest, Object, OpenApi,
    payload::{Form, Json},
};
use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    AppState,
    api::{ApiTags, Created, MessageResponse, users::User},
    auth::{
        BearerAuth,
        token::{Subject, TokenPair, TokenType},
    },
    authz,
    db::{format_ts, new_id, now},
    error::{ApiError, ApiResult},
    middleware::client_of,
    model::audit::{Actor, Client},
    store::{
        self,
        audit::Event,
        auth::{Attempt, Rotation},
        conn::Conn,
    },
    validate::{self, Email, Password, Username},
};

#[derive(Object, Debug)]
pub struct RegisterRequest {
    /// 3..=50 of `[A-Za-z0-9_.-]`
    pub username: Text,
    pub email: Text,
    /// 8..=128 characters
    #[oai(write_only)]
    pub password: Text,
    pub full_name: Option<Text>,
}

#[derive(Object, Debug, Deserialize)]
pub struct LoginBody {
    /// Username or e-mail address
    pub username: Text,
    #[oai(write_only)]
    pub password: Text,
}

/// JSON, or the OAuth2 password-flow form (`grant_type=password&username=…&password=…`).
#[derive(ApiRequest, Debug)]
pub enum LoginRequest {
    Json(Json<LoginBody>),
    Form(Form<LoginBody>),
}

#[derive(Object, Debug)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`
    pub token_type: String,
    /// Seconds until the access token expires
    pub expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        TokenResponse {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: "bearer".into(),
            expires_in: p.expires_in,
        }
    }
}

#[derive(Object, Debug)]
pub struct RefreshRequest {
    pub refresh_token: Text,
}

#[derive(Object, Debug)]
pub struct ChangePasswordRequest {
    #[oai(write_only)]
    pub current_password: Text,
    /// 8..=128 characters
    #[oai(write_only)]
    pub new_password: Text,
}

#[derive(Object, Debug, Clone)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

/// The signed-in user with their role and effective permissions.
#[derive(Object, Debug)]
pub struct Me {
    #[oai(flatten)]
    pub user: User,
    pub role: Option<RoleRef>,
    /// Permission names; a superuser has all 13
    pub permissions: Vec<String>,
}

/// The failed-login lockout of `[auth]`: `max` failures per account within `window`.
struct Lockout {
    max: u32,
    window: time::Duration,
}

impl Lockout {
    fn new(cfg: &crate::config::AuthConfig) -> Lockout {
        Lockout { max: cfg.max_failed_logins, window: time::Duration::minutes(cfg.lockout_minutes as i64) }
    }

    /// Where the window that counts at `now` begins.
    fn since(&self, now: OffsetDateTime) -> String {
        format_ts(now - self.window)
    }

    /// The 429 for a locked account whose oldest counted failure happened at `oldest`.
    fn locked(&self, oldest: Option<String>, now: OffsetDateTime) -> ApiError {
        let retry_after = oldest
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
            .map(|t| (t + self.window - now).whole_seconds().max(1) as u64)
            .unwrap_or(self.window.whole_seconds() as u64);
        ApiError::too_many_requests(
            format!("Too many failed login attempts; try again in {retry_after} seconds"),
            retry_after,
        )
    }
}

pub struct AuthApi {
    pub state: AppState,
}

impl AuthApi {
    fn client(&self, req: &poem::Request) -> Client {
        client_of(req, &self.state.config.server.trusted_proxies)
    }
}

const BAD_CREDENTIALS: &str = "Incorrect username or password";
const BAD: &str = "incorrect username or password";
const LOCKED: &str = "too many failed attempts";

/// Records a failed, locked or refused login: nobody is its actor, the account (organization and
/// user id, when the name matched one) its target.
fn login_failure(
    c: &mut Conn,
    client: &Client,
    action: &'static str,
    who: Option<(&str, &str)>,
    username: &str,
    reason: &str,
) -> ApiResult<i64> {
    let event = Event {
        action,
        organization_id: who.map(|w| w.0),
        target_type: "user",
        target_id: who.map(|w| w.1),
        changes: Some(serde_json::json!({"username": username, "reason": reason})),
    };
    Ok(store::audit::record(c, &Actor { client: client.clone(), ..Actor::default() }, &event)?)
}

#[OpenApi(prefix_path = "/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Register
    ///
    /// Creates a user in the `Default` organization with the `member` role. 403 when
    /// registration is turned off.
    #[oai(path = "/register", method = "post")]
    async fn register(&self, req: &poem::Request, body: Json<RegisterRequest>) -> ApiResult<Created<User>> {
        let client = self.client(req);
        if !self.state.config.auth.allow_registration {
            return Err(ApiError::forbidden("Registration is disabled"));
        }
        let username = Username::parse(&body.username)?.into_inner();
        let email = Email::parse(&body.email)?.into_inner();
        let password = Password::parse("password", &body.password)?.into_inner();
        let full_name = validate::optional_text("full_name", body.0.full_name, validate::NAME_MAX)?;
        let password_hash = self.state.passwords.hash(password).await?;
        let user = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                let org = store::bootstrap::registration_org_id(c)?
                    .ok_or_else(|| ApiError::internal("the registration organization is missing"))?;
                let role_id = store::users::role_id_by_name(c, &org, "member")?;
                let user = store::users::insert_user(
                    c,
                    &store::users::NewUser {
                        id: new_id(),
                        organization_id: org,
                        role_id,
                        username,
                        email,
                        full_name,
                        password_hash,
                        is_superuser: false,
                        now: now(),
                    },
                )?;
                let actor = Actor { user_id: Some(user.id.clone()), api_key_id: None, client };
                let changes = serde_json::json!({"username": user.username, "email": user.email});
                let event = Event::new("auth.register", &user.organization_id, "user", &user.id).changes(Some(changes));
                store::audit::record(c, &actor, &event)?;
                Ok(user)
            })
            .await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(Created::Created(Json(user)))
    }

    /// Log in
    ///
    /// With a username or e-mail and a password; JSON or an OAuth2 password-flow form. After
    /// too many failures for one account it answers 429 until the lockout window passes.
    #[oai(path = "/login", method = "post")]
    async fn login(&self, req: &poem::Request, body: LoginRequest) -> ApiResult<Json<TokenResponse>> {
        let client = self.client(req);
        let body = match body {
            LoginRequest::Json(Json(b)) => b,
            LoginRequest::Form(Form(b)) => b,
        };
        let login = body.username.trim().to_string();
        if login.is_empty() || body.password.is_empty() {
            return Err(ApiError::bad_request("username and password are required"));
        }
        if login.chars().count() > validate::NAME_MAX {
            return Err(ApiError::bad_request(format!("username must be at most {} characters", validate::NAME_MAX)));
        }
        let lockout = Lockout::new(&self.state.config.auth);
        let now_t = OffsetDateTime::now_utc();
        let (now_s, since) = (format_ts(now_t), lockout.since(now_t));
        let max = lockout.max;
        let lookup = login.clone();
        let (candidate, attempt) = {
            let client = client.clone();
            self.state
                .store
                .write(move |c| -> ApiResult<_> {
                    let candidate = store::auth::find_login_candidate(c, &lookup)?;
                    let key = match &candidate {
                        Some(u) => u.id.clone(),
                        None => format!("login:{}", lookup.to_lowercase()),
                    };
                    let attempt = store::auth::reserve_attempt(c, &key, &now_s, &since, max)?;
                    let who = candidate.as_ref().map(|u| (u.organization_id.as_str(), u.id.as_str()));
                    // logged as failed with the reserved attempt; replaced if the password is right
                    let event = match attempt {
                        Attempt::Locked(_) => login_failure(c, &client, "auth.login_locked", who, &lookup, LOCKED)?,
                        Attempt::Reserved(_) => login_failure(c, &client, "auth.login_failed", who, &lookup, BAD)?,
                    };
                    Ok((candidate, (attempt, event)))
                })
                .await?
        };
        let (attempt, failure_event) = attempt;
        let attempt = match attempt {
            Attempt::Reserved(a) => a,
            Attempt::Locked(oldest) => return Err(lockout.locked(oldest, now_t)),
        };

        let ok = self
            .state
            .passwords
            .verify(body.password.into(), candidate.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        // a wrong password keeps the reserved attempt as its failure
        let user = match candidate {
            Some(user) if ok => user,
            _ => return Err(ApiError::unauthorized(BAD_CREDENTIALS)),
        };
        if !user.is_active || !user.org_is_active {
            let reason =
                if user.is_active { "Your organization is deactivated" } else { "User account is deactivated" };
            let (client, login) = (client.clone(), login.clone());
            self.state
                .store
                .write(move |c| {
                    store::auth::forget_attempt(c, &user.id, attempt)?;
                    store::audit::retract(c, failure_event)?;
                    let who = Some((user.organization_id.as_str(), user.id.as_str()));
                    login_failure(c, &client, "auth.login_failed", who, &login, reason).map(drop)
                })
                .await?;
            return Err(ApiError::forbidden(reason));
        }

        let sid = new_id();
        let refresh_jti = uuid::Uuid::new_v4().to_string();
        let expires_at = format_ts(now_t + time::Duration::seconds(self.state.tokens.refresh_ttl_seconds() as i64));
        let pair = self.state.tokens.issue(
            &Subject { user_id: &user.id, username: &user.username, organization_id: &user.organization_id },
            &sid,
            &refresh_jti,
        )?;
        let (user_id, org_id) = (user.id.clone(), user.organization_id.clone());
        self.state
            .store
            .write(move |c| {
                store::auth::clear_failures(c, &user_id)?;
                store::auth::create_session(c, &sid, &user_id, &refresh_jti, &now(), &expires_at)?;
                store::audit::retract(c, failure_event)?;
                let actor = Actor { user_id: Some(user_id.clone()), api_key_id: None, client };
                store::audit::record(c, &actor, &Event::new("auth.login", &org_id, "session", &sid)).map(drop)
            })
            .await?;
        tracing::info!(user_id = %user.id, "login");
        Ok(Json(pair.into()))
    }

    /// Refresh tokens
    ///
    /// Exchanges a refresh token for a new pair. Each refresh token works once; presenting a
    /// used one revokes the whole login session.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(&self, req: &poem::Request, body: Json<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
        let client = self.client(req);
        let verified = self.state.tokens.verify(body.refresh_token.trim(), TokenType::Refresh)?;
        let claims = verified.claims;
        let new_jti = uuid::Uuid::new_v4().to_string();
        let (sid, jti) = (claims.sid.clone(), new_jti.clone());
        let outcome = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                let now = now();
                let user = store::auth::candidate_by_id(c, &claims.user_id)?;
                match user {
                    Some(u) if u.is_active && u.org_is_active => {
                        let rotation = store::auth::rotate_refresh(c, &sid, &u.id, &verified.jti, &jti, &now)?;
                        let action = match rotation {
                            Rotation::Rotated => Some("auth.refresh"),
                            Rotation::Reused => Some("auth.refresh_reuse"),
                            Rotation::Dead => None,
                        };
                        if let Some(action) = action {
                            let actor = Actor { user_id: Some(u.id.clone()), api_key_id: None, client };
                            store::audit::record(c, &actor, &Event::new(action, &u.organization_id, "session", &sid))?;
                        }
                        Ok((rotation, Some(u)))
                    }
                    _ => {
                        store::auth::revoke_session(c, &sid, "user deactivated", &now)?;
                        Ok((Rotation::Dead, None))
                    }
                }
            })
            .await?;
        match outcome {
            (Rotation::Rotated, Some(u)) => {
                let pair = self.state.tokens.issue(
                    &Subject { user_id: &u.id, username: &u.username, organization_id: &u.organization_id },
                    &claims.sid,
                    &new_jti,
                )?;
                Ok(Json(pair.into()))
            }
            (Rotation::Reused, _) => {
                tracing::warn!(session = %claims.sid, "refresh token reused; session revoked");
                Err(ApiError::unauthorized("Refresh token already used; the session has been revoked"))
            }
            _ => Err(ApiError::unauthorized("Session expired or revoked")),
        }
    }

    /// Current user
    ///
    /// The signed-in user with their role and permissions.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: BearerAuth) -> ApiResult<Json<Me>> {
        // the Bearer check has just read the whole user row with its role: no second statement
        let me = auth.0;
        let role = match (&me.role_id, &me.role_name) {
            (Some(id), Some(name)) => Some(RoleRef { id: id.clone(), name: name.clone() }),
            _ => None,
        };
        let permissions = me.effective_permissions();
        let user = User {
            id: me.id,
            username: me.username,
            email: me.email,
            full_name: me.full_name,
            organization_id: me.organization_id,
            role_id: me.role_id,
            is_active: true,
            is_superuser: me.is_superuser,
            created_at: me.created_at,
            updated_at: me.updated_at,
        };
        Ok(Json(Me { user, role, permissions }))
    }

    /// Change password
    ///
    /// Needs the current password. Every other session of the user is revoked.
    #[oai(path = "/change-password", method = "post")]
    async fn change_password(
        &self,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> ApiResult<Json<MessageResponse>> {
        let me = auth.0;
        authz::require_login(&me)?;
        let new_password = Password::parse("new_password", &body.new_password)?.into_inner();
        // a wrong current password is a failed login of this account (SPEC §4)
        let lockout = Lockout::new(&self.state.config.auth);
        let now_t = OffsetDateTime::now_utc();
        let (now_s, since, max) = (format_ts(now_t), lockout.since(now_t), lockout.max);
        let (uid, actor, org) = (me.id.clone(), me.actor(), me.organization_id.clone());
        let (current, attempt, failure_event) = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                let hash = store::auth::candidate_by_id(c, &uid)?.map(|u| u.password_hash);
                let attempt = store::auth::reserve_attempt(c, &uid, &now_s, &since, max)?;
                // counted and logged as a failure now; taken back below if the password is right
                let (action, reason) = match attempt {
                    Attempt::Locked(_) => ("auth.login_locked", LOCKED),
                    Attempt::Reserved(_) => ("auth.login_failed", "incorrect current password"),
                };
                let event = Event::new(action, &org, "user", &uid)
                    .changes(Some(serde_json::json!({"reason": reason, "during": "password change"})));
                Ok((hash, attempt, store::audit::record(c, &actor, &event)?))
            })
            .await?;
        let attempt = match attempt {
            Attempt::Reserved(a) => a,
            Attempt::Locked(oldest) => return Err(lockout.locked(oldest, now_t)),
        };
        if !self.state.passwords.verify(body.0.current_password.into(), current).await? {
            return Err(ApiError::bad_request("Current password is incorrect"));
        }
        let hash = self.state.passwords.hash(new_password).await?;
        self.state
            .store
            .write(move |c| {
                let now = now();
                store::auth::forget_attempt(c, &me.id, attempt)?;
                store::audit::retract(c, failure_event)?;
                store::users::set_password_hash(c, &me.id, &hash, &now)?;
                store::auth::revoke_user_sessions(c, &me.id, Some(&me.session_id), "password changed", &now)?;
                let event = Event::new("auth.password_change", &me.organization_id, "user", &me.id);
                store::audit::record(c, &me.actor(), &event).map(drop)
            })
            .await?;
        Ok(MessageResponse::new("Password changed; other sessions have been signed out"))
    }

    /// Log out
    ///
    /// The presented access token and its session's refresh token stop working at once.
    #[oai(path = "/logout", method = "post")]
    async fn logout(&self, auth: BearerAuth) -> ApiResult<Json<MessageResponse>> {
        let me = auth.0;
        authz::require_login(&me)?;
        self.state
            .store
            .write(move |c| {
                store::auth::revoke_session(c, &me.session_id, "logout", &now())?;
                let event = Event::new("auth.logout", &me.organization_id, "session", &me.session_id);
                store::audit::record(c, &me.actor(), &event).map(drop)
            })
            .await?;
        Ok(MessageResponse::new("Logged out"))
    }
}
