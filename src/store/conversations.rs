//! Conversations and their messages, on both backends. Every query names the owner (`user_id`)
//! and skips soft-deleted rows: another user's or a deleted conversation is simply not found.

use crate::{
    model::{
        audit::Actor,
        conversations::{Conversation, Message, MessageRole},
    },
    pagination::Page,
    store::{audit::Event, conn::Conn, error::StoreResult},
};

pub struct ConversationFilter {
    pub search: Option<String>,
    pub is_archived: Option<bool>,
    pub agent_config_id: Option<String>,
    pub project_id: Option<String>,
}

/// One page of `owner`'s live conversations, newest first, and the total of matches.
pub fn list_conversations(
    c: &mut Conn,
    owner: &str,
    f: &ConversationFilter,
    page: Page,
) -> StoreResult<(Vec<Conversation>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_conversations(c, owner, f, page),
        Conn::Postgres(t) => pg::list_conversations(t, owner, f, page),
    }
}

/// `owner`'s live conversation `id`.
pub fn get_conversation(c: &mut Conn, owner: &str, id: &str) -> StoreResult<Option<Conversation>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_conversation(c, owner, id),
        Conn::Postgres(t) => pg::get_conversation(t, owner, id),
    }
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
pub fn last_message_key(c: &mut Conn, conversation_id: &str) -> StoreResult<Option<MessageKey>> {
    match c {
        Conn::Sqlite(c) => sqlite::last_message_key(c, conversation_id),
        Conn::Postgres(t) => pg::last_message_key(t, conversation_id),
    }
}

/// Up to `limit` live messages of a conversation after `after` up to and including `until`,
/// oldest first: one page of a walk through a conversation of any length (the caller has checked
/// ownership).
pub fn messages_between(
    c: &mut Conn,
    conversation_id: &str,
    after: &MessageKey,
    until: &MessageKey,
    limit: i64,
) -> StoreResult<Vec<Message>> {
    match c {
        Conn::Sqlite(c) => sqlite::messages_between(c, conversation_id, after, until, limit),
        Conn::Postgres(t) => pg::messages_between(t, conversation_id, after, until, limit),
    }
}

/// Hands the live messages of a conversation up to and including `until` to `take`, newest
/// first, until it answers `false`; no row after that is read (the caller has checked ownership).
pub fn newest_messages(
    c: &mut Conn,
    conversation_id: &str,
    until: &MessageKey,
    take: impl FnMut(Message) -> bool,
) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::newest_messages(c, conversation_id, until, take),
        Conn::Postgres(t) => pg::newest_messages(t, conversation_id, until, take),
    }
}

/// One page of the live messages of `owner`'s conversation `id`, oldest first, with the
/// conversation's `message_count` as the total; `None` when there is no such conversation. One
/// statement on PostgreSQL (call it through `Store::read_statement`).
pub fn list_messages(c: &mut Conn, owner: &str, id: &str, page: Page) -> StoreResult<Option<(Vec<Message>, i64)>> {
    match c {
        Conn::Sqlite(c) => sqlite::list_messages(c, owner, id, page),
        Conn::Postgres(t) => pg::list_messages(t, owner, id, page),
    }
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
pub fn insert_conversation(c: &mut Conn, n: &NewConversation, now: &str) -> StoreResult<Conversation> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_conversation(c, n, now),
        Conn::Postgres(t) => pg::insert_conversation(t, n, now),
    }
}

/// A partial update: `None` leaves a field as it is; `title: Some(None)` clears the title.
#[derive(Debug, Default)]
pub struct ConversationChanges {
    pub title: Option<Option<String>>,
    pub is_archived: Option<bool>,
    /// JSON object text
    pub context: Option<String>,
}

/// Applies `changes` to `owner`'s conversation `id`; `None` when there is no such conversation.
pub fn update_conversation(
    c: &mut Conn,
    owner: &str,
    id: &str,
    changes: &ConversationChanges,
    now: &str,
) -> StoreResult<Option<Conversation>> {
    match c {
        Conn::Sqlite(c) => sqlite::update_conversation(c, owner, id, changes, now),
        Conn::Postgres(t) => pg::update_conversation(t, owner, id, changes, now),
    }
}

