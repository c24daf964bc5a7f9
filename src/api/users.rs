//! Users: the user object (shared with auth) and the `/users` endpoints.

use crate::validate::Text;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};

pub use crate::model::users::User;
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted, changes_with_password},
    auth::BearerAuth,
    authz::{self, Permission, Scope, Standing, UserFields},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        audit::Event,
        conn::Conn,
        users::{NewUser, UserChanges, UserFilter},
    },
    validate::{self, Email, Password, Username},
};

#[derive(Object, Debug)]
pub struct CreateUserRequest {
    /// 3..=50 of `[A-Za-z0-9_.-]`, unique regardless of letter case
    pub username: Text,
    /// Unique regardless of letter case
    pub email: Text,
    /// 8..=128 characters
    #[oai(write_only)]
    pub password: Text,
    #[oai(skip_serializing_if_is_none)]
    pub full_name: Option<Text>,
    /// A role of the user's organization; default: its `member` role
    #[oai(skip_serializing_if_is_none)]
    pub role_id: Option<Text>,
    /// Superusers only; default: the caller's organization
    #[oai(skip_serializing_if_is_none)]
    pub organization_id: Option<Text>,
    /// Superusers only
    #[oai(skip_serializing_if_is_none)]
    pub is_superuser: Option<bool>,
}

/// Fields left out stay as they are; a field the caller may not change is a 403.
#[derive(Object, Debug)]
pub struct UpdateUserRequest {
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<Text>,
    /// `null` clears it
    pub full_name: MaybeUndefined<Text>,
    /// Needs `users:write`; `false` signs the user out everywhere
    #[oai(skip_serializing_if_is_none)]
    pub is_active: Option<bool>,
    /// Needs `users:write`; 8..=128 characters. Signs the user's other sessions out
    #[oai(write_only)]
    #[oai(skip_serializing_if_is_none)]
    pub password: Option<Text>,
    /// Superusers only
    #[oai(skip_serializing_if_is_none)]
    pub is_superuser: Option<bool>,
}

#[derive(Object, Debug)]
pub struct UserRoleRequest {
    /// A role of the user's organization
    pub role_id: Text,
}

/// The filters shared by `GET /users` and `GET /organizations/{id}/members`.
pub(crate) fn user_filter(search: Option<String>, is_active: Option<bool>, role_id: Option<String>) -> UserFilter {
    UserFilter {
        search: search_term(search),
        is_active: is_active.unwrap_or(true),
        role_id: validate::filter_id(role_id),
    }
}

/// What a request sets, as the field rules of `authz` see it.
impl CreateUserRequest {
    fn fields(&self) -> UserFields {
        UserFields {
            organization: self.organization_id.is_some(),
            is_superuser: self.is_superuser,
            is_active: None,
            email: true,
            password: true,
        }
    }
}

impl UpdateUserRequest {
    fn fields(&self) -> UserFields {
        UserFields {
            organization: false,
            is_superuser: self.is_superuser,
            is_active: self.is_active,
            email: self.email.is_some(),
            password: self.password.is_some(),
        }
    }
}

/// The escalation rule's view of the user `id` of the scope, or 404.
fn standing(c: &mut Conn, scope: &Scope, id: &str) -> ApiResult<Standing> {
    let user = store::users::get_user(c, scope, id)?.ok_or_else(user_not_found)?;
    Ok(store::users::standing(c, &user)?)
}

fn user_not_found() -> ApiError {
    ApiError::not_found("User not found")
}

