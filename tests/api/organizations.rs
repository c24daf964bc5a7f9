//! /organizations: tenants, their members, and moving users between them.

use copilot::authz::Scope;
use copilot::store::error::StoreResult;
use serde_json::{Value, json};

use crate::helpers::*;

fn names(body: &Value, key: &str) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|o| o[key].as_str().unwrap().to_string()).collect()
}

/// The names of an organization's roles (and whether they are system roles), from the database.
async fn roles_of(app: &TestApp, org_id: &str) -> Vec<(String, bool, i64)> {
    let org_id = org_id.to_string();
    app.state
        .store
        .read(move |c| -> StoreResult<_> {
            let rows = sql_rows(
                c,
                "SELECT r.name, r.is_system, (SELECT COUNT(*) FROM role_permissions rp WHERE rp.role_id = r.id) \
                 FROM roles r WHERE r.organization_id = ?1 ORDER BY r.name",
                &[&org_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64() == Some(1), r[2].as_i64().unwrap()))
                .collect())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn superusers_create_organizations_with_their_system_roles() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let r = app
        .post(
            "/organizations",
            Some(&admin),
            json!({"name": "  Acme ", "domain": "acme.example", "description": "Rockets", "settings": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], "Acme");
    assert_eq!(r.body["domain"], "acme.example");
    assert_eq!(r.body["description"], "Rockets");
    assert_eq!(r.body["settings"], json!({"tier": "gold"}));
    assert_eq!(r.body["is_active"], true);
    for key in ["id", "created_at", "updated_at"] {
        assert!(r.body[key].is_string(), "{key}");
    }
    let acme = r.id();
    assert_eq!(roles_of(&app, &acme).await, [("admin".to_string(), true, 13), ("member".to_string(), true, 8)]);

    let r = app.post("/organizations", Some(&admin), json!({"name": "Bare"})).await;
    assert_eq!(r.status, 201);
    assert_eq!((r.body["settings"].clone(), r.body["domain"].clone()), (json!({}), Value::Null));

    let r = app.post("/organizations", Some(&admin), json!({"name": "ACME"})).await;
    assert_eq!(r.status, 409, "names are unique regardless of case");
    assert!(r.body["detail"].is_string());
    for bad in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(256)}),
        json!({}),
        json!({"name": "Ok", "settings": [1, 2]}),
        json!({"name": "Ok", "settings": "text"}),
        json!({"name": "Ok", "domain": "d".repeat(256)}),
        json!({"name": "Ok", "description": "d".repeat(10_001)}),
    ] {
        let r = app.post("/organizations", Some(&admin), bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = app.get("/organizations", Some(&admin)).await;
    assert_eq!(r.body["total"], 3, "failed creations leave nothing behind");

    let org = app.default_org_id().await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    assert_eq!(app.post("/organizations", Some(&org_admin), json!({"name": "Mine"})).await.status, 403);
    assert_eq!(app.post("/organizations", None, json!({"name": "Anon"})).await.status, 401);
}

#[tokio::test]
async fn list_shows_everything_to_superusers_and_the_own_organization_to_others() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let other = app.create_org("Other").await;
    let (_, member) = app.member("member1").await;
    let (_, outsider) = app.create_user_in(&other, "outsider", "member").await;

    let r = app.get("/organizations", Some(&member)).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r.body, "name"), ["Default"]);
    assert_eq!(r.body["total"], 1);
    let r = app.get("/organizations/", Some(&outsider)).await;
    assert_eq!(names(&r.body, "name"), ["Other"]);
    let r = app.get("/organizations", Some(&admin)).await;
    assert_eq!(names(&r.body, "name"), ["Other", "Default"]);

    let org = app.default_org_id().await;
    app.create_role(&org, "nobody", &[]).await;
    let (_, nobody) = app.create_user_in(&org, "nobody1", "nobody").await;
    // the list names no permission in SPEC: a user without any still sees their own organization
    let r = app.get("/organizations", Some(&nobody)).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r.body, "name"), ["Default"]);
    assert_eq!(app.get("/organizations", None).await.status, 401);
}

