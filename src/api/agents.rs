//! `/agent-configs`: the agent configurations of an organization (SPEC §4 "Agent configs").

use crate::validate::Text;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};

pub use crate::model::agents::{AgentConfig, AgentType};
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted, changes_of},
    auth::BearerAuth,
    authz::{self, Permission},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    model::audit::Actor,
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        agents::{AgentConfigChanges, AgentConfigFilter},
        audit::Event,
        conn::Conn,
    },
    validate,
};

pub const DEFAULT_LLM_MODEL: &str = "gemini-pro";
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
pub const DEFAULT_MAX_TOKENS: i64 = 2048;
pub const MAX_TOKENS_LIMIT: i64 = 128_000;

impl AgentType {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::Rfp => "rfp",
            AgentType::Jira => "jira",
            AgentType::Documentation => "documentation",
            AgentType::Hr => "hr",
            AgentType::Finance => "finance",
        }
    }

    pub fn from_db(s: &str) -> Option<AgentType> {
        [AgentType::Rfp, AgentType::Jira, AgentType::Documentation, AgentType::Hr, AgentType::Finance]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Object, Debug)]
pub struct CreateAgentConfigRequest {
    /// 1..=255 characters
    pub name: Text,
    /// At most 10,000 characters
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<Text>,
    pub agent_type: AgentType,
    /// An active project of the caller's organization
    #[oai(skip_serializing_if_is_none)]
    pub project_id: Option<Text>,
    /// Default `gemini-pro`
    #[oai(skip_serializing_if_is_none)]
    pub llm_model: Option<Text>,
    /// 0.0..=2.0, default 0.7
    #[oai(skip_serializing_if_is_none)]
    pub temperature: Option<f64>,
    /// 1..=128000, default 2048
    #[oai(skip_serializing_if_is_none)]
    pub max_tokens: Option<i64>,
    /// At most 100,000 characters
    #[oai(skip_serializing_if_is_none)]
    pub system_prompt: Option<Text>,
    /// Tool names; default `[]`
    #[oai(skip_serializing_if_is_none)]
    pub tools: Option<Vec<Text>>,
    /// A JSON object; default `{}`
    #[oai(skip_serializing_if_is_none)]
    pub knowledge_base: Option<serde_json::Value>,
    /// A JSON object; default `{}`
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
}

/// Only the fields present change; `null` clears `project_id`, `description` and `system_prompt`.
#[derive(Object, Debug)]
pub struct UpdateAgentConfigRequest {
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<Text>,
    pub description: MaybeUndefined<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub agent_type: Option<AgentType>,
    /// An active project of the agent config's organization, or `null` for none
    pub project_id: MaybeUndefined<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub llm_model: Option<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub temperature: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub max_tokens: Option<i64>,
    pub system_prompt: MaybeUndefined<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub tools: Option<Vec<Text>>,
    #[oai(skip_serializing_if_is_none)]
    pub knowledge_base: Option<serde_json::Value>,
    #[oai(skip_serializing_if_is_none)]
    pub settings: Option<serde_json::Value>,
    #[oai(skip_serializing_if_is_none)]
    pub is_active: Option<bool>,
}

