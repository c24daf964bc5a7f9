//! SQL for `/conversations` and their messages. Every query names the owner (`user_id`) and
//! skips soft-deleted rows: another user's or a deleted conversation is simply not found.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    db::{json_col, new_id, search_needle},
    model::conversations::{Conversation, Message, MessageRole},
    pagination::Page,
    store::agents::is_active_project_of,
    store::error::{StoreError, StoreResult},
};

const CONVERSATION_COLS: &str = "id, user_id, organization_id, agent_config_id, project_id, title, context, \
                                 is_archived, message_count, created_at, updated_at";

const MESSAGE_COLS: &str = "m.id, m.conversation_id, m.role, m.content, m.metadata, m.created_at";

fn conversation_from_row(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        user_id: r.get(1)?,
        organization_id: r.get(2)?,
        agent_config_id: r.get(3)?,
        project_id: r.get(4)?,
        title: r.get(5)?,
        context: json_col(r, 6)?,
        is_archived: r.get(7)?,
        message_count: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let role: String = r.get(2)?;
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        role: MessageRole::from_db(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, "unknown message role".into())
        })?,
        content: r.get(3)?,
        metadata: json_col(r, 4)?,
        created_at: r.get(5)?,
    })
}

pub struct ConversationFilter {
    pub search: Option<String>,
    pub is_archived: Option<bool>,
    pub agent_config_id: Option<String>,
    pub project_id: Option<String>,
}

/// One page of `owner`'s live conversations, newest first, and the total of matches.
pub fn list_conversations(
    conn: &Connection,
    owner: &str,
    f: &ConversationFilter,
    page: Page,
) -> StoreResult<(Vec<Conversation>, i64)> {
    const WHERE: &str = "WHERE user_id = ?1 AND is_active = 1 AND (?2 IS NULL OR is_archived = ?2) \
                         AND (?3 IS NULL OR agent_config_id = ?3) AND (?4 IS NULL OR project_id = ?4) \
                         AND (?5 IS NULL OR instr(lower(title), ?5) > 0)";
    let pattern = f.search.as_deref().map(search_needle);
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM conversations {WHERE}"))?
        .query_row(params![owner, f.is_archived, f.agent_config_id, f.project_id, pattern], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLS} FROM conversations {WHERE} \
             ORDER BY created_at DESC, id DESC LIMIT ?6 OFFSET ?7"
        ))?
        .query_map(
            params![owner, f.is_archived, f.agent_config_id, f.project_id, pattern, page.limit, page.skip],
            conversation_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// `owner`'s live conversation `id`.
pub fn get_conversation(conn: &Connection, owner: &str, id: &str) -> StoreResult<Option<Conversation>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1 AND user_id = ?2 AND is_active = 1"
        ))?
        .query_row(params![id, owner], conversation_from_row)
        .optional()?)
}

/// Where a message sits in its conversation's order: `(created_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageKey {
    pub created_at: String,
    pub id: String,
}

impl MessageKey {
    /// Before every message.
    pub fn start() -> MessageKey {
        MessageKey { created_at: String::new(), id: String::new() }
    }

    pub fn of(m: &Message) -> MessageKey {
        MessageKey { created_at: m.created_at.clone(), id: m.id.clone() }
    }
}

/// The key of the newest live message of a conversation (the caller has checked ownership).
pub fn last_message_key(conn: &Connection, conversation_id: &str) -> StoreResult<Option<MessageKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT m.created_at, m.id FROM messages m INDEXED BY messages_conversation_created \
             WHERE m.conversation_id = ?1 AND m.is_active = 1 ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
        )?
        .query_row(params![conversation_id], |r| Ok(MessageKey { created_at: r.get(0)?, id: r.get(1)? }))
        .optional()?)
}