#[tokio::test]
async fn list_pages_searches_and_filters() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for i in 0..22 {
        let r = app.post("/organizations", Some(&admin), json!({"name": format!("Org {i:02}")})).await;
        assert_eq!(r.status, 201);
    }
    let r = app.get("/organizations?limit=5&skip=5", Some(&admin)).await;
    assert_eq!(r.body["total"], 23);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(names(&r.body, "name"), ["Org 16", "Org 15", "Org 14", "Org 13", "Org 12"]);
    let r = app.get("/organizations?skip=20", Some(&admin)).await;
    assert_eq!(names(&r.body, "name"), ["Org 01", "Org 00", "Default"]);
    assert_eq!(r.body["has_more"], false);
    assert_eq!(app.get("/organizations?limit=101", Some(&admin)).await.status, 400);

    for body in [
        json!({"name": "Under_Score", "domain": "u.example"}),
        json!({"name": "UnderXScore", "domain": "x.example"}),
        json!({"name": "Percent", "domain": "100%.example"}),
    ] {
        assert_eq!(app.post("/organizations", Some(&admin), body).await.status, 201);
    }
    let search = |q: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let r = app.get(&format!("/organizations?search={q}"), Some(admin)).await;
            let mut n = names(&r.body, "name");
            n.sort();
            n
        }
    };
    assert_eq!(search("under").await, ["UnderXScore", "Under_Score"]);
    assert_eq!(search("r_s").await, ["Under_Score"]);
    assert_eq!(search("%25").await, ["Percent"]);
    assert_eq!(search("X.EXAMPLE").await, ["UnderXScore"], "domain, any case");

    let percent = app.get("/organizations?search=Percent", Some(&admin)).await.body["data"][0]["id"].clone();
    let percent = percent.as_str().unwrap();
    let r = app.put(&format!("/organizations/{percent}"), Some(&admin), json!({"is_active": false})).await;
    assert_eq!(r.status, 200);
    assert_eq!(search("%25").await, Vec::<String>::new(), "inactive ones are left out");
    let r = app.get("/organizations?is_active=false", Some(&admin)).await;
    assert_eq!(names(&r.body, "name"), ["Percent"]);
    let r = app.get("/organizations?is_active=true", Some(&admin)).await;
    assert_eq!(r.body["total"], 25);
}

#[tokio::test]
async fn get_by_id_only_for_the_own_organization() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let other = app.create_org("Other").await;
    let (_, member) = app.member("member1").await;

    let r = app.get(&format!("/organizations/{org}"), Some(&member)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "Default");
    assert_eq!(r.body["settings"], json!({}));
    for path in [format!("/organizations/{other}"), "/organizations/bogus".into()] {
        assert_eq!(app.get(&path, Some(&member)).await.status, 404, "{path}");
    }
    let admin = app.admin_token().await;
    assert_eq!(app.get(&format!("/organizations/{other}"), Some(&admin)).await.status, 200);
    app.create_role(&org, "nobody", &[]).await;
    let (_, nobody) = app.create_user_in(&org, "nobody1", "nobody").await;
    assert_eq!(app.get(&format!("/organizations/{org}"), Some(&nobody)).await.status, 403);
    assert_eq!(app.get(&format!("/organizations/{org}"), None).await.status, 401);
}

