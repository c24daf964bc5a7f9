//! `/roles`: the roles of an organization, their permission sets, and the 13 system permissions.

use crate::validate::Text;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};

pub use crate::model::roles::{PermissionInfo, Role};
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted, changes_of},
    auth::BearerAuth,
    authz::{self, Permission, PermissionSet, RoleKind},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        audit::Event,
        roles::{NewRole, RoleChanges},
    },
    validate,
};

#[derive(Object, Debug)]
pub struct CreateRoleRequest {
    /// 1..=255 characters, unique in the organization regardless of case
    pub name: Text,
    /// At most 10,000 characters
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<Text>,
    /// Permission names, e.g. `["projects:read"]`
    #[oai(skip_serializing_if_is_none)]
    pub permissions: Option<Vec<Text>>,
}

#[derive(Object, Debug)]
pub struct UpdateRoleRequest {
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<Text>,
    /// `null` clears it
    pub description: MaybeUndefined<Text>,
    /// Permission names; replaces the role's whole set
    #[oai(skip_serializing_if_is_none)]
    pub permissions: Option<Vec<Text>>,
}

/// Permission names to a set; an unknown name is a 400 that names it.
fn parse_permissions(names: &[Text]) -> ApiResult<PermissionSet> {
    names
        .iter()
        .map(|n| {
            Permission::from_name(n.trim()).ok_or_else(|| ApiError::bad_request(format!("Unknown permission: {n}")))
        })
        .collect()
}

