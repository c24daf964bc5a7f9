-- copilot on PostgreSQL: the twin of migrations/V1__initial_schema.sql (same version, same name,
-- same tables, columns, keys and index names; tests/api/postgres.rs compares the two schemas).
-- Types where SQLite has none of its own:
--   ids             text (UUID text, as the API shows them)
--   timestamps      timestamptz: microsecond precision, exactly what db::format_ts writes, so a
--                   value read back and formatted by it is the same RFC 3339 text as on SQLite
--   JSON            jsonb with a CHECK on its type (SQLite: text with json_valid)
--   0/1 flags       boolean
--   INTEGER         bigint (SQLite integers are 64-bit)
-- SQLite's COLLATE NOCASE folds ASCII letters only: here that is nocase(col) (below), used by the
-- unique indexes and by any query that compares such a column, whatever the cluster's locale.

CREATE FUNCTION nocase(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN lower(value COLLATE "C");

CREATE TABLE server_settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE organizations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    domain      text,
    description text,
    settings    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX organizations_name ON organizations (nocase(name));
CREATE INDEX organizations_created ON organizations (created_at DESC, id DESC);

CREATE TABLE permissions (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    resource    text NOT NULL,
    action      text NOT NULL,
    description text NOT NULL
);

CREATE TABLE roles (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    is_system       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX roles_org_name ON roles (organization_id, nocase(name));
CREATE INDEX roles_org_created ON roles (organization_id, created_at DESC, id DESC);

CREATE TABLE role_permissions (
    role_id       text NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id text NOT NULL REFERENCES permissions (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission_id)
);
CREATE INDEX role_permissions_permission ON role_permissions (permission_id);

CREATE TABLE users (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    -- a role that users hold cannot be deleted
    role_id         text REFERENCES roles (id) ON DELETE RESTRICT,
    username        text NOT NULL,
    email           text NOT NULL,
    full_name       text,
    password_hash   text NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    is_superuser    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (nocase(username));
CREATE UNIQUE INDEX users_email ON users (nocase(email));
CREATE INDEX users_org_created ON users (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX users_created ON users (is_active, created_at DESC, id DESC);
CREATE INDEX users_role ON users (role_id);

CREATE TABLE projects (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    settings        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_by      text REFERENCES users (id) ON DELETE SET NULL,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX projects_org_created ON projects (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX projects_created ON projects (is_active, created_at DESC, id DESC);

CREATE TABLE user_projects (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX user_projects_user ON user_projects (user_id);

CREATE TABLE agent_configs (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      text REFERENCES projects (id) ON DELETE SET NULL,
    name            text NOT NULL,
    description     text,
    agent_type      text NOT NULL CHECK (agent_type IN ('rfp', 'jira', 'documentation', 'hr', 'finance')),
    llm_model       text NOT NULL DEFAULT 'gemini-pro',
    temperature     double precision NOT NULL DEFAULT 0.7 CHECK (temperature >= 0.0 AND temperature <= 2.0),
    max_tokens      bigint NOT NULL DEFAULT 2048 CHECK (max_tokens BETWEEN 1 AND 128000),
    system_prompt   text,
    tools           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tools) = 'array'),
    knowledge_base  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(knowledge_base) = 'object'),
    settings        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    is_active       boolean NOT NULL DEFAULT true,
    created_by      text REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX agent_configs_org_created ON agent_configs (organization_id, is_active, created_at DESC, id DESC);
CREATE INDEX agent_configs_created ON agent_configs (is_active, created_at DESC, id DESC);
CREATE INDEX agent_configs_project ON agent_configs (project_id);

CREATE TABLE conversations (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_config_id text REFERENCES agent_configs (id) ON DELETE SET NULL,
    project_id      text REFERENCES projects (id) ON DELETE SET NULL,
    title           text,
    context         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(context) = 'object'),
    is_archived     boolean NOT NULL DEFAULT false,
    is_active       boolean NOT NULL DEFAULT true,
    -- kept in the same transaction as every message insert and delete
    message_count   bigint NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX conversations_user_created ON conversations (user_id, is_active, created_at DESC, id DESC);
CREATE INDEX conversations_agent ON conversations (agent_config_id);
CREATE INDEX conversations_project ON conversations (project_id);

CREATE TABLE messages (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL
);
-- covering the page order of a conversation's live messages
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at, id) WHERE is_active;

CREATE TABLE documents (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      text REFERENCES projects (id) ON DELETE CASCADE,
    title           text NOT NULL,
    content         text NOT NULL DEFAULT '',
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_by      text REFERENCES users (id) ON DELETE SET NULL,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX documents_org_created ON documents (organization_id, created_at DESC, id DESC);
CREATE INDEX documents_project ON documents (project_id);

-- One row per login: the refresh token that may be used next, and whether the session is revoked.
-- Access tokens name their session, so revoking it stops both at once.
CREATE TABLE sessions (
    id             text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_jti    text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_user ON sessions (user_id, revoked_at);

-- Failed logins per account (user id, or the lower-cased login name when no user matches).
CREATE TABLE login_failures (
    account_key text NOT NULL,
    failed_at   timestamptz NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (account_key, failed_at);
