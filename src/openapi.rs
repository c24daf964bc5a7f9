//! The OpenAPI document as generated clients need it. poem-openapi writes the paths and schemas
//! from the handlers; one pass here adds what it cannot say: a stable `operationId` and the error
//! statuses each operation really answers ([`OPERATIONS`], one row per operation — a test fails
//! for an operation without one), `security: []` on the public endpoints, `nullable` and
//! `required` as the server sends them, the constraints that `validate` enforces, free-form
//! objects as `type: object`, the event streams as `text/event-stream` with their events, and a
//! form body of its own for the OAuth2 login.

use serde_json::{Map, Value, json};

/// One operation: method, path (as in the document), operationId, the error statuses it can
/// answer besides 500, and whether it needs no token.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub errors: &'static [u16],
    pub public: bool,
}

const fn op(method: &'static str, path: &'static str, id: &'static str, errors: &'static [u16]) -> Operation {
    Operation { method, path, id, errors, public: false }
}

const fn public(method: &'static str, path: &'static str, id: &'static str, errors: &'static [u16]) -> Operation {
    Operation { method, path, id, errors, public: true }
}

/// Every operation of `/api/v1`. 413 is listed where a body is read; 429 where a lockout
/// applies, and [`finish`] adds it to every operation that a rate limit of `[limits]` counts.
pub const OPERATIONS: &[Operation] = &[
    public("post", "/auth/register", "auth_register", &[400, 403, 409, 413]),
    public("post", "/auth/login", "auth_login", &[400, 401, 403, 413, 429]),
    public("post", "/auth/refresh", "auth_refresh", &[400, 401, 413]),
    op("get", "/auth/me", "auth_me", &[401]),
    op("post", "/auth/change-password", "auth_change_password", &[400, 401, 403, 413, 429]),
    op("post", "/auth/logout", "auth_logout", &[401, 403]),
    public("get", "/status", "status_get", &[]),
    public("get", "/health/live", "health_live", &[]),
    public("get", "/health/ready", "health_ready", &[]),
    public("get", "/metrics", "metrics_get", &[401, 403, 404]),
    op("post", "/api-keys", "api_keys_create", &[400, 401, 403, 413]),
    op("get", "/api-keys", "api_keys_list", &[400, 401, 403]),
    op("delete", "/api-keys/{id}", "api_keys_delete", &[401, 404]),
    op("get", "/audit-events", "audit_events_list", &[400, 401, 403]),
    op("get", "/users", "users_list", &[400, 401, 403]),
    op("post", "/users", "users_create", &[400, 401, 403, 409, 413]),
    op("get", "/users/{id}", "users_get", &[401, 403, 404]),
    op("put", "/users/{id}", "users_update", &[400, 401, 403, 404, 409, 413]),
    op("delete", "/users/{id}", "users_delete", &[400, 401, 403, 404]),
    op("post", "/users/{id}/activate", "users_activate", &[401, 403, 404]),
    op("post", "/users/{id}/role", "users_role_assign", &[400, 401, 403, 404, 413]),
    op("get", "/organizations", "organizations_list", &[400, 401]),
    op("post", "/organizations", "organizations_create", &[400, 401, 403, 409, 413]),
    op("get", "/organizations/{id}", "organizations_get", &[401, 403, 404]),
    op("put", "/organizations/{id}", "organizations_update", &[400, 401, 403, 404, 409, 413]),
    op("get", "/organizations/{id}/members", "organizations_members_list", &[400, 401, 403, 404]),
    op("post", "/organizations/{id}/members/{user_id}", "organizations_members_add", &[400, 401, 403, 404]),
    op("get", "/projects", "projects_list", &[400, 401, 403]),
    op("post", "/projects", "projects_create", &[400, 401, 403, 413]),
    op("get", "/projects/{id}", "projects_get", &[401, 403, 404]),
    op("put", "/projects/{id}", "projects_update", &[400, 401, 403, 404, 413]),
    op("delete", "/projects/{id}", "projects_delete", &[401, 403, 404]),
    op("get", "/projects/{id}/members", "projects_members_list", &[400, 401, 403, 404]),
    op("post", "/projects/{id}/members/{user_id}", "projects_members_add", &[400, 401, 403, 404]),
    op("delete", "/projects/{id}/members/{user_id}", "projects_members_remove", &[400, 401, 403, 404]),
    op("get", "/roles/permissions", "roles_permissions_list", &[400, 401]),
    op("get", "/roles/permissions/{id}", "roles_permissions_get", &[401, 404]),
    op("get", "/roles", "roles_list", &[400, 401, 403]),
    op("post", "/roles", "roles_create", &[400, 401, 403, 409, 413]),
    op("get", "/roles/{id}", "roles_get", &[401, 403, 404]),
    op("put", "/roles/{id}", "roles_update", &[400, 401, 403, 404, 409, 413]),
    op("delete", "/roles/{id}", "roles_delete", &[401, 403, 404, 409]),
    op("post", "/roles/{id}/permissions/{perm_id}", "roles_permissions_grant", &[401, 403, 404]),
    op("delete", "/roles/{id}/permissions/{perm_id}", "roles_permissions_revoke", &[401, 403, 404]),
    op("get", "/agent-configs", "agent_configs_list", &[400, 401, 403]),
    op("post", "/agent-configs", "agent_configs_create", &[400, 401, 403, 413]),
    op("get", "/agent-configs/{id}", "agent_configs_get", &[401, 403, 404]),
    op("put", "/agent-configs/{id}", "agent_configs_update", &[400, 401, 403, 404, 413]),
    op("delete", "/agent-configs/{id}", "agent_configs_delete", &[401, 403, 404]),
    op("post", "/agent-configs/{id}/activate", "agent_configs_activate", &[401, 403, 404]),
    op("get", "/conversations", "conversations_list", &[400, 401, 403]),
    op("post", "/conversations", "conversations_create", &[400, 401, 403, 413]),
    op("get", "/conversations/{id}", "conversations_get", &[401, 403, 404]),
    op("put", "/conversations/{id}", "conversations_update", &[400, 401, 403, 404, 413]),
    op("delete", "/conversations/{id}", "conversations_delete", &[401, 403, 404]),
    op("get", "/conversations/{id}/messages", "conversations_messages_list", &[400, 401, 403, 404]),
    op("post", "/conversations/{id}/messages", "conversations_messages_create", &[400, 401, 403, 404, 413]),
    op("get", "/conversations/{id}/messages/{msg_id}", "conversations_messages_get", &[401, 403, 404]),
    op("delete", "/conversations/{id}/messages/{msg_id}", "conversations_messages_delete", &[401, 403, 404]),
    op(
        "post",
        "/conversations/{id}/completions",
        "conversations_completions_create",
        &[400, 401, 403, 404, 409, 413, 503],
    ),
    op("get", "/conversations/{id}/completions/{job_id}", "conversations_completions_get", &[400, 401, 403, 404]),
    op(
        "post",
        "/conversations/{id}/completions/{job_id}/cancel",
        "conversations_completions_cancel",
        &[401, 403, 404, 409],
    ),
    op("delete", "/conversations/{id}/completions/{job_id}", "conversations_completions_delete", &[401, 403, 404, 409]),
    op("get", "/usage", "usage_get", &[400, 401, 403]),
    op("get", "/documents", "documents_list", &[400, 401, 403]),
    op("post", "/documents", "documents_create", &[400, 401, 403, 409, 413, 415]),
    op("get", "/documents/{id}", "documents_get", &[401, 403, 404]),
    op("delete", "/documents/{id}", "documents_delete", &[401, 403, 404]),
    op("get", "/documents/{id}/chunks", "documents_chunks_list", &[400, 401, 403, 404]),
    op("get", "/documents/{id}/file", "documents_file_get", &[401, 403, 404]),
    op("post", "/documents/{id}/reindex", "documents_reindex", &[401, 403, 404, 409]),
    op("get", "/knowledge/search", "knowledge_search", &[400, 401, 403]),
];

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Malformed request or failed validation",
        401 => "Missing, invalid, expired or revoked token",
        403 => "Authenticated but not allowed",
        404 => "No such resource (or not visible to the caller)",
        409 => "Uniqueness conflict or a rule the current state forbids",
        413 => "Request body too large",
        429 => {
            "Too many requests: a failed-login lockout, a request rate limit or a token budget of \
             `[limits]` (the detail names it); retry after `Retry-After` seconds"
        }
        415 => "A file of a type the server does not read (the detail names the accepted ones)",
        503 => "No LLM provider serves the agent's model, or the server is shutting down",
        _ => "Internal error",
    }
}

