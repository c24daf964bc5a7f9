//! `/agent-configs` on both backends. Every query is limited to the caller's scope. The pub
//! functions dispatch once to the private `sqlite` or `pg` module below (the layout of
//! `store::organizations`).

use crate::{
    authz::Scope,
    model::agents::{AgentConfig, AgentType},
    pagination::Page,
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

pub struct AgentConfigFilter {
    pub search: Option<String>,
    pub agent_type: Option<AgentType>,
    pub project_id: Option<String>,
    pub is_active: bool,
}

/// One page of the scope's agent configs, newest first, and the total of matches.
pub fn list_agent_configs(
    c: &mut Conn,
    scope: &Scope,
    f: &AgentConfigFilter,
    page: Page,
) -> StoreResult<(Vec<AgentConfig>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_agent_configs(c, scope, f, page),
        Conn::Postgres(t) => pg::list_agent_configs(t, scope, f, page),
    }
}

/// An agent config of the scope, active or not.
pub fn get_agent_config(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Option<AgentConfig>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_agent_config(c, scope, id),
        Conn::Postgres(t) => pg::get_agent_config(t, scope, id),
    }
}

/// Whether `project_id` names an active project of `organization_id`.
pub fn is_active_project_of(c: &mut Conn, organization_id: &str, project_id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::is_active_project_of(c, organization_id, project_id),
        Conn::Postgres(t) => pg::is_active_project_of(t, organization_id, project_id),
    }
}

fn project_invalid() -> StoreError {
    StoreError::invalid("project_id does not name an active project of the organization")
}

pub struct NewAgentConfig {
    pub id: String,
    pub organization_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub agent_type: AgentType,
    pub llm_model: String,
    pub temperature: f64,
    pub max_tokens: i64,
    pub system_prompt: Option<String>,
    pub tools: Vec<String>,
    /// JSON object text
    pub knowledge_base: String,
    /// JSON object text
    pub settings: String,
    pub created_by: String,
    pub now: String,
}

/// Inserts an agent config after checking its project belongs to the same organization.
pub fn insert_agent_config(c: &mut Conn, n: &NewAgentConfig) -> StoreResult<AgentConfig> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_agent_config(c, n),
        Conn::Postgres(t) => pg::insert_agent_config(t, n),
    }
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears a nullable one.
#[derive(Debug, Default)]
pub struct AgentConfigChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub agent_type: Option<AgentType>,
    pub project_id: Option<Option<String>>,
    pub llm_model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub system_prompt: Option<Option<String>>,
    pub tools: Option<Vec<String>>,
    /// JSON object text
    pub knowledge_base: Option<String>,
    /// JSON object text
    pub settings: Option<String>,
    pub is_active: Option<bool>,
}

/// Applies `changes` to the scope's agent config `id`; `None` when there is no such config.
pub fn update_agent_config(
    c: &mut Conn,
    scope: &Scope,
    id: &str,
    changes: &AgentConfigChanges,
    now: &str,
) -> StoreResult<Option<AgentConfig>> {
    match c {
        Conn::Sqlite(c) => sqlite::update_agent_config(c, scope, id, changes, now),
        Conn::Postgres(t) => pg::update_agent_config(t, scope, id, changes, now),
    }
}

/// Soft-deletes (`false`) or reactivates (`true`) the scope's agent config `id`.
pub fn set_agent_config_active(
    c: &mut Conn,
    scope: &Scope,
    id: &str,
    active: bool,
    now: &str,
) -> StoreResult<Option<AgentConfig>> {
    match c {
        Conn::Sqlite(c) => sqlite::set_agent_config_active(c, scope, id, active, now),
        Conn::Postgres(t) => pg::set_agent_config_active(t, scope, id, active, now),
    }
}