pub struct RolesApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Roles")]
impl RolesApi {
    /// List permissions
    ///
    /// Any signed-in user. The 13 system permissions in their canonical order; `search` looks in
    /// name and description.
    #[oai(path = "/roles/permissions", method = "get")]
    async fn list_permissions(
        &self,
        _auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<PermissionInfo>>> {
        let page = Page::new(skip.0, limit.0)?;
        let search = search_term(search.0);
        let (rows, total) =
            self.state.store.read(move |c| store::roles::list_permissions(c, search.as_deref(), page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get a permission
    ///
    /// Any signed-in user.
    #[oai(path = "/roles/permissions/:id", method = "get")]
    async fn get_permission(&self, _auth: BearerAuth, id: Path<String>) -> ApiResult<Json<PermissionInfo>> {
        let id = validate::path_id(&id, "Permission")?;
        let permission = self.state.store.read(move |c| store::roles::find_permission(c, &id)).await?;
        Ok(Json(permission))
    }

    /// List roles
    ///
    /// Needs `roles:read`. Roles of the caller's organization (a superuser: of all, unless
    /// `organization_id` narrows it); `search` looks in name and description.
    #[oai(path = "/roles", method = "get")]
    async fn list_roles(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<Role>>> {
        let scope = authz::require(&auth.0, Permission::RolesRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let search = search_term(search.0);
        let (rows, total) =
            self.state.store.read(move |c| store::roles::list_roles(c, &scope, search.as_deref(), page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get a role
    ///
    /// Needs `roles:read`. A role of another organization is not found.
    #[oai(path = "/roles/:id", method = "get")]
    async fn get_role(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<Role>> {
        let scope = authz::require(&auth.0, Permission::RolesRead)?;
        let id = validate::path_id(&id, "Role")?;
        let role = self.state.store.read(move |c| store::roles::find_role(c, &scope, &id)).await?;
        Ok(Json(role))
    }

    /// Create a role
    ///
    /// Needs `roles:write`. A custom role of the caller's organization; its name must be unique
    /// there regardless of case (409), and every permission must be one of the 13 (400).
    #[oai(path = "/roles", method = "post")]
    async fn create_role(&self, auth: BearerAuth, body: Json<CreateRoleRequest>) -> ApiResult<Created<Role>> {
        authz::require(&auth.0, Permission::RolesWrite)?;
        let (actor, body) = (auth.0.actor(), body.0);
        let audit = changes_of(&body);
        let permissions = parse_permissions(body.permissions.as_deref().unwrap_or_default())?;
        authz::require_may_confer(&auth.0, RoleKind::Custom(permissions))?;
        let new = NewRole {
            id: new_id(),
            organization_id: auth.0.home_org().to_string(),
            name: validate::name("name", &body.name)?,
            description: validate::optional_text("description", body.description, validate::DESCRIPTION_MAX)?,
            permissions,
            now: now(),
        };
        let role = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let role = store::roles::insert_role(tx, &new)?;
                let event = Event::new("role.create", &role.organization_id, "role", &role.id).changes(audit);
                store::audit::record(tx, &actor, &event)?;
                Ok(role)
            })
            .await?;
        tracing::info!(role_id = %role.id, "role created");
        Ok(Created::Created(Json(role)))
    }

    /// Update a role
    ///
    /// Needs `roles:write`. System roles cannot be changed (403). `permissions`, when sent,
    /// replaces the whole set; holders feel the change on their next request.
    #[oai(path = "/roles/:id", method = "put")]
    async fn update_role(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateRoleRequest>,
    ) -> ApiResult<Json<Role>> {
        let scope = authz::require(&auth.0, Permission::RolesWrite)?;
        let id = validate::path_id(&id, "Role")?;
        let body = body.0;
        let audit = changes_of(&body);
        let changes = RoleChanges {
            name: body.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            description: validate::clearable(body.description, |d| {
                validate::text("description", &d, validate::DESCRIPTION_MAX)
            })?,
            permissions: body.permissions.as_deref().map(parse_permissions).transpose()?,
        };
        let me = auth.0;
        let role = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let current = store::roles::find_role(tx, &scope, &id)?;
                authz::require_may_edit_role(&me, &current, changes.permissions)?;
                store::roles::update_role(tx, &scope, &id, &changes, &now())?;
                let event = Event::new("role.update", &current.organization_id, "role", &id).changes(audit);
                store::audit::record(tx, &me.actor(), &event)?;
                Ok(store::roles::find_role(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(role))
    }

    /// Delete a role
    ///
    /// Needs `roles:write`. System roles cannot be deleted (403), nor a role that any user
    /// holds (409).
    #[oai(path = "/roles/:id", method = "delete")]
    async fn delete_role(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let scope = authz::require(&auth.0, Permission::RolesWrite)?;
        let id = validate::path_id(&id, "Role")?;
        let actor = auth.0.actor();
        self.state
            .store
            .write(move |tx| -> ApiResult<_> {
                let role = store::roles::find_role(tx, &scope, &id)?;
                authz::require_custom_role(&role)?;
                store::roles::delete_role(tx, &scope, &id)?;
                let event = Event::new("role.delete", &role.organization_id, "role", &id)
                    .changes(Some(serde_json::json!({ "name": role.name })));
                store::audit::record(tx, &actor, &event)?;
                Ok(())
            })
            .await?;
        tracing::info!("role deleted");
        Ok(Deleted::NoContent)
    }

    /// Grant a permission to a role
    ///
    /// Needs `roles:write`. Not for system roles (403); granting one the role holds changes
    /// nothing. Answers the role.
    #[oai(path = "/roles/:id/permissions/:perm_id", method = "post")]
    async fn grant_permission(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        perm_id: Path<String>,
    ) -> ApiResult<Json<Role>> {
        let scope = authz::require(&auth.0, Permission::RolesWrite)?;
        let id = validate::path_id(&id, "Role")?;
        let perm_id = validate::path_id(&perm_id, "Permission")?;
        let me = auth.0;
        let role = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let current = store::roles::find_role(tx, &scope, &id)?;
                let granted = store::roles::find_permission(tx, &perm_id)?;
                let with_it = PermissionSet::of_role(&current).iter().chain(Permission::from_name(&granted.name));
                authz::require_may_edit_role(&me, &current, Some(with_it.collect()))?;
                if store::roles::grant(tx, &scope, &id, &perm_id, &now())? {
                    let event = Event::new("role.grant_permission", &current.organization_id, "role", &id)
                        .changes(Some(serde_json::json!({ "permission": granted.name })));
                    store::audit::record(tx, &me.actor(), &event)?;
                }
                Ok(store::roles::find_role(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(role))
    }

    /// Revoke a permission from a role
    ///
    /// Needs `roles:write`. Not for system roles (403); a permission the role does not hold is
    /// not found. Answers the role.
    #[oai(path = "/roles/:id/permissions/:perm_id", method = "delete")]
    async fn revoke_permission(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        perm_id: Path<String>,
    ) -> ApiResult<Json<Role>> {
        let scope = authz::require(&auth.0, Permission::RolesWrite)?;
        let id = validate::path_id(&id, "Role")?;
        let perm_id = validate::path_id(&perm_id, "Permission")?;
        let me = auth.0;
        let role = self
            .state
            .store
            .write(move |tx| {
                let current = store::roles::find_role(tx, &scope, &id)?;
                authz::require_may_edit_role(&me, &current, None)?;
                let revoked = store::roles::find_permission(tx, &perm_id)?;
                if !store::roles::revoke(tx, &scope, &id, &perm_id, &now())? {
                    return Err(ApiError::not_found("The role does not hold this permission"));
                }
                let event = Event::new("role.revoke_permission", &current.organization_id, "role", &id)
                    .changes(Some(serde_json::json!({ "permission": revoked.name })));
                store::audit::record(tx, &me.actor(), &event)?;
                Ok(store::roles::find_role(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(role))
    }
}