/// Finishes poem-openapi's document (see the module comment).
pub fn finish(mut doc: Value) -> Value {
    oauth2_scopes(&mut doc);
    let error_ref = json!({"$ref": "#/components/schemas/ErrorBody"});
    for (path, item) in doc["paths"].as_object_mut().into_iter().flatten() {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            let Some(row) = OPERATIONS.iter().find(|o| o.method == method && o.path == path) else { continue };
            operation["operationId"] = json!(row.id);
            if row.public {
                operation["security"] = json!([]);
            }
            let responses = operation["responses"].as_object_mut().expect("responses");
            responses.retain(|status, _| !status.starts_with('4') && !status.starts_with('5') || status == "503");
            // the rate limits count every operation but the health probes and /metrics
            let rate_limited = !row.path.starts_with("/health/") && row.path != "/metrics";
            let extra: &[u16] = if rate_limited && !row.errors.contains(&429) { &[429, 500] } else { &[500] };
            let mut statuses: Vec<u16> = row.errors.iter().chain(extra).copied().collect();
            statuses.sort_unstable();
            for status in statuses {
                if status == 503 && responses.contains_key("503") {
                    continue;
                }
                let mut response = json!({
                    "description": error_description(status),
                    "content": {"application/json": {"schema": error_ref}},
                });
                match status {
                    401 => {
                        response["headers"] = json!({"WWW-Authenticate": {
                            "description": "Always `Bearer`", "required": true, "schema": {"type": "string"}}})
                    }
                    429 => {
                        response["headers"] = json!({"Retry-After": {
                            "description": "Seconds until the request may be tried again", "required": true,
                            "schema": {"type": "integer", "minimum": 1}}})
                    }
                    _ => {}
                }
                responses.insert(status.to_string(), response);
            }
            for response in responses.values_mut() {
                plain_json_media_type(response);
            }
            if let Some(body) = operation.get_mut("requestBody") {
                plain_json_media_type(body);
            }
            constrain_parameters(operation, row.id);
        }
    }
    event_streams(&mut doc);
    login_form(&mut doc);
    // the original file comes back with its own content type, one of those the server reads
    if let Some(ok) = doc.pointer_mut("/paths/~1documents~1{id}~1file/get/responses/200") {
        let binary = json!({"schema": {"type": "string", "format": "binary"}});
        let types = ["text/plain", "text/markdown", "text/html", "application/pdf", crate::knowledge::DOCX_TYPE];
        ok["content"] = types.iter().map(|t| (t.to_string(), binary.clone())).collect::<Map<_, _>>().into();
    }
    doc["info"]["license"] = json!({"name": "MIT", "url": "https://opensource.org/licenses/MIT"});
    let schemas = doc["components"]["schemas"].as_object_mut().expect("schemas").clone();
    let types: std::collections::BTreeMap<String, Value> = schemas
        .iter()
        .filter_map(|(n, s)| Some((format!("#/components/schemas/{n}"), s.get("type")?.clone())))
        .collect();
    let responses_only = response_only_schemas(&doc);
    for (name, mut schema) in schemas {
        nullable_and_required(&mut schema, responses_only.contains(&name), &types);
        constrain_properties(&name, &mut schema);
        doc["components"]["schemas"][&name] = schema;
    }
    doc
}

