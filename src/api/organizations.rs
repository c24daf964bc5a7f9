//! /organizations: the tenants, and moving users between them.

use crate::validate::Text;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};

pub use crate::model::organizations::Organization;
use crate::{
    AppState,
    api::{
        ApiTags, Created, changes_of,
        users::{User, user_filter},
    },
    auth::BearerAuth,
    authz::{self, Permission},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        audit::Event,
        organizations::{NewOrg, OrgChanges, OrgFilter},
    },
    validate,
};

#[derive(Object, Debug)]
pub struct CreateOrganizationRequest {
    /// 1..=255 characters, unique regardless of letter case
    pub name: Text,
    #[oai(skip_serializing_if_is_none)]
    pub domain: Option<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<Text>,
    /// A JSON object; default `{}`
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
}

/// Fields left out stay as they are.
#[derive(Object, Debug)]
pub struct UpdateOrganizationRequest {
    /// 1..=255 characters, unique regardless of letter case
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<Text>,
    /// `null` clears it
    pub domain: MaybeUndefined<Text>,
    /// `null` clears it
    pub description: MaybeUndefined<Text>,
    /// A JSON object; replaces the whole settings object
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
    /// Superusers only
    #[oai(skip_serializing_if_is_none)]
    pub is_active: Option<bool>,
}

fn org_not_found() -> ApiError {
    ApiError::not_found("Organization not found")
}

pub struct OrganizationsApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Organizations")]
impl OrganizationsApi {
    /// List organizations
    ///
    /// Any signed-in user (SPEC names no permission here): a superuser sees every organization,
    /// anyone else a list of just their own. Deactivated ones only with `is_active=false`.
    /// `search` matches name and domain.
    #[oai(path = "/organizations", method = "get")]
    async fn list_organizations(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_active: Query<Option<bool>>,
    ) -> ApiResult<Json<ListResponse<Organization>>> {
        // everyone may see the organization they belong to; the scope keeps it to that one
        let scope = auth.0.scope();
        let page = Page::new(skip.0, limit.0)?;
        let filter = OrgFilter { search: search_term(search.0), is_active: is_active.0.unwrap_or(true) };
        let (rows, total) =
            self.state.store.read(move |c| store::organizations::list_orgs(c, &scope, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get an organization
    ///
    /// Needs `organizations:read`; the caller's own organization (a superuser: any).
    #[oai(path = "/organizations/:id", method = "get")]
    async fn get_organization(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<Organization>> {
        let scope = authz::require(&auth.0, Permission::OrganizationsRead)?;
        let id = validate::path_id(&id, "Organization")?;
        let org = self.state.store.read(move |c| store::organizations::get_org(c, &scope, &id)).await?;
        Ok(Json(org.ok_or_else(org_not_found)?))
    }

    /// Create an organization
    ///
    /// Superusers only. The organization gets its two system roles, `admin` and `member`.
    #[oai(path = "/organizations", method = "post")]
    async fn create_organization(
        &self,
        auth: BearerAuth,
        body: Json<CreateOrganizationRequest>,
    ) -> ApiResult<Created<Organization>> {
        let all = authz::require_superuser(&auth.0)?;
        let (actor, body) = (auth.0.actor(), body.0);
        let audit = changes_of(&body);
        let org = NewOrg {
            id: new_id(),
            name: validate::name("name", &body.name)?,
            domain: validate::optional_text("domain", body.domain, validate::NAME_MAX)?,
            description: validate::optional_text("description", body.description, validate::DESCRIPTION_MAX)?,
            settings: crate::limits::org_settings(body.settings)?,
            now: now(),
        };
        let created = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                store::organizations::insert_org(c, &org)?;
                store::bootstrap::insert_system_roles(c, &org.id, &org.now)?;
                let event = Event::new("organization.create", &org.id, "organization", &org.id).changes(audit);
                store::audit::record(c, &actor, &event)?;
                store::organizations::get_org(c, &all, &org.id)?
                    .ok_or_else(|| ApiError::internal("inserted organization vanished"))
            })
            .await?;
        tracing::info!(organization_id = %created.id, "organization created");
        Ok(Created::Created(Json(created)))
    }

    /// Update an organization
    ///
    /// Needs `organizations:write` on the caller's own organization (a superuser: any). Only a
    /// superuser may change `is_active`, and `settings.limits` (the organization's token budgets,
    /// `{"org_monthly_tokens": N, "user_daily_tokens": N}`, 0: no budget; 403 for anyone else,
    /// whose settings keep the stored `limits` when they leave it out).
    #[oai(path = "/organizations/:id", method = "put")]
    async fn update_organization(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateOrganizationRequest>,
    ) -> ApiResult<Json<Organization>> {
        let scope = authz::require(&auth.0, Permission::OrganizationsWrite)?;
        let id = validate::path_id(&id, "Organization")?;
        let (actor, body) = (auth.0.actor(), body.0);
        let audit = changes_of(&body);
        authz::require_may_update_org(&auth.0, body.is_active.is_some())?;
        let changes = OrgChanges {
            name: body.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            domain: validate::clearable(body.domain, |d| validate::text("domain", d.trim(), validate::NAME_MAX))?,
            description: validate::clearable(body.description, |d| {
                validate::text("description", d.trim(), validate::DESCRIPTION_MAX)
            })?,
            settings: self.settings_update(&auth.0, &id, body.settings).await?,
            is_active: body.is_active,
        };
        let org = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                let org = store::organizations::update_org(c, &scope, &id, &changes, &now())?;
                if org.is_some() {
                    let event = Event::new("organization.update", &id, "organization", &id).changes(audit);
                    store::audit::record(c, &actor, &event)?;
                }
                Ok(org)
            })
            .await?;
        Ok(Json(org.ok_or_else(org_not_found)?))
    }

