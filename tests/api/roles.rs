//! /roles and /roles/permissions: custom roles, system-role protection, tenancy, permission
//! grants, and that permission changes bite on the holder's very next request.

use copilot::authz::Scope;
use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::*;

const ALL: [&str; 13] = [
    "users:read",
    "users:write",
    "users:delete",
    "organizations:read",
    "organizations:write",
    "projects:read",
    "projects:write",
    "projects:delete",
    "roles:read",
    "roles:write",
    "agents:read",
    "agents:write",
    "conversations:write",
];

const MEMBER: [&str; 8] = [
    "users:read",
    "organizations:read",
    "projects:read",
    "projects:write",
    "projects:delete",
    "roles:read",
    "agents:read",
    "conversations:write",
];

const UNKNOWN_ID: &str = "0190b3a4-0000-7000-8000-000000000000";

/// Permission name → id.
async fn permission_ids(app: &TestApp, token: &str) -> HashMap<String, String> {
    let r = app.get("/roles/permissions?limit=100", Some(token)).await;
    assert_eq!(r.status, 200);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["id"].as_str().unwrap().to_string()))
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

async fn create_role(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.post("/roles", Some(token), body.clone()).await;
    assert_eq!(r.status, 201, "{body}: {:?}", r.body);
    r.body
}

/// The system role of the caller's organization named `name`.
async fn system_role(app: &TestApp, token: &str, name: &str) -> Value {
    let r = app.get(&format!("/roles?search={name}"), Some(token)).await;
    r.body["data"].as_array().unwrap().iter().find(|r| r["name"] == name && r["is_system"] == true).unwrap().clone()
}

#[tokio::test]
async fn members_see_the_system_roles_of_their_organization() {
    let app = spawn_app().await;
    let (user, token) = app.member("alice").await;
    let r = app.get("/roles", Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 2);
    assert_eq!(r.body["has_more"], false);
    let member = system_role(&app, &token, "member").await;
    let admin = system_role(&app, &token, "admin").await;
    assert_eq!(member["permissions"], json!(MEMBER));
    assert_eq!(admin["permissions"], json!(ALL));
    assert_eq!(member["organization_id"], app.default_org_id().await);
    assert_eq!(member["id"], user["role_id"]);
    assert_eq!(member["user_count"], 1, "alice");
    assert_eq!(admin["user_count"], 1, "the bootstrap superuser");
    for field in ["description", "created_at", "updated_at"] {
        assert!(member[field].is_string(), "{field}");
    }

    let got = app.get(&format!("/roles/{}", member["id"].as_str().unwrap()), Some(&token)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, member);
}

#[tokio::test]
async fn roles_are_scoped_to_the_organization() {
    let app = spawn_app().await;
    let (_, token) = app.member("alice").await;
    let acme = app.create_org("Acme").await;
    let (_, acme_admin) = app.create_user_in(&acme, "acme_admin", "admin").await;
    let acme_role = create_role(&app, &acme_admin, json!({"name": "Auditor"})).await;
    assert_eq!(acme_role["organization_id"], acme);
    let path = format!("/roles/{}", acme_role["id"].as_str().unwrap());

    assert_eq!(app.get(&path, Some(&token)).await.status, 404);
    assert_eq!(app.get("/roles/not-a-uuid", Some(&token)).await.status, 404);
    assert_eq!(app.get(&format!("/roles/{UNKNOWN_ID}"), Some(&token)).await.status, 404);
    // a caller who is not a superuser cannot widen or move their scope
    let r = app.get(&format!("/roles?organization_id={acme}"), Some(&token)).await;
    assert_eq!(r.status, 403, "never the caller's own roles under another name: {:?}", r.body);

    let default_admin = app.create_user_in(&app.default_org_id().await, "boss", "admin").await.1;
    let theirs_member = system_role(&app, &acme_admin, "member").await;
    let member_path = format!("/roles/{}", theirs_member["id"].as_str().unwrap());
    assert_eq!(app.put(&path, Some(&default_admin), json!({"name": "x"})).await.status, 404);
    assert_eq!(app.delete(&path, Some(&default_admin)).await.status, 404);
    assert_eq!(app.delete(&member_path, Some(&default_admin)).await.status, 404, "not 403: it is not visible");
    let perms = permission_ids(&app, &token).await;
    let grant = format!("{path}/permissions/{}", perms["users:read"]);
    assert_eq!(app.post_empty(&grant, Some(&default_admin)).await.status, 404);
    assert_eq!(app.delete(&grant, Some(&default_admin)).await.status, 404);

    // a superuser sees every organization's roles and may narrow
    let root = app.admin_token().await;
    assert_eq!(app.get("/roles", Some(&root)).await.body["total"], 5);
    let r = app.get(&format!("/roles?organization_id={acme}"), Some(&root)).await;
    assert_eq!(r.body["total"], 3);
    assert_eq!(names(&r.body)[0], "Auditor");
    assert_eq!(app.get(&path, Some(&root)).await.status, 200);
    let r = app.put(&path, Some(&root), json!({"description": "by root"})).await;
    assert_eq!(r.status, 200);
    // a superuser's new role lands in their own organization
    let mine = create_role(&app, &root, json!({"name": "Auditor"})).await;
    assert_eq!(mine["organization_id"], app.default_org_id().await);
}