/// OpenAPI requires `scopes` on every OAuth2 flow, even when there are none; poem-openapi
/// leaves an empty one out.
fn oauth2_scopes(doc: &mut Value) {
    if let Some(schemes) = doc.pointer_mut("/components/securitySchemes").and_then(|s| s.as_object_mut()) {
        for flow in schemes.values_mut().filter_map(|s| s.get_mut("flows")).filter_map(|f| f.as_object_mut()) {
            for f in flow.values_mut().filter_map(|f| f.as_object_mut()) {
                f.entry("scopes").or_insert_with(|| json!({}));
            }
        }
    }
}

/// `application/json; charset=utf-8` is what the server sends, but generators match the media
/// type exactly: `application/json` is the one they all recognise (responses and request bodies).
fn plain_json_media_type(response_or_body: &mut Value) {
    if let Some(content) = response_or_body.get_mut("content").and_then(Value::as_object_mut)
        && let Some(media) = content.remove("application/json; charset=utf-8")
    {
        content.insert("application/json".into(), media);
    }
}

/// Paging, ids and days in query and path parameters. (An id filter in the query stays a plain
/// string: a malformed one matches nothing rather than being refused.)
fn constrain_parameters(operation: &mut Value, operation_id: &str) {
    for p in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let location = p["in"].as_str().map(String::from);
        let schema = &mut p["schema"];
        match (location.as_deref(), name.as_str()) {
            (_, "limit") if operation_id == "knowledge_search" => {
                merge(schema, json!({"minimum": 1, "maximum": 50, "default": 10}))
            }
            (_, "q") => merge(schema, json!({"minLength": 1, "maxLength": 1000})),
            (_, "skip") => merge(schema, json!({"minimum": 0, "default": 0})),
            (_, "limit") => merge(schema, json!({"minimum": 1, "maximum": 100, "default": 20})),
            (_, "from" | "to") => merge(schema, json!({"format": "date"})),
            (Some("path"), _) => merge(schema, json!({"format": "uuid"})),
            _ => {}
        }
    }
}

