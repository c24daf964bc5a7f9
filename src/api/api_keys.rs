//! `/api-keys` (SPEC §8): keys that scripts send as `Authorization: Bearer cpk_…`. A key holds
//! a subset of its creator's permissions and acts with those its owner still holds.

use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub use crate::model::api_keys::ApiKey;
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted},
    auth::{BearerAuth, api_key},
    authz::{self, Permission, PermissionSet},
    db::{format_ts, new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page},
    store::{self, api_keys::Owners, audit::Event},
    validate::{self, Text},
};

/// A new key: the only time its secret is shown.
#[derive(Object, Debug)]
pub struct CreatedApiKey {
    #[oai(flatten)]
    pub api_key: ApiKey,
    /// The key itself (`cpk_…`): send it as `Authorization: Bearer <key>`. It is not shown again.
    pub key: String,
}

#[derive(Object, Debug)]
pub struct CreateApiKeyRequest {
    /// 1..=255 characters
    pub name: Text,
    /// Permission names, each held by the caller
    pub permissions: Vec<String>,
    /// RFC 3339 date-time in the future; absent or `null`: never expires
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<String>,
}

pub struct ApiKeysApi {
    pub state: AppState,
}

/// The permissions asked for: known names (else 400), each held by the caller (else 403).
fn requested_permissions(user: &authz::CurrentUser, names: &[String]) -> ApiResult<PermissionSet> {
    if names.is_empty() {
        return Err(ApiError::bad_request("permissions must name at least one permission"));
    }
    let mut set = PermissionSet::default();
    for name in names {
        let p = Permission::from_name(name.trim())
            .ok_or_else(|| ApiError::bad_request(format!("permissions: {name:?} is not a permission")))?;
        set.insert(p);
    }
    authz::require_holds_all(user, set)?;
    Ok(set)
}

fn expiry(raw: Option<String>) -> ApiResult<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let at = OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map_err(|_| ApiError::bad_request("expires_at must be an RFC 3339 date-time, e.g. 2027-01-31T00:00:00Z"))?;
    if at <= OffsetDateTime::now_utc() {
        return Err(ApiError::bad_request("expires_at must be in the future"));
    }
    Ok(Some(format_ts(at)))
}

#[OpenApi(tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key
    ///
    /// With a login session (not with another key). `permissions` must be held by the caller;
    /// the answer shows the key once.
    #[oai(path = "/api-keys", method = "post")]
    async fn create_api_key(
        &self,
        auth: BearerAuth,
        body: Json<CreateApiKeyRequest>,
    ) -> ApiResult<Created<CreatedApiKey>> {
        let me = auth.0;
        authz::require_login(&me)?;
        let body = body.0;
        let name = validate::name("name", &body.name)?;
        let permissions = requested_permissions(&me, &body.permissions)?;
        let expires_at = expiry(body.expires_at)?;
        let secret = api_key::generate();
        let (id, key) = (new_id(), secret.key.clone());
        let stored = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let new = store::api_keys::NewKey {
                    id: &id,
                    user_id: &me.id,
                    organization_id: &me.organization_id,
                    name: &name,
                    prefix: &secret.prefix,
                    secret_sha256: &secret.sha256,
                    permissions,
                    expires_at: expires_at.as_deref(),
                    now: &now(),
                };
                let key = store::api_keys::insert_key(tx, &new)?;
                let changes = serde_json::json!({
                    "name": key.name, "permissions": key.permissions, "expires_at": key.expires_at, "prefix": key.prefix,
                });
                let event = Event::new("api_key.create", &me.organization_id, "api_key", &key.id);
                store::audit::record(tx, &me.actor(), &event.changes(Some(changes)))?;
                Ok(key)
            })
            .await?;
        Ok(Created::Created(Json(CreatedApiKey { api_key: stored, key })))
    }

    /// List API keys
    ///
    /// Your own keys; an organization admin sees every key of the organization (a superuser: of
    /// all, or of `organization_id`), optionally of one `user_id`.
    #[oai(path = "/api-keys", method = "get")]
    async fn list_api_keys(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        user_id: Query<Option<String>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<ApiKey>>> {
        let me = auth.0;
        let page = Page::new(skip.0, limit.0)?;
        let scope = me.scope().narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let user = validate::filter_id(user_id.0);
        let admin = me.is_org_admin();
        let (rows, total) = self
            .state
            .store
            .read(move |c| {
                let owners = if admin { Owners::Scope(&scope, user.as_deref()) } else { Owners::User(&me.id) };
                store::api_keys::list_keys(c, &owners, page)
            })
            .await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Revoke an API key
    ///
    /// Your own; an organization admin: any of the organization. Effective on the next
    /// request. Another user's key is not found.
    #[oai(path = "/api-keys/:id", method = "delete")]
    async fn delete_api_key(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let me = auth.0;
        let id = validate::path_id(&id, "API key")?;
        let admin = me.is_org_admin();
        let scope = me.scope();
        self.state
            .store
            .write(move |tx| {
                let owners = if admin { Owners::Scope(&scope, None) } else { Owners::User(&me.id) };
                let (org, name) = store::api_keys::delete_key(tx, &owners, &id)?;
                let event = Event::new("api_key.delete", &org, "api_key", &id);
                store::audit::record(tx, &me.actor(), &event.changes(Some(serde_json::json!({ "name": name }))))
                    .map(drop)
            })
            .await?;
        Ok(Deleted::NoContent)
    }
}
