//! The authorization matrix: every endpoint × five callers → the status SPEC §3 implies.
//!
//! Callers: a superuser, the admin of organization A, a member of A, a holder of a custom role
//! of A (read-only permissions, no conversations), and the admin of organization B. Every
//! resource belongs to A (conversations to A's admin). Each caller gets fresh resources, so
//! destructive calls do not depend on one another.

use serde_json::{Value, json};

use crate::helpers::*;

/// A job id that names no job.
const NO_JOB: &str = "00000000-0000-7000-8000-000000000000";

const CALLERS: [&str; 5] = ["superuser", "admin A", "member A", "custom A", "admin B"];

/// The custom role's permissions: reading, but no writes and no conversations.
const CUSTOM: [&str; 5] = ["users:read", "projects:read", "roles:read", "agents:read", "organizations:write"];

struct World {
    org_a: String,
    org_b: String,
    user: String,
    victim: String,
    mover: String,
    member_role: String,
    project: String,
    project_victim: String,
    project_member: String,
    role: String,
    role_victim: String,
    perm_users_read: String,
    perm_projects_read: String,
    agent: String,
    agent_victim: String,
    conversation: String,
    message: String,
    document: String,
    document_victim: String,
    /// An API key of A's admin.
    api_key: String,
}

async fn world(app: &TestApp, n: usize, admin_a: &str, org_a: &str, org_b: &str) -> World {
    let created = |r: Resp| {
        assert!(r.status == 201 || r.status == 200, "set-up failed: {} {:?}", r.status, r.body);
        r.id()
    };
    let user = app.create_user_in(org_a, &format!("target{n}"), "member").await.0;
    let victim = app.create_user_in(org_a, &format!("victim{n}"), "member").await.0;
    let mover = app.create_user_in(org_a, &format!("mover{n}"), "member").await.0;
    let project_member = app.create_user_in(org_a, &format!("pmember{n}"), "member").await.0;
    let project = created(app.post("/projects", Some(admin_a), json!({"name": format!("p{n}")})).await);
    let project_victim = created(app.post("/projects", Some(admin_a), json!({"name": format!("pv{n}")})).await);
    let r = app.post_empty(&format!("/projects/{project}/members/{project_member}"), Some(admin_a)).await;
    assert_eq!(r.status, 200);
    let role = created(
        app.post("/roles", Some(admin_a), json!({"name": format!("r{n}"), "permissions": ["users:read"]})).await,
    );
    let role_victim = created(app.post("/roles", Some(admin_a), json!({"name": format!("rv{n}")})).await);
    let perms = app.get("/roles/permissions?limit=100", Some(admin_a)).await;
    let perm = |name: &str| {
        perms.body["data"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let roles = app.get("/roles?search=member", Some(admin_a)).await;
    let member_role = roles.body["data"][0]["id"].as_str().unwrap().to_string();
    let agent =
        created(app.post("/agent-configs", Some(admin_a), json!({"name": format!("a{n}"), "agent_type": "rfp"})).await);
    let agent_victim =
        created(app.post("/agent-configs", Some(admin_a), json!({"name": format!("av{n}"), "agent_type": "hr"})).await);
    let conversation = created(app.post("/conversations", Some(admin_a), json!({"title": format!("c{n}")})).await);
    let message = created(
        app.post(
            &format!("/conversations/{conversation}/messages"),
            Some(admin_a),
            json!({"role": "user", "content": "hi"}),
        )
        .await,
    );
    let document = created(
        app.post("/documents", Some(admin_a), json!({"title": format!("d{n}"), "content": format!("doc {n}")})).await,
    );
    let document_victim = created(
        app.post("/documents", Some(admin_a), json!({"title": format!("dv{n}"), "content": format!("victim {n}")}))
            .await,
    );
    let api_key = created(
        app.post("/api-keys", Some(admin_a), json!({"name": format!("k{n}"), "permissions": ["agents:read"]})).await,
    );
    World {
        api_key,
        org_a: org_a.into(),
        org_b: org_b.into(),
        user,
        victim,
        mover,
        member_role,
        project,
        project_victim,
        project_member,
        role,
        role_victim,
        perm_users_read: perm("users:read"),
        perm_projects_read: perm("projects:read"),
        agent,
        agent_victim,
        conversation,
        message,
        document,
        document_victim,
    }
}

/// (method, path, body, expected status per caller in the order of [`CALLERS`])
fn cases(w: &World, n: usize) -> Vec<(&'static str, String, Value, [u16; 5])> {
    let World {
        api_key,
        org_a,
        org_b,
        user,
        victim,
        mover,
        member_role,
        project,
        project_victim,
        project_member,
        role,
        role_victim,
        perm_users_read,
        perm_projects_read,
        agent,
        agent_victim,
        conversation: c,
        message: m,
        document: d,
        document_victim: dv,
    } = w;
    let new_user = json!({"username": format!("new{n}"), "email": format!("new{n}@example.com"), "password": PASSWORD});
    vec![
        // users
        ("GET", "/users".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/users/{user}"), Value::Null, [200, 200, 200, 200, 404]),
        ("POST", "/users".into(), new_user, [201, 201, 403, 403, 201]),
        ("PUT", format!("/users/{user}"), json!({"full_name": "Changed"}), [200, 200, 403, 403, 404]),
        ("POST", format!("/users/{user}/activate"), Value::Null, [200, 200, 403, 403, 404]),
        ("POST", format!("/users/{user}/role"), json!({"role_id": member_role}), [200, 200, 403, 403, 404]),
        ("DELETE", format!("/users/{victim}"), Value::Null, [204, 204, 403, 403, 404]),
        // organizations
        ("GET", "/organizations".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/organizations/{org_a}"), Value::Null, [200, 200, 200, 403, 404]),
        ("PUT", format!("/organizations/{org_a}"), json!({"description": "d"}), [200, 200, 403, 200, 404]),
        ("POST", "/organizations".into(), json!({"name": format!("Org {n}")}), [201, 403, 403, 403, 403]),
        ("GET", format!("/organizations/{org_a}/members"), Value::Null, [200, 200, 200, 403, 404]),
        ("POST", format!("/organizations/{org_b}/members/{mover}"), Value::Null, [200, 403, 403, 403, 403]),
        // projects
        ("GET", "/projects".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/projects/{project}"), Value::Null, [200, 200, 200, 200, 404]),
        ("POST", "/projects".into(), json!({"name": "x"}), [201, 201, 201, 403, 201]),
        ("PUT", format!("/projects/{project}"), json!({"name": "y"}), [200, 200, 403, 403, 404]),
        ("GET", format!("/projects/{project}/members"), Value::Null, [200, 200, 200, 200, 404]),
        ("POST", format!("/projects/{project}/members/{user}"), Value::Null, [200, 200, 403, 403, 404]),
        ("DELETE", format!("/projects/{project}/members/{project_member}"), Value::Null, [200, 200, 403, 403, 404]),
        ("DELETE", format!("/projects/{project_victim}"), Value::Null, [204, 204, 403, 403, 404]),
        // roles and permissions
        ("GET", "/roles".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/roles/{role}"), Value::Null, [200, 200, 200, 200, 404]),
        ("POST", "/roles".into(), json!({"name": format!("new role {n}")}), [201, 201, 403, 403, 201]),
        ("PUT", format!("/roles/{role}"), json!({"description": "d"}), [200, 200, 403, 403, 404]),
        ("POST", format!("/roles/{role}/permissions/{perm_projects_read}"), Value::Null, [200, 200, 403, 403, 404]),
        ("DELETE", format!("/roles/{role}/permissions/{perm_users_read}"), Value::Null, [200, 200, 403, 403, 404]),
        ("DELETE", format!("/roles/{role_victim}"), Value::Null, [204, 204, 403, 403, 404]),
        ("GET", "/roles/permissions".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/roles/permissions/{perm_users_read}"), Value::Null, [200, 200, 200, 200, 200]),
        // agent configs
        ("GET", "/agent-configs".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/agent-configs/{agent}"), Value::Null, [200, 200, 200, 200, 404]),
        ("POST", "/agent-configs".into(), json!({"name": "g", "agent_type": "jira"}), [201, 201, 403, 403, 201]),
        ("PUT", format!("/agent-configs/{agent}"), json!({"temperature": 1.0}), [200, 200, 403, 403, 404]),
        ("DELETE", format!("/agent-configs/{agent_victim}"), Value::Null, [204, 204, 403, 403, 404]),
        ("POST", format!("/agent-configs/{agent_victim}/activate"), Value::Null, [200, 200, 403, 403, 404]),
        // conversations: the owner (admin A) only
        ("GET", "/conversations".into(), Value::Null, [200, 200, 200, 403, 200]),
        ("GET", format!("/conversations/{c}"), Value::Null, [404, 200, 404, 403, 404]),
        ("POST", "/conversations".into(), json!({"title": "t"}), [201, 201, 201, 403, 201]),
        ("PUT", format!("/conversations/{c}"), json!({"title": "u"}), [404, 200, 404, 403, 404]),
        ("GET", format!("/conversations/{c}/messages"), Value::Null, [404, 200, 404, 403, 404]),
        (
            "POST",
            format!("/conversations/{c}/messages"),
            json!({"role": "user", "content": "x"}),
            [404, 201, 404, 403, 404],
        ),
        ("GET", format!("/conversations/{c}/messages/{m}"), Value::Null, [404, 200, 404, 403, 404]),
        ("DELETE", format!("/conversations/{c}/messages/{m}"), Value::Null, [404, 204, 404, 403, 404]),
        // completions: the conversation's owner only (it has no agent config: 400); an unknown job is 404
        ("POST", format!("/conversations/{c}/completions"), json!({"content": "hi"}), [404, 400, 404, 403, 404]),
        ("GET", format!("/conversations/{c}/completions/{NO_JOB}"), Value::Null, [404, 404, 404, 403, 404]),
        ("POST", format!("/conversations/{c}/completions/{NO_JOB}/cancel"), Value::Null, [404, 404, 404, 403, 404]),
        ("DELETE", format!("/conversations/{c}/completions/{NO_JOB}"), Value::Null, [404, 404, 404, 403, 404]),
        ("DELETE", format!("/conversations/{c}"), Value::Null, [404, 204, 404, 403, 404]),
        // documents and the knowledge base: agents:read reads, agents:write changes
        ("GET", "/documents".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/documents/{d}"), Value::Null, [200, 200, 200, 200, 404]),
        ("GET", format!("/documents/{d}/chunks"), Value::Null, [200, 200, 200, 200, 404]),
        ("GET", format!("/documents/{d}/file"), Value::Null, [200, 200, 200, 200, 404]),
        (
            "POST",
            "/documents".into(),
            json!({"title": "new", "content": format!("new document {n}")}),
            [201, 201, 403, 403, 201],
        ),
        ("POST", format!("/documents/{d}/reindex"), Value::Null, [202, 202, 403, 403, 404]),
        ("DELETE", format!("/documents/{dv}"), Value::Null, [204, 204, 403, 403, 404]),
        ("GET", "/knowledge/search?q=doc".into(), Value::Null, [200, 200, 200, 200, 200]),
        // the caller's own
        ("GET", "/auth/me".into(), Value::Null, [200, 200, 200, 200, 200]),
        // API keys: anyone for their own permissions; a key is its owner's or their org admin's
        ("GET", "/api-keys".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("POST", "/api-keys".into(), json!({"name": "k", "permissions": ["agents:read"]}), [201, 201, 201, 201, 201]),
        ("POST", "/api-keys".into(), json!({"name": "k", "permissions": ["users:delete"]}), [201, 201, 403, 403, 201]),
        ("DELETE", format!("/api-keys/{api_key}"), Value::Null, [204, 204, 404, 404, 404]),
        // usage: everyone their own; another organization's only for a superuser
        ("GET", "/usage".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", format!("/usage?organization_id={org_b}"), Value::Null, [200, 403, 403, 403, 200]),
        // status and health: everyone; changing a password needs the current one
        ("GET", "/status".into(), Value::Null, [200, 200, 200, 200, 200]),
        ("GET", "/health/ready".into(), Value::Null, [200, 200, 200, 200, 200]),
        (
            "POST",
            "/auth/change-password".into(),
            json!({"current_password": "not-the-password", "new_password": "another-password-1"}),
            [400, 400, 400, 400, 400],
        ),
        // the audit log: org admins (their organization) and superusers (any)
        ("GET", "/audit-events".into(), Value::Null, [200, 200, 403, 403, 200]),
        ("GET", format!("/audit-events?organization_id={org_a}"), Value::Null, [200, 200, 403, 403, 403]),
        ("GET", format!("/audit-events?organization_id={org_b}"), Value::Null, [200, 403, 403, 403, 200]),
    ]
}

#[tokio::test]
async fn every_endpoint_for_every_kind_of_caller() {
    let app = spawn_app().await;
    let superuser = app.admin_token().await;
    let org_a = app.create_org("Org A").await;
    let org_b = app.create_org("Org B").await;
    app.create_role(&org_a, "auditor", &CUSTOM).await;
    let admin_a = app.create_user_in(&org_a, "admin_a", "admin").await.1;
    let tokens = [
        superuser,
        admin_a.clone(),
        app.create_user_in(&org_a, "member_a", "member").await.1,
        app.create_user_in(&org_a, "custom_a", "auditor").await.1,
        app.create_user_in(&org_b, "admin_b", "admin").await.1,
    ];
    let mut failures = vec![];
    for (i, token) in tokens.iter().enumerate() {
        let w = world(&app, i, &admin_a, &org_a, &org_b).await;
        for (method, path, body, expected) in cases(&w, i) {
            let r = match (method, body.is_null()) {
                ("GET", _) => app.get(&path, Some(token)).await,
                ("POST", true) => app.post_empty(&path, Some(token)).await,
                ("POST", false) => app.post(&path, Some(token), body).await,
                ("PUT", _) => app.put(&path, Some(token), body).await,
                ("DELETE", _) => app.delete(&path, Some(token)).await,
                _ => unreachable!(),
            };
            if r.status != expected[i] {
                failures.push(format!(
                    "{} {method} {path}: {} (expected {}) {:?}",
                    CALLERS[i], r.status, expected[i], r.body
                ));
            }
            if r.status >= 400 {
                assert!(r.body["detail"].is_string(), "{method} {path}: error without detail");
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn lists_never_show_another_organization() {
    let app = spawn_app().await;
    let org_a = app.create_org("Org A").await;
    let org_b = app.create_org("Org B").await;
    let admin_a = app.create_user_in(&org_a, "admin_a", "admin").await.1;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    world(&app, 0, &admin_a, &org_a, &org_b).await;
    for path in ["/users", "/projects", "/roles", "/agent-configs", "/conversations", "/organizations", "/documents"] {
        let r = app.get(&format!("{path}?limit=100"), Some(&admin_b)).await;
        assert_eq!(r.status, 200, "{path}");
        for row in r.body["data"].as_array().unwrap() {
            let org = row.get("organization_id").unwrap_or(&row["id"]);
            assert_eq!(org.as_str(), Some(org_b.as_str()), "{path} shows {row}");
        }
        // search cannot reach across either
        let r = app.get(&format!("{path}?search=0&limit=100"), Some(&admin_b)).await;
        assert_eq!(r.body["total"], 0, "{path} search: {:?}", r.body);
    }
    // the superuser sees both, and can narrow to one
    let su = app.admin_token().await;
    let all = app.get("/users?limit=100", Some(&su)).await;
    let narrowed = app.get(&format!("/users?limit=100&organization_id={org_b}"), Some(&su)).await;
    assert!(all.body["total"].as_i64() > narrowed.body["total"].as_i64());
    assert_eq!(narrowed.body["total"], 1);
    // a non-superuser's organization_id filter cannot widen their view
    let r = app.get(&format!("/users?organization_id={org_a}"), Some(&admin_b)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

/// SPEC §3 "No escalation": a caller confers, and changes users holding, only what they hold.
#[tokio::test]
async fn no_caller_confers_more_than_they_hold() {
    let app = spawn_app().await;
    let org = app.create_org("Org A").await;
    app.create_role(&org, "userwriter", &["users:read", "users:write", "users:delete"]).await;
    app.create_role(&org, "rolewriter", &["users:read", "roles:read", "roles:write"]).await;
    let big = app.create_role(&org, "big", &["users:read", "users:write", "projects:read", "agents:write"]).await;
    let (admin_id, admin) = app.create_user_in(&org, "admin_a", "admin").await;
    let (_, user_writer) = app.create_user_in(&org, "uw", "userwriter").await;
    let (role_writer_id, role_writer) = app.create_user_in(&org, "rw", "rolewriter").await;
    let (big_id, _) = app.create_user_in(&org, "bigone", "big").await;
    let (member_id, _) = app.create_user_in(&org, "plain", "member").await;
    let roles = app.get("/roles?limit=100", Some(&admin)).await;
    let role_id = |name: &str| {
        roles.body["data"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (admin_role, member_role) = (role_id("admin"), role_id("member"));
    let all: Vec<&str> =
        roles.body["data"].as_array().unwrap().iter().find(|r| r["name"] == "admin").unwrap()["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
    assert_eq!(all.len(), 13);
    let new_user = |n: &str, role: &str| json!({"username": n, "email": format!("{n}@example.com"), "password": PASSWORD, "role_id": role});

    // users:write cannot create an admin or a holder of a bigger role, nor touch one
    let r = app.post("/users", Some(&user_writer), new_user("sneaky", &admin_role)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(app.post("/users", Some(&user_writer), new_user("sneaky2", &big)).await.status, 403);
    assert_eq!(app.get("/users?search=sneaky", Some(&admin)).await.body["total"], 0, "nothing was stored");
    assert_eq!(app.post("/users", Some(&user_writer), new_user("fine", &member_role)).await.status, 201);
    for body in [json!({"password": "taken-over-1"}), json!({"email": "me@evil.example"}), json!({"is_active": false})]
    {
        let r = app.put(&format!("/users/{admin_id}"), Some(&user_writer), body.clone()).await;
        assert_eq!(r.status, 403, "admin {body}: {:?}", r.body);
        let r = app.put(&format!("/users/{big_id}"), Some(&user_writer), body.clone()).await;
        assert_eq!(r.status, 403, "bigger role {body}: {:?}", r.body);
    }
    assert_eq!(app.delete(&format!("/users/{admin_id}"), Some(&user_writer)).await.status, 403);
    assert_eq!(app.post_empty(&format!("/users/{admin_id}/activate"), Some(&user_writer)).await.status, 403);
    app.login("admin_a", PASSWORD).await; // the admin's password is unchanged
    let r = app.put(&format!("/users/{member_id}"), Some(&user_writer), json!({"password": "new-password-1"})).await;
    assert_eq!(r.status, 200, "a member is always allowed: {:?}", r.body);
    let r = app.put(&format!("/users/{admin_id}"), Some(&user_writer), json!({"full_name": "Renamed"})).await;
    assert_eq!(r.status, 200, "full_name is not guarded: {:?}", r.body);

    // roles:write cannot take the admin role, nor build and take a bigger role
    let r =
        app.post(&format!("/users/{role_writer_id}/role"), Some(&role_writer), json!({"role_id": admin_role})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app.post(&format!("/users/{role_writer_id}/role"), Some(&role_writer), json!({"role_id": big})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app.post("/roles", Some(&role_writer), json!({"name": "everything", "permissions": all})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app.post("/roles", Some(&role_writer), json!({"name": "small", "permissions": ["users:read"]})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let small = r.id();
    let r = app.put(&format!("/roles/{small}"), Some(&role_writer), json!({"permissions": all})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(app.put(&format!("/roles/{big}"), Some(&role_writer), json!({"description": "d"})).await.status, 403);
    let perms = app.get("/roles/permissions?limit=100", Some(&admin)).await;
    let users_write =
        perms.body["data"].as_array().unwrap().iter().find(|p| p["name"] == "users:write").unwrap()["id"].clone();
    let users_write = users_write.as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/roles/{small}/permissions/{users_write}"), Some(&role_writer)).await.status,
        403
    );
    let r = app.get(&format!("/roles/{small}"), Some(&admin)).await;
    assert_eq!(r.body["permissions"], json!(["users:read"]), "nothing was granted");
    let r = app.post(&format!("/users/{member_id}/role"), Some(&role_writer), json!({"role_id": small})).await;
    assert_eq!(r.status, 200, "a role within the caller's own permissions: {:?}", r.body);

    // an org admin may do all of it
    assert_eq!(app.post("/users", Some(&admin), new_user("second_admin", &admin_role)).await.status, 201);
    assert_eq!(app.post("/roles", Some(&admin), json!({"name": "everything", "permissions": all})).await.status, 201);
    let r = app.post(&format!("/users/{role_writer_id}/role"), Some(&admin), json!({"role_id": admin_role})).await;
    assert_eq!(r.status, 200);
}

/// Every operation that takes a token has at least one row above; the public ones (no token: the
/// same answer for every caller) are tested where they live, and logout would end the session
/// the other rows' set-up uses (tests/api/auth.rs covers it for each kind of caller's own token).
#[test]
fn the_matrix_covers_every_operation_that_takes_a_token() {
    let w = World {
        org_a: "W".into(),
        org_b: "W".into(),
        user: "W".into(),
        victim: "W".into(),
        mover: "W".into(),
        member_role: "W".into(),
        project: "W".into(),
        project_victim: "W".into(),
        project_member: "W".into(),
        role: "W".into(),
        role_victim: "W".into(),
        perm_users_read: "W".into(),
        perm_projects_read: "W".into(),
        agent: "W".into(),
        agent_victim: "W".into(),
        conversation: "W".into(),
        message: "W".into(),
        document: "W".into(),
        document_victim: "W".into(),
        api_key: "W".into(),
    };
    let template = |path: &str| {
        let path = path.split('?').next().unwrap();
        path.split('/').map(|s| if s == "W" || s == NO_JOB { "{}" } else { s }).collect::<Vec<_>>().join("/")
    };
    let covered: std::collections::HashSet<(String, String)> =
        cases(&w, 0).iter().map(|(m, p, _, _)| (m.to_string(), template(p))).collect();
    let missing: Vec<String> = copilot::openapi::OPERATIONS
        .iter()
        .filter(|o| !o.public && o.id != "auth_logout")
        .filter(|o| {
            let path: String =
                o.path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect::<Vec<_>>().join("/");
            !covered.contains(&(o.method.to_ascii_uppercase(), path))
        })
        .map(|o| format!("{} {}", o.method, o.path))
        .collect();
    assert!(missing.is_empty(), "operations without a row in the authorization matrix: {missing:?}");
}
