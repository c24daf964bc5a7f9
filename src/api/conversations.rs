//! `/conversations`: the caller's own conversations and their messages (SPEC §4 "Conversations
//! and messages"). Every query is limited to the caller's user id: another user's conversation is
//! not found, for admins and superusers too.

use crate::validate::Text;
use futures_util::{StreamExt, TryStreamExt};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::{MaybeUndefined, ToJSON},
};

pub use crate::model::conversations::{Conversation, Message, MessageRole};
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted, JsonStream, changes_of},
    auth::BearerAuth,
    authz::{self, Permission},
    db::{new_id, now},
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Page, search_term},
    store::{
        self,
        audit::Event,
        conn::Store,
        conversations::{ConversationChanges, ConversationFilter, MessageKey, NewConversation, NewMessage},
    },
    validate,
};

/// Longest message content, in characters.
pub const CONTENT_MAX: usize = 100_000;

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }

    pub fn from_db(s: &str) -> Option<MessageRole> {
        [MessageRole::User, MessageRole::Assistant].into_iter().find(|r| r.as_str() == s)
    }
}

/// A conversation with all its live messages, oldest first.
#[derive(Object, Debug)]
pub struct ConversationWithMessages {
    #[oai(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

#[derive(Object, Debug)]
pub struct CreateConversationRequest {
    /// At most 255 characters
    #[oai(skip_serializing_if_is_none)]
    pub title: Option<Text>,
    /// An active agent config of the caller's organization
    #[oai(skip_serializing_if_is_none)]
    pub agent_config_id: Option<Text>,
    /// An active project of the caller's organization
    #[oai(skip_serializing_if_is_none)]
    pub project_id: Option<Text>,
    /// A JSON object; default `{}`
    #[oai(skip_serializing_if_is_none)]
    pub context: Option<serde_json::Value>,
}

/// Only the fields sent change; `title: null` clears the title.
#[derive(Object, Debug)]
pub struct UpdateConversationRequest {
    pub title: MaybeUndefined<Text>,
    #[oai(skip_serializing_if_is_none)]
    pub is_archived: Option<bool>,
    /// A JSON object; replaces the whole context
    #[oai(skip_serializing_if_is_none)]
    pub context: Option<serde_json::Value>,
}

#[derive(Object, Debug)]
pub struct CreateMessageRequest {
    pub role: MessageRole,
    /// Not empty, at most 100,000 characters
    pub content: Text,
    /// A JSON object; default `{}`
    #[oai(skip_serializing_if_is_none)]
    pub metadata: Option<serde_json::Value>,
}

pub struct ConversationsApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// List my conversations
    ///
    /// Needs `conversations:write`; only the caller's own, newest first. Search covers the
    /// title; filters `is_archived`, `agent_config_id`, `project_id`.
    #[oai(path = "/conversations", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        is_archived: Query<Option<bool>>,
        agent_config_id: Query<Option<String>>,
        project_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<Conversation>>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let page = Page::new(skip.0, limit.0)?;
        let owner = auth.0.id;
        let filter = ConversationFilter {
            search: search_term(search.0),
            is_archived: is_archived.0,
            agent_config_id: validate::filter_id(agent_config_id.0),
            project_id: validate::filter_id(project_id.0),
        };
        let (rows, total) =
            self.state.store.read(move |c| store::conversations::list_conversations(c, &owner, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Get one of my conversations
    ///
    /// Needs `conversations:write`. Comes with all its messages, oldest first. Another user's
    /// conversation, or a deleted one, is not found.
    #[oai(path = "/conversations/:id", method = "get")]
    async fn get(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<JsonStream<ConversationWithMessages>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let owner = auth.0.id;
        let found = self
            .state
            .store
            .read(move |c| -> ApiResult<_> {
                let Some(conversation) = store::conversations::get_conversation(c, &owner, &id)? else {
                    return Ok(None);
                };
                let last = store::conversations::last_message_key(c, &id)?;
                Ok(Some((conversation, last)))
            })
            .await?;
        let (conversation, last) = found.ok_or_else(conversation_not_found)?;
        Ok(JsonStream::new(conversation_body(self.state.store.clone(), conversation, last)))
    }

    /// Start a conversation
    ///
    /// Needs `conversations:write`. It belongs to the caller and their organization; an
    /// `agent_config_id` must name an active agent config, a `project_id` an active project, both
    /// of the caller's organization.
    #[oai(path = "/conversations", method = "post")]
    async fn create(
        &self,
        auth: BearerAuth,
        body: Json<CreateConversationRequest>,
    ) -> ApiResult<Created<Conversation>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let (actor, b) = (auth.0.actor(), body.0);
        let audit = changes_of(&b);
        let new = NewConversation {
            user_id: auth.0.id.clone(),
            organization_id: auth.0.home_org().to_string(),
            agent_config_id: b
                .agent_config_id
                .as_deref()
                .map(|a| validate::body_id("agent_config_id", a))
                .transpose()?,
            project_id: b.project_id.as_deref().map(|p| validate::body_id("project_id", p)).transpose()?,
            title: title(b.title)?,
            context: validate::json_object("context", b.context)?,
        };
        let conversation = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let c = store::conversations::insert_conversation(tx, &new, &now())?;
                let event = Event::new("conversation.create", &c.organization_id, "conversation", &c.id).changes(audit);
                store::audit::record(tx, &actor, &event)?;
                Ok(c)
            })
            .await?;
        Ok(Created::Created(Json(conversation)))
    }

    /// Update one of my conversations
    ///
    /// Needs `conversations:write`. Changes the title, the archived flag or the context.
    #[oai(path = "/conversations/:id", method = "put")]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<UpdateConversationRequest>,
    ) -> ApiResult<Json<Conversation>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let (actor, owner) = (auth.0.actor(), auth.0.id);
        let b = body.0;
        let audit = changes_of(&b);
        let changes = ConversationChanges {
            title: match b.title {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(t) => Some(title(Some(t))?),
            },
            is_archived: b.is_archived,
            context: b.context.map(|v| validate::json_object("context", Some(v))).transpose()?,
        };
        let conversation = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let c = store::conversations::update_conversation(tx, &owner, &id, &changes, &now())?;
                if let Some(c) = &c {
                    let event =
                        Event::new("conversation.update", &c.organization_id, "conversation", &c.id).changes(audit);
                    store::audit::record(tx, &actor, &event)?;
                }
                Ok(c)
            })
            .await?;
        Ok(Json(conversation.ok_or_else(conversation_not_found)?))
    }

    /// Delete one of my conversations
    ///
    /// Needs `conversations:write`. A soft delete: afterwards the conversation and its messages
    /// are not found.
    #[oai(path = "/conversations/:id", method = "delete")]
    async fn delete(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let me = auth.0;
        let deleted = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let deleted = store::conversations::delete_conversation(tx, &me.id, &id, &now())?;
                if deleted {
                    let event = Event::new("conversation.delete", &me.organization_id, "conversation", &id);
                    store::audit::record(tx, &me.actor(), &event)?;
                }
                Ok(deleted)
            })
            .await?;
        if !deleted {
            return Err(conversation_not_found());
        }
        Ok(Deleted::NoContent)
    }

    /// List the messages of my conversation
    ///
    /// Needs `conversations:write`. Paginated, oldest first.
    #[oai(path = "/conversations/:id/messages", method = "get")]
    async fn list_messages(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<ListResponse<Message>>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let page = Page::new(skip.0, limit.0)?;
        let owner = auth.0.id;
        let found =
            self.state.store.read_statement(move |c| store::conversations::list_messages(c, &owner, &id, page)).await?;
        let (rows, total) = found.ok_or_else(conversation_not_found)?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Add a message to my conversation
    ///
    /// Needs `conversations:write`. `role` is `user` or `assistant`; `content` must not be
    /// empty and is at most 100,000 characters. The conversation's `message_count` grows with it.
    #[oai(path = "/conversations/:id/messages", method = "post")]
    async fn create_message(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<CreateMessageRequest>,
    ) -> ApiResult<Created<Message>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let me = auth.0;
        let b = body.0;
        let audit = changes_of(&b);
        if b.content.trim().is_empty() {
            return Err(ApiError::bad_request("content must not be empty"));
        }
        let new = NewMessage {
            id: new_id(),
            role: b.role,
            content: validate::text("content", &b.content, CONTENT_MAX)?,
            metadata: validate::json_object("metadata", b.metadata)?,
        };
        let message = self
            .state
            .store
            .write_statement(move |tx| -> ApiResult<_> {
                // the message and its event at once: on PostgreSQL one statement that commits
                // itself, so the conversation's row (which every writer to it waits for) is locked
                // for no round trip; no such conversation, no event
                let event = Event::new("message.create", &me.organization_id, "message", &new.id).changes(audit);
                store::conversations::post_message(tx, &me.actor(), &event, &me.id, &id, &new, &now())?
                    .ok_or_else(conversation_not_found)
            })
            .await?;
        Ok(Created::Created(Json(message)))
    }

    /// Get a message of my conversation
    ///
    /// Needs `conversations:write`. A deleted message is not found.
    #[oai(path = "/conversations/:id/messages/:msg_id", method = "get")]
    async fn get_message(&self, auth: BearerAuth, id: Path<String>, msg_id: Path<String>) -> ApiResult<Json<Message>> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let msg_id = validate::path_id(&msg_id, "Message")?;
        let owner = auth.0.id;
        let message =
            self.state.store.read(move |c| store::conversations::get_message(c, &owner, &id, &msg_id)).await?;
        Ok(Json(message.ok_or_else(message_not_found)?))
    }

    /// Delete a message of my conversation
    ///
    /// Needs `conversations:write`. A soft delete; the conversation's `message_count` shrinks
    /// with it.
    #[oai(path = "/conversations/:id/messages/:msg_id", method = "delete")]
    async fn delete_message(&self, auth: BearerAuth, id: Path<String>, msg_id: Path<String>) -> ApiResult<Deleted> {
        authz::require(&auth.0, Permission::ConversationsWrite)?;
        let id = validate::path_id(&id, "Conversation")?;
        let msg_id = validate::path_id(&msg_id, "Message")?;
        let me = auth.0;
        let deleted = self
            .state
            .store
            .write(move |tx| -> ApiResult<_> {
                let deleted = store::conversations::delete_message(tx, &me.id, &id, &msg_id, &now())?;
                if deleted {
                    let event = Event::new("message.delete", &me.organization_id, "message", &msg_id);
                    store::audit::record(tx, &me.actor(), &event)?;
                }
                Ok(deleted)
            })
            .await?;
        if !deleted {
            return Err(message_not_found());
        }
        Ok(Deleted::NoContent)
    }
}