pub struct UsersApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// List users
    ///
    /// Needs `users:read`. Users of the caller's organization; a superuser sees every
    /// organization's unless `organization_id` narrows it. Deactivated users only with
    /// `is_active=false`. `search` matches username, email and full name.
    #[oai(path = "/users", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_users(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_active: Query<Option<bool>>,
        role_id: Query<Option<String>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<User>>> {
        let scope = authz::require(&auth.0, Permission::UsersRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = user_filter(search.0, is_active.0, role_id.0);
        let (rows, total) = self.state.store.read(move |c| store::users::list_users(c, &scope, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get a user
    ///
    /// Needs `users:read`, except for the caller's own user. Deactivated users stay readable.
    #[oai(path = "/users/:id", method = "get")]
    async fn get_user(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<User>> {
        let id = validate::path_id(&id, "User")?;
        let scope = authz::require_self_or(&auth.0, &id, Permission::UsersRead)?;
        let user = self.state.store.read(move |c| store::users::get_user(c, &scope, &id)).await?;
        Ok(Json(user.ok_or_else(user_not_found)?))
    }

    /// Create a user
    ///
    /// Needs `users:write`. The user joins the caller's organization with its `member` role
    /// unless `role_id` names another role of it. Only a superuser may choose the organization
    /// or create a superuser.
    #[oai(path = "/users", method = "post")]
    async fn create_user(&self, auth: BearerAuth, body: Json<CreateUserRequest>) -> ApiResult<Created<User>> {
        authz::require(&auth.0, Permission::UsersWrite)?;
        let (me, body) = (auth.0, body.0);
        let changes = changes_with_password(&body, true);
        authz::require_may_create_user(&me, body.fields())?;
        let username = Username::parse(&body.username)?.into_inner();
        let email = Email::parse(&body.email)?.into_inner();
        let password = Password::parse("password", &body.password)?.into_inner();
        let full_name = validate::optional_text("full_name", body.full_name, validate::NAME_MAX)?;
        let organization_id = match &body.organization_id {
            Some(raw) => validate::body_id("organization_id", raw)?,
            None => me.home_org().to_string(),
        };
        let role_id = body.role_id.as_deref().map(|r| validate::body_id("role_id", r)).transpose()?;
        let password_hash = self.state.passwords.hash(password).await?;
        let by = me.id.clone();
        let user = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                if !store::organizations::org_exists(c, &organization_id)? {
                    return Err(ApiError::bad_request("organization_id does not name an existing organization"));
                }
                let role_id = match role_id {
                    Some(r) => {
                        let kind = store::roles::role_kind(c, &organization_id, &r)?.ok_or_else(|| {
                            ApiError::bad_request("role_id does not name a role of the user's organization")
                        })?;
                        authz::require_may_confer(&me, kind)?;
                        r
                    }
                    None => store::organizations::member_role_id(c, &organization_id)?,
                };
                let user = store::users::insert_user(
                    c,
                    &NewUser {
                        id: new_id(),
                        organization_id,
                        role_id: Some(role_id),
                        username,
                        email,
                        full_name,
                        password_hash,
                        is_superuser: body.is_superuser.unwrap_or(false),
                        now: now(),
                    },
                )?;
                let event = Event::new("user.create", &user.organization_id, "user", &user.id).changes(changes);
                store::audit::record(c, &me.actor(), &event)?;
                Ok(user)
            })
            .await?;
        tracing::info!(user_id = %user.id, %by, "user created");
        Ok(Created::Created(Json(user)))
    }

    /// Update a user
    ///
    /// Anyone may change their own `email` and `full_name`; `users:write` is needed for other
    /// users and for `is_active` and `password`; only a superuser may change `is_superuser` or
    /// any field of a superuser. Deactivating a user or setting their password signs them out
    /// (for yourself: everywhere but here).
    #[oai(path = "/users/:id", method = "put")]
    async fn update_user(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateUserRequest>,
    ) -> ApiResult<Json<User>> {
        let id = validate::path_id(&id, "User")?;
        let scope = authz::require_self_or(&auth.0, &id, Permission::UsersWrite)?;
        let (me, body) = (auth.0, body.0);
        let audit_changes = changes_with_password(&body, body.password.is_some());
        let fields = body.fields();
        authz::require_may_update_user(&me, &id, fields)?;
        let is_self = id == me.id;
        let mut changes = UserChanges {
            email: body.email.as_deref().map(|e| Email::parse(e)).transpose()?.map(Email::into_inner),
            full_name: match body.full_name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(validate::optional_text("full_name", Some(v), validate::NAME_MAX)?),
            },
            is_active: body.is_active,
            is_superuser: body.is_superuser,
            password_hash: None,
        };
        if let Some(raw) = &body.password {
            let password = Password::parse("password", raw)?.into_inner();
            changes.password_hash = Some(self.state.passwords.hash(password).await?);
        }
        let user = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                authz::require_may_change_user(&me, standing(c, &scope, &id)?, fields)?;
                let now = now();
                let user = store::users::update_user(c, &scope, &id, &changes, &now)?.ok_or_else(user_not_found)?;
                if changes.is_active == Some(false) {
                    store::auth::revoke_user_sessions(c, &id, None, "user deactivated", &now)?;
                } else if changes.password_hash.is_some() {
                    let keep = is_self.then_some(me.session_id.as_str());
                    store::auth::revoke_user_sessions(c, &id, keep, "password set", &now)?;
                }
                let event = Event::new("user.update", &user.organization_id, "user", &user.id).changes(audit_changes);
                store::audit::record(c, &me.actor(), &event)?;
                Ok(user)
            })
            .await?;
        Ok(Json(user))
    }

    /// Deactivate a user
    ///
    /// Needs `users:delete`. A soft delete: the user is kept, marked inactive, and signed out
    /// everywhere. Not yourself; a superuser only by a superuser.
    #[oai(path = "/users/:id", method = "delete")]
    async fn delete_user(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let scope = authz::require(&auth.0, Permission::UsersDelete)?;
        let id = validate::path_id(&id, "User")?;
        let me = auth.0;
        if id == me.id {
            return Err(ApiError::bad_request("You cannot delete yourself"));
        }
        let user_id = id.clone();
        self.state
            .store
            .write(move |c| -> ApiResult<_> {
                let target = store::users::get_user(c, &scope, &id)?.ok_or_else(user_not_found)?;
                authz::require_may_manage(&me, store::users::standing(c, &target)?)?;
                let now = now();
                store::users::set_active(c, &scope, &id, false, &now)?;
                store::auth::revoke_user_sessions(c, &id, None, "user deactivated", &now)?;
                let event = Event::new("user.deactivate", &target.organization_id, "user", &id);
                store::audit::record(c, &me.actor(), &event)?;
                Ok(())
            })
            .await?;
        tracing::info!(%user_id, "user deactivated");
        Ok(Deleted::NoContent)
    }

    /// Activate a user
    ///
    /// Needs `users:write`. Re-activates a deactivated user (who then logs in again); a
    /// superuser only by a superuser.
    #[oai(path = "/users/:id/activate", method = "post")]
    async fn activate_user(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<User>> {
        let scope = authz::require(&auth.0, Permission::UsersWrite)?;
        let id = validate::path_id(&id, "User")?;
        let me = auth.0;
        let user = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                authz::require_may_manage(&me, standing(c, &scope, &id)?)?;
                store::users::set_active(c, &scope, &id, true, &now())?;
                let user = store::users::get_user(c, &scope, &id)?.ok_or_else(user_not_found)?;
                store::audit::record(c, &me.actor(), &Event::new("user.activate", &user.organization_id, "user", &id))?;
                Ok(user)
            })
            .await?;
        Ok(Json(user))
    }

    /// Assign a role
    ///
    /// Needs `roles:write`. The role must belong to the user's organization; a superuser's role
    /// only by a superuser. Takes effect on the user's next request.
    #[oai(path = "/users/:id/role", method = "post")]
    async fn assign_role(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UserRoleRequest>,
    ) -> ApiResult<Json<User>> {
        let scope = authz::require(&auth.0, Permission::RolesWrite)?;
        let id = validate::path_id(&id, "User")?;
        let role_id = validate::body_id("role_id", &body.role_id)?;
        let me = auth.0;
        let user = self
            .state
            .store
            .write(move |c| {
                let target = store::users::get_user(c, &scope, &id)?.ok_or_else(user_not_found)?;
                let kind = store::roles::role_kind(c, &target.organization_id, &role_id)?
                    .ok_or_else(|| ApiError::bad_request("role_id does not name a role of the user's organization"))?;
                authz::require_may_assign(&me, store::users::standing(c, &target)?, kind)?;
                store::users::set_role(c, &scope, &id, &role_id, &now())?;
                let event = Event::new("user.assign_role", &target.organization_id, "user", &id)
                    .changes(Some(serde_json::json!({ "role_id": role_id })));
                store::audit::record(c, &me.actor(), &event)?;
                store::users::get_user(c, &scope, &id)?.ok_or_else(user_not_found)
            })
            .await?;
        Ok(Json(user))
    }
}