fn tools_json(tools: &[String]) -> String {
    serde_json::Value::from(tools.to_vec()).to_string()
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{AgentConfigChanges, AgentConfigFilter, NewAgentConfig, project_invalid, tools_json};
    use crate::{
        authz::Scope,
        db::{json_col, search_needle},
        model::agents::{AgentConfig, AgentType},
        pagination::Page,
        store::error::{StoreError, StoreResult},
    };

    const COLS: &str = "id, organization_id, project_id, name, description, agent_type, llm_model, temperature, \
                        max_tokens, system_prompt, tools, knowledge_base, settings, is_active, created_by, created_at, \
                        updated_at";

    fn from_row(r: &Row<'_>) -> rusqlite::Result<AgentConfig> {
        let agent_type: String = r.get(5)?;
        Ok(AgentConfig {
            id: r.get(0)?,
            organization_id: r.get(1)?,
            project_id: r.get(2)?,
            name: r.get(3)?,
            description: r.get(4)?,
            agent_type: AgentType::from_db(&agent_type).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, "unknown agent_type".into())
            })?,
            llm_model: r.get(6)?,
            temperature: r.get(7)?,
            max_tokens: r.get(8)?,
            system_prompt: r.get(9)?,
            tools: json_col(r, 10)?,
            knowledge_base: json_col(r, 11)?,
            settings: json_col(r, 12)?,
            is_active: r.get(13)?,
            created_by: r.get(14)?,
            created_at: r.get(15)?,
            updated_at: r.get(16)?,
        })
    }

    /// One page of the scope's agent configs, newest first, and the total of matches.
    pub(super) fn list_agent_configs(
        conn: &Connection,
        scope: &Scope,
        f: &AgentConfigFilter,
        page: Page,
    ) -> StoreResult<(Vec<AgentConfig>, i64)> {
        const WHERE: &str = "WHERE (?1 IS NULL OR organization_id = ?1) AND is_active = ?2 \
                             AND (?3 IS NULL OR agent_type = ?3) AND (?4 IS NULL OR project_id = ?4) \
                             AND (?5 IS NULL OR instr(lower(name), ?5) > 0 OR instr(lower(description), ?5) > 0)";
        let pattern = f.search.as_deref().map(search_needle);
        let agent_type = f.agent_type.map(AgentType::as_str);
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM agent_configs {WHERE}"))?
            .query_row(params![scope.org(), f.is_active, agent_type, f.project_id, pattern], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM agent_configs {WHERE} ORDER BY created_at DESC, id DESC LIMIT ?6 OFFSET ?7"
            ))?
            .query_map(
                params![scope.org(), f.is_active, agent_type, f.project_id, pattern, page.limit, page.skip],
                from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// An agent config of the scope, active or not.
    pub(super) fn get_agent_config(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<AgentConfig>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM agent_configs WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)"
            ))?
            .query_row(params![id, scope.org()], from_row)
            .optional()?)
    }

    /// Whether `project_id` names an active project of `organization_id`.
    pub(super) fn is_active_project_of(
        conn: &Connection,
        organization_id: &str,
        project_id: &str,
    ) -> StoreResult<bool> {
        Ok(conn
            .prepare_cached("SELECT 1 FROM projects WHERE id = ?1 AND organization_id = ?2 AND is_active = 1")?
            .query_row(params![project_id, organization_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn require_project(conn: &Connection, organization_id: &str, project_id: Option<&str>) -> StoreResult<()> {
        match project_id {
            Some(p) if !is_active_project_of(conn, organization_id, p)? => Err(project_invalid()),
            _ => Ok(()),
        }
    }

    /// Inserts an agent config after checking its project belongs to the same organization.
    pub(super) fn insert_agent_config(conn: &Connection, n: &NewAgentConfig) -> StoreResult<AgentConfig> {
        require_project(conn, &n.organization_id, n.project_id.as_deref())?;
        conn.prepare_cached(&format!(
            "INSERT INTO agent_configs ({COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?14, ?15, ?15)"
        ))?
        .execute(params![
            n.id,
            n.organization_id,
            n.project_id,
            n.name,
            n.description,
            n.agent_type.as_str(),
            n.llm_model,
            n.temperature,
            n.max_tokens,
            n.system_prompt,
            tools_json(&n.tools),
            n.knowledge_base,
            n.settings,
            n.created_by,
            n.now
        ])?;
        get_agent_config(conn, &Scope::system_all(), &n.id)?
            .ok_or_else(|| StoreError::internal("inserted agent config vanished"))
    }

    /// Applies `c` to the scope's agent config `id`; `None` when there is no such config.
    pub(super) fn update_agent_config(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        c: &AgentConfigChanges,
        now: &str,
    ) -> StoreResult<Option<AgentConfig>> {
        let Some(cur) = get_agent_config(conn, scope, id)? else {
            return Ok(None);
        };
        if let Some(project_id) = &c.project_id {
            require_project(conn, &cur.organization_id, project_id.as_deref())?;
        }
        let knowledge_base = c.knowledge_base.clone().unwrap_or_else(|| cur.knowledge_base.to_string());
        let settings = c.settings.clone().unwrap_or_else(|| cur.settings.to_string());
        conn.prepare_cached(
            "UPDATE agent_configs SET name = ?2, description = ?3, agent_type = ?4, project_id = ?5, llm_model = ?6, \
             temperature = ?7, max_tokens = ?8, system_prompt = ?9, tools = ?10, knowledge_base = ?11, settings = ?12, \
             is_active = ?13, updated_at = ?14 WHERE id = ?1 AND (?15 IS NULL OR organization_id = ?15)",
        )?
        .execute(params![
            id,
            c.name.as_ref().unwrap_or(&cur.name),
            c.description.as_ref().unwrap_or(&cur.description),
            c.agent_type.unwrap_or(cur.agent_type).as_str(),
            c.project_id.as_ref().unwrap_or(&cur.project_id),
            c.llm_model.as_ref().unwrap_or(&cur.llm_model),
            c.temperature.unwrap_or(cur.temperature),
            c.max_tokens.unwrap_or(cur.max_tokens),
            c.system_prompt.as_ref().unwrap_or(&cur.system_prompt),
            tools_json(c.tools.as_ref().unwrap_or(&cur.tools)),
            knowledge_base,
            settings,
            c.is_active.unwrap_or(cur.is_active),
            now,
            scope.org()
        ])?;
        get_agent_config(conn, scope, id)
    }

    /// Soft-deletes (`false`) or reactivates (`true`) the scope's agent config `id`.
    pub(super) fn set_agent_config_active(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        active: bool,
        now: &str,
    ) -> StoreResult<Option<AgentConfig>> {
        let changed = conn
            .prepare_cached(
                "UPDATE agent_configs SET is_active = ?3, updated_at = ?4 \
                 WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
            )?
            .execute(params![id, scope.org(), active, now])?;
        if changed == 0 {
            return Ok(None);
        }
        get_agent_config(conn, scope, id)
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{AgentConfigChanges, AgentConfigFilter, NewAgentConfig, project_invalid, tools_json};
    use crate::{
        authz::Scope,
        db::search_needle,
        model::agents::{AgentConfig, AgentType},
        pagination::Page,
        store::{
            conn::{holds_nul, pg_json_col, pg_ts, pg_ts_col},
            error::{StoreError, StoreResult},
        },
    };

    // the jsonb columns as text (parsed by serde_json, as on SQLite)
    const COLS: &str = "id, organization_id, project_id, name, description, agent_type, llm_model, temperature, \
                        max_tokens, system_prompt, tools::text, knowledge_base::text, settings::text, is_active, \
                        created_by, created_at, updated_at";

    fn from_row(r: &Row) -> StoreResult<AgentConfig> {
        let agent_type: String = r.try_get(5)?;
        Ok(AgentConfig {
            id: r.try_get(0)?,
            organization_id: r.try_get(1)?,
            project_id: r.try_get(2)?,
            name: r.try_get(3)?,
            description: r.try_get(4)?,
            agent_type: AgentType::from_db(&agent_type)
                .ok_or_else(|| StoreError::internal(format_args!("unknown agent_type {agent_type:?}")))?,
            llm_model: r.try_get(6)?,
            temperature: r.try_get(7)?,
            max_tokens: r.try_get(8)?,
            system_prompt: r.try_get(9)?,
            tools: pg_json_col(r, 10)?,
            knowledge_base: pg_json_col(r, 11)?,
            settings: pg_json_col(r, 12)?,
            is_active: r.try_get(13)?,
            created_by: r.try_get(14)?,
            created_at: pg_ts_col(r, 15)?,
            updated_at: pg_ts_col(r, 16)?,
        })
    }

    // strpos over nocase(): SQLite's instr(lower(..)) (ASCII folding; %, _ and \ are themselves)
    const WHERE: &str = "WHERE ($1::text IS NULL OR organization_id = $1) AND is_active = $2 \
         AND ($3::text IS NULL OR agent_type = $3) AND ($4::text IS NULL OR project_id = $4) \
         AND ($5::text IS NULL OR strpos(nocase(name), $5) > 0 OR strpos(nocase(description), $5) > 0)";

    pub(super) fn list_agent_configs(
        t: &mut Transaction,
        scope: &Scope,
        f: &AgentConfigFilter,
        page: Page,
    ) -> StoreResult<(Vec<AgentConfig>, i64)> {
        if holds_nul([f.search.as_deref(), f.project_id.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = f.search.as_deref().map(search_needle);
        let agent_type = f.agent_type.map(AgentType::as_str);
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM agent_configs {WHERE}"),
                &[&scope.org(), &f.is_active, &agent_type, &f.project_id, &pattern],
            )?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {COLS} FROM agent_configs {WHERE} ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
                ),
                &[&scope.org(), &f.is_active, &agent_type, &f.project_id, &pattern, &page.limit, &page.skip],
            )?
            .iter()
            .map(from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn get_agent_config(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Option<AgentConfig>> {
        t.query_opt(
            &format!("SELECT {COLS} FROM agent_configs WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)"),
            &[&id, &scope.org()],
        )?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    pub(super) fn is_active_project_of(
        t: &mut Transaction,
        organization_id: &str,
        project_id: &str,
    ) -> StoreResult<bool> {
        Ok(t.query_opt(
            "SELECT 1 FROM projects WHERE id = $1 AND organization_id = $2 AND is_active",
            &[&project_id, &organization_id],
        )?
        .is_some())
    }

    fn require_project(t: &mut Transaction, organization_id: &str, project_id: Option<&str>) -> StoreResult<()> {
        match project_id {
            Some(p) if !is_active_project_of(t, organization_id, p)? => Err(project_invalid()),
            _ => Ok(()),
        }
    }

    pub(super) fn insert_agent_config(t: &mut Transaction, n: &NewAgentConfig) -> StoreResult<AgentConfig> {
        require_project(t, &n.organization_id, n.project_id.as_deref())?;
        t.execute(
            &format!(
                "INSERT INTO agent_configs ({COLS_PLAIN}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11::text::jsonb, $12::text::jsonb, $13::text::jsonb, true, $14, $15, $15)"
            ),
            &[
                &n.id,
                &n.organization_id,
                &n.project_id,
                &n.name,
                &n.description,
                &n.agent_type.as_str(),
                &n.llm_model,
                &n.temperature,
                &n.max_tokens,
                &n.system_prompt,
                &tools_json(&n.tools),
                &n.knowledge_base,
                &n.settings,
                &n.created_by,
                &pg_ts(&n.now)?,
            ],
        )?;
        get_agent_config(t, &Scope::system_all(), &n.id)?
            .ok_or_else(|| StoreError::internal("inserted agent config vanished"))
    }

    const COLS_PLAIN: &str = "id, organization_id, project_id, name, description, agent_type, llm_model, \
                              temperature, max_tokens, system_prompt, tools, knowledge_base, settings, is_active, \
                              created_by, created_at, updated_at";

    pub(super) fn update_agent_config(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        c: &AgentConfigChanges,
        now: &str,
    ) -> StoreResult<Option<AgentConfig>> {
        let Some(cur) = get_agent_config(t, scope, id)? else {
            return Ok(None);
        };
        if let Some(project_id) = &c.project_id {
            require_project(t, &cur.organization_id, project_id.as_deref())?;
        }
        let knowledge_base = c.knowledge_base.clone().unwrap_or_else(|| cur.knowledge_base.to_string());
        let settings = c.settings.clone().unwrap_or_else(|| cur.settings.to_string());
        t.execute(
            "UPDATE agent_configs SET name = $2, description = $3, agent_type = $4, project_id = $5, llm_model = $6, \
             temperature = $7, max_tokens = $8, system_prompt = $9, tools = $10::text::jsonb, \
             knowledge_base = $11::text::jsonb, settings = $12::text::jsonb, is_active = $13, updated_at = $14 \
             WHERE id = $1 AND ($15::text IS NULL OR organization_id = $15)",
            &[
                &id,
                c.name.as_ref().unwrap_or(&cur.name),
                c.description.as_ref().unwrap_or(&cur.description),
                &c.agent_type.unwrap_or(cur.agent_type).as_str(),
                c.project_id.as_ref().unwrap_or(&cur.project_id),
                c.llm_model.as_ref().unwrap_or(&cur.llm_model),
                &c.temperature.unwrap_or(cur.temperature),
                &c.max_tokens.unwrap_or(cur.max_tokens),
                c.system_prompt.as_ref().unwrap_or(&cur.system_prompt),
                &tools_json(c.tools.as_ref().unwrap_or(&cur.tools)),
                &knowledge_base,
                &settings,
                &c.is_active.unwrap_or(cur.is_active),
                &pg_ts(now)?,
                &scope.org(),
            ],
        )?;
        get_agent_config(t, scope, id)
    }

    pub(super) fn set_agent_config_active(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        active: bool,
        now: &str,
    ) -> StoreResult<Option<AgentConfig>> {
        let changed = t.execute(
            "UPDATE agent_configs SET is_active = $3, updated_at = $4 \
             WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
            &[&id, &scope.org(), &active, &pg_ts(now)?],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        get_agent_config(t, scope, id)
    }
}