fn conversation_not_found() -> ApiError {
    ApiError::not_found("Conversation not found")
}

fn message_not_found() -> ApiError {
    ApiError::not_found("Message not found")
}

/// A title: trimmed, at most 255 characters; empty means none.
fn title(raw: Option<Text>) -> ApiResult<Option<String>> {
    Ok(validate::optional_text("title", raw, validate::NAME_MAX)?.filter(|t| !t.is_empty()))
}

/// Messages read and written per step of a streamed conversation: at most 8 × 100,000
/// characters are held at once, however long the conversation.
const MESSAGES_PER_STEP: i64 = 8;

/// The JSON of [`ConversationWithMessages`], written as the client reads it: the messages up to
/// `last` (the newest when the conversation was read) come from the database a few at a time,
/// each step on a read connection of its own, so a slow client holds neither a connection nor a
/// snapshot.
fn conversation_body(store: Store, conversation: Conversation, last: Option<MessageKey>) -> poem::Body {
    // the document with an empty `messages` is split where the messages go, so that the fields
    // keep exactly the order and form of `Json<ConversationWithMessages>`
    const SLOT: &str = "\u{0}messages\u{0}";
    let conversation_id = conversation.id.clone();
    let mut doc = ConversationWithMessages { conversation, messages: vec![] }.to_json().unwrap_or_default();
    doc["messages"] = serde_json::Value::String(SLOT.into());
    let text = doc.to_string();
    let slot = serde_json::Value::String(SLOT.into()).to_string();
    let (before, after) = text.split_once(&slot).expect("the slot is in the document");
    let head = format!("{before}[").into_bytes();
    let tail = format!("]{after}").into_bytes();

    struct Walk {
        store: Store,
        conversation_id: String,
        after: MessageKey,
        /// `None` once every message is written
        until: Option<MessageKey>,
        first: bool,
    }
    let walk = Walk { store, conversation_id, after: MessageKey::start(), until: last, first: true };
    let messages = futures_util::stream::try_unfold(walk, |mut w| async move {
        let Some(until) = w.until.clone() else { return Ok(None) };
        let (cid, after, u) = (w.conversation_id.clone(), w.after.clone(), until.clone());
        let page = w
            .store
            .read(move |c| store::conversations::messages_between(c, &cid, &after, &u, MESSAGES_PER_STEP))
            .await
            .map_err(std::io::Error::other)?;
        let Some(newest) = page.last() else { return Ok(None) };
        w.after = MessageKey::of(newest);
        if w.after == until {
            w.until = None;
        }
        let mut chunk = Vec::with_capacity(page.iter().map(|m| m.content.len() + 256).sum());
        for m in page {
            if !std::mem::take(&mut w.first) {
                chunk.push(b',');
            }
            serde_json::to_writer(&mut chunk, &m.to_json()).map_err(std::io::Error::other)?;
        }
        Ok(Some((chunk, w)))
    });
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) })
        .chain(messages.inspect_err(|e| tracing::error!(error = %e, "streaming a conversation failed")))
        .chain(futures_util::stream::once(async move { Ok(tail) }));
    poem::Body::from_bytes_stream(stream)
}