#[tokio::test]
async fn update_by_org_admins_and_superusers() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let other = app.create_org("Other").await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let (_, member) = app.member("member1").await;

    let before = app.get(&format!("/organizations/{org}"), Some(&org_admin)).await.body;
    let r = app
        .put(
            &format!("/organizations/{org}"),
            Some(&org_admin),
            json!({"domain": "corp.example", "description": "Ours", "settings": {"theme": "dark"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Default", "left out, left as is");
    assert_eq!(r.body["domain"], "corp.example");
    assert_eq!(r.body["settings"], json!({"theme": "dark"}));
    assert!(r.body["updated_at"].as_str() > before["updated_at"].as_str());
    let r = app.put(&format!("/organizations/{org}"), Some(&org_admin), json!({"domain": null})).await;
    assert_eq!((r.body["domain"].clone(), r.body["description"].clone()), (Value::Null, json!("Ours")));

    assert_eq!(app.put(&format!("/organizations/{org}"), Some(&member), json!({"description": "x"})).await.status, 403);
    let r = app.put(&format!("/organizations/{org}"), Some(&org_admin), json!({"is_active": false})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.put(&format!("/organizations/{other}"), Some(&org_admin), json!({"description": "x"})).await.status,
        404
    );
    assert_eq!(app.put("/organizations/bogus", Some(&org_admin), json!({})).await.status, 404);
    assert_eq!(app.put(&format!("/organizations/{org}"), Some(&org_admin), json!({"name": "other"})).await.status, 409);
    for bad in [json!({"name": " "}), json!({"settings": [1]}), json!({"description": "d".repeat(10_001)})] {
        assert_eq!(app.put(&format!("/organizations/{org}"), Some(&org_admin), bad.clone()).await.status, 400, "{bad}");
    }
    let r = app.get(&format!("/organizations/{org}"), Some(&org_admin)).await;
    assert_eq!((r.body["name"].clone(), r.body["settings"].clone()), (json!("Default"), json!({"theme": "dark"})));

    let admin = app.admin_token().await;
    let r =
        app.put(&format!("/organizations/{other}"), Some(&admin), json!({"name": "Renamed", "is_active": false})).await;
    assert_eq!(r.status, 200);
    assert_eq!((r.body["name"].clone(), r.body["is_active"].clone()), (json!("Renamed"), json!(false)));
    assert_eq!(app.put(&format!("/organizations/{org}"), None, json!({})).await.status, 401);
}

#[tokio::test]
async fn members_are_listed_per_organization() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let other = app.create_org("Other").await;
    let (_, member) = app.member("member1").await;
    let (gone, _) = app.create_user_in(&org, "gone_user", "member").await;
    app.create_user_in(&org, "boss", "admin").await;
    app.create_user_in(&other, "outsider", "member").await;
    let admin = app.admin_token().await;
    assert_eq!(app.delete(&format!("/users/{gone}"), Some(&admin)).await.status, 204);

    let r = app.get(&format!("/organizations/{org}/members"), Some(&member)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(names(&r.body, "username"), ["boss", "member1", "admin"]);
    assert_eq!(
        (r.body["total"].clone(), r.body["skip"].clone(), r.body["has_more"].clone()),
        (json!(3), json!(0), json!(false))
    );
    let r = app.get(&format!("/organizations/{org}/members?limit=2"), Some(&member)).await;
    assert_eq!((r.body["data"].as_array().unwrap().len(), r.body["has_more"].clone()), (2, json!(true)));
    let r = app.get(&format!("/organizations/{org}/members?is_active=false"), Some(&member)).await;
    assert_eq!(names(&r.body, "username"), ["gone_user"]);
    let r = app.get(&format!("/organizations/{org}/members?search=e_u&is_active=false"), Some(&member)).await;
    assert_eq!(r.body["total"], 1);
    let r = app.get(&format!("/organizations/{org}/members?search=BOSS"), Some(&member)).await;
    assert_eq!(names(&r.body, "username"), ["boss"]);

    assert_eq!(app.get(&format!("/organizations/{other}/members"), Some(&member)).await.status, 404);
    assert_eq!(app.get("/organizations/bogus/members", Some(&member)).await.status, 404);
    let r = app.get(&format!("/organizations/{other}/members"), Some(&admin)).await;
    assert_eq!(names(&r.body, "username"), ["outsider"]);
    assert_eq!(app.get(&format!("/organizations/{org}/members"), None).await.status, 401);
    assert_eq!(app.get(&format!("/organizations/{org}/members?limit=0"), Some(&member)).await.status, 400);
}

#[tokio::test]
async fn superusers_move_users_between_organizations() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let other = app.create_org("Other").await;
    let (mover, mover_token) = app.create_user_in(&org, "mover", "admin").await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;

    // a project of the old organization with the mover as a member, and one of the new
    let (m, o, d) = (mover.clone(), other.clone(), org.clone());
    app.state
        .store
        .write(move |tx| -> StoreResult<_> {
            let now = copilot::db::now();
            for (pid, org_id) in [("p-old", &d), ("p-new", &o)] {
                let new = copilot::store::projects::NewProject {
                    id: pid.into(),
                    organization_id: org_id.clone(),
                    name: pid.into(),
                    description: None,
                    settings: "{}".into(),
                    created_by: None,
                    now: now.clone(),
                };
                copilot::store::projects::insert_project(tx, &new)?;
                copilot::store::projects::add_member(tx, &Scope::system(org_id), pid, &m, &now)?;
            }
            Ok(())
        })
        .await
        .unwrap();

    let path = format!("/organizations/{other}/members/{mover}");
    assert_eq!(app.post_empty(&path, Some(&org_admin)).await.status, 403);
    assert_eq!(app.post_empty(&path, None).await.status, 401);
    let admin = app.admin_token().await;
    let r = app.post_empty(&path, Some(&admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], other.as_str());
    let member_role = {
        let o = other.clone();
        app.state
            .store
            .read(move |c| StoreResult::Ok(copilot::store::users::role_id_by_name(c, &o, "member")?.unwrap()))
            .await
            .unwrap()
    };
    assert_eq!(r.body["role_id"], member_role.as_str());
    let m = mover.clone();
    let projects: Vec<String> = app
        .state
        .store
        .read(move |c| sql_rows(c, "SELECT project_id FROM user_projects WHERE user_id = ?1", &[&m]))
        .await
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(projects, ["p-new"], "left the old organization's projects only");

    // the next request already runs in the new organization, with member rights
    let r = app.get("/organizations", Some(&mover_token)).await;
    assert_eq!(names(&r.body, "name"), ["Other"]);
    assert_eq!(
        app.post(
            "/users",
            Some(&mover_token),
            json!({"username": "x1", "email": "x1@example.com", "password": PASSWORD})
        )
        .await
        .status,
        403
    );
    let r = app.get(&format!("/organizations/{org}/members?search=mover"), Some(&org_admin)).await;
    assert_eq!(r.body["total"], 0);

    let r = app.post_empty(&path, Some(&admin)).await;
    assert_eq!((r.status, r.body["organization_id"].clone()), (200, json!(other)), "already there: no change");
    assert_eq!(app.post_empty(&format!("/organizations/{other}/members/bogus"), Some(&admin)).await.status, 404);
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(app.post_empty(&format!("/organizations/{other}/members/{unknown}"), Some(&admin)).await.status, 404);
    assert_eq!(app.post_empty(&format!("/organizations/{unknown}/members/{mover}"), Some(&admin)).await.status, 404);
}