/// The completion streams: `text/event-stream` with the events listed, their `data` schemas
/// in components.
fn event_streams(doc: &mut Value) {
    let events = [
        ("user_message", "CompletionUserMessageEvent", "The stored user message; always the first event"),
        (
            "citations",
            "CompletionCitationsEvent",
            "The knowledge-base passages given to the model, before the first `delta` (agents with a knowledge base)",
        ),
        ("delta", "CompletionDeltaEvent", "The next piece of the reply"),
        ("done", "CompletionEndEvent", "The reply is complete and stored"),
        ("cancelled", "CompletionEndEvent", "The job was cancelled; the partial reply is stored"),
        ("error", "CompletionEndEvent", "The provider failed; the partial reply is stored"),
    ];
    let schemas = doc["components"]["schemas"].as_object_mut().expect("schemas");
    schemas.insert(
        "CompletionUserMessageEvent".into(),
        json!({"type": "object", "required": ["job_id", "message"], "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "message": {"$ref": "#/components/schemas/Message"}}}),
    );
    schemas.insert(
        "Citation".into(),
        json!({"type": "object", "required": ["document_id", "document_title", "chunk_id", "page", "snippet", "score"],
               "properties": {
                   "document_id": {"type": "string", "format": "uuid"},
                   "document_title": {"type": "string"},
                   "chunk_id": {"type": "string", "format": "uuid"},
                   "page": {"type": "integer", "nullable": true, "minimum": 1},
                   "snippet": {"type": "string"},
                   "score": {"type": "number"}}}),
    );
    schemas.insert(
        "CompletionCitationsEvent".into(),
        json!({"type": "object", "required": ["job_id", "citations"], "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}}}}),
    );
    schemas.insert(
        "CompletionDeltaEvent".into(),
        json!({"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}}),
    );
    schemas.insert(
        "CompletionEndEvent".into(),
        json!({"type": "object", "required": ["job_id", "status", "message"], "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["completed", "cancelled", "failed"]},
            "detail": {"type": "string", "nullable": true, "description": "Why it ended, for `cancelled` and `error`"},
            "message": {"type": "object", "allOf": [{"$ref": "#/components/schemas/Message"}], "nullable": true,
                        "description": "The stored assistant message"},
            "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"},
                          "description": "In `done`, again the passages of the `citations` event"}}}),
    );
    schemas.remove("StreamEvent");
    let listing: Vec<String> = events.iter().map(|(e, _, what)| format!("`{e}`: {what}")).collect();
    let stream = json!({
        "schema": {"type": "string", "format": "event-stream"},
        "x-events": events.iter().map(|(e, s, _)| json!({"event": e, "data": {"$ref": format!("#/components/schemas/{s}")}})).collect::<Vec<_>>(),
    });
    for (_, item) in doc["paths"].as_object_mut().into_iter().flatten() {
        for (_, operation) in item.as_object_mut().into_iter().flatten() {
            for (_, response) in operation["responses"].as_object_mut().into_iter().flatten() {
                if let Some(media) = response.pointer_mut("/content/text~1event-stream") {
                    *media = stream.clone();
                    let d = response["description"].as_str().unwrap_or_default().to_string();
                    response["description"] = json!(format!(
                        "{d}. Each event has an `id` (its position, for `Last-Event-ID`), a name and JSON `data`: {}",
                        listing.join("; ")
                    ));
                }
            }
        }
    }
}

/// The OAuth2 password-flow form gets a schema of its own: generators cannot share one schema
/// between a JSON and a form body. The body is declared optional (a missing one is a documented
/// 400): openapi-python-client 0.29 types a body of two media types as `X | Y | Unset` and
/// imports `Unset` only for an optional one.
fn login_form(doc: &mut Value) {
    if let Some(body) = doc.pointer_mut("/paths/~1auth~1login/post/requestBody") {
        body["required"] = json!(false);
    }
    if let Some(form) =
        doc.pointer_mut("/paths/~1auth~1login/post/requestBody/content/application~1x-www-form-urlencoded")
    {
        form["schema"] = json!({"$ref": "#/components/schemas/LoginForm"});
    }
    doc["components"]["schemas"]["LoginForm"] = json!({
        "type": "object",
        "title": "LoginForm",
        "description": "The OAuth2 password-flow form (`grant_type=password&username=…&password=…`)",
        "required": ["username", "password"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["password"]},
            "username": {"type": "string", "minLength": 1, "maxLength": 255},
            "password": {"type": "string", "format": "password", "writeOnly": true},
            "scope": {"type": "string"},
        },
    });
}

/// Names of the schemas that only responses use (transitively): the server sends every one of
/// their properties, `null` where there is no value.
fn response_only_schemas(doc: &Value) -> std::collections::BTreeSet<String> {
    let mut from_responses = std::collections::BTreeSet::new();
    let mut from_requests = std::collections::BTreeSet::new();
    for (_, item) in doc["paths"].as_object().into_iter().flatten() {
        for (_, operation) in item.as_object().into_iter().flatten() {
            refs(&operation["responses"], &mut |r| {
                from_responses.insert(r);
            });
            refs(&operation["requestBody"], &mut |r| {
                from_requests.insert(r);
            });
        }
    }
    let schemas = &doc["components"]["schemas"];
    let close = |set: &mut std::collections::BTreeSet<String>| loop {
        let before = set.len();
        for name in set.clone() {
            refs(&schemas[&name], &mut |r| {
                set.insert(r);
            });
        }
        if set.len() == before {
            break;
        }
    };
    close(&mut from_responses);
    close(&mut from_requests);
    from_responses.difference(&from_requests).cloned().collect()
}

fn refs(v: &Value, found: &mut impl FnMut(String)) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                found(r.trim_start_matches("#/components/schemas/").to_string());
            }
            m.values().for_each(|v| refs(v, found));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// Optional properties may be `null` (a request may send it to mean "none" or "clear"; a
/// response sends it where there is no value); a response sends every property.
fn nullable_and_required(schema: &mut Value, response_only: bool, types: &std::collections::BTreeMap<String, Value>) {
    if !schema.get("properties").is_some_and(Value::is_object) {
        return;
    }
    let required: Vec<String> =
        schema["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)).collect();
    let props = schema["properties"].as_object_mut().expect("checked");
    for (name, prop) in props.iter_mut() {
        if required.contains(name) {
            continue;
        }
        if let Some(r) = prop.get("$ref").cloned() {
            // `nullable` needs a `type` beside it: the referenced schema's
            let ty = r.as_str().and_then(|r| types.get(r)).cloned().unwrap_or(json!("object"));
            let mut wrapped = json!({"type": ty, "allOf": [{"$ref": r}], "nullable": true});
            if let Some(d) = prop.get("description") {
                wrapped["description"] = d.clone();
            }
            *prop = wrapped;
        } else if prop.is_object() {
            prop["nullable"] = json!(true);
        }
    }
    if response_only {
        let all: Vec<Value> = props.keys().map(|k| json!(k)).collect();
        schema["required"] = Value::Array(all);
    }
}

/// The constraints that `validate` enforces, the formats of ids and times, the defaults of
/// SPEC, and `type: object` for free-form objects.
fn constrain_properties(schema_name: &str, schema: &mut Value) {
    let request = schema_name.ends_with("Request") || schema_name == "LoginBody";
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (name, prop) in props.iter_mut() {
        // a nullable $ref wrapper carries its constraints in the referenced schema
        if prop.get("allOf").is_some() {
            continue;
        }
        let extra = match name.as_str() {
            "id"
            | "organization_id"
            | "role_id"
            | "project_id"
            | "agent_config_id"
            | "user_id"
            | "conversation_id"
            | "created_by"
            | "job_id"
            | "user_message_id"
            | "assistant_message_id" => {
                json!({"format": "uuid"})
            }
            "created_at" | "updated_at" | "started_at" | "finished_at" | "resets_at" => json!({"format": "date-time"}),
            "at" if schema_name == "AuditEvent" => json!({"format": "date-time"}),
            "settings" | "knowledge_base" | "context" | "metadata" | "changes" => {
                json!({"type": "object", "additionalProperties": true})
            }
            "email" => json!({"format": "email", "maxLength": 255}),
            "username" if schema_name == "LoginBody" => json!({"minLength": 1, "maxLength": 255}),
            // surrounding whitespace is trimmed, so the pattern bounds the name, not the string
            "username" if request => json!({"pattern": "^\\s*[A-Za-z0-9_.-]{3,50}\\s*$"}),
            "password" | "new_password" if request && schema_name != "LoginBody" => {
                json!({"minLength": 8, "maxLength": 128, "format": "password"})
            }
            "password" | "current_password" => json!({"format": "password"}),
            "name" if request => json!({"minLength": 1, "maxLength": 255}),
            "full_name" | "title" | "domain" if request => json!({"maxLength": 255}),
            "description" if request => json!({"maxLength": 10000}),
            "system_prompt" if request => json!({"maxLength": 100000}),
            "content" if schema_name == "CreateMessageRequest" || schema_name == "CompletionRequest" => {
                json!({"minLength": 1, "maxLength": 100000})
            }
            "temperature" => json!({"minimum": 0.0, "maximum": 2.0, "default": 0.7}),
            "max_tokens" => json!({"minimum": 1, "maximum": 128000, "default": 2048}),
            "llm_model" if request => json!({"default": "gemini-pro", "minLength": 1, "maxLength": 255}),
            "status" if schema_name == "Document" => json!({"enum": ["pending", "processing", "ready", "failed"]}),
            "content_type" if schema_name == "CreateDocumentRequest" => {
                json!({"enum": ["text/plain", "text/markdown", "text/html"], "default": "text/plain"})
            }
            "name" if schema_name == "Budget" => {
                json!({"enum": [crate::limits::ORG_MONTHLY, crate::limits::USER_DAILY]})
            }
            "limit" if schema_name == "Budget" => json!({"minimum": 1}),
            "used" | "remaining" if schema_name == "Budget" => json!({"minimum": 0}),
            "skip" => json!({"minimum": 0}),
            "limit" => json!({"minimum": 1, "maximum": 100}),
            "total" => json!({"minimum": 0}),
            _ => continue,
        };
        merge(prop, extra);
    }
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        let e: Map<String, Value> = e;
        t.extend(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_area_action() {
        let mut seen = std::collections::HashSet::new();
        for o in OPERATIONS {
            assert!(seen.insert(o.id), "{} twice", o.id);
            assert!(
                o.id.split('_').count() >= 2 && o.id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                o.id
            );
            assert!(!o.errors.contains(&500), "500 is added to every operation");
        }
    }

    #[test]
    fn optional_properties_become_nullable_and_responses_require_all() {
        let mut s = json!({"properties": {"a": {"type": "string"}, "b": {"type": "string"},
                                          "r": {"$ref": "#/components/schemas/X"}}, "required": ["a"]});
        nullable_and_required(&mut s, true, &Default::default());
        assert_eq!(s["properties"]["b"]["nullable"], true);
        assert!(s["properties"]["a"].get("nullable").is_none());
        assert_eq!(s["properties"]["r"]["allOf"][0]["$ref"], "#/components/schemas/X");
        assert_eq!(s["required"], json!(["a", "b", "r"]));
    }
}
