//! /projects: CRUD, tenancy, creator-or-admin rules, soft delete, lists, members.

use copilot::store::error::{StoreError, StoreResult};
use serde_json::{Value, json};

use crate::helpers::*;

async fn create_project(app: &TestApp, token: &str, name: &str) -> Value {
    let r = app.post("/projects", Some(token), json!({"name": name})).await;
    assert_eq!(r.status, 201, "create {name}: {:?}", r.body);
    r.body
}

fn names(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

/// A second organization with an org admin and a member; returns (org id, admin token, member token).
async fn other_org(app: &TestApp) -> (String, String, String) {
    let org = app.create_org("Acme").await;
    let (_, admin) = app.create_user_in(&org, "acme_admin", "admin").await;
    let (_, member) = app.create_user_in(&org, "acme_member", "member").await;
    (org, admin, member)
}

#[tokio::test]
async fn create_answers_the_project_and_makes_the_creator_a_member() {
    let app = spawn_app().await;
    let (user, token) = app.member("alice").await;
    let r = app
        .post(
            "/projects",
            Some(&token),
            json!({"name": "  Apollo  ", "description": "Moon", "settings": {"color": "blue"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let p = &r.body;
    assert_eq!(p["name"], "Apollo", "name is trimmed");
    assert_eq!(p["description"], "Moon");
    assert_eq!(p["settings"], json!({"color": "blue"}));
    assert_eq!(p["created_by"], user["id"]);
    assert_eq!(p["organization_id"], app.default_org_id().await);
    assert_eq!(p["is_active"], true);
    assert_eq!(p["member_count"], 1);
    for field in ["id", "created_at", "updated_at"] {
        assert!(p[field].is_string(), "{field}");
    }

    let got = app.get(&format!("/projects/{}", r.id()), Some(&token)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let members = app.get(&format!("/projects/{}/members", r.id()), Some(&token)).await;
    assert_eq!(members.status, 200);
    assert_eq!(members.body["total"], 1);
    assert_eq!(members.body["data"][0]["id"], user["id"]);
    assert!(members.body["data"][0].get("password_hash").is_none());

    // defaults, and names need not be unique
    let r = app.post("/projects", Some(&token), json!({"name": "Apollo"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["settings"], json!({}));
    assert_eq!(r.body["description"], Value::Null);
}

#[tokio::test]
async fn create_rejects_invalid_bodies_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.member("alice").await;
    let cases = [
        json!({}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(256)}),
        json!({"name": "ok", "description": "d".repeat(10_001)}),
        json!({"name": "ok", "settings": [1, 2]}),
        json!({"name": "ok", "settings": "text"}),
    ];
    for body in cases {
        let r = app.post("/projects", Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(!r.detail().is_empty());
    }
    let list = app.get("/projects", Some(&token)).await;
    assert_eq!(list.body["total"], 0);
    assert_eq!(app.post("/projects", Some(&token), json!({"name": "x".repeat(255)})).await.status, 201);
}

#[tokio::test]
async fn endpoints_need_a_token_and_the_permissions() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = create_project(&app, &admin, "Secret").await["id"].as_str().unwrap().to_string();
    let org = app.default_org_id().await;
    app.create_role(&org, "nothing", &[]).await;
    app.create_role(&org, "reader", &["projects:read"]).await;
    let (_, nothing) = app.create_user_in(&org, "nobody", "nothing").await;
    let (uid, reader) = app.create_user_in(&org, "reader", "reader").await;

    for path in ["/projects".to_string(), format!("/projects/{id}"), format!("/projects/{id}/members")] {
        let r = app.get(&path, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(app.get(&path, Some(&nothing)).await.status, 403, "{path}");
        assert_eq!(app.get(&path, Some(&reader)).await.status, 200, "{path}");
    }
    assert_eq!(app.post("/projects", None, json!({"name": "x"})).await.status, 401);
    let r = app.post("/projects", Some(&reader), json!({"name": "x"})).await;
    assert_eq!(r.status, 403);
    assert!(r.detail().contains("projects:write"), "{}", r.detail());
    assert_eq!(app.put(&format!("/projects/{id}"), Some(&reader), json!({"name": "y"})).await.status, 403);
    assert_eq!(app.delete(&format!("/projects/{id}"), Some(&reader)).await.status, 403);
    assert_eq!(app.delete(&format!("/projects/{id}"), None).await.status, 401);
    let members = format!("/projects/{id}/members/{uid}");
    assert_eq!(app.post_empty(&members, Some(&nothing)).await.status, 403);
    assert_eq!(app.post_empty(&members, None).await.status, 401);
    assert_eq!(app.delete(&members, None).await.status, 401);
    // the reader is neither the creator nor an org admin
    assert_eq!(app.post_empty(&members, Some(&reader)).await.status, 403);
    assert_eq!(app.get(&format!("/projects/{id}"), Some(&admin)).await.body["member_count"], 1);
}

#[tokio::test]
async fn projects_of_another_organization_are_not_found() {
    let app = spawn_app().await;
    let (_, alice) = app.member("alice").await;
    let mine = create_project(&app, &alice, "Mine").await["id"].as_str().unwrap().to_string();
    let (acme, acme_admin, _) = other_org(&app).await;
    let theirs = create_project(&app, &acme_admin, "Theirs").await;
    let theirs_id = theirs["id"].as_str().unwrap().to_string();
    assert_eq!(theirs["organization_id"], acme);

    for path in [format!("/projects/{theirs_id}"), format!("/projects/{theirs_id}/members")] {
        assert_eq!(app.get(&path, Some(&alice)).await.status, 404, "{path}");
    }
    let r = app.put(&format!("/projects/{theirs_id}"), Some(&alice), json!({"name": "x"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(app.delete(&format!("/projects/{theirs_id}"), Some(&alice)).await.status, 404);
    // even an org admin of the other organization cannot reach it
    assert_eq!(app.delete(&format!("/projects/{mine}"), Some(&acme_admin)).await.status, 404);
    assert_eq!(app.get(&format!("/projects/{mine}"), Some(&acme_admin)).await.status, 404);
    assert_eq!(app.get("/projects/not-a-uuid", Some(&alice)).await.status, 404);
    assert_eq!(app.get(&format!("/projects/{}", uuid_like()), Some(&alice)).await.status, 404);

    // lists: own organization only; naming another one is a 403, never the caller's own rows
    assert_eq!(names(&app.get("/projects", Some(&alice)).await.body), ["Mine"]);
    assert_eq!(app.get(&format!("/projects?organization_id={acme}"), Some(&alice)).await.status, 403);
    assert_eq!(names(&app.get("/projects", Some(&acme_admin)).await.body), ["Theirs"]);

    // a superuser sees all, and may narrow to one organization
    let admin = app.admin_token().await;
    assert_eq!(names(&app.get("/projects", Some(&admin)).await.body), ["Theirs", "Mine"]);
    assert_eq!(names(&app.get(&format!("/projects?organization_id={acme}"), Some(&admin)).await.body), ["Theirs"]);
    assert_eq!(app.get(&format!("/projects/{theirs_id}"), Some(&admin)).await.status, 200);
    // and creates in its own organization
    let p = create_project(&app, &admin, "Root's").await;
    assert_eq!(p["organization_id"], app.default_org_id().await);
}

fn uuid_like() -> &'static str {
    "0190b3a4-0000-7000-8000-000000000000"
}

#[tokio::test]
async fn lists_page_newest_first() {
    let app = spawn_app().await;
    let (_, token) = app.member("alice").await;
    for i in 0..25 {
        create_project(&app, &token, &format!("p{i:02}")).await;
    }
    let r = app.get("/projects", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["total"].as_i64(), r.body["skip"].as_i64(), r.body["limit"].as_i64()),
        (Some(25), Some(0), Some(20))
    );
    assert_eq!(r.body["has_more"], true);
    let first = names(&r.body);
    assert_eq!(first.len(), 20);
    assert_eq!(first[0], "p24");
    assert_eq!(first[19], "p05");

    let r = app.get("/projects?skip=20&limit=10", Some(&token)).await;
    assert_eq!(names(&r.body), ["p04", "p03", "p02", "p01", "p00"]);
    assert_eq!(r.body["has_more"], false);
    let r = app.get("/projects?skip=5&limit=5", Some(&token)).await;
    assert_eq!(names(&r.body), ["p19", "p18", "p17", "p16", "p15"]);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(names(&app.get("/projects?skip=100", Some(&token)).await.body).len(), 0);

    for q in ["limit=0", "limit=101", "skip=-1", "limit=abc", "is_active=maybe"] {
        let r = app.get(&format!("/projects?{q}"), Some(&token)).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(!r.detail().is_empty());
    }
}

#[tokio::test]
async fn search_is_a_case_insensitive_substring_with_literal_wildcards() {
    let app = spawn_app().await;
    let (_, token) = app.member("alice").await;
    for (name, description) in
        [("Alpha 100%", "first"), ("alpha_beta", "second"), ("Gamma", "about ALPHA too"), ("Delta", "o'brien")]
    {
        let r = app.post("/projects", Some(&token), json!({"name": name, "description": description})).await;
        assert_eq!(r.status, 201);
    }
    let search = |q: &'static str| {
        let (app, token) = (&app, &token);
        async move { names(&app.get(&format!("/projects?search={q}"), Some(token)).await.body) }
    };
    assert_eq!(search("aLpHa").await, ["Gamma", "alpha_beta", "Alpha 100%"]);
    assert_eq!(search("%25").await, ["Alpha 100%"]);
    assert_eq!(search("_").await, ["alpha_beta"]);
    assert_eq!(search("o'b").await, ["Delta"]);
    assert_eq!(search("nothing").await, Vec::<String>::new());
    let r = app.get("/projects?search=alpha&limit=1", Some(&token)).await;
    assert_eq!(r.body["total"], 3);
    assert_eq!(r.body["has_more"], true);
}

#[tokio::test]
async fn update_is_for_the_creator_or_an_org_admin() {
    let app = spawn_app().await;
    let (_, alice) = app.member("alice").await;
    let (_, bob) = app.member("bob").await;
    let p = create_project(&app, &alice, "Apollo").await;
    let path = format!("/projects/{}", p["id"].as_str().unwrap());

    let r = app.put(&path, Some(&bob), json!({"name": "Hijacked"})).await;
    assert_eq!(r.status, 403, "another member is neither creator nor admin");

    let r = app
        .put(&path, Some(&alice), json!({"name": " Artemis ", "description": "Again", "settings": {"a": [1]}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Artemis");
    assert_eq!(r.body["description"], "Again");
    assert_eq!(r.body["settings"], json!({"a": [1]}));
    assert_eq!(r.body["created_at"], p["created_at"]);
    assert_ne!(r.body["updated_at"], p["updated_at"]);

    // only the fields sent change
    let r = app.put(&path, Some(&alice), json!({"description": "Only this"})).await;
    assert_eq!((r.body["name"].as_str(), r.body["description"].as_str()), (Some("Artemis"), Some("Only this")));
    assert_eq!(r.body["settings"], json!({"a": [1]}));

    // an org admin of the same organization may
    let (_, org_admin) = app.create_user_in(&app.default_org_id().await, "boss", "admin").await;
    let r = app.put(&path, Some(&org_admin), json!({"name": "By the boss"})).await;
    assert_eq!(r.status, 200);
    // and a superuser
    let r = app.put(&path, Some(&app.admin_token().await), json!({"name": "By root"})).await;
    assert_eq!(r.status, 200);

    for body in [
        json!({"name": ""}),
        json!({"settings": [1]}),
        json!({"description": "d".repeat(10_001)}),
        json!({"is_active": "no"}),
    ] {
        let r = app.put(&path, Some(&alice), body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
    }
    assert_eq!(app.get(&path, Some(&alice)).await.body["name"], "By root", "failed updates changed nothing");
    assert_eq!(app.put("/projects/nope", Some(&alice), json!({})).await.status, 404);
}

#[tokio::test]
async fn delete_is_soft_and_for_the_creator_or_an_org_admin() {
    let app = spawn_app().await;
    let (_, alice) = app.member("alice").await;
    let (_, bob) = app.member("bob").await;
    let p = create_project(&app, &alice, "Apollo").await;
    let keep = create_project(&app, &alice, "Keep").await;
    let path = format!("/projects/{}", p["id"].as_str().unwrap());

    assert_eq!(app.delete(&path, Some(&bob)).await.status, 403);
    let r = app.delete(&path, Some(&alice)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);

    assert_eq!(names(&app.get("/projects", Some(&alice)).await.body), ["Keep"]);
    assert_eq!(names(&app.get("/projects?is_active=true", Some(&alice)).await.body), ["Keep"]);
    assert_eq!(names(&app.get("/projects?is_active=false", Some(&alice)).await.body), ["Apollo"]);
    let got = app.get(&path, Some(&alice)).await;
    assert_eq!(got.status, 200, "still readable by id");
    assert_eq!(got.body["is_active"], false);

    // restored by an update
    let r = app.put(&path, Some(&alice), json!({"is_active": true})).await;
    assert_eq!(r.body["is_active"], true);
    assert_eq!(app.get("/projects", Some(&alice)).await.body["total"], 2);

    // an org admin may delete someone else's project
    let (_, org_admin) = app.create_user_in(&app.default_org_id().await, "boss", "admin").await;
    let keep_path = format!("/projects/{}", keep["id"].as_str().unwrap());
    assert_eq!(app.delete(&keep_path, Some(&org_admin)).await.status, 204);
    assert_eq!(app.get(&keep_path, Some(&alice)).await.body["is_active"], false);
    assert_eq!(app.delete("/projects/nope", Some(&alice)).await.status, 404);
    assert_eq!(app.delete(&format!("/projects/{}", uuid_like()), Some(&alice)).await.status, 404);

    // projects:delete is needed even for the creator
    let org = app.default_org_id().await;
    app.create_role(&org, "writer", &["projects:read", "projects:write"]).await;
    let (_, writer) = app.create_user_in(&org, "writer", "writer").await;
    let own = create_project(&app, &writer, "Own").await;
    let r = app.delete(&format!("/projects/{}", own["id"].as_str().unwrap()), Some(&writer)).await;
    assert_eq!(r.status, 403);
    assert!(r.detail().contains("projects:delete"));
}

#[tokio::test]
async fn members_are_added_and_removed_by_the_creator_or_an_org_admin() {
    let app = spawn_app().await;
    let (_, alice) = app.member("alice").await;
    let (bob, bob_token) = app.member("bob").await;
    let (carol, _) = app.member("carol").await;
    let p = create_project(&app, &alice, "Apollo").await;
    let id = p["id"].as_str().unwrap();
    let bob_id = bob["id"].as_str().unwrap();
    let bob_path = format!("/projects/{id}/members/{bob_id}");

    let r = app.post_empty(&bob_path, Some(&alice)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], p["id"]);
    assert_eq!(r.body["member_count"], 2);
    let r = app.post_empty(&bob_path, Some(&alice)).await;
    assert_eq!(r.status, 200, "adding twice is a no-op");
    assert_eq!(r.body["member_count"], 2);

    // bob is a member but not the creator: he may not manage members
    let carol_path = format!("/projects/{id}/members/{}", carol["id"].as_str().unwrap());
    assert_eq!(app.post_empty(&carol_path, Some(&bob_token)).await.status, 403);
    assert_eq!(app.delete(&bob_path, Some(&bob_token)).await.status, 403);
    // an org admin may
    let (_, boss) = app.create_user_in(&app.default_org_id().await, "boss", "admin").await;
    assert_eq!(app.post_empty(&carol_path, Some(&boss)).await.body["member_count"], 3);

    // users that do not resolve in the project's organization
    let (acme, acme_admin, _) = other_org(&app).await;
    let (outsider, _) = app.create_user_in(&acme, "outsider", "member").await;
    for user in [outsider.as_str(), uuid_like(), "not-a-uuid"] {
        let r = app.post_empty(&format!("/projects/{id}/members/{user}"), Some(&alice)).await;
        assert_eq!(r.status, 404, "{user}");
    }
    // a project of another organization
    assert_eq!(app.post_empty(&format!("/projects/{id}/members/{outsider}"), Some(&acme_admin)).await.status, 404);
    assert_eq!(app.post_empty(&format!("/projects/nope/members/{bob_id}"), Some(&alice)).await.status, 404);

    let r = app.delete(&bob_path, Some(&alice)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["member_count"], 2);
    let r = app.delete(&bob_path, Some(&alice)).await;
    assert_eq!(r.status, 404, "removing a non-member");
    assert_eq!(app.delete(&format!("/projects/{id}/members/{outsider}"), Some(&alice)).await.status, 404);
    assert_eq!(app.get(&format!("/projects/{id}"), Some(&alice)).await.body["member_count"], 2);

    // a superuser may add members of the project's organization, even across organizations
    let admin = app.admin_token().await;
    let acme_project = create_project(&app, &acme_admin, "Acme's").await;
    let acme_id = acme_project["id"].as_str().unwrap();
    let r = app.post_empty(&format!("/projects/{acme_id}/members/{outsider}"), Some(&admin)).await;
    assert_eq!(r.body["member_count"], 2);
    let r = app.post_empty(&format!("/projects/{acme_id}/members/{bob_id}"), Some(&admin)).await;
    assert_eq!(r.status, 404, "bob is not of Acme");
}

#[tokio::test]
async fn member_lists_page_search_and_filter() {
    let app = spawn_app().await;
    let (alice, alice_token) = app.member("alice").await;
    let p = create_project(&app, &alice_token, "Apollo").await;
    let id = p["id"].as_str().unwrap();
    let mut ids = vec![alice["id"].as_str().unwrap().to_string()];
    for i in 0..6 {
        let (u, _) = app.member(&format!("user_{i}")).await;
        let uid = u["id"].as_str().unwrap().to_string();
        assert_eq!(app.post_empty(&format!("/projects/{id}/members/{uid}"), Some(&alice_token)).await.status, 200);
        ids.push(uid);
    }
    app.member("outsider").await; // not a member
    let usernames = |v: &Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
    };

    let path = format!("/projects/{id}/members");
    let r = app.get(&format!("{path}?limit=4"), Some(&alice_token)).await;
    assert_eq!(r.body["total"], 7);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(usernames(&r.body), ["user_5", "user_4", "user_3", "user_2"]);
    let r = app.get(&format!("{path}?skip=4&limit=4"), Some(&alice_token)).await;
    assert_eq!(usernames(&r.body), ["user_1", "user_0", "alice"]);
    assert_eq!(r.body["has_more"], false);

    assert_eq!(app.get(&format!("{path}?search=USER_"), Some(&alice_token)).await.body["total"], 6);
    assert_eq!(usernames(&app.get(&format!("{path}?search=alice@EXAMPLE"), Some(&alice_token)).await.body), ["alice"]);
    // `_` is literal: as a wildcard "e_e" would match every "@example" address
    assert_eq!(app.get(&format!("{path}?search=r_"), Some(&alice_token)).await.body["total"], 6);
    assert_eq!(app.get(&format!("{path}?search=e_e"), Some(&alice_token)).await.body["total"], 0);
    assert_eq!(app.get(&format!("{path}?search=%25"), Some(&alice_token)).await.body["total"], 0);
    assert_eq!(app.get(&format!("{path}?limit=0"), Some(&alice_token)).await.status, 400);

    // a deactivated member leaves the default list but is listed with is_active=false
    let gone = ids[1].clone();
    app.state
        .store
        .write(move |tx| {
            copilot::store::users::set_active(
                tx,
                &copilot::authz::Scope::system_all(),
                &gone,
                false,
                &copilot::db::now(),
            )
        })
        .await
        .unwrap();
    assert_eq!(app.get(&path, Some(&alice_token)).await.body["total"], 6);
    assert_eq!(usernames(&app.get(&format!("{path}?is_active=false"), Some(&alice_token)).await.body), ["user_0"]);
}

/// The store's writes carry the scope themselves: a write under another organization's scope
/// changes nothing, even without the handler's read before it.
#[tokio::test]
async fn scoped_writes_do_not_reach_another_organization() {
    use copilot::{authz::Scope, store};
    let app = spawn_app().await;
    let (org_a, org_b) = (app.create_org("A").await, app.create_org("B").await);
    let (admin_a, token_a) = app.create_user_in(&org_a, "admin_a", "admin").await;
    let project = app.post("/projects", Some(&token_a), json!({"name": "Apollo"})).await.id();
    let role = app.create_role(&org_a, "ops", &["projects:read"]).await;
    let root = app.admin_token().await;
    let perms = app.get("/roles/permissions?limit=100", Some(&root)).await.body;
    let perm = perms["data"].as_array().unwrap().iter().find(|p| p["name"] == "users:delete").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (p, r) = (project.clone(), role.clone());
    app.state
        .store
        .write(move |tx| -> StoreResult<_> {
            let other = Scope::system(&org_b);
            let changes = store::projects::ProjectChanges { name: Some("Hijacked".into()), ..Default::default() };
            store::projects::update_project(tx, &other, &p, &changes, "2030-01-01T00:00:00.000000Z")?;
            store::projects::deactivate_project(tx, &other, &p, "2030-01-01T00:00:00.000000Z")?;
            assert!(!store::projects::remove_member(tx, &other, &p, &admin_a)?);
            // reads too: the project's members are not listed under another organization's scope
            let everyone = store::projects::MemberFilter { search: None, is_active: true };
            let page = copilot::pagination::Page::new(None, None).unwrap();
            assert_eq!(store::projects::list_members(tx, &other, &p, &everyone, page)?.1, 0);
            let own = Scope::system(&org_a);
            assert!(store::projects::list_members(tx, &own, &p, &everyone, page)?.1 >= 1);
            assert!(!store::roles::grant(tx, &other, &r, &perm, "t")?);
            let refused = store::roles::delete_role(tx, &other, &r);
            assert!(matches!(refused, Err(StoreError::NotFound(_))), "{refused:?}");
            Ok(())
        })
        .await
        .unwrap();
    let after = app.get(&format!("/projects/{project}"), Some(&token_a)).await.body;
    assert_eq!((after["name"].as_str(), after["is_active"].as_bool()), (Some("Apollo"), Some(true)));
    assert!(after["member_count"].as_i64().unwrap_or(1) >= 1);
    let role_after = app.get(&format!("/roles/{role}"), Some(&token_a)).await.body;
    assert_eq!(role_after["permissions"], json!(["projects:read"]));
}