/// Up to `limit` live messages of a conversation after `after` up to and including `until`,
/// oldest first: one page of a walk through a conversation of any length (the caller has checked
/// ownership).
pub fn messages_between(
    conn: &Connection,
    conversation_id: &str,
    after: &MessageKey,
    until: &MessageKey,
    limit: i64,
) -> StoreResult<Vec<Message>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages m INDEXED BY messages_conversation_created \
             WHERE m.conversation_id = ?1 AND m.is_active = 1 \
             AND (m.created_at, m.id) > (?2, ?3) AND (m.created_at, m.id) <= (?4, ?5) \
             ORDER BY m.created_at, m.id LIMIT ?6"
        ))?
        .query_map(
            params![conversation_id, after.created_at, after.id, until.created_at, until.id, limit],
            message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Hands the live messages of a conversation up to and including `until` to `take`, newest
/// first, until it answers `false`; no row after that is read (the caller has checked ownership).
pub fn newest_messages(
    conn: &Connection,
    conversation_id: &str,
    until: &MessageKey,
    mut take: impl FnMut(Message) -> bool,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages m INDEXED BY messages_conversation_created \
         WHERE m.conversation_id = ?1 AND m.is_active = 1 AND (m.created_at, m.id) <= (?2, ?3) \
         ORDER BY m.created_at DESC, m.id DESC"
    ))?;
    let rows = stmt.query_map(params![conversation_id, until.created_at, until.id], message_from_row)?;
    for m in rows {
        if !take(m?) {
            break;
        }
    }
    Ok(())
}

/// One page of the live messages of `owner`'s conversation `id`, oldest first, with the
/// conversation's `message_count` as the total; `None` when there is no such conversation.
pub fn list_messages(conn: &Connection, owner: &str, id: &str, page: Page) -> StoreResult<Option<(Vec<Message>, i64)>> {
    let total: Option<i64> = conn
        .prepare_cached("SELECT message_count FROM conversations WHERE id = ?1 AND user_id = ?2 AND is_active = 1")?
        .query_row(params![id, owner], |r| r.get(0))
        .optional()?;
    let Some(total) = total else {
        return Ok(None);
    };
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages m INDEXED BY messages_conversation_created \
             WHERE m.conversation_id = ?1 AND m.is_active = 1 ORDER BY m.created_at, m.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![id, page.limit, page.skip], message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((rows, total)))
}

pub struct NewConversation {
    pub user_id: String,
    pub organization_id: String,
    pub agent_config_id: Option<String>,
    pub project_id: Option<String>,
    pub title: Option<String>,
    /// JSON object text
    pub context: String,
}

/// Inserts a conversation after checking its agent config (active, same organization) and
/// project (active, same organization); either failing is a 400 naming the field.
pub fn insert_conversation(conn: &Connection, n: &NewConversation, now: &str) -> StoreResult<Conversation> {
    if let Some(agent_config_id) = &n.agent_config_id {
        let active: Option<bool> = conn
            .prepare_cached("SELECT is_active FROM agent_configs WHERE id = ?1 AND organization_id = ?2")?
            .query_row(params![agent_config_id, n.organization_id], |r| r.get(0))
            .optional()?;
        match active {
            None => {
                return Err(StoreError::invalid("agent_config_id does not name an agent config of the organization"));
            }
            Some(false) => return Err(StoreError::invalid("agent_config_id names an inactive agent config")),
            Some(true) => {}
        }
    }
    if let Some(project_id) = &n.project_id
        && !is_active_project_of(&mut crate::store::conn::Conn::Sqlite(conn), &n.organization_id, project_id)?
    {
        return Err(StoreError::invalid("project_id does not name an active project of the organization"));
    }
    let id = new_id();
    conn.prepare_cached(&format!(
        "INSERT INTO conversations ({CONVERSATION_COLS}, is_active) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?8, 1)"
    ))?
    .execute(params![
        id,
        n.user_id,
        n.organization_id,
        n.agent_config_id,
        n.project_id,
        n.title,
        n.context,
        now
    ])?;
    get_conversation(conn, &n.user_id, &id)?.ok_or_else(|| StoreError::internal("inserted conversation vanished"))
}