/// Soft-deletes `owner`'s conversation `id`; false when there is no such conversation.
pub fn delete_conversation(c: &mut Conn, owner: &str, id: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::delete_conversation(c, owner, id, now),
        Conn::Postgres(t) => pg::delete_conversation(t, owner, id, now),
    }
}

pub struct NewMessage {
    /// The message's id, chosen by the caller (an audit event can name it before it is written).
    pub id: String,
    pub role: MessageRole,
    pub content: String,
    /// JSON object text
    pub metadata: String,
}

/// Adds a message to `owner`'s conversation `id` and counts it there (the caller's transaction
/// holds both); `None` when there is no such conversation.
pub fn insert_message(
    c: &mut Conn,
    owner: &str,
    conversation_id: &str,
    n: &NewMessage,
    now: &str,
) -> StoreResult<Option<Message>> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_message(c, owner, conversation_id, n, now),
        Conn::Postgres(t) => pg::insert_message_recorded(t, owner, conversation_id, n, now, None),
    }
}

/// [`insert_message`] and the event that records it, which names the message by its id
/// (`event.target_id` = `n.id`): on PostgreSQL one statement (no event without the message), so
/// that, run by [`crate::store::conn::Store::write_statement`], the conversation's row is locked
/// only while that statement runs and commits, not for the round trips of a transaction.
pub fn post_message(
    c: &mut Conn,
    actor: &Actor,
    event: &Event<'_>,
    owner: &str,
    conversation_id: &str,
    n: &NewMessage,
    now: &str,
) -> StoreResult<Option<Message>> {
    match c {
        Conn::Sqlite(_) => {
            // no such conversation: the caller's transaction rolls the event back
            crate::store::audit::record(c, actor, event)?;
            insert_message(c, owner, conversation_id, n, now)
        }
        Conn::Postgres(t) => {
            let row = crate::store::audit::pg::EventRow::new(actor, event)?;
            pg::insert_message_recorded(t, owner, conversation_id, n, now, Some(&row))
        }
    }
}

/// A live message of `owner`'s live conversation.
pub fn get_message(c: &mut Conn, owner: &str, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_message(c, owner, conversation_id, id),
        Conn::Postgres(t) => pg::get_message(t, owner, conversation_id, id),
    }
}