pub struct AgentConfigsApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::AgentConfigs")]
impl AgentConfigsApi {
    /// List agent configs
    ///
    /// Needs `agents:read`. Superusers see every organization unless they pass `organization_id`.
    /// Search covers name and description; `is_active` absent means active ones only.
    #[oai(path = "/agent-configs", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        agent_type: Query<Option<AgentType>>,
        project_id: Query<Option<String>>,
        is_active: Query<Option<bool>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<AgentConfig>>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = AgentConfigFilter {
            search: search_term(search.0),
            agent_type: agent_type.0,
            project_id: validate::filter_id(project_id.0),
            is_active: is_active.0.unwrap_or(true),
        };
        let (rows, total) =
            self.state.store.read(move |c| store::agents::list_agent_configs(c, &scope, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get an agent config
    ///
    /// Needs `agents:read`; deactivated ones stay readable. Another organization's is not found.
    #[oai(path = "/agent-configs/:id", method = "get")]
    async fn get(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<AgentConfig>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?;
        let id = validate::path_id(&id, "Agent config")?;
        let config = self.state.store.read(move |c| store::agents::get_agent_config(c, &scope, &id)).await?;
        Ok(Json(config.ok_or_else(not_found)?))
    }

    /// Create an agent config
    ///
    /// Needs `agents:write`. The config belongs to the caller's organization and records the
    /// caller as its creator; a `project_id` must name an active project of that organization.
    #[oai(path = "/agent-configs", method = "post")]
    async fn create(&self, auth: BearerAuth, body: Json<CreateAgentConfigRequest>) -> ApiResult<Created<AgentConfig>> {
        authz::require(&auth.0, Permission::AgentsWrite)?;
        let (actor, b) = (auth.0.actor(), body.0);
        let audit = changes_of(&b);
        let (kb_scope, knowledge_base) = knowledge_base(b.knowledge_base)?;
        let new = store::agents::NewAgentConfig {
            id: new_id(),
            organization_id: auth.0.home_org().to_string(),
            project_id: b.project_id.as_deref().map(|p| validate::body_id("project_id", p)).transpose()?,
            name: validate::name("name", &b.name)?,
            description: validate::optional_text("description", b.description, validate::DESCRIPTION_MAX)?,
            agent_type: b.agent_type,
            llm_model: match b.llm_model {
                Some(m) => validate::name("llm_model", &m)?,
                None => DEFAULT_LLM_MODEL.to_string(),
            },
            temperature: temperature(b.temperature.unwrap_or(DEFAULT_TEMPERATURE))?,
            max_tokens: max_tokens(b.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS))?,
            system_prompt: validate::optional_text("system_prompt", b.system_prompt, validate::SYSTEM_PROMPT_MAX)?,
            tools: tools(b.tools.unwrap_or_default())?,
            knowledge_base,
            settings: validate::json_object("settings", b.settings)?,
            created_by: auth.0.id.clone(),
            now: now(),
        };
        let config = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                store::documents::check_knowledge_scope(tx, &new.organization_id, &kb_scope)?;
                let config = store::agents::insert_agent_config(tx, &new)?;
                let event = Event::new("agent_config.create", &config.organization_id, "agent_config", &config.id)
                    .changes(audit);
                store::audit::record(tx, &actor, &event)?;
                Ok(config)
            })
            .await?;
        Ok(Created::Created(Json(config)))
    }

    /// Update an agent config
    ///
    /// Needs `agents:write`. Only the fields sent change; a `project_id` must name an active
    /// project of the config's organization, `null` clears it.
    #[oai(path = "/agent-configs/:id", method = "put")]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateAgentConfigRequest>,
    ) -> ApiResult<Json<AgentConfig>> {
        let scope = authz::require(&auth.0, Permission::AgentsWrite)?;
        let id = validate::path_id(&id, "Agent config")?;
        let (actor, b) = (auth.0.actor(), body.0);
        let audit = changes_of(&b);
        let (kb_scope, knowledge_base) = match b.knowledge_base {
            Some(v) => {
                let (s, text) = knowledge_base(Some(v))?;
                (Some(s), Some(text))
            }
            None => (None, None),
        };
        let changes = AgentConfigChanges {
            name: b.name.map(|n| validate::name("name", &n)).transpose()?,
            description: validate::clearable(b.description, |d| {
                validate::text("description", d.trim(), validate::DESCRIPTION_MAX)
            })?,
            agent_type: b.agent_type,
            project_id: validate::clearable(b.project_id, |p| validate::body_id("project_id", &p))?,
            llm_model: b.llm_model.map(|m| validate::name("llm_model", &m)).transpose()?,
            temperature: b.temperature.map(temperature).transpose()?,
            max_tokens: b.max_tokens.map(max_tokens).transpose()?,
            system_prompt: validate::clearable(b.system_prompt, |s| {
                validate::text("system_prompt", s.trim(), validate::SYSTEM_PROMPT_MAX)
            })?,
            tools: b.tools.map(tools).transpose()?,
            knowledge_base,
            settings: b.settings.map(|v| validate::json_object("settings", Some(v))).transpose()?,
            is_active: b.is_active,
        };
        let config = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                if let Some(kb) = &kb_scope {
                    let org = store::agents::get_agent_config(tx, &scope, &id)?.ok_or_else(not_found)?.organization_id;
                    store::documents::check_knowledge_scope(tx, &org, kb)?;
                }
                let config = store::agents::update_agent_config(tx, &scope, &id, &changes, &now())?;
                agent_event(tx, &actor, "agent_config.update", config.as_ref(), audit)?;
                Ok(config)
            })
            .await?;
        Ok(Json(config.ok_or_else(not_found)?))
    }

    /// Delete an agent config
    ///
    /// Needs `agents:write`. A soft delete: the config is deactivated and stays readable by id.
    #[oai(path = "/agent-configs/:id", method = "delete")]
    async fn delete(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let scope = authz::require(&auth.0, Permission::AgentsWrite)?;
        let id = validate::path_id(&id, "Agent config")?;
        let actor = auth.0.actor();
        let found = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let config = store::agents::set_agent_config_active(tx, &scope, &id, false, &now())?;
                agent_event(tx, &actor, "agent_config.delete", config.as_ref(), None)?;
                Ok(config)
            })
            .await?;
        found.ok_or_else(not_found)?;
        Ok(Deleted::NoContent)
    }

    /// Activate an agent config
    ///
    /// Needs `agents:write`. Reactivates a deleted (deactivated) config.
    #[oai(path = "/agent-configs/:id/activate", method = "post")]
    async fn activate(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<AgentConfig>> {
        let scope = authz::require(&auth.0, Permission::AgentsWrite)?;
        let id = validate::path_id(&id, "Agent config")?;
        let actor = auth.0.actor();
        let config = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let config = store::agents::set_agent_config_active(tx, &scope, &id, true, &now())?;
                agent_event(tx, &actor, "agent_config.activate", config.as_ref(), None)?;
                Ok(config)
            })
            .await?;
        Ok(Json(config.ok_or_else(not_found)?))
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("Agent config not found")
}