/// A partial update: `None` leaves a field as it is; `title: Some(None)` clears the title.
#[derive(Debug, Default)]
pub struct ConversationChanges {
    pub title: Option<Option<String>>,
    pub is_archived: Option<bool>,
    /// JSON object text
    pub context: Option<String>,
}

/// Applies `c` to `owner`'s conversation `id`; `None` when there is no such conversation.
pub fn update_conversation(
    conn: &Connection,
    owner: &str,
    id: &str,
    c: &ConversationChanges,
    now: &str,
) -> StoreResult<Option<Conversation>> {
    let changed = conn
        .prepare_cached(
            "UPDATE conversations SET title = CASE WHEN ?3 THEN ?4 ELSE title END, \
             is_archived = COALESCE(?5, is_archived), context = COALESCE(?6, context), updated_at = ?7 \
             WHERE id = ?1 AND user_id = ?2 AND is_active = 1",
        )?
        .execute(params![id, owner, c.title.is_some(), c.title.clone().flatten(), c.is_archived, c.context, now])?;
    if changed == 0 {
        return Ok(None);
    }
    get_conversation(conn, owner, id)
}

/// Soft-deletes `owner`'s conversation `id`; false when there is no such conversation.
pub fn delete_conversation(conn: &Connection, owner: &str, id: &str, now: &str) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE conversations SET is_active = 0, updated_at = ?3 WHERE id = ?1 AND user_id = ?2 AND is_active = 1",
        )?
        .execute(params![id, owner, now])?;
    Ok(changed == 1)
}

pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    /// JSON object text
    pub metadata: String,
}

/// Adds a message to `owner`'s conversation `id` and counts it there (the caller's transaction
/// holds both); `None` when there is no such conversation.
pub fn insert_message(
    conn: &Connection,
    owner: &str,
    conversation_id: &str,
    n: &NewMessage,
    now: &str,
) -> StoreResult<Option<Message>> {
    let counted = conn
        .prepare_cached(
            "UPDATE conversations SET message_count = message_count + 1, updated_at = ?3 \
             WHERE id = ?1 AND user_id = ?2 AND is_active = 1",
        )?
        .execute(params![conversation_id, owner, now])?;
    if counted == 0 {
        return Ok(None);
    }
    let id = new_id();
    conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, role, content, metadata, is_active, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
    )?
    .execute(params![id, conversation_id, n.role.as_str(), n.content, n.metadata, now])?;
    Ok(Some(Message {
        id,
        conversation_id: conversation_id.to_string(),
        role: n.role,
        content: n.content.clone(),
        metadata: serde_json::from_str(&n.metadata).map_err(StoreError::internal)?,
        created_at: now.to_string(),
    }))
}

/// A live message of `owner`'s live conversation.
pub fn get_message(conn: &Connection, owner: &str, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = ?1 AND m.conversation_id = ?2 AND m.is_active = 1 AND c.user_id = ?3 AND c.is_active = 1"
        ))?
        .query_row(params![id, conversation_id, owner], message_from_row)
        .optional()?)
}

/// Soft-deletes a message of `owner`'s conversation and uncounts it there (one transaction);
/// false when there is no such live message.
pub fn delete_message(conn: &Connection, owner: &str, conversation_id: &str, id: &str, now: &str) -> StoreResult<bool> {
    let deleted = conn
        .prepare_cached(
            "UPDATE messages SET is_active = 0 WHERE id = ?1 AND conversation_id = ?2 AND is_active = 1 \
             AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = ?2 AND c.user_id = ?3 AND c.is_active = 1)",
        )?
        .execute(params![id, conversation_id, owner])?;
    if deleted == 0 {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE conversations SET message_count = message_count - 1, updated_at = ?2 WHERE id = ?1")?
        .execute(params![conversation_id, now])?;
    Ok(true)
}
