//! /users: listing, reading, creating, updating, deactivating, activating, re-roling.

use copilot::store::error::StoreResult;
use serde_json::{Value, json};

use crate::helpers::*;

fn new_user(username: &str) -> Value {
    json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD})
}

fn usernames(body: &Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
}

/// The id of a role of `org_id` by name, straight from the database.
async fn role_id(app: &TestApp, org_id: &str, name: &str) -> String {
    let (org_id, name) = (org_id.to_string(), name.to_string());
    app.state
        .store
        .read(move |c| StoreResult::Ok(copilot::store::users::role_id_by_name(c, &org_id, &name)?.expect("role")))
        .await
        .unwrap()
}

/// The bootstrap superuser's id.
async fn superuser_id(app: &TestApp) -> String {
    let token = app.admin_token().await;
    app.get("/auth/me", Some(&token)).await.id()
}

#[tokio::test]
async fn list_needs_a_token_and_users_read() {
    let app = spawn_app().await;
    let r = app.get("/users", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let org = app.default_org_id().await;
    app.create_role(&org, "nobody", &[]).await;
    let (_, token) = app.create_user_in(&org, "nobody1", "nobody").await;
    let r = app.get("/users", Some(&token)).await;
    assert_eq!(r.status, 403);
    assert!(r.detail().contains("users:read"), "{}", r.detail());

    let (_, token) = app.member("plain").await;
    let r = app.get("/users/", Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["data"][0].get("password_hash").is_none());
}

#[tokio::test]
async fn list_is_scoped_to_the_callers_organization() {
    let app = spawn_app().await;
    let other = app.create_org("Other").await;
    app.create_user_in(&other, "outsider1", "member").await;
    app.create_user_in(&other, "outsider2", "admin").await;
    let (_, token) = app.member("insider").await;

    let r = app.get("/users", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total"], 2, "{:?}", r.body);
    assert_eq!(usernames(&r.body), ["insider", "admin"]);
    // a non-superuser's organization_id filter does not widen the scope, nor answer their own rows
    let r = app.get(&format!("/users?organization_id={other}"), Some(&token)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let admin = app.admin_token().await;
    let r = app.get("/users", Some(&admin)).await;
    assert_eq!(r.body["total"], 4);
    let r = app.get(&format!("/users?organization_id={other}"), Some(&admin)).await;
    assert_eq!(r.body["total"], 2);
    assert_eq!(usernames(&r.body), ["outsider2", "outsider1"]);
    assert!(r.body["data"].as_array().unwrap().iter().all(|u| u["organization_id"] == other.as_str()));
}

#[tokio::test]
async fn list_pages_newest_first() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for i in 0..24 {
        let r = app.post("/users", Some(&admin), new_user(&format!("user{i:02}"))).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = app.get("/users?limit=10", Some(&admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["total"].as_i64(), r.body["skip"].as_i64(), r.body["limit"].as_i64()),
        (Some(25), Some(0), Some(10))
    );
    assert_eq!(r.body["has_more"], true);
    assert_eq!(usernames(&r.body)[..3], ["user23", "user22", "user21"]);

    let r = app.get("/users?skip=20&limit=10", Some(&admin)).await;
    assert_eq!(usernames(&r.body), ["user03", "user02", "user01", "user00", "admin"]);
    assert_eq!(r.body["has_more"], false);

    let r = app.get("/users", Some(&admin)).await;
    assert_eq!(r.body["limit"], 20);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 20);

    for bad in ["limit=0", "limit=101", "skip=-1", "limit=abc"] {
        let r = app.get(&format!("/users?{bad}"), Some(&admin)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body["detail"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn search_covers_username_email_and_full_name_with_literal_wildcards() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let users = [
        json!({"username": "alpha_one", "email": "first@corp.example", "password": PASSWORD}),
        json!({"username": "alphazone", "email": "second@corp.example", "password": PASSWORD}),
        json!({"username": "carol", "email": "carol@mail.example", "password": PASSWORD, "full_name": "Carol 100% Sure"}),
        json!({"username": "dave", "email": "dave@mail.example", "password": PASSWORD, "full_name": "Dave 1000 Sure"}),
    ];
    for u in users {
        assert_eq!(app.post("/users", Some(&admin), u).await.status, 201);
    }
    let search = |q: &str| {
        let q = q.to_string();
        let (app, admin) = (&app, &admin);
        async move {
            let r = app.get(&format!("/users?search={q}"), Some(admin)).await;
            assert_eq!(r.status, 200, "{q}");
            let mut names = usernames(&r.body);
            names.sort();
            assert_eq!(r.body["total"].as_u64().unwrap() as usize, names.len());
            names
        }
    };
    assert_eq!(search("ALPHA").await, ["alpha_one", "alphazone"]);
    assert_eq!(search("a_o").await, ["alpha_one"], "underscore is literal");
    assert_eq!(search("100%25").await, ["carol"], "percent is literal");
    assert_eq!(search("corp.EXAMPLE").await, ["alpha_one", "alphazone"], "email");
    assert_eq!(search("sure").await, ["carol", "dave"], "full name");
    assert_eq!(search("%27").await, Vec::<String>::new(), "a quote is just text");
    assert_eq!(search("%20%20").await.len(), 5, "blank search is no search");
}

#[tokio::test]
async fn filters_is_active_and_role_id() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let admin = app.admin_token().await;
    let (gone, _) = app.create_user_in(&org, "gone", "member").await;
    let (boss, _) = app.create_user_in(&org, "boss", "admin").await;
    app.create_user_in(&org, "stays", "member").await;
    assert_eq!(app.delete(&format!("/users/{gone}"), Some(&admin)).await.status, 204);

    let r = app.get("/users", Some(&admin)).await;
    assert_eq!(usernames(&r.body), ["stays", "boss", "admin"]);
    let r = app.get("/users?is_active=true", Some(&admin)).await;
    assert_eq!(r.body["total"], 3);
    let r = app.get("/users?is_active=false", Some(&admin)).await;
    assert_eq!(usernames(&r.body), ["gone"]);
    assert_eq!(r.body["data"][0]["is_active"], false);

    let admin_role = role_id(&app, &org, "admin").await;
    let member_role = role_id(&app, &org, "member").await;
    let r = app.get(&format!("/users?role_id={admin_role}"), Some(&admin)).await;
    assert_eq!(usernames(&r.body), ["boss", "admin"]);
    assert_eq!(r.body["data"][0]["id"], boss.as_str());
    let r = app.get(&format!("/users?role_id={member_role}&is_active=false"), Some(&admin)).await;
    assert_eq!(usernames(&r.body), ["gone"]);
    let r = app.get("/users?role_id=not-a-uuid", Some(&admin)).await;
    assert_eq!(r.body["total"], 0);
}

#[tokio::test]
async fn get_user_by_id() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    app.create_role(&org, "nobody", &[]).await;
    let (me, my_token) = app.create_user_in(&org, "nobody1", "nobody").await;
    let (colleague, colleague_token) = app.create_user_in(&org, "colleague", "member").await;
    let other = app.create_org("Other").await;
    let (outsider, _) = app.create_user_in(&other, "outsider", "member").await;

    let r = app.get(&format!("/users/{me}"), Some(&my_token)).await;
    assert_eq!(r.status, 200, "self is always readable");
    assert_eq!(r.body["username"], "nobody1");
    let r = app.get(&format!("/users/{colleague}"), Some(&my_token)).await;
    assert_eq!(r.status, 403);

    let r = app.get(&format!("/users/{me}"), Some(&colleague_token)).await;
    assert_eq!(r.status, 200);
    for key in [
        "id",
        "username",
        "email",
        "full_name",
        "organization_id",
        "role_id",
        "is_active",
        "is_superuser",
        "created_at",
        "updated_at",
    ] {
        assert!(r.body.get(key).is_some(), "{key} in {:?}", r.body);
    }
    assert!(r.body.get("password_hash").is_none() && r.body.get("password").is_none());

    for path in [format!("/users/{outsider}"), "/users/not-a-uuid".into(), format!("/users/{}", uuid_v4())] {
        let r = app.get(&path, Some(&colleague_token)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body["detail"].is_string());
    }
    assert_eq!(app.get(&format!("/users/{me}"), None).await.status, 401);

    let admin = app.admin_token().await;
    assert_eq!(app.get(&format!("/users/{outsider}"), Some(&admin)).await.status, 200);
    // a deactivated user stays readable by id
    assert_eq!(app.delete(&format!("/users/{colleague}"), Some(&admin)).await.status, 204);
    let r = app.get(&format!("/users/{}", colleague.to_uppercase()), Some(&admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["is_active"], false);
}

fn uuid_v4() -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", rand_u32(), rand_u32())
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

#[tokio::test]
async fn create_user_with_defaults_and_a_chosen_role() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let custom = app.create_role(&org, "reader", &["users:read"]).await;

    let r = app
        .post(
            "/users",
            Some(&org_admin),
            json!({
                "username": "  newbie ", "email": "Newbie@Example.com", "password": PASSWORD, "full_name": "New Bie"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["username"], "newbie");
    assert_eq!(r.body["email"], "Newbie@Example.com");
    assert_eq!(r.body["full_name"], "New Bie");
    assert_eq!(r.body["organization_id"], org.as_str());
    assert_eq!(r.body["role_id"], role_id(&app, &org, "member").await.as_str());
    assert_eq!((r.body["is_active"].as_bool(), r.body["is_superuser"].as_bool()), (Some(true), Some(false)));
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());
    app.login("newbie", PASSWORD).await;

    let mut body = new_user("reader1");
    body["role_id"] = json!(custom);
    let r = app.post("/users", Some(&org_admin), body).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["role_id"], custom.as_str());

    let other = app.create_org("Other").await;
    let foreign_role = role_id(&app, &other, "admin").await;
    for (bad, why) in
        [(json!(foreign_role), "another org's role"), (json!("nope"), "malformed"), (json!(uuid_v4()), "unknown")]
    {
        let mut body = new_user("roleless");
        body["role_id"] = bad;
        let r = app.post("/users", Some(&org_admin), body).await;
        assert_eq!(r.status, 400, "{why}");
        assert!(r.detail().contains("role_id"), "{why}: {}", r.detail());
    }
    let r = app.get("/users?search=roleless", Some(&org_admin)).await;
    assert_eq!(r.body["total"], 0, "a failed request creates nothing");
}

#[tokio::test]
async fn create_user_rules_for_organization_and_superuser() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let other = app.create_org("Other").await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (_, member) = app.member("member1").await;

    assert_eq!(app.post("/users", None, new_user("anon")).await.status, 401);
    let r = app.post("/users", Some(&member), new_user("x-by-member")).await;
    assert_eq!(r.status, 403);

    let mut body = new_user("elsewhere");
    body["organization_id"] = json!(other);
    assert_eq!(app.post("/users", Some(&org_admin), body.clone()).await.status, 403);
    let mut su = new_user("wannabe");
    su["is_superuser"] = json!(true);
    assert_eq!(app.post("/users", Some(&org_admin), su.clone()).await.status, 403);
    let mut not_su = new_user("plainuser");
    not_su["is_superuser"] = json!(false);
    assert_eq!(app.post("/users", Some(&org_admin), not_su).await.status, 201);

    let admin = app.admin_token().await;
    let r = app.post("/users", Some(&admin), body).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["organization_id"], other.as_str());
    assert_eq!(r.body["role_id"], role_id(&app, &other, "member").await.as_str());
    let r = app.post("/users", Some(&admin), su).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["is_superuser"], true);

    for bad in [json!(uuid_v4()), json!("not-an-id")] {
        let mut body = new_user("orphan");
        body["organization_id"] = bad;
        let r = app.post("/users", Some(&admin), body).await;
        assert_eq!(r.status, 400);
        assert!(r.detail().contains("organization_id"), "{}", r.detail());
    }
    // a role of the default org does not fit a user of another org
    let mut body = new_user("mismatch");
    body["organization_id"] = json!(other);
    body["role_id"] = json!(role_id(&app, &org, "member").await);
    assert_eq!(app.post("/users", Some(&admin), body).await.status, 400);
}

