//! `/projects`: projects of an organization and their members.

use crate::validate::Text;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};

pub use crate::model::projects::Project;
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted, changes_of, users::User},
    auth::BearerAuth,
    authz::{self, Permission},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        audit::Event,
        projects::{MemberFilter, NewProject, ProjectChanges, ProjectFilter},
    },
    validate,
};

#[derive(Object, Debug)]
pub struct CreateProjectRequest {
    /// 1..=255 characters; need not be unique
    pub name: Text,
    /// At most 10,000 characters
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<Text>,
    /// A JSON object
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Object, Debug)]
pub struct UpdateProjectRequest {
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<Text>,
    /// `null` clears it
    pub description: MaybeUndefined<Text>,
    /// A JSON object; replaces the stored settings
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
    /// `false` soft-deletes, `true` restores
    #[oai(skip_serializing_if_is_none)]
    pub is_active: Option<bool>,
}

pub struct ProjectsApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Projects")]
impl ProjectsApi {
    /// List projects
    ///
    /// Needs `projects:read`. Projects of the caller's organization (a superuser: of all, unless
    /// `organization_id` narrows it); `search` looks in name and description; `is_active`
    /// defaults to active projects only.
    #[oai(path = "/projects", method = "get")]
    async fn list_projects(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_active: Query<Option<bool>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<Project>>> {
        let scope = authz::require(&auth.0, Permission::ProjectsRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = ProjectFilter { search: search_term(search.0), is_active: is_active.0.unwrap_or(true) };
        let (rows, total) =
            self.state.store.read(move |c| store::projects::list_projects(c, &scope, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get a project
    ///
    /// Needs `projects:read`. A project of another organization is not found; a soft-deleted one
    /// stays readable.
    #[oai(path = "/projects/:id", method = "get")]
    async fn get_project(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<Project>> {
        let scope = authz::require(&auth.0, Permission::ProjectsRead)?;
        let id = validate::path_id(&id, "Project")?;
        let project = self.state.store.read(move |c| store::projects::find_project(c, &scope, &id)).await?;
        Ok(Json(project))
    }

    /// Create a project
    ///
    /// Needs `projects:write`. The project belongs to the caller's organization and the caller
    /// becomes its first member.
    #[oai(path = "/projects", method = "post")]
    async fn create_project(&self, auth: BearerAuth, body: Json<CreateProjectRequest>) -> ApiResult<Created<Project>> {
        authz::require(&auth.0, Permission::ProjectsWrite)?;
        let (actor, body) = (auth.0.actor(), body.0);
        let audit = changes_of(&body);
        let new = NewProject {
            id: new_id(),
            organization_id: auth.0.home_org().to_string(),
            name: validate::name("name", &body.name)?,
            description: validate::optional_text("description", body.description, validate::DESCRIPTION_MAX)?,
            settings: validate::json_object("settings", body.settings)?,
            created_by: Some(auth.0.id.clone()),
            now: now(),
        };
        let project = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let project = store::projects::insert_project(tx, &new)?;
                let event =
                    Event::new("project.create", &project.organization_id, "project", &project.id).changes(audit);
                store::audit::record(tx, &actor, &event)?;
                Ok(project)
            })
            .await?;
        tracing::info!(project_id = %project.id, "project created");
        Ok(Created::Created(Json(project)))
    }

    /// Update a project
    ///
    /// Needs `projects:write`, and the caller must be the project's creator or an organization
    /// admin. Only the fields sent change.
    #[oai(path = "/projects/:id", method = "put")]
    async fn update_project(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateProjectRequest>,
    ) -> ApiResult<Json<Project>> {
        let scope = authz::require(&auth.0, Permission::ProjectsWrite)?;
        let id = validate::path_id(&id, "Project")?;
        let body = body.0;
        let audit = changes_of(&body);
        let changes = ProjectChanges {
            name: body.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            description: validate::clearable(body.description, |d| {
                validate::text("description", &d, validate::DESCRIPTION_MAX)
            })?,
            settings: match body.settings {
                None | Some(serde_json::Value::Null) => None,
                settings => Some(validate::json_object("settings", settings)?),
            },
            is_active: body.is_active,
        };
        let me = auth.0;
        if changes.is_active == Some(false) {
            // a soft delete through PUT needs what DELETE needs
            authz::require(&me, Permission::ProjectsDelete)?;
        }
        let project = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let project = store::projects::find_project(tx, &scope, &id)?;
                authz::require_creator_or_admin(&me, project.created_by.as_deref())?;
                store::projects::update_project(tx, &scope, &id, &changes, &now())?;
                let event = Event::new("project.update", &project.organization_id, "project", &id).changes(audit);
                store::audit::record(tx, &me.actor(), &event)?;
                Ok(store::projects::find_project(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(project))
    }

    /// Delete a project
    ///
    /// Needs `projects:delete`, and the caller must be the project's creator or an organization
    /// admin. A soft delete: the project leaves the lists but stays readable by id.
    #[oai(path = "/projects/:id", method = "delete")]
    async fn delete_project(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let scope = authz::require(&auth.0, Permission::ProjectsDelete)?;
        let id = validate::path_id(&id, "Project")?;
        let me = auth.0;
        self.state
            .store
            .write(move |tx| -> ApiResult<_> {
                let project = store::projects::find_project(tx, &scope, &id)?;
                authz::require_creator_or_admin(&me, project.created_by.as_deref())?;
                store::projects::deactivate_project(tx, &scope, &id, &now())?;
                let event = Event::new("project.delete", &project.organization_id, "project", &id);
                store::audit::record(tx, &me.actor(), &event)?;
                Ok(())
            })
            .await?;
        Ok(Deleted::NoContent)
    }

    /// List a project's members
    ///
    /// Needs `projects:read`. `search` looks in username, email and full name; `is_active`
    /// defaults to active users only.
    #[oai(path = "/projects/:id/members", method = "get")]
    async fn list_members(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_active: Query<Option<bool>>,
    ) -> ApiResult<Json<ListResponse<User>>> {
        let scope = authz::require(&auth.0, Permission::ProjectsRead)?;
        let id = validate::path_id(&id, "Project")?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = MemberFilter { search: search_term(search.0), is_active: is_active.0.unwrap_or(true) };
        let (rows, total) = self
            .state
            .store
            .read(move |c| {
                store::projects::find_project(c, &scope, &id)?;
                store::projects::list_members(c, &scope, &id, &filter, page)
            })
            .await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Add a member to a project
    ///
    /// Needs `projects:read`, and the caller must be the project's creator or an organization
    /// admin. The user must belong to the project's organization; adding a member twice changes
    /// nothing. Answers the project.
    #[oai(path = "/projects/:id/members/:user_id", method = "post")]
    async fn add_member(&self, auth: BearerAuth, id: Path<String>, user_id: Path<String>) -> ApiResult<Json<Project>> {
        let scope = authz::require(&auth.0, Permission::ProjectsRead)?;
        let id = validate::path_id(&id, "Project")?;
        let user_id = validate::path_id(&user_id, "User")?;
        let me = auth.0;
        let project = self
            .state
            .store
            .write(move |tx| {
                let project = store::projects::find_project(tx, &scope, &id)?;
                authz::require_creator_or_admin(&me, project.created_by.as_deref())?;
                if !store::projects::user_in_org(tx, &user_id, &project.organization_id)? {
                    return Err(ApiError::not_found("User not found"));
                }
                let now = now();
                if store::projects::add_member(tx, &scope, &id, &user_id, &now)? {
                    store::projects::update_project(tx, &scope, &id, &ProjectChanges::default(), &now)?;
                    let event = Event::new("project.add_member", &project.organization_id, "project", &id)
                        .changes(Some(serde_json::json!({ "user_id": user_id })));
                    store::audit::record(tx, &me.actor(), &event)?;
                }
                Ok(store::projects::find_project(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(project))
    }

    /// Remove a member from a project
    ///
    /// Needs `projects:read`, and the caller must be the project's creator or an organization
    /// admin. A user who is not a member is not found. Answers the project.
    #[oai(path = "/projects/:id/members/:user_id", method = "delete")]
    async fn remove_member(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        user_id: Path<String>,
    ) -> ApiResult<Json<Project>> {
        let scope = authz::require(&auth.0, Permission::ProjectsRead)?;
        let id = validate::path_id(&id, "Project")?;
        let user_id = validate::path_id(&user_id, "User")?;
        let me = auth.0;
        let project = self
            .state
            .store
            .write(move |tx| {
                let project = store::projects::find_project(tx, &scope, &id)?;
                authz::require_creator_or_admin(&me, project.created_by.as_deref())?;
                let now = now();
                if !store::projects::remove_member(tx, &scope, &id, &user_id)? {
                    return Err(ApiError::not_found("User is not a member of this project"));
                }
                store::projects::update_project(tx, &scope, &id, &ProjectChanges::default(), &now)?;
                let event = Event::new("project.remove_member", &project.organization_id, "project", &id)
                    .changes(Some(serde_json::json!({ "user_id": user_id })));
                store::audit::record(tx, &me.actor(), &event)?;
                Ok(store::projects::find_project(tx, &scope, &id)?)
            })
            .await?;
        Ok(Json(project))
    }
}