#[tokio::test]
async fn role_endpoints_need_a_token_and_the_permissions() {
    let app = spawn_app().await;
    let (_, member) = app.member("alice").await;
    let org = app.default_org_id().await;
    let role_id = app.create_role(&org, "Custom", &[]).await;
    let (_, nothing) = app.create_user_in(&org, "nobody", "Custom").await;
    let perms = permission_ids(&app, &member).await;
    let path = format!("/roles/{role_id}");
    let grant = format!("{path}/permissions/{}", perms["users:read"]);

    for p in ["/roles", path.as_str(), "/roles/permissions"] {
        let r = app.get(p, None).await;
        assert_eq!(r.status, 401, "{p}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(app.get("/roles", Some(&nothing)).await.status, 403);
    assert_eq!(app.get(&path, Some(&nothing)).await.status, 403);
    // members hold roles:read but not roles:write
    assert_eq!(app.get(&path, Some(&member)).await.status, 200);
    let r = app.post("/roles", Some(&member), json!({"name": "Mine"})).await;
    assert_eq!(r.status, 403);
    assert!(r.detail().contains("roles:write"));
    assert_eq!(app.put(&path, Some(&member), json!({"name": "x"})).await.status, 403);
    assert_eq!(app.delete(&path, Some(&member)).await.status, 403);
    assert_eq!(app.post_empty(&grant, Some(&member)).await.status, 403);
    assert_eq!(app.delete(&grant, Some(&member)).await.status, 403);
    assert_eq!(app.post("/roles", None, json!({"name": "x"})).await.status, 401);
    assert_eq!(app.post_empty(&grant, None).await.status, 401);
    assert_eq!(app.delete(&path, None).await.status, 401);

    // a custom role holding roles:write is enough, for permissions its holder has (SPEC §3)
    let writer_role = app.create_role(&org, "RoleWriter", &["roles:write", "users:read"]).await;
    let (_, writer) = app.create_user_in(&org, "writer", "RoleWriter").await;
    assert_eq!(app.post_empty(&grant, Some(&writer)).await.status, 200);
    assert_eq!(app.get("/roles", Some(&writer)).await.status, 403, "roles:write does not imply roles:read");
    assert_ne!(writer_role, role_id);
}

#[tokio::test]
async fn create_validates_and_keeps_permissions_in_canonical_order() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let r = app
        .post(
            "/roles",
            Some(&root),
            json!({"name": "  Reviewer ", "description": "Reads things",
                   "permissions": ["projects:read", "users:read", "projects:read", "agents:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], "Reviewer");
    assert_eq!(r.body["description"], "Reads things");
    assert_eq!(r.body["is_system"], false);
    assert_eq!(r.body["user_count"], 0);
    assert_eq!(r.body["permissions"], json!(["users:read", "projects:read", "agents:read"]));
    assert_eq!(app.get(&format!("/roles/{}", r.id()), Some(&root)).await.body, r.body);

    let empty = create_role(&app, &root, json!({"name": "Empty"})).await;
    assert_eq!(empty["permissions"], json!([]));
    assert_eq!(empty["description"], Value::Null);

    let r = app.post("/roles", Some(&root), json!({"name": "Bad", "permissions": ["users:read", "users:admin"]})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("users:admin"), "{}", r.detail());
    for body in [
        json!({}),
        json!({"name": " "}),
        json!({"name": "x".repeat(256)}),
        json!({"name": "ok", "description": "d".repeat(10_001)}),
        json!({"name": "ok", "permissions": "users:read"}),
        json!({"name": "ok", "permissions": [1]}),
    ] {
        let r = app.post("/roles", Some(&root), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    }
    assert_eq!(app.get("/roles", Some(&root)).await.body["total"], 4, "failed requests created nothing");

    // names are unique per organization regardless of case, system names included
    for name in ["reviewer", "REVIEWER", " Reviewer", "Admin", "member"] {
        let r = app.post("/roles", Some(&root), json!({"name": name})).await;
        assert_eq!(r.status, 409, "{name}");
        assert!(!r.detail().is_empty());
    }
    // ... but another organization may use the same name
    let acme = app.create_org("Acme").await;
    let (_, acme_admin) = app.create_user_in(&acme, "acme_admin", "admin").await;
    create_role(&app, &acme_admin, json!({"name": "reviewer"})).await;
}

#[tokio::test]
async fn update_changes_custom_roles_only() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let role = create_role(&app, &root, json!({"name": "Reviewer", "permissions": ["users:read"]})).await;
    create_role(&app, &root, json!({"name": "Other"})).await;
    let path = format!("/roles/{}", role["id"].as_str().unwrap());

    let r = app.put(&path, Some(&root), json!({"name": "Auditor", "description": "Audits"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((r.body["name"].as_str(), r.body["description"].as_str()), (Some("Auditor"), Some("Audits")));
    assert_eq!(r.body["permissions"], json!(["users:read"]), "left alone when not sent");
    assert_ne!(r.body["updated_at"], role["updated_at"]);

    let r = app.put(&path, Some(&root), json!({"permissions": ["roles:read", "projects:write"]})).await;
    assert_eq!(r.body["permissions"], json!(["projects:write", "roles:read"]), "replaced");
    assert_eq!(r.body["name"], "Auditor");
    let r = app.put(&path, Some(&root), json!({"permissions": []})).await;
    assert_eq!(r.body["permissions"], json!([]));
    // renaming to its own name in another case is fine; to another role's name is not
    assert_eq!(app.put(&path, Some(&root), json!({"name": "AUDITOR"})).await.status, 200);
    assert_eq!(app.put(&path, Some(&root), json!({"name": "other"})).await.status, 409);
    assert_eq!(app.put(&path, Some(&root), json!({"name": "admin"})).await.status, 409);

    let r = app.put(&path, Some(&root), json!({"name": "New", "permissions": ["projects:read", "nope"]})).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("nope"));
    for body in [json!({"name": ""}), json!({"description": "d".repeat(10_001)})] {
        assert_eq!(app.put(&path, Some(&root), body).await.status, 400);
    }
    let got = app.get(&path, Some(&root)).await.body;
    assert_eq!((got["name"].as_str(), got["permissions"].clone()), (Some("AUDITOR"), json!([])), "unchanged");

    for name in ["admin", "member"] {
        let sys = system_role(&app, &root, name).await;
        let r = app.put(&format!("/roles/{}", sys["id"].as_str().unwrap()), Some(&root), json!({"name": "x"})).await;
        assert_eq!(r.status, 403, "{name}");
        let after = app.get(&format!("/roles/{}", sys["id"].as_str().unwrap()), Some(&root)).await.body;
        assert_eq!(after, sys);
    }
    assert_eq!(app.put("/roles/nope", Some(&root), json!({})).await.status, 404);
    assert_eq!(app.put(&format!("/roles/{UNKNOWN_ID}"), Some(&root), json!({})).await.status, 404);
}

#[tokio::test]
async fn delete_refuses_system_roles_and_roles_in_use() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let org = app.default_org_id().await;
    let unused = create_role(&app, &root, json!({"name": "Unused", "permissions": ["users:read"]})).await;
    let used = create_role(&app, &root, json!({"name": "Used"})).await;
    let (holder, _) = app.create_user_in(&org, "holder", "Used").await;
    // a deactivated holder still holds it
    app.state
        .store
        .write(move |tx| {
            copilot::store::users::set_active(tx, &Scope::system_all(), &holder, false, &copilot::db::now())
        })
        .await
        .unwrap();

    let used_path = format!("/roles/{}", used["id"].as_str().unwrap());
    assert_eq!(app.get(&used_path, Some(&root)).await.body["user_count"], 1);
    let r = app.delete(&used_path, Some(&root)).await;
    assert_eq!(r.status, 409);
    assert!(!r.detail().is_empty());
    assert_eq!(app.get(&used_path, Some(&root)).await.status, 200);

    for name in ["admin", "member"] {
        let sys = system_role(&app, &root, name).await;
        assert_eq!(app.delete(&format!("/roles/{}", sys["id"].as_str().unwrap()), Some(&root)).await.status, 403);
    }

    let path = format!("/roles/{}", unused["id"].as_str().unwrap());
    let r = app.delete(&path, Some(&root)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert_eq!(app.get(&path, Some(&root)).await.status, 404, "a hard delete");
    assert_eq!(app.delete(&path, Some(&root)).await.status, 404);
    assert_eq!(app.get("/roles", Some(&root)).await.body["total"], 3);
    assert_eq!(app.delete("/roles/nope", Some(&root)).await.status, 404);
}

#[tokio::test]
async fn permissions_are_granted_and_revoked_one_by_one() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let perms = permission_ids(&app, &root).await;
    let role = create_role(&app, &root, json!({"name": "Grow", "permissions": ["roles:read"]})).await;
    let base = format!("/roles/{}/permissions", role["id"].as_str().unwrap());

    let r = app.post_empty(&format!("{base}/{}", perms["users:read"]), Some(&root)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], role["id"]);
    assert_eq!(r.body["permissions"], json!(["users:read", "roles:read"]));
    let r = app.post_empty(&format!("{base}/{}", perms["users:read"]), Some(&root)).await;
    assert_eq!(r.status, 200, "granting twice is a no-op");
    assert_eq!(r.body["permissions"], json!(["users:read", "roles:read"]));

    let r = app.delete(&format!("{base}/{}", perms["roles:read"]), Some(&root)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["permissions"], json!(["users:read"]));
    let r = app.delete(&format!("{base}/{}", perms["roles:read"]), Some(&root)).await;
    assert_eq!(r.status, 404, "revoking one not held");

    for bad in [UNKNOWN_ID, "not-a-uuid"] {
        assert_eq!(app.post_empty(&format!("{base}/{bad}"), Some(&root)).await.status, 404, "{bad}");
        assert_eq!(app.delete(&format!("{base}/{bad}"), Some(&root)).await.status, 404, "{bad}");
    }
    let missing_role = format!("/roles/{UNKNOWN_ID}/permissions/{}", perms["users:read"]);
    assert_eq!(app.post_empty(&missing_role, Some(&root)).await.status, 404);

    let member = system_role(&app, &root, "member").await;
    let sys = format!("/roles/{}/permissions", member["id"].as_str().unwrap());
    assert_eq!(app.post_empty(&format!("{sys}/{}", perms["users:write"]), Some(&root)).await.status, 403);
    assert_eq!(app.delete(&format!("{sys}/{}", perms["users:read"]), Some(&root)).await.status, 403);
    assert_eq!(system_role(&app, &root, "member").await["permissions"], json!(MEMBER));
}

#[tokio::test]
async fn permission_changes_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let org = app.default_org_id().await;
    let perms = permission_ids(&app, &root).await;
    let role_id = app.create_role(&org, "Viewer", &["projects:read"]).await;
    let (_, token) = app.create_user_in(&org, "viewer", "Viewer").await;
    let grant = format!("/roles/{role_id}/permissions/{}", perms["projects:read"]);

    assert_eq!(app.get("/projects", Some(&token)).await.status, 200);
    assert_eq!(app.delete(&grant, Some(&root)).await.status, 200);
    assert_eq!(app.get("/projects", Some(&token)).await.status, 403, "the same token, the next request");
    assert_eq!(app.post_empty(&grant, Some(&root)).await.status, 200);
    assert_eq!(app.get("/projects", Some(&token)).await.status, 200);

    // replacing the whole set works the same way
    let r = app.put(&format!("/roles/{role_id}"), Some(&root), json!({"permissions": ["users:read"]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/projects", Some(&token)).await.status, 403);
    let r = app.put(&format!("/roles/{role_id}"), Some(&root), json!({"permissions": ["projects:read"]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/projects", Some(&token)).await.status, 200);
}

#[tokio::test]
async fn role_lists_page_and_search() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    for i in 0..6 {
        create_role(&app, &root, json!({"name": format!("r{i}")})).await;
    }
    create_role(&app, &root, json!({"name": "Ops 100%", "description": "Operations"})).await;
    create_role(&app, &root, json!({"name": "on_call", "description": "Pager duty"})).await;
    let r = app.get("/roles?limit=3", Some(&root)).await;
    assert_eq!(r.body["total"], 10);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(names(&r.body), ["on_call", "Ops 100%", "r5"]);
    let r = app.get("/roles?skip=3&limit=5", Some(&root)).await;
    assert_eq!(names(&r.body), ["r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(app.get("/roles?skip=8&limit=5", Some(&root)).await.body["has_more"], false);

    assert_eq!(names(&app.get("/roles?search=OPERATIONS", Some(&root)).await.body), ["Ops 100%"]);
    assert_eq!(names(&app.get("/roles?search=%25", Some(&root)).await.body), ["Ops 100%"]);
    assert_eq!(names(&app.get("/roles?search=_", Some(&root)).await.body), ["on_call"]);
    assert_eq!(names(&app.get("/roles?search=pager", Some(&root)).await.body), ["on_call"]);
    for q in ["limit=0", "limit=101", "skip=-1"] {
        assert_eq!(app.get(&format!("/roles?{q}"), Some(&root)).await.status, 400, "{q}");
    }
}

#[tokio::test]
async fn permissions_are_listed_to_any_signed_in_user() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    app.create_role(&org, "nothing", &[]).await;
    let (_, token) = app.create_user_in(&org, "nobody", "nothing").await;

    // the static route wins over /roles/{id}
    for path in ["/roles/permissions", "/roles/permissions/"] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.body["total"], 13);
        assert_eq!(r.body["has_more"], false);
        assert_eq!(names(&r.body), ALL);
    }
    let r = app.get("/roles/permissions", Some(&token)).await;
    let first = &r.body["data"][5];
    assert_eq!(first["name"], "projects:read");
    assert_eq!(first["resource"], "projects");
    assert_eq!(first["action"], "read");
    assert!(first["description"].as_str().is_some_and(|d| !d.is_empty()));

    let r = app.get("/roles/permissions?skip=10&limit=5", Some(&token)).await;
    assert_eq!(names(&r.body), ["agents:read", "agents:write", "conversations:write"]);
    let r = app.get("/roles/permissions?limit=4", Some(&token)).await;
    assert_eq!(r.body["has_more"], true);
    assert_eq!(r.body["limit"], 4);
    assert_eq!(app.get("/roles/permissions?limit=0", Some(&token)).await.status, 400);

    let r = app.get("/roles/permissions?search=PROJECTS", Some(&token)).await;
    assert_eq!(names(&r.body), ["projects:read", "projects:write", "projects:delete"]);
    let r = app.get("/roles/permissions?search=deactivate", Some(&token)).await;
    assert!(names(&r.body).contains(&"users:delete".to_string()), "search looks in descriptions");
    assert_eq!(app.get("/roles/permissions?search=_", Some(&token)).await.body["total"], 0);
    assert_eq!(app.get("/roles/permissions?search=%25", Some(&token)).await.body["total"], 0);

    let id = first["id"].as_str().unwrap();
    let r = app.get(&format!("/roles/permissions/{id}"), Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body, first);
    assert_eq!(app.get(&format!("/roles/permissions/{UNKNOWN_ID}"), Some(&token)).await.status, 404);
    assert_eq!(app.get("/roles/permissions/nope", Some(&token)).await.status, 404);
    assert_eq!(app.get(&format!("/roles/permissions/{id}"), None).await.status, 401);
}