#[tokio::test]
async fn create_user_validates_and_detects_duplicates() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let cases = [
        json!({"username": "ab", "email": "ab@example.com", "password": PASSWORD}),
        json!({"username": "bad name", "email": "bad@example.com", "password": PASSWORD}),
        json!({"username": "okname", "email": "not-an-email", "password": PASSWORD}),
        json!({"username": "okname", "email": "ok@example.com", "password": "short"}),
        json!({"username": "okname", "email": "ok@example.com", "password": "x".repeat(129)}),
        json!({"username": "okname", "email": "ok@example.com", "password": PASSWORD, "full_name": "x".repeat(256)}),
        json!({"username": "okname", "email": "ok@example.com"}),
        json!({"username": 5, "email": "ok@example.com", "password": PASSWORD}),
    ];
    for body in cases {
        let r = app.post("/users", Some(&admin), body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.body["detail"].is_string());
    }
    assert_eq!(app.post("/users", Some(&admin), new_user("taken")).await.status, 201);
    let r = app
        .post("/users", Some(&admin), json!({"username": "TAKEN", "email": "new@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 409);
    assert!(r.detail().to_lowercase().contains("username"));
    let r = app
        .post("/users", Some(&admin), json!({"username": "fresh", "email": "Taken@Example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 409);
    assert!(r.detail().to_lowercase().contains("email"));
    assert_eq!(app.get("/users", Some(&admin)).await.body["total"], 2);
}

#[tokio::test]
async fn parallel_creations_are_all_counted() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let url = app.url("/api/v1/users");
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (client, url, token) = (app.client.clone(), url.clone(), admin.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&new_user(&format!("par{i:02}")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().as_u16(), 201);
    }
    let r = app.get("/users?limit=100", Some(&admin)).await;
    assert_eq!(r.body["total"], 31);
    let mut names = usernames(&r.body);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 31);
}

#[tokio::test]
async fn parallel_creations_of_one_username_admit_exactly_one() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let url = app.url("/api/v1/users");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (client, url, token) = (app.client.clone(), url.clone(), admin.clone());
            let body = json!({"username": "same", "email": format!("same{i}@example.com"), "password": PASSWORD});
            tokio::spawn(async move { client.post(url).bearer_auth(token).json(&body).send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 11, "{statuses:?}");
    assert_eq!(app.get("/users?search=same", Some(&admin)).await.body["total"], 1);
}

#[tokio::test]
async fn users_change_their_own_email_and_full_name_only() {
    let app = spawn_app().await;
    let (me, token) = app.member("selfie").await;
    let me = me["id"].as_str().unwrap().to_string();
    let (other, _) = app.member("neighbour").await;
    let other = other["id"].as_str().unwrap();

    let r = app
        .put(&format!("/users/{me}"), Some(&token), json!({"email": " new@example.com ", "full_name": "Self Ie"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["email"], "new@example.com");
    assert_eq!(r.body["full_name"], "Self Ie");
    assert!(r.body["updated_at"].as_str() > r.body["created_at"].as_str());
    let r = app.put(&format!("/users/{me}"), Some(&token), json!({"full_name": null})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["full_name"], Value::Null);
    assert_eq!(r.body["email"], "new@example.com", "fields left out stay");

    for body in [json!({"is_active": true}), json!({"password": "another-pass-1"}), json!({"is_superuser": false})] {
        let r = app.put(&format!("/users/{me}"), Some(&token), body.clone()).await;
        assert_eq!(r.status, 403, "{body}");
    }
    let r = app.put(&format!("/users/{other}"), Some(&token), json!({"full_name": "Hacked"})).await;
    assert_eq!(r.status, 403);

    let r = app.put(&format!("/users/{me}"), Some(&token), json!({"email": "neighbour@EXAMPLE.com"})).await;
    assert_eq!(r.status, 409);
    let r = app.put(&format!("/users/{me}"), Some(&token), json!({"email": "nope"})).await;
    assert_eq!(r.status, 400);
    let r = app.put(&format!("/users/{me}"), Some(&token), json!({"full_name": "x".repeat(256)})).await;
    assert_eq!(r.status, 400);
    let r = app.get(&format!("/users/{me}"), Some(&token)).await;
    assert_eq!(r.body["email"], "new@example.com", "failed updates change nothing");
    assert_eq!(app.put(&format!("/users/{me}"), None, json!({})).await.status, 401);
}

#[tokio::test]
async fn admins_set_passwords_and_deactivate_with_sign_out() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (admin_id, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (target, target_token) = app.create_user_in(&org, "target", "member").await;

    let r = app.put(&format!("/users/{target}"), Some(&org_admin), json!({"password": "brand-new-pass"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/auth/me", Some(&target_token)).await.status, 401, "old session revoked");
    assert_eq!(app.post("/auth/login", None, json!({"username": "target", "password": PASSWORD})).await.status, 401);
    let fresh = app.login("target", "brand-new-pass").await;

    let r =
        app.put(&format!("/users/{target}"), Some(&org_admin), json!({"is_active": false, "full_name": "Gone"})).await;
    assert_eq!(r.status, 200);
    assert_eq!((r.body["is_active"].as_bool(), r.body["full_name"].as_str()), (Some(false), Some("Gone")));
    assert_eq!(app.get("/auth/me", Some(&fresh)).await.status, 401);
    assert_eq!(
        app.post("/auth/login", None, json!({"username": "target", "password": "brand-new-pass"})).await.status,
        403
    );
    let r = app.put(&format!("/users/{target}"), Some(&org_admin), json!({"is_active": true})).await;
    assert_eq!(r.body["is_active"], true);
    app.login("target", "brand-new-pass").await;

    // yourself: not deactivation; a new password keeps this session but ends the others
    let r = app.put(&format!("/users/{admin_id}"), Some(&org_admin), json!({"is_active": false})).await;
    assert_eq!(r.status, 400);
    let second = app.login("orgadmin", PASSWORD).await;
    let r = app.put(&format!("/users/{admin_id}"), Some(&org_admin), json!({"password": "my-own-new-pass"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/auth/me", Some(&org_admin)).await.status, 200);
    assert_eq!(app.get("/auth/me", Some(&second)).await.status, 401);

    // superusers and other organizations are out of reach
    let superuser = &superuser_id(&app).await;
    let r = app.put(&format!("/users/{superuser}"), Some(&org_admin), json!({"full_name": "Pwned"})).await;
    assert_eq!(r.status, 403);
    let r = app.put(&format!("/users/{target}"), Some(&org_admin), json!({"is_superuser": true})).await;
    assert_eq!(r.status, 403);
    let other = app.create_org("Other").await;
    let (outsider, _) = app.create_user_in(&other, "outsider", "member").await;
    let r = app.put(&format!("/users/{outsider}"), Some(&org_admin), json!({"full_name": "X"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(app.put("/users/not-a-uuid", Some(&org_admin), json!({})).await.status, 404);

    let admin = app.admin_token().await;
    let r = app.put(&format!("/users/{target}"), Some(&admin), json!({"is_superuser": true})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["is_superuser"], true);
    let r = app.put(&format!("/users/{target}"), Some(&org_admin), json!({"full_name": "Nope"})).await;
    assert_eq!(r.status, 403, "now a superuser");
    let r = app.put(&format!("/users/{superuser}"), Some(&admin), json!({"is_superuser": false})).await;
    assert_eq!(r.status, 400, "a superuser cannot demote themselves");
}

#[tokio::test]
async fn delete_deactivates_and_signs_out() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (admin_id, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (target, target_token) = app.create_user_in(&org, "target", "member").await;
    let (_, member) = app.member("member1").await;

    assert_eq!(app.delete(&format!("/users/{target}"), None).await.status, 401);
    assert_eq!(app.delete(&format!("/users/{target}"), Some(&member)).await.status, 403);
    let r = app.delete(&format!("/users/{target}"), Some(&org_admin)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert_eq!(app.get("/auth/me", Some(&target_token)).await.status, 401);
    assert_eq!(app.post("/auth/login", None, json!({"username": "target", "password": PASSWORD})).await.status, 403);
    let r = app.get(&format!("/users/{target}"), Some(&org_admin)).await;
    assert_eq!((r.status, r.body["is_active"].as_bool()), (200, Some(false)));
    assert!(!usernames(&app.get("/users", Some(&org_admin)).await.body).contains(&"target".to_string()));
    assert_eq!(app.delete(&format!("/users/{target}"), Some(&org_admin)).await.status, 204, "again");

    let r = app.delete(&format!("/users/{admin_id}"), Some(&org_admin)).await;
    assert_eq!(r.status, 400);
    let superuser = superuser_id(&app).await;
    assert_eq!(app.delete(&format!("/users/{superuser}"), Some(&org_admin)).await.status, 403);
    let other = app.create_org("Other").await;
    let (outsider, outsider_token) = app.create_user_in(&other, "outsider", "member").await;
    assert_eq!(app.delete(&format!("/users/{outsider}"), Some(&org_admin)).await.status, 404);
    assert_eq!(app.get("/auth/me", Some(&outsider_token)).await.status, 200);
    assert_eq!(app.delete("/users/nope", Some(&org_admin)).await.status, 404);
}

#[tokio::test]
async fn activate_brings_a_user_back() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (target, _) = app.create_user_in(&org, "target", "member").await;
    let (_, member) = app.member("member1").await;
    assert_eq!(app.delete(&format!("/users/{target}"), Some(&org_admin)).await.status, 204);

    assert_eq!(app.post_empty(&format!("/users/{target}/activate"), Some(&member)).await.status, 403);
    assert_eq!(app.post_empty(&format!("/users/{target}/activate"), None).await.status, 401);
    let r = app.post_empty(&format!("/users/{target}/activate"), Some(&org_admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["is_active"], true);
    app.login("target", PASSWORD).await;
    let r = app.post_empty(&format!("/users/{target}/activate"), Some(&org_admin)).await;
    assert_eq!(r.status, 200, "activating an active user is fine");

    let admin = app.admin_token().await;
    let mut su = new_user("super2");
    su["is_superuser"] = json!(true);
    let su = app.post("/users", Some(&admin), su).await.id();
    assert_eq!(app.delete(&format!("/users/{su}"), Some(&admin)).await.status, 204);
    assert_eq!(app.post_empty(&format!("/users/{su}/activate"), Some(&org_admin)).await.status, 403);
    assert_eq!(app.post_empty(&format!("/users/{su}/activate"), Some(&admin)).await.status, 200);
    let other = app.create_org("Other").await;
    let (outsider, _) = app.create_user_in(&other, "outsider", "member").await;
    assert_eq!(app.post_empty(&format!("/users/{outsider}/activate"), Some(&org_admin)).await.status, 404);
}

#[tokio::test]
async fn assign_role_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (target, target_token) = app.create_user_in(&org, "target", "member").await;
    let admin_role = role_id(&app, &org, "admin").await;

    assert_eq!(app.post("/users", Some(&target_token), new_user("early")).await.status, 403);
    let r = app.post(&format!("/users/{target}/role"), Some(&target_token), json!({"role_id": admin_role})).await;
    assert_eq!(r.status, 403, "members lack roles:write");
    let r = app.post(&format!("/users/{target}/role"), Some(&org_admin), json!({"role_id": admin_role})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role_id"], admin_role.as_str());
    assert_eq!(app.post("/users", Some(&target_token), new_user("later")).await.status, 201);

    let other = app.create_org("Other").await;
    let foreign = role_id(&app, &other, "member").await;
    for bad in [json!(foreign), json!("garbage"), json!(uuid_v4())] {
        let r = app.post(&format!("/users/{target}/role"), Some(&org_admin), json!({"role_id": bad})).await;
        assert_eq!(r.status, 400);
        assert!(r.detail().contains("role_id"));
    }
    assert_eq!(app.post(&format!("/users/{target}/role"), Some(&org_admin), json!({})).await.status, 400);
    let (outsider, _) = app.create_user_in(&other, "outsider", "member").await;
    let r = app.post(&format!("/users/{outsider}/role"), Some(&org_admin), json!({"role_id": foreign})).await;
    assert_eq!(r.status, 404);
    let superuser = superuser_id(&app).await;
    let r = app.post(&format!("/users/{superuser}/role"), Some(&org_admin), json!({"role_id": admin_role})).await;
    assert_eq!(r.status, 403);

    let admin = app.admin_token().await;
    let r = app.post(&format!("/users/{outsider}/role"), Some(&admin), json!({"role_id": foreign})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role_id"], foreign.as_str());
}
