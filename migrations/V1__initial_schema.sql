-- copilot: the whole product schema.
-- ids are UUID text; timestamps are RFC 3339 UTC text of fixed width (text order = time order);
-- JSON columns hold valid JSON of the stated type; booleans are 0/1.

CREATE TABLE server_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL COLLATE NOCASE UNIQUE,
    domain      TEXT,
    description TEXT,
    settings    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings) AND json_type(settings) = 'object'),
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX organizations_created ON organizations (created_at DESC, id DESC);

CREATE TABLE permissions (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    resource    TEXT NOT NULL,
    action      TEXT NOT NULL,
    description TEXT NOT NULL
);

CREATE TABLE roles (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    description     TEXT,
    is_system       INTEGER NOT NULL DEFAULT 0 CHECK (is_system IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (organization_id, name)
);
CREATE INDEX roles_org_created ON roles (organization_id, created_at DESC, id DESC);

CREATE TABLE role_permissions (
    role_id       TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id TEXT NOT NULL REFERENCES permissions (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission_id)
) WITHOUT ROWID;
CREATE INDEX role_permissions_permission ON role_permissions (permission_id);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    -- a role that users hold cannot be deleted
    role_id         TEXT REFERENCES roles (id) ON DELETE RESTRICT,
    username        TEXT NOT NULL COLLATE NOCASE UNIQUE,
    email           TEXT NOT NULL COLLATE NOCASE UNIQUE,
    full_name       TEXT,
    password_hash   TEXT NOT NULL,
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_superuser    INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX users_org_created ON users (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX users_created ON users (is_active, created_at DESC, id DESC);
CREATE INDEX users_role ON users (role_id);

CREATE TABLE projects (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    description     TEXT,
    settings        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings) AND json_type(settings) = 'object'),
    created_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX projects_org_created ON projects (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX projects_created ON projects (is_active, created_at DESC, id DESC);

CREATE TABLE user_projects (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
CREATE INDEX user_projects_user ON user_projects (user_id);

CREATE TABLE agent_configs (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      TEXT REFERENCES projects (id) ON DELETE SET NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    agent_type      TEXT NOT NULL CHECK (agent_type IN ('rfp', 'jira', 'documentation', 'hr', 'finance')),
    llm_model       TEXT NOT NULL DEFAULT 'gemini-pro',
    temperature     REAL NOT NULL DEFAULT 0.7 CHECK (temperature >= 0.0 AND temperature <= 2.0),
    max_tokens      INTEGER NOT NULL DEFAULT 2048 CHECK (max_tokens BETWEEN 1 AND 128000),
    system_prompt   TEXT,
    tools           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tools) AND json_type(tools) = 'array'),
    knowledge_base  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(knowledge_base) AND json_type(knowledge_base) = 'object'),
    settings        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings) AND json_type(settings) = 'object'),
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX agent_configs_org_created ON agent_configs (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX agent_configs_created ON agent_configs (is_active, created_at DESC, id DESC);
CREATE INDEX agent_configs_project ON agent_configs (project_id);

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_config_id TEXT REFERENCES agent_configs (id) ON DELETE SET NULL,
    project_id      TEXT REFERENCES projects (id) ON DELETE SET NULL,
    title           TEXT,
    context         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(context) AND json_type(context) = 'object'),
    is_archived     INTEGER NOT NULL DEFAULT 0 CHECK (is_archived IN (0, 1)),
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    -- kept in the same transaction as every message insert and delete
    message_count   INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX conversations_user_created ON conversations (user_id, is_active, created_at DESC, id DESC);
CREATE INDEX conversations_agent ON conversations (agent_config_id);
CREATE INDEX conversations_project ON conversations (project_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at      TEXT NOT NULL
);
-- covering the page order of a conversation's live messages
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at, id) WHERE is_active = 1;

CREATE TABLE documents (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      TEXT REFERENCES projects (id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    content         TEXT NOT NULL DEFAULT '',
    metadata        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX documents_org_created ON documents (organization_id, created_at DESC, id DESC);
CREATE INDEX documents_project ON documents (project_id);

-- One row per login: the refresh token that may be used next, and whether the session is revoked.
-- Access tokens name their session, so revoking it stops both at once.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_jti    TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    last_used_at   TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, revoked_at);

-- Failed logins per account (user id, or the lower-cased login name when no user matches).
CREATE TABLE login_failures (
    account_key TEXT NOT NULL,
    failed_at   TEXT NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (account_key, failed_at);