/// Soft-deletes a message of `owner`'s conversation and uncounts it there (one transaction);
/// false when there is no such live message.
pub fn delete_message(c: &mut Conn, owner: &str, conversation_id: &str, id: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::delete_message(c, owner, conversation_id, id, now),
        Conn::Postgres(t) => pg::delete_message(t, owner, conversation_id, id, now),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{ConversationChanges, ConversationFilter, MessageKey, NewConversation, NewMessage};
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

    /// One page of `owner`'s live conversations, newest first, and the total of matches.
    pub(super) fn list_conversations(
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
    pub(super) fn get_conversation(conn: &Connection, owner: &str, id: &str) -> StoreResult<Option<Conversation>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1 AND user_id = ?2 AND is_active = 1"
            ))?
            .query_row(params![id, owner], conversation_from_row)
            .optional()?)
    }

    /// The key of the newest live message of a conversation (the caller has checked ownership).
    pub(super) fn last_message_key(conn: &Connection, conversation_id: &str) -> StoreResult<Option<MessageKey>> {
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
    pub(super) fn messages_between(
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
    pub(super) fn newest_messages(
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
    pub(super) fn list_messages(
        conn: &Connection,
        owner: &str,
        id: &str,
        page: Page,
    ) -> StoreResult<Option<(Vec<Message>, i64)>> {
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

    /// Inserts a conversation after checking its agent config (active, same organization) and
    /// project (active, same organization); either failing is a 400 naming the field.
    pub(super) fn insert_conversation(conn: &Connection, n: &NewConversation, now: &str) -> StoreResult<Conversation> {
        if let Some(agent_config_id) = &n.agent_config_id {
            let active: Option<bool> = conn
                .prepare_cached("SELECT is_active FROM agent_configs WHERE id = ?1 AND organization_id = ?2")?
                .query_row(params![agent_config_id, n.organization_id], |r| r.get(0))
                .optional()?;
            match active {
                None => {
                    return Err(StoreError::invalid(
                        "agent_config_id does not name an agent config of the organization",
                    ));
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

    /// Applies `c` to `owner`'s conversation `id`; `None` when there is no such conversation.
    pub(super) fn update_conversation(
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
    pub(super) fn delete_conversation(conn: &Connection, owner: &str, id: &str, now: &str) -> StoreResult<bool> {
        let changed = conn
            .prepare_cached(
                "UPDATE conversations SET is_active = 0, updated_at = ?3 WHERE id = ?1 AND user_id = ?2 AND is_active = 1",
            )?
            .execute(params![id, owner, now])?;
        Ok(changed == 1)
    }

    /// Adds a message to `owner`'s conversation `id` and counts it there (the caller's transaction
    /// holds both); `None` when there is no such conversation.
    pub(super) fn insert_message(
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
        let id = n.id.clone();
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
    pub(super) fn get_message(
        conn: &Connection,
        owner: &str,
        conversation_id: &str,
        id: &str,
    ) -> StoreResult<Option<Message>> {
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
    pub(super) fn delete_message(
        conn: &Connection,
        owner: &str,
        conversation_id: &str,
        id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let deleted = conn
            .prepare_cached(
                "UPDATE messages SET is_active = 0 WHERE id = ?1 AND conversation_id = ?2 AND is_active = 1 \
                 AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = ?2 AND c.user_id = ?3 AND c.is_active = 1)",
            )?
            .execute(params![id, conversation_id, owner])?;
        if deleted == 0 {
            return Ok(false);
        }
        conn.prepare_cached(
            "UPDATE conversations SET message_count = message_count - 1, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![conversation_id, now])?;
        Ok(true)
    }
}

mod pg {
    use postgres::{Row, types::ToSql};

    use crate::{pg::Transaction, store::audit::pg::EventRow};

    use super::{ConversationChanges, ConversationFilter, MessageKey, NewConversation, NewMessage};
    use crate::{
        db::{new_id, search_needle},
        model::conversations::{Conversation, Message, MessageRole},
        pagination::Page,
        store::{
            audit,
            conn::{holds_nul, pg_json_col, pg_ts, pg_ts_col},
            error::{StoreError, StoreResult},
        },
    };

    const CONVERSATION_COLS: &str = "id, user_id, organization_id, agent_config_id, project_id, title, context::text, \
                                     is_archived, message_count, created_at, updated_at";

    const MESSAGE_COLS: &str = "m.id, m.conversation_id, m.role, m.content, m.metadata::text, m.created_at";

    fn conversation_from_row(r: &Row) -> StoreResult<Conversation> {
        Ok(Conversation {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            organization_id: r.try_get(2)?,
            agent_config_id: r.try_get(3)?,
            project_id: r.try_get(4)?,
            title: r.try_get(5)?,
            context: pg_json_col(r, 6)?,
            is_archived: r.try_get(7)?,
            message_count: r.try_get(8)?,
            created_at: pg_ts_col(r, 9)?,
            updated_at: pg_ts_col(r, 10)?,
        })
    }

    fn message_from_row(r: &Row) -> StoreResult<Message> {
        let role: String = r.try_get(2)?;
        Ok(Message {
            id: r.try_get(0)?,
            conversation_id: r.try_get(1)?,
            role: MessageRole::from_db(&role)
                .ok_or_else(|| StoreError::internal(format_args!("unknown message role {role:?}")))?,
            content: r.try_get(3)?,
            metadata: pg_json_col(r, 4)?,
            created_at: pg_ts_col(r, 5)?,
        })
    }

    /// A key's time as a `timestamptz` parameter; `MessageKey::start()` (before every message,
    /// the empty text on SQLite) is NULL, which the queries read as "no lower bound".
    fn key_ts(k: &MessageKey) -> StoreResult<Option<time::OffsetDateTime>> {
        if k.created_at.is_empty() { Ok(None) } else { pg_ts(&k.created_at).map(Some) }
    }

    // nocase() folds ASCII letters only, like SQLite's lower() and the needle; strpos, not LIKE,
    // so that %, _ and \ in the search are themselves
    const LIST_WHERE: &str = "WHERE user_id = $1 AND is_active AND ($2::boolean IS NULL OR is_archived = $2) \
                              AND ($3::text IS NULL OR agent_config_id = $3) AND ($4::text IS NULL OR project_id = $4) \
                              AND ($5::text IS NULL OR strpos(nocase(title), $5) > 0)";

    pub(super) fn list_conversations(
        t: &mut Transaction,
        owner: &str,
        f: &ConversationFilter,
        page: Page,
    ) -> StoreResult<(Vec<Conversation>, i64)> {
        if holds_nul([f.search.as_deref(), f.agent_config_id.as_deref(), f.project_id.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = f.search.as_deref().map(search_needle);
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM conversations {LIST_WHERE}"),
                &[&owner, &f.is_archived, &f.agent_config_id, &f.project_id, &pattern],
            )?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {CONVERSATION_COLS} FROM conversations {LIST_WHERE} \
                     ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
                ),
                &[&owner, &f.is_archived, &f.agent_config_id, &f.project_id, &pattern, &page.limit, &page.skip],
            )?
            .iter()
            .map(conversation_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn get_conversation(t: &mut Transaction, owner: &str, id: &str) -> StoreResult<Option<Conversation>> {
        t.query_opt(
            &format!("SELECT {CONVERSATION_COLS} FROM conversations WHERE id = $1 AND user_id = $2 AND is_active"),
            &[&id, &owner],
        )?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    pub(super) fn last_message_key(t: &mut Transaction, conversation_id: &str) -> StoreResult<Option<MessageKey>> {
        t.query_opt(
            "SELECT m.created_at, m.id FROM messages m WHERE m.conversation_id = $1 AND m.is_active \
             ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
            &[&conversation_id],
        )?
        .map(|r| Ok(MessageKey { created_at: pg_ts_col(&r, 0)?, id: r.try_get(1)? }))
        .transpose()
    }

    // the keyset of the SQLite path: (created_at, id) row comparisons, answered by the partial
    // index messages_conversation_created (conversation_id, created_at, id) WHERE is_active
    pub(super) fn messages_between(
        t: &mut Transaction,
        conversation_id: &str,
        after: &MessageKey,
        until: &MessageKey,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        let (after_at, until_at) = (key_ts(after)?, key_ts(until)?);
        t.query(
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages m WHERE m.conversation_id = $1 AND m.is_active \
                 AND ($2::timestamptz IS NULL OR (m.created_at, m.id) > ($2, $3)) \
                 AND (m.created_at, m.id) <= ($4, $5) ORDER BY m.created_at, m.id LIMIT $6"
            ),
            &[&conversation_id, &after_at, &after.id, &until_at, &until.id, &limit],
        )?
        .iter()
        .map(message_from_row)
        .collect()
    }

    /// Rows are read in keyset steps of this many, newest first, so a caller that stops early
    /// leaves the rest unread, as on SQLite. (One query without a LIMIT, even read through a
    /// portal, is planned for every row: a sort of the whole conversation.)
    const NEWEST_STEP: i64 = 32;

    pub(super) fn newest_messages(
        t: &mut Transaction,
        conversation_id: &str,
        until: &MessageKey,
        mut take: impl FnMut(Message) -> bool,
    ) -> StoreResult<()> {
        // the first step includes `until`, the next ones start below the last row read
        let first = format!(
            "SELECT {MESSAGE_COLS} FROM messages m WHERE m.conversation_id = $1 AND m.is_active \
             AND (m.created_at, m.id) <= ($2, $3) ORDER BY m.created_at DESC, m.id DESC LIMIT $4"
        );
        let next = first.replace("<= ($2, $3)", "< ($2, $3)");
        let (mut at, mut id, mut sql) = (key_ts(until)?, until.id.clone(), &first);
        loop {
            let rows = t.query(sql.as_str(), &[&conversation_id, &at, &id, &NEWEST_STEP])?;
            let mut last = None;
            for r in &rows {
                let m = message_from_row(r)?;
                last = Some((r.try_get::<_, time::OffsetDateTime>(5)?, m.id.clone()));
                if !take(m) {
                    return Ok(());
                }
            }
            match last {
                Some((a, i)) if rows.len() as i64 == NEWEST_STEP => (at, id, sql) = (Some(a), i, &next),
                _ => return Ok(()),
            }
        }
    }

    pub(super) fn list_messages(
        t: &mut Transaction,
        owner: &str,
        id: &str,
        page: Page,
    ) -> StoreResult<Option<(Vec<Message>, i64)>> {
        // one statement, so one snapshot without BEGIN and COMMIT (`Store::read_statement`): the
        // conversation's count, and beside it the page (NULLs when the page is empty). The page
        // starts at its place (`position`, migrations-postgres/V12) on the index
        // messages_conversation_position: nothing before it is stepped over
        let rows = t.query(
            &format!(
                "SELECT m.*, c.message_count FROM conversations c LEFT JOIN LATERAL (SELECT {MESSAGE_COLS} \
                 FROM messages m WHERE m.conversation_id = $1 AND m.is_active AND m.position >= $3 \
                 ORDER BY m.position LIMIT $2) AS m ON true \
                 WHERE c.id = $1 AND c.user_id = $4 AND c.is_active"
            ),
            &[&id, &page.limit, &page.skip, &owner],
        )?;
        let Some(first) = rows.first() else { return Ok(None) };
        let total: i64 = first.try_get(6)?;
        let messages = match first.try_get::<_, Option<String>>(0)? {
            None => vec![],
            Some(_) => rows.iter().map(message_from_row).collect::<StoreResult<Vec<_>>>()?,
        };
        Ok(Some((messages, total)))
    }

    pub(super) fn insert_conversation(
        t: &mut Transaction,
        n: &NewConversation,
        now: &str,
    ) -> StoreResult<Conversation> {
        if let Some(agent_config_id) = &n.agent_config_id {
            let active: Option<bool> = t
                .query_opt(
                    "SELECT is_active FROM agent_configs WHERE id = $1 AND organization_id = $2",
                    &[agent_config_id, &n.organization_id],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            match active {
                None => {
                    return Err(StoreError::invalid(
                        "agent_config_id does not name an agent config of the organization",
                    ));
                }
                Some(false) => return Err(StoreError::invalid("agent_config_id names an inactive agent config")),
                Some(true) => {}
            }
        }
        // the twin of store::agents::is_active_project_of (whose PostgreSQL side is another area's)
        if let Some(project_id) = &n.project_id
            && t.query_opt(
                "SELECT 1 FROM projects WHERE id = $1 AND organization_id = $2 AND is_active",
                &[project_id, &n.organization_id],
            )?
            .is_none()
        {
            return Err(StoreError::invalid("project_id does not name an active project of the organization"));
        }
        let id = new_id();
        let at = pg_ts(now)?;
        t.execute(
            "INSERT INTO conversations (id, user_id, organization_id, agent_config_id, project_id, title, context, \
             is_archived, message_count, created_at, updated_at, is_active) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, false, 0, $8, $8, true)",
            &[&id, &n.user_id, &n.organization_id, &n.agent_config_id, &n.project_id, &n.title, &n.context, &at],
        )?;
        get_conversation(t, &n.user_id, &id)?.ok_or_else(|| StoreError::internal("inserted conversation vanished"))
    }

    pub(super) fn update_conversation(
        t: &mut Transaction,
        owner: &str,
        id: &str,
        c: &ConversationChanges,
        now: &str,
    ) -> StoreResult<Option<Conversation>> {
        let at = pg_ts(now)?;
        let changed = t.execute(
            "UPDATE conversations SET title = CASE WHEN $3 THEN $4 ELSE title END, \
             is_archived = COALESCE($5, is_archived), context = COALESCE($6::text::jsonb, context), updated_at = $7 \
             WHERE id = $1 AND user_id = $2 AND is_active",
            &[&id, &owner, &c.title.is_some(), &c.title.clone().flatten(), &c.is_archived, &c.context, &at],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        get_conversation(t, owner, id)
    }

    pub(super) fn delete_conversation(t: &mut Transaction, owner: &str, id: &str, now: &str) -> StoreResult<bool> {
        let at = pg_ts(now)?;
        let changed = t.execute(
            "UPDATE conversations SET is_active = false, updated_at = $3 WHERE id = $1 AND user_id = $2 AND is_active",
            &[&id, &owner, &at],
        )?;
        Ok(changed == 1)
    }

    /// Inserts the message, and with it the event `recorded` where there is one (only when the
    /// message is: both come from the conversation's updated row).
    pub(super) fn insert_message_recorded(
        t: &mut Transaction,
        owner: &str,
        conversation_id: &str,
        n: &NewMessage,
        now: &str,
        recorded: Option<&EventRow<'_>>,
    ) -> StoreResult<Option<Message>> {
        let at = pg_ts(now)?;
        let id = n.id.clone();
        // one statement, one round trip: the conversation's row stays locked (by every writer
        // to it) from the count's update to the commit, so the less in between the better. The
        // message is appended (its place is the count so far, migrations-postgres/V12) at a time
        // after the latest message's: a post whose clock reads earlier (it waited for another
        // post's lock, or another instance's clock is behind) takes that time + 1 µs, so the list
        // order (`created_at, id`) stays the order of the places. The row's SET and RETURNING see
        // its newest version even after that wait (its subqueries would not): both come from it
        let event = match recorded {
            Some(_) => format!(
                ", recorded AS (INSERT INTO audit_events ({}) SELECT {} FROM counted)",
                audit::pg::COLUMNS,
                EventRow::placeholders(8)
            ),
            None => String::new(),
        };
        let sql = format!(
            "WITH counted AS (UPDATE conversations SET message_count = message_count + 1, \
                 last_message_at = GREATEST($6, last_message_at + interval '1 microsecond'), \
                 updated_at = GREATEST($6, last_message_at + interval '1 microsecond') \
                 WHERE id = $2 AND user_id = $7 AND is_active RETURNING id, message_count, last_message_at){event} \
             INSERT INTO messages (id, conversation_id, role, content, metadata, is_active, created_at, position) \
             SELECT $1, counted.id, $3, $4, $5::text::jsonb, true, counted.last_message_at, counted.message_count - 1 \
             FROM counted RETURNING created_at"
        );
        let role = n.role.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&id, &conversation_id, &role, &n.content, &n.metadata, &at, &owner];
        if let Some(row) = recorded {
            params.extend(row.params());
        }
        let row = t.query_opt(sql.as_str(), &params)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Message {
            id,
            conversation_id: conversation_id.to_string(),
            role: n.role,
            content: n.content.clone(),
            metadata: serde_json::from_str(&n.metadata).map_err(StoreError::internal)?,
            created_at: pg_ts_col(&row, 0)?,
        }))
    }

    pub(super) fn get_message(
        t: &mut Transaction,
        owner: &str,
        conversation_id: &str,
        id: &str,
    ) -> StoreResult<Option<Message>> {
        t.query_opt(
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.id = $1 AND m.conversation_id = $2 AND m.is_active AND c.user_id = $3 AND c.is_active"
            ),
            &[&id, &conversation_id, &owner],
        )?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    pub(super) fn delete_message(
        t: &mut Transaction,
        owner: &str,
        conversation_id: &str,
        id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        // the conversation's row first: every writer of its messages' places holds it, so the
        // next statement's snapshot (taken after the lock) sees all their changes
        let owned = t.query_opt(
            "SELECT 1 FROM conversations WHERE id = $1 AND user_id = $2 AND is_active FOR UPDATE",
            &[&conversation_id, &owner],
        )?;
        if owned.is_none() {
            return Ok(false);
        }
        // the message leaves its place, the later ones move down by one (the time of the latest
        // one posted stays: that a post comes after it is all a post needs)
        let at = pg_ts(now)?;
        let deleted = t.query_one(
            "WITH gone AS (SELECT position FROM messages WHERE id = $1 AND conversation_id = $2 AND is_active), \
             off AS (UPDATE messages SET is_active = false, position = NULL \
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM gone)), \
             later AS (UPDATE messages SET position = position - 1 WHERE conversation_id = $2 AND is_active \
                 AND position > (SELECT position FROM gone)), \
             counted AS (UPDATE conversations SET message_count = message_count - 1, updated_at = $3 \
                 WHERE id = $2 AND EXISTS (SELECT 1 FROM gone)) \
             SELECT count(*) FROM gone",
            &[&id, &conversation_id, &at],
        )?;
        Ok(deleted.try_get::<_, i64>(0)? == 1)
    }
}