    /// List an organization's members
    ///
    /// Needs `organizations:read`; the caller's own organization (a superuser: any). Same
    /// `search`, `is_active` and `role_id` filters as the user list.
    #[oai(path = "/organizations/:id/members", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_members(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_active: Query<Option<bool>>,
        role_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<User>>> {
        let scope = authz::require(&auth.0, Permission::OrganizationsRead)?;
        let id = validate::path_id(&id, "Organization")?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = user_filter(search.0, is_active.0, role_id.0);
        let (rows, total) = self
            .state
            .store
            .read(move |c| -> ApiResult<_> {
                store::organizations::get_org(c, &scope, &id)?.ok_or_else(org_not_found)?;
                let members = scope.narrowed(Some(&id))?;
                Ok(store::users::list_users(c, &members, &filter, page)?)
            })
            .await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Move a user into an organization
    ///
    /// Superusers only. The user gets the organization's `member` role and leaves the projects
    /// of their former organization. A user already in the organization is left as is.
    #[oai(path = "/organizations/:id/members/:user_id", method = "post")]
    async fn add_member(&self, auth: BearerAuth, id: Path<String>, user_id: Path<String>) -> ApiResult<Json<User>> {
        let all = authz::require_superuser(&auth.0)?;
        let id = validate::path_id(&id, "Organization")?;
        let user_id = validate::path_id(&user_id, "User")?;
        let actor = auth.0.actor();
        let user = self
            .state
            .store
            .write(move |c| {
                store::organizations::get_org(c, &all, &id)?.ok_or_else(org_not_found)?;
                let user =
                    store::users::get_user(c, &all, &user_id)?.ok_or_else(|| ApiError::not_found("User not found"))?;
                if user.organization_id == id {
                    return Ok(user);
                }
                let role_id = store::organizations::member_role_id(c, &id)?;
                store::users::move_to_org(c, &user_id, &id, &role_id, &now())?;
                let event = Event::new("organization.add_member", &id, "user", &user_id)
                    .changes(Some(serde_json::json!({"from_organization_id": user.organization_id})));
                store::audit::record(c, &actor, &event)?;
                store::users::get_user(c, &all, &user_id)?.ok_or_else(|| ApiError::internal("moved user vanished"))
            })
            .await?;
        tracing::info!(user_id = %user.id, organization_id = %user.organization_id, "user moved");
        Ok(Json(user))
    }
}

impl OrganizationsApi {
    /// The `settings` of an update as they are stored: `settings.limits` checked (400); someone
    /// who is not a superuser keeps the stored `limits` and may not change them (403).
    async fn settings_update(
        &self,
        caller: &crate::authz::CurrentUser,
        id: &str,
        settings: Option<serde_json::Value>,
    ) -> ApiResult<Option<String>> {
        let Some(settings) = settings else { return Ok(None) };
        let text = crate::limits::org_settings(Some(settings))?;
        if authz::may_set_org_limits(caller) {
            return Ok(Some(text));
        }
        let (scope, id) = (caller.scope(), id.to_string());
        let stored = self.state.store.read(move |c| store::organizations::get_org(c, &scope, &id)).await?;
        match stored {
            Some(org) => Ok(Some(crate::limits::keep_stored_limits(&text, &org.settings.to_string())?)),
            None => Ok(Some(text)),
        }
    }
}