/// Records a write of `config` (none when the config was not found: nothing was written).
fn agent_event(
    tx: &mut Conn,
    actor: &Actor,
    action: &'static str,
    config: Option<&AgentConfig>,
    changes: Option<serde_json::Value>,
) -> ApiResult<()> {
    if let Some(c) = config {
        store::audit::record(
            tx,
            actor,
            &Event::new(action, &c.organization_id, "agent_config", &c.id).changes(changes),
        )?;
    }
    Ok(())
}

fn temperature(t: f64) -> ApiResult<f64> {
    if (0.0..=2.0).contains(&t) { Ok(t) } else { Err(ApiError::bad_request("temperature must be between 0.0 and 2.0")) }
}

fn max_tokens(n: i64) -> ApiResult<i64> {
    if (1..=MAX_TOKENS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad_request(format!("max_tokens must be between 1 and {MAX_TOKENS_LIMIT}")))
    }
}

/// `knowledge_base`: a JSON object whose SPEC §7 fields are checked (ids against the database
/// later, in the write); returns the scope and the object to store.
fn knowledge_base(v: Option<serde_json::Value>) -> ApiResult<(crate::knowledge::KnowledgeScope, String)> {
    let text = validate::json_object("knowledge_base", v)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let (scope, stored) = crate::knowledge::parse_scope(&value)?;
    Ok((scope, stored.to_string()))
}

/// Tool names: each trimmed, 1..=255 characters.
fn tools(raw: Vec<Text>) -> ApiResult<Vec<String>> {
    raw.iter().map(|t| validate::name("tools", t)).collect()
}
