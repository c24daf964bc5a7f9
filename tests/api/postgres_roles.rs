//! The roles, projects, agent-config and API-key areas through the storage seam: one body per
//! area, the same calls and the same answers on a fresh SQLite store and a fresh PostgreSQL one
//! (`bash tests/ops/postgres.sh postgres_roles`, `…_projects`, `…_agents`, `…_api_keys`).

use copilot::{
    authz::{Permission, PermissionSet, RoleKind, Scope},
    model::agents::AgentType,
    pagination::Page,
    store::{
        agents::{AgentConfigChanges, AgentConfigFilter, NewAgentConfig},
        api_keys::{NewKey, Owners},
        conn::{Conn, Store},
        error::StoreError,
        organizations::NewOrg,
        projects::{MemberFilter, NewProject, ProjectChanges, ProjectFilter},
        roles::{NewRole, RoleChanges},
        users::NewUser,
    },
};

use crate::postgres::{count, on_postgres, sqlite_store};

type R<T> = Result<T, StoreError>;

/// `at(7)`: a fixed time of its own second, in the API's text (lists are newest first).
fn at(second: u32) -> String {
    format!("2026-05-06T07:08:{second:02}.654321Z")
}

fn page(skip: i64, limit: i64) -> Page {
    Page::new(Some(skip), Some(limit)).unwrap()
}

async fn w<T: Send + 'static>(store: &Store, f: impl FnOnce(&mut Conn<'_, '_>) -> R<T> + Send + 'static) -> R<T> {
    store.write(f).await
}

async fn r<T: Send + 'static>(store: &Store, f: impl FnOnce(&mut Conn<'_, '_>) -> R<T> + Send + 'static) -> R<T> {
    store.read(f).await
}

/// Runs one statement of one text parameter on either backend (test set-up only).
fn exec(c: &mut Conn, sqlite: &str, pg: &str, arg: &str) -> R<()> {
    match c {
        Conn::Sqlite(c) => {
            c.execute(sqlite, [arg])?;
        }
        Conn::Postgres(t) => {
            t.execute(pg, &[&arg])?;
        }
    }
    Ok(())
}

/// Two organizations (A at second 1, B at 2) with their system roles; returns their ids.
async fn two_orgs(store: &Store) -> (String, String) {
    w(store, |c| {
        copilot::store::bootstrap::ensure_permissions(c)?;
        let mut ids = vec![];
        for (name, s) in [("Org A", 1), ("Org B", 2)] {
            let o = NewOrg {
                id: copilot::db::new_id(),
                name: name.into(),
                domain: None,
                description: None,
                settings: "{}".into(),
                now: at(s),
            };
            copilot::store::organizations::insert_org(c, &o)?;
            copilot::store::bootstrap::insert_system_roles(c, &o.id, &o.now)?;
            ids.push(o.id);
        }
        Ok((ids[0].clone(), ids[1].clone()))
    })
    .await
    .unwrap()
}

/// A user of `org` holding `role` (the org's member role when `None`), made at `second`.
async fn user(store: &Store, org: &str, name: &str, role: Option<String>, superuser: bool, second: u32) -> String {
    let (org, name) = (org.to_string(), name.to_string());
    w(store, move |c| {
        let role = match role {
            Some(r) => r,
            None => copilot::store::organizations::member_role_id(c, &org)?,
        };
        let u = NewUser {
            id: copilot::db::new_id(),
            organization_id: org,
            role_id: Some(role),
            username: name.clone(),
            email: format!("{name}@Example.com"),
            full_name: Some(format!("{name} Full")),
            password_hash: "x".into(),
            is_superuser: superuser,
            now: at(second),
        };
        Ok(copilot::store::users::insert_user(c, &u)?.id)
    })
    .await
    .unwrap()
}

// ---- roles and permissions ----

async fn roles_area(store: &Store) {
    let b = store.backend();
    let (a_org, b_org) = two_orgs(store).await;
    let all = Scope::system_all();
    let in_a = Scope::system(&a_org);
    let in_b = Scope::system(&b_org);
    let canonical: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();

    // permissions: canonical order, paging keeps the total, search in another case, % itself
    let (rows, total) = r(store, |c| copilot::store::roles::list_permissions(c, None, page(0, 100))).await.unwrap();
    assert_eq!((rows.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), total), (canonical.clone(), 13), "{b}");
    let (rows, total) = r(store, |c| copilot::store::roles::list_permissions(c, None, page(2, 3))).await.unwrap();
    assert_eq!(
        (rows.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), total),
        (canonical[2..5].to_vec(), 13),
        "{b}"
    );
    let (rows, total) =
        r(store, |c| copilot::store::roles::list_permissions(c, Some("PROJECTS:"), page(0, 100))).await.unwrap();
    assert_eq!(
        (rows.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), total),
        (vec!["projects:read", "projects:write", "projects:delete"], 3),
        "{b}"
    );
    let (rows, total) =
        r(store, |c| copilot::store::roles::list_permissions(c, Some("%"), page(0, 100))).await.unwrap();
    assert_eq!((rows.len(), total), (0, 0), "{b}: % is itself");
    let first = rows_first_permission(store).await;
    let id = first.id.clone();
    let found = r(store, move |c| copilot::store::roles::find_permission(c, &id)).await.unwrap();
    assert_eq!(
        (found.name.as_str(), found.resource.as_str(), found.action.as_str(), found.description),
        ("users:read", "users", "read", first.description),
        "{b}"
    );
    let e = r(store, |c| copilot::store::roles::find_permission(c, "nope")).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound("Permission not found")), "{b}: {e:?}");

    // insert: permissions in canonical order whatever order given, timestamps as text
    let new_role = |org: &str, name: &str, perms: &[Permission], s: u32| NewRole {
        id: copilot::db::new_id(),
        organization_id: org.to_string(),
        name: name.into(),
        description: Some(format!("{name} role")),
        permissions: perms.iter().copied().collect(),
        now: at(s),
    };
    let editors = new_role(&a_org, "Editors", &[Permission::ProjectsWrite, Permission::UsersRead], 10);
    let role = w(store, move |c| copilot::store::roles::insert_role(c, &editors)).await.unwrap();
    assert_eq!(
        (role.name.as_str(), role.is_system, role.user_count, role.permissions.clone()),
        ("Editors", false, 0, vec!["users:read".to_string(), "projects:write".to_string()]),
        "{b}"
    );
    assert_eq!((role.created_at.as_str(), role.updated_at.as_str()), (at(10).as_str(), at(10).as_str()), "{b}");
    let editors_id = role.id.clone();

    // a name taken in the organization in another case is a conflict; in another org it is free
    let dup = new_role(&a_org, "eDiToRs", &[], 11);
    let e = w(store, move |c| copilot::store::roles::insert_role(c, &dup)).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m == "A role with this name already exists in the organization"),
        "{b}: {e:?}"
    );
    let elsewhere = new_role(&b_org, "EDITORS", &[], 12);
    let b_role = w(store, move |c| copilot::store::roles::insert_role(c, &elsewhere)).await.unwrap();
    assert!(b_role.permissions.is_empty() && b_role.description.as_deref() == Some("EDITORS role"), "{b}");

    // list: newest first, admin/member (same time) by id descending; scope, search, paging
    let list = |scope: Scope, search: Option<&'static str>, skip: i64, limit: i64| {
        let store = store.clone();
        async move {
            let (rows, total) =
                r(&store, move |c| copilot::store::roles::list_roles(c, &scope, search, page(skip, limit)))
                    .await
                    .unwrap();
            (rows.into_iter().map(|r| r.name).collect::<Vec<_>>(), total)
        }
    };
    assert_eq!(
        list(in_a.clone(), None, 0, 100).await,
        (vec!["Editors".into(), "member".into(), "admin".into()], 3),
        "{b}"
    );
    assert_eq!(list(in_a.clone(), None, 1, 1).await, (vec!["member".into()], 3), "{b}: a page keeps the total");
    assert_eq!(list(all.clone(), Some("EDIT"), 0, 100).await.1, 2, "{b}: both orgs' editors");
    assert_eq!(list(in_a.clone(), Some("DEFAULT ROLE"), 0, 100).await, (vec!["member".into()], 1), "{b}: description");
    assert_eq!(list(in_a.clone(), Some("_"), 0, 100).await.1, 0, "{b}: _ is itself");
    let (s, id) = (in_b.clone(), editors_id.clone());
    let e = r(store, move |c| copilot::store::roles::find_role(c, &s, &id)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound("Role not found")), "{b}: another org's role is not found");

    // role_kind: admin, member, custom with its set; another org's role is none
    let (o, id) = (a_org.clone(), editors_id.clone());
    let (admin_kind, custom_kind, foreign) = r(store, move |c| {
        let admin = copilot::store::roles::list_roles(c, &Scope::system(&o), Some("admin"), page(0, 1))?.0.remove(0);
        Ok((
            copilot::store::roles::role_kind(c, &o, &admin.id)?,
            copilot::store::roles::role_kind(c, &o, &id)?,
            copilot::store::roles::role_kind(c, "other-org", &id)?,
        ))
    })
    .await
    .unwrap();
    let editors_set: PermissionSet = [Permission::UsersRead, Permission::ProjectsWrite].into_iter().collect();
    assert_eq!(
        (admin_kind, custom_kind, foreign),
        (Some(RoleKind::Admin), Some(RoleKind::Custom(editors_set)), None),
        "{b}"
    );

    // update: rename, clear the description, replace the set; system roles and a taken name refused
    let (s, id) = (in_a.clone(), editors_id.clone());
    let updated = w(store, move |c| {
        let changes = RoleChanges {
            name: Some("Writers".into()),
            description: Some(None),
            permissions: Some([Permission::AgentsRead].into_iter().collect()),
        };
        copilot::store::roles::update_role(c, &s, &id, &changes, &at(20))?;
        copilot::store::roles::find_role(c, &s, &id)
    })
    .await
    .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.clone(), updated.permissions.clone(), updated.updated_at.as_str()),
        ("Writers", None, vec!["agents:read".to_string()], at(20).as_str()),
        "{b}"
    );
    let (s, id) = (in_a.clone(), editors_id.clone());
    let e = w(store, move |c| {
        let changes = RoleChanges { name: Some("ADMIN".into()), description: None, permissions: None };
        copilot::store::roles::update_role(c, &s, &id, &changes, &at(21))
    })
    .await
    .unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(_)), "{b}: {e:?}");
    let (s, o) = (in_a.clone(), a_org.clone());
    let e = w(store, move |c| {
        let member = copilot::store::organizations::member_role_id(c, &o)?;
        let changes = RoleChanges { name: Some("x".into()), description: None, permissions: None };
        copilot::store::roles::update_role(c, &s, &member, &changes, &at(21))
    })
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{b}: a system role is not updated");
    let (s, id) = (in_b.clone(), editors_id.clone());
    let e = w(store, move |c| {
        let changes = RoleChanges { name: Some("y".into()), description: None, permissions: None };
        copilot::store::roles::update_role(c, &s, &id, &changes, &at(21))
    })
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{b}: nor another org's");

    // grant / revoke: once each, stamping updated_at; not on a system role nor another org's
    let perm_id = first.id.clone();
    let (s, id, p) = (in_a.clone(), editors_id.clone(), perm_id.clone());
    let (g1, g2, after_grant) = w(store, move |c| {
        let g1 = copilot::store::roles::grant(c, &s, &id, &p, &at(30))?;
        let g2 = copilot::store::roles::grant(c, &s, &id, &p, &at(31))?;
        Ok((g1, g2, copilot::store::roles::find_role(c, &s, &id)?))
    })
    .await
    .unwrap();
    assert_eq!((g1, g2), (true, false), "{b}");
    assert_eq!(
        (after_grant.permissions.clone(), after_grant.updated_at.as_str()),
        (vec!["users:read".to_string(), "agents:read".to_string()], at(30).as_str()),
        "{b}"
    );
    let (s, sb, id, p, o) = (in_a.clone(), in_b.clone(), editors_id.clone(), perm_id.clone(), a_org.clone());
    let (foreign_grant, system_grant, r1, r2, after_revoke) = w(store, move |c| {
        let foreign = copilot::store::roles::grant(c, &sb, &id, "unused", &at(32))?;
        let member = copilot::store::organizations::member_role_id(c, &o)?;
        let system = copilot::store::roles::revoke(c, &s, &member, &p, &at(32))?;
        let r1 = copilot::store::roles::revoke(c, &s, &id, &p, &at(33))?;
        let r2 = copilot::store::roles::revoke(c, &s, &id, &p, &at(34))?;
        Ok((foreign, system, r1, r2, copilot::store::roles::find_role(c, &s, &id)?))
    })
    .await
    .unwrap();
    assert_eq!((foreign_grant, system_grant, r1, r2), (false, false, true, false), "{b}");
    assert_eq!((after_revoke.permissions.len(), after_revoke.updated_at.as_str()), (1, at(33).as_str()), "{b}");

    // delete: a held role is a conflict naming the holders; a free one goes with its grants
    user(store, &a_org, "holder", Some(editors_id.clone()), false, 40).await;
    user(store, &a_org, "holder2", Some(editors_id.clone()), false, 41).await;
    let (s, id) = (in_a.clone(), editors_id.clone());
    let (held, e) = w(store, move |c| {
        let held = copilot::store::roles::find_role(c, &s, &id)?.user_count;
        Ok((held, copilot::store::roles::delete_role(c, &s, &id).unwrap_err()))
    })
    .await
    .unwrap();
    assert_eq!(held, 2, "{b}");
    assert!(
        matches!(&e, StoreError::Conflict(m) if m == "The role is held by 2 users; give them another role before deleting it"),
        "{b}: {e:?}"
    );
    let (s, id) = (in_b.clone(), b_role.id.clone());
    let (gone, grants) = w(store, move |c| {
        copilot::store::roles::grant(c, &s, &id, &perm_id, &at(42))?;
        copilot::store::roles::delete_role(c, &s, &id)?;
        let gone = matches!(copilot::store::roles::find_role(c, &s, &id), Err(StoreError::NotFound(_)));
        let sql = "SELECT COUNT(*) FROM role_permissions WHERE role_id = ";
        Ok((gone, count(c, &format!("{sql}?1"), &format!("{sql}$1"), &id)?))
    })
    .await
    .unwrap();
    assert_eq!((gone, grants), (true, 0), "{b}: deleted, its grants cascaded");
    let (s, id) = (in_a.clone(), b_role.id.clone());
    let e = w(store, move |c| copilot::store::roles::delete_role(c, &s, &id)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{b}");
    let (s, o) = (in_a.clone(), a_org.clone());
    let e = w(store, move |c| {
        let admin =
            copilot::store::roles::list_roles(c, &Scope::system(&o), Some("administrator"), page(0, 1))?.0.remove(0);
        copilot::store::roles::delete_role(c, &s, &admin.id)
    })
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{b}: system roles stay");
}

async fn rows_first_permission(store: &Store) -> copilot::model::roles::PermissionInfo {
    r(store, |c| copilot::store::roles::list_permissions(c, None, page(0, 1))).await.unwrap().0.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_roles_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    roles_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_roles_area_on_postgres() {
    on_postgres("postgres_roles_area_on_postgres", |store| async move { roles_area(&store).await });
}

// ---- projects and their members ----

async fn projects_area(store: &Store) {
    let b = store.backend();
    let (a_org, b_org) = two_orgs(store).await;
    let (in_a, in_b) = (Scope::system(&a_org), Scope::system(&b_org));
    let alice = user(store, &a_org, "alice", None, false, 3).await;
    let bob = user(store, &a_org, "bob", None, false, 4).await;
    let carol = user(store, &a_org, "carol", None, false, 5).await;
    let outsider = user(store, &b_org, "dave", None, false, 6).await;

    let new_project = |org: &str, name: &str, by: Option<&str>, s: u32| NewProject {
        id: copilot::db::new_id(),
        organization_id: org.to_string(),
        name: name.into(),
        description: Some(format!("the {name} project")),
        settings: r#"{"z": [1, {"y": null}], "a": true}"#.into(),
        created_by: by.map(str::to_string),
        now: at(s),
    };
    let mut ids = vec![];
    for p in [
        new_project(&a_org, "Apollo", Some(&alice), 10),
        new_project(&a_org, "Gemini", None, 11),
        new_project(&a_org, "Mercury 100%", Some(&bob), 12),
        new_project(&b_org, "Apollo", None, 13),
    ] {
        let got = w(store, move |c| copilot::store::projects::insert_project(c, &p)).await.unwrap();
        ids.push(got);
    }
    let apollo = &ids[0];
    assert_eq!(
        (apollo.member_count, apollo.created_by.as_deref(), apollo.is_active, apollo.created_at.as_str()),
        (1, Some(alice.as_str()), true, at(10).as_str()),
        "{b}: the creator is a member"
    );
    assert_eq!(apollo.settings, serde_json::json!({"a": true, "z": [1, {"y": null}]}), "{b}");
    assert_eq!((ids[1].member_count, ids[1].created_by.clone()), (0, None), "{b}");
    let (apollo_id, gemini_id, mercury_id) = (ids[0].id.clone(), ids[1].id.clone(), ids[2].id.clone());

    let list = |scope: Scope, search: Option<&str>, is_active: bool, skip: i64, limit: i64| {
        let f = ProjectFilter { search: search.map(str::to_string), is_active };
        let store = store.clone();
        async move {
            let (rows, total) =
                r(&store, move |c| copilot::store::projects::list_projects(c, &scope, &f, page(skip, limit)))
                    .await
                    .unwrap();
            (rows.into_iter().map(|p| p.name).collect::<Vec<_>>(), total)
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(list(in_a.clone(), None, true, 0, 100).await, (s(&["Mercury 100%", "Gemini", "Apollo"]), 3), "{b}");
    assert_eq!(list(Scope::system_all(), None, true, 0, 2).await, (s(&["Apollo", "Mercury 100%"]), 4), "{b}: paging");
    assert_eq!(list(in_a.clone(), Some("GEM"), true, 0, 100).await, (s(&["Gemini"]), 1), "{b}: name");
    assert_eq!(list(in_a.clone(), Some("THE APOLLO"), true, 0, 100).await, (s(&["Apollo"]), 1), "{b}: description");
    assert_eq!(list(in_a.clone(), Some("0%"), true, 0, 100).await, (s(&["Mercury 100%"]), 1), "{b}: % is itself");

    // get: another org's project is not found; find says so
    let (sb, id) = (in_b.clone(), apollo_id.clone());
    let (hidden, e) = r(store, move |c| {
        Ok((
            copilot::store::projects::get_project(c, &sb, &id)?,
            copilot::store::projects::find_project(c, &sb, &id).unwrap_err(),
        ))
    })
    .await
    .unwrap();
    assert!(hidden.is_none() && matches!(e, StoreError::NotFound("Project not found")), "{b}");

    // update: fields, clearing, settings; None leaves; another org's scope changes nothing
    let (sa, sb, id) = (in_a.clone(), in_b.clone(), gemini_id.clone());
    let (p, untouched) = w(store, move |c| {
        let changes = ProjectChanges {
            name: Some("Gemini II".into()),
            description: Some(None),
            settings: Some(r#"{"k": "v"}"#.into()),
            is_active: None,
        };
        copilot::store::projects::update_project(
            c,
            &sb,
            &id,
            &ProjectChanges { name: Some("X".into()), ..Default::default() },
            &at(19),
        )?;
        copilot::store::projects::update_project(c, &sa, &id, &changes, &at(20))?;
        let p = copilot::store::projects::find_project(c, &sa, &id)?;
        copilot::store::projects::update_project(c, &sa, &id, &ProjectChanges::default(), &at(21))?;
        Ok((p, copilot::store::projects::find_project(c, &sa, &id)?))
    })
    .await
    .unwrap();
    assert_eq!(
        (p.name.as_str(), p.description.clone(), p.settings.clone(), p.updated_at.as_str()),
        ("Gemini II", None, serde_json::json!({"k": "v"}), at(20).as_str()),
        "{b}"
    );
    assert_eq!((untouched.name, untouched.settings, untouched.updated_at), (p.name, p.settings, at(21)), "{b}");

    // deactivate: out of the active list, in the inactive one
    let (sa, id) = (in_a.clone(), mercury_id.clone());
    w(store, move |c| copilot::store::projects::deactivate_project(c, &sa, &id, &at(22))).await.unwrap();
    assert_eq!(list(in_a.clone(), None, true, 0, 100).await, (s(&["Gemini II", "Apollo"]), 2), "{b}");
    assert_eq!(list(in_a.clone(), None, false, 0, 100).await, (s(&["Mercury 100%"]), 1), "{b}");

    // members: add once, not across organizations; user_in_org; list newest first with search
    let (sa, sb, id) = (in_a.clone(), in_b.clone(), apollo_id.clone());
    let (bo, ca, ou, o) = (bob.clone(), carol.clone(), outsider.clone(), a_org.clone());
    let (added, again, foreign, in_org, out_org) = w(store, move |c| {
        let added = copilot::store::projects::add_member(c, &sa, &id, &bo, &at(23))?
            && copilot::store::projects::add_member(c, &sa, &id, &ca, &at(24))?;
        let again = copilot::store::projects::add_member(c, &sa, &id, &bo, &at(25))?;
        let foreign = copilot::store::projects::add_member(c, &sb, &id, &ou, &at(25))?;
        let in_org = copilot::store::projects::user_in_org(c, &bo, &o)?;
        let out_org = copilot::store::projects::user_in_org(c, &ou, &o)?;
        Ok((added, again, foreign, in_org, out_org))
    })
    .await
    .unwrap();
    assert_eq!((added, again, foreign, in_org, out_org), (true, false, false, true, false), "{b}");
    let members = |scope: Scope, search: Option<&str>, is_active: bool, skip: i64, limit: i64| {
        let f = MemberFilter { search: search.map(str::to_string), is_active };
        let (store, id) = (store.clone(), apollo_id.clone());
        async move {
            let (rows, total) =
                r(&store, move |c| copilot::store::projects::list_members(c, &scope, &id, &f, page(skip, limit)))
                    .await
                    .unwrap();
            (rows.into_iter().map(|u| u.username).collect::<Vec<_>>(), total)
        }
    };
    assert_eq!(members(in_a.clone(), None, true, 0, 100).await, (s(&["carol", "bob", "alice"]), 3), "{b}");
    assert_eq!(members(in_a.clone(), None, true, 1, 1).await, (s(&["bob"]), 3), "{b}: paging");
    assert_eq!(members(in_a.clone(), Some("BOB@EXAMPLE"), true, 0, 100).await, (s(&["bob"]), 1), "{b}: e-mail");
    assert_eq!(members(in_a.clone(), Some("CAROL FU"), true, 0, 100).await, (s(&["carol"]), 1), "{b}: full name");
    assert_eq!(members(in_b.clone(), None, true, 0, 100).await, (vec![], 0), "{b}: another org's project");
    let c2 = carol.clone();
    w(store, move |c| {
        exec(c, "UPDATE users SET is_active = 0 WHERE id = ?1", "UPDATE users SET is_active = false WHERE id = $1", &c2)
    })
    .await
    .unwrap();
    assert_eq!(members(in_a.clone(), None, false, 0, 100).await, (s(&["carol"]), 1), "{b}: inactive members");
    let full = members(in_a.clone(), None, true, 0, 100).await;
    assert_eq!(full.1, 2, "{b}");

    // remove: once; the member count follows; a member's user deleted leaves with the membership
    let (sa, sb, id, bo) = (in_a.clone(), in_b.clone(), apollo_id.clone(), bob.clone());
    let (foreign, removed, again, p) = w(store, move |c| {
        let foreign = copilot::store::projects::remove_member(c, &sb, &id, &bo)?;
        let removed = copilot::store::projects::remove_member(c, &sa, &id, &bo)?;
        let again = copilot::store::projects::remove_member(c, &sa, &id, &bo)?;
        Ok((foreign, removed, again, copilot::store::projects::find_project(c, &sa, &id)?))
    })
    .await
    .unwrap();
    assert_eq!((foreign, removed, again, p.member_count), (false, true, false, 2), "{b}");
    let (sa, id, al) = (in_a.clone(), apollo_id.clone(), alice.clone());
    let p = w(store, move |c| {
        exec(c, "DELETE FROM users WHERE id = ?1", "DELETE FROM users WHERE id = $1", &al)?;
        copilot::store::projects::find_project(c, &sa, &id)
    })
    .await
    .unwrap();
    assert_eq!((p.member_count, p.created_by), (1, None), "{b}: membership cascaded, created_by set null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projects_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    projects_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_projects_area_on_postgres() {
    on_postgres("postgres_projects_area_on_postgres", |store| async move { projects_area(&store).await });
}

// ---- agent configs ----

async fn agents_area(store: &Store) {
    let b = store.backend();
    let (a_org, b_org) = two_orgs(store).await;
    let (in_a, in_b) = (Scope::system(&a_org), Scope::system(&b_org));
    let owner = user(store, &a_org, "owner", None, false, 3).await;
    let mut projects = vec![];
    for (org, name, s) in [(&a_org, "live", 4), (&a_org, "dead", 5), (&b_org, "theirs", 6)] {
        let p = NewProject {
            id: copilot::db::new_id(),
            organization_id: org.clone(),
            name: name.into(),
            description: None,
            settings: "{}".into(),
            created_by: None,
            now: at(s),
        };
        projects.push(w(store, move |c| copilot::store::projects::insert_project(c, &p)).await.unwrap().id);
    }
    let (live, dead, theirs) = (projects[0].clone(), projects[1].clone(), projects[2].clone());
    let (sa, d) = (in_a.clone(), dead.clone());
    w(store, move |c| copilot::store::projects::deactivate_project(c, &sa, &d, &at(7))).await.unwrap();

    let new_agent = |name: &str, t: AgentType, project: Option<&str>, s: u32| NewAgentConfig {
        id: copilot::db::new_id(),
        organization_id: a_org.clone(),
        project_id: project.map(str::to_string),
        name: name.into(),
        description: Some(format!("{name} helper")),
        agent_type: t,
        llm_model: "gemini-pro".into(),
        temperature: 0.35,
        max_tokens: 4096,
        system_prompt: Some("Be brief.".into()),
        tools: vec!["search".into(), "calc".into(), "a_tool".into()],
        knowledge_base: r#"{"project_ids": [], "top_k": 5}"#.into(),
        settings: r#"{"nested": {"b": [true, null]}}"#.into(),
        created_by: owner.clone(),
        now: at(s),
    };
    // the project must be an active one of the organization
    for (p, what) in [(&dead, "inactive"), (&theirs, "another org's")] {
        let n = new_agent("bad", AgentType::Rfp, Some(p), 8);
        let e = w(store, move |c| copilot::store::agents::insert_agent_config(c, &n)).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(m) if m == "project_id does not name an active project of the organization"),
            "{b}: {what}: {e:?}"
        );
    }
    let mut agents = vec![];
    for n in [
        new_agent("RFP writer", AgentType::Rfp, Some(&live), 10),
        new_agent("Jira bot", AgentType::Jira, None, 11),
        new_agent("Docs_bot", AgentType::Documentation, Some(&live), 12),
    ] {
        agents.push(w(store, move |c| copilot::store::agents::insert_agent_config(c, &n)).await.unwrap());
    }
    let a = &agents[0];
    assert_eq!(
        (a.agent_type, a.temperature, a.max_tokens, a.tools.clone(), a.created_by.as_deref(), a.created_at.as_str()),
        (
            AgentType::Rfp,
            0.35,
            4096,
            vec!["search".to_string(), "calc".into(), "a_tool".into()],
            Some(owner.as_str()),
            at(10).as_str()
        ),
        "{b}: tools keep their order"
    );
    assert_eq!(
        (a.knowledge_base.clone(), a.settings.clone(), a.system_prompt.as_deref(), a.is_active),
        (
            serde_json::json!({"top_k": 5, "project_ids": []}),
            serde_json::json!({"nested": {"b": [true, null]}}),
            Some("Be brief."),
            true
        ),
        "{b}"
    );
    let (rfp, jira, docs) = (agents[0].id.clone(), agents[1].id.clone(), agents[2].id.clone());
    let (o, l, d, t) = (a_org.clone(), live.clone(), dead.clone(), theirs.clone());
    let checks = r(store, move |c| {
        Ok([
            copilot::store::agents::is_active_project_of(c, &o, &l)?,
            copilot::store::agents::is_active_project_of(c, &o, &d)?,
            copilot::store::agents::is_active_project_of(c, &o, &t)?,
        ])
    })
    .await
    .unwrap();
    assert_eq!(checks, [true, false, false], "{b}");

    let list = |scope: Scope,
                search: Option<&str>,
                agent_type: Option<AgentType>,
                project: Option<&str>,
                is_active: bool,
                skip: i64,
                limit: i64| {
        let f = AgentConfigFilter {
            search: search.map(str::to_string),
            agent_type,
            project_id: project.map(str::to_string),
            is_active,
        };
        let store = store.clone();
        async move {
            let (rows, total) =
                r(&store, move |c| copilot::store::agents::list_agent_configs(c, &scope, &f, page(skip, limit)))
                    .await
                    .unwrap();
            (rows.into_iter().map(|a| a.name).collect::<Vec<_>>(), total)
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        list(in_a.clone(), None, None, None, true, 0, 100).await,
        (s(&["Docs_bot", "Jira bot", "RFP writer"]), 3),
        "{b}"
    );
    assert_eq!(list(in_a.clone(), None, None, None, true, 2, 5).await, (s(&["RFP writer"]), 3), "{b}: paging");
    assert_eq!(list(in_a.clone(), None, Some(AgentType::Jira), None, true, 0, 100).await, (s(&["Jira bot"]), 1), "{b}");
    assert_eq!(list(in_a.clone(), None, None, Some(&live), true, 0, 100).await.1, 2, "{b}: by project");
    assert_eq!(list(in_a.clone(), Some("WRITER"), None, None, true, 0, 100).await, (s(&["RFP writer"]), 1), "{b}");
    assert_eq!(list(in_a.clone(), Some("JIRA BOT HEL"), None, None, true, 0, 100).await.1, 1, "{b}: description");
    assert_eq!(list(in_a.clone(), Some("S_B"), None, None, true, 0, 100).await, (s(&["Docs_bot"]), 1), "{b}: _ itself");
    assert_eq!(list(in_b.clone(), None, None, None, true, 0, 100).await.1, 0, "{b}: scope");

    // update: a partial change keeps the rest; clearing; a bad project refused; other scope none
    let (sa, sb, id, t) = (in_a.clone(), in_b.clone(), rfp.clone(), theirs.clone());
    let (foreign, bad, updated) = w(store, move |c| {
        let foreign =
            copilot::store::agents::update_agent_config(c, &sb, &id, &AgentConfigChanges::default(), &at(20))?;
        let bad = AgentConfigChanges { project_id: Some(Some(t)), ..Default::default() };
        let bad = copilot::store::agents::update_agent_config(c, &sa, &id, &bad, &at(20)).unwrap_err();
        let changes = AgentConfigChanges {
            name: Some("RFP writer 2".into()),
            description: Some(None),
            agent_type: Some(AgentType::Finance),
            project_id: Some(None),
            temperature: Some(1.25),
            max_tokens: Some(128000),
            system_prompt: Some(None),
            tools: Some(vec![]),
            settings: Some(r#"{"s": 1}"#.into()),
            ..Default::default()
        };
        Ok((foreign, bad, copilot::store::agents::update_agent_config(c, &sa, &id, &changes, &at(21))?.unwrap()))
    })
    .await
    .unwrap();
    assert!(foreign.is_none() && matches!(bad, StoreError::Invalid(_)), "{b}");
    assert_eq!(
        (updated.name.as_str(), updated.description.clone(), updated.agent_type, updated.project_id.clone()),
        ("RFP writer 2", None, AgentType::Finance, None),
        "{b}"
    );
    assert_eq!(
        (updated.temperature, updated.max_tokens, updated.system_prompt.clone(), updated.tools.clone()),
        (1.25, 128000, None, vec![]),
        "{b}"
    );
    assert_eq!(
        (
            updated.llm_model.as_str(),
            updated.knowledge_base.clone(),
            updated.settings.clone(),
            updated.updated_at.as_str()
        ),
        (
            "gemini-pro",
            serde_json::json!({"project_ids": [], "top_k": 5}),
            serde_json::json!({"s": 1}),
            at(21).as_str()
        ),
        "{b}: unchanged fields kept"
    );
    assert_eq!(updated.created_at, at(10), "{b}");

    // deactivate and reactivate; another scope's is none
    let (sa, sb, id) = (in_a.clone(), in_b.clone(), jira.clone());
    let (foreign, off) = w(store, move |c| {
        Ok((
            copilot::store::agents::set_agent_config_active(c, &sb, &id, false, &at(30))?,
            copilot::store::agents::set_agent_config_active(c, &sa, &id, false, &at(31))?.unwrap(),
        ))
    })
    .await
    .unwrap();
    assert!(foreign.is_none() && !off.is_active && off.updated_at == at(31), "{b}");
    assert_eq!(list(in_a.clone(), None, None, None, false, 0, 100).await, (s(&["Jira bot"]), 1), "{b}");
    let (sa, id) = (in_a.clone(), jira.clone());
    let on =
        w(store, move |c| copilot::store::agents::set_agent_config_active(c, &sa, &id, true, &at(32))).await.unwrap();
    assert!(on.unwrap().is_active, "{b}");
    let (sa, id) = (in_a.clone(), docs.clone());
    let got = r(store, move |c| copilot::store::agents::get_agent_config(c, &sa, &id)).await.unwrap().unwrap();
    assert_eq!(got.project_id.as_deref(), Some(live.as_str()), "{b}");
    // the project deleted: the config stays, without it (ON DELETE SET NULL)
    let (sa, id, l) = (in_a.clone(), docs.clone(), live.clone());
    let got = w(store, move |c| {
        exec(c, "DELETE FROM projects WHERE id = ?1", "DELETE FROM projects WHERE id = $1", &l)?;
        copilot::store::agents::get_agent_config(c, &sa, &id)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.project_id, None, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_agents_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    agents_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_agents_area_on_postgres() {
    on_postgres("postgres_agents_area_on_postgres", |store| async move { agents_area(&store).await });
}

// ---- API keys ----

async fn api_keys_area(store: &Store) {
    let b = store.backend();
    let (a_org, b_org) = two_orgs(store).await;
    let ann = user(store, &a_org, "ann", None, false, 3).await;
    let ben = user(store, &a_org, "ben", None, false, 4).await;
    let root = user(store, &b_org, "root", None, true, 5).await;

    let insert = |id: &str, user: &str, org: &str, secret: &str, expires: Option<&str>, s: u32| {
        let (id, user, org, secret, expires) =
            (id.to_string(), user.to_string(), org.to_string(), secret.to_string(), expires.map(str::to_string));
        let store = store.clone();
        async move {
            w(&store, move |c| {
                let k = NewKey {
                    id: &id,
                    user_id: &user,
                    organization_id: &org,
                    name: &format!("key {id}"),
                    prefix: &format!("cpk_{id}"),
                    secret_sha256: &secret,
                    permissions: [Permission::ProjectsRead, Permission::UsersRead].into_iter().collect(),
                    expires_at: expires.as_deref(),
                    now: &at(s),
                };
                copilot::store::api_keys::insert_key(c, &k)
            })
            .await
        }
    };
    let k1 = insert("k1", &ann, &a_org, "sha-1", Some("2999-01-02T03:04:05.000006Z"), 10).await.unwrap();
    assert_eq!(
        (k1.name.as_str(), k1.prefix.as_str(), k1.user_id.as_str(), k1.permissions.clone()),
        ("key k1", "cpk_k1", ann.as_str(), vec!["users:read".to_string(), "projects:read".to_string()]),
        "{b}"
    );
    assert_eq!(
        (k1.expires_at.as_deref(), k1.last_used_at.clone(), k1.created_at.as_str()),
        (Some("2999-01-02T03:04:05.000006Z"), None, at(10).as_str()),
        "{b}: timestamps as text, NULL as none"
    );
    insert("k2", &ann, &a_org, "sha-2", None, 11).await.unwrap();
    insert("k3", &ben, &a_org, "sha-3", Some("2026-05-06T07:09:00.000000Z"), 12).await.unwrap();
    insert("k4", &root, &b_org, "sha-4", None, 13).await.unwrap();
    let e = insert("k5", &ben, &a_org, "sha-1", None, 14).await.unwrap_err();
    assert!(matches!(e, StoreError::Database(_)), "{b}: a secret is unique: {e:?}");

    let list = |owners: (Option<&str>, Option<Scope>, Option<&str>), skip: i64, limit: i64| {
        let (user, scope, filter) = (owners.0.map(str::to_string), owners.1, owners.2.map(str::to_string));
        let store = store.clone();
        async move {
            let (rows, total) = r(&store, move |c| {
                let owners = match (&user, &scope) {
                    (Some(u), _) => Owners::User(u),
                    (None, Some(s)) => Owners::Scope(s, filter.as_deref()),
                    _ => unreachable!(),
                };
                copilot::store::api_keys::list_keys(c, &owners, page(skip, limit))
            })
            .await
            .unwrap();
            (rows.into_iter().map(|k| k.id).collect::<Vec<_>>(), total)
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(list((Some(&ann), None, None), 0, 100).await, (s(&["k2", "k1"]), 2), "{b}: own keys, newest first");
    assert_eq!(list((None, Some(Scope::system_all()), None), 1, 2).await, (s(&["k3", "k2"]), 4), "{b}: paging");
    assert_eq!(list((None, Some(Scope::system(&a_org)), None), 0, 100).await.1, 3, "{b}: an org's");
    assert_eq!(list((None, Some(Scope::system(&a_org)), Some(&ben)), 0, 100).await, (s(&["k3"]), 1), "{b}: one user's");

    // the key presented: its owner as now, unexpired, active; a superuser of an inactive org too
    let owner = |secret: &str, now: String| {
        let (store, secret) = (store.clone(), secret.to_string());
        async move { r(&store, move |c| copilot::store::api_keys::key_owner(c, &secret, &now)).await.unwrap() }
    };
    let k = owner("sha-1", at(20)).await.unwrap();
    assert_eq!(
        (k.key_id.as_str(), k.key_permissions.names(), k.last_used_at.clone()),
        ("k1", vec!["users:read".to_string(), "projects:read".into()], None),
        "{b}"
    );
    let o = &k.owner;
    assert_eq!(
        (o.id.as_str(), o.username.as_str(), o.email.as_str(), o.full_name.as_deref(), o.organization_id.as_str()),
        (ann.as_str(), "ann", "ann@Example.com", Some("ann Full"), a_org.as_str()),
        "{b}"
    );
    assert_eq!(
        (o.role_name.as_deref(), o.role_is_system, o.is_superuser, o.permissions, o.created_at.as_str()),
        (Some("member"), true, false, Permission::MEMBER.into_iter().collect::<PermissionSet>(), at(3).as_str()),
        "{b}"
    );
    assert!(owner("sha-none", at(20)).await.is_none(), "{b}");
    assert!(owner("sha-3", "2026-05-06T07:08:59.999999Z".into()).await.is_some(), "{b}: before expiry");
    assert!(owner("sha-3", "2026-05-06T07:09:00.000000Z".into()).await.is_none(), "{b}: expired at the instant");

    // touch: last_used_at recorded, read back as text
    w(store, |c| copilot::store::api_keys::touch_key(c, "k1", "2026-05-06T08:00:00.000001Z")).await.unwrap();
    let k = owner("sha-1", at(20)).await.unwrap();
    assert_eq!(k.last_used_at.as_deref(), Some("2026-05-06T08:00:00.000001Z"), "{b}");

    // an inactive owner or organization: no key; a superuser keeps theirs in an inactive org
    let bn = ben.clone();
    w(store, move |c| {
        exec(c, "UPDATE users SET is_active = 0 WHERE id = ?1", "UPDATE users SET is_active = false WHERE id = $1", &bn)
    })
    .await
    .unwrap();
    assert!(owner("sha-3", at(20)).await.is_none(), "{b}: inactive user");
    for org in [a_org.clone(), b_org.clone()] {
        w(store, move |c| {
            exec(
                c,
                "UPDATE organizations SET is_active = 0 WHERE id = ?1",
                "UPDATE organizations SET is_active = false WHERE id = $1",
                &org,
            )
        })
        .await
        .unwrap();
    }
    assert!(owner("sha-1", at(20)).await.is_none(), "{b}: inactive organization");
    let k = owner("sha-4", at(20)).await.unwrap();
    assert!(k.owner.is_superuser && k.owner.role_name.as_deref() == Some("member"), "{b}: a superuser's");

    // delete: only a key the owners may reach; it answers the org and name; then not found
    let (an, bn) = (ann.clone(), ben.clone());
    let (others, mine, again) = w(store, move |c| {
        let others = copilot::store::api_keys::delete_key(c, &Owners::User(&bn), "k1").unwrap_err();
        let mine = copilot::store::api_keys::delete_key(c, &Owners::User(&an), "k1")?;
        let again = copilot::store::api_keys::delete_key(c, &Owners::User(&an), "k1").unwrap_err();
        Ok((others, mine, again))
    })
    .await
    .unwrap();
    assert!(matches!(others, StoreError::NotFound("API key not found")), "{b}");
    assert_eq!(mine, (a_org.clone(), "key k1".to_string()), "{b}");
    assert!(matches!(again, StoreError::NotFound(_)), "{b}");
    let sb = Scope::system(&b_org);
    let e =
        w(store, move |c| copilot::store::api_keys::delete_key(c, &Owners::Scope(&sb, None), "k2")).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{b}: another org's key");
    let sa = Scope::system(&a_org);
    let got =
        w(store, move |c| copilot::store::api_keys::delete_key(c, &Owners::Scope(&sa, None), "k2")).await.unwrap();
    assert_eq!(got.1, "key k2", "{b}: an org admin's reach");
    // a user deleted takes their keys (ON DELETE CASCADE)
    let bn = ben.clone();
    let left = w(store, move |c| {
        exec(c, "DELETE FROM users WHERE id = ?1", "DELETE FROM users WHERE id = $1", &bn)?;
        count(c, "SELECT COUNT(*) FROM api_keys WHERE id <> ?1", "SELECT COUNT(*) FROM api_keys WHERE id <> $1", "")
    })
    .await
    .unwrap();
    assert_eq!(left, 1, "{b}: only k4 is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_api_keys_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    api_keys_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_api_keys_area_on_postgres() {
    on_postgres("postgres_api_keys_area_on_postgres", |store| async move { api_keys_area(&store).await });
}

// ---- bootstrap (first start) ----

async fn bootstrap_area(store: &Store) {
    let b = store.backend();
    let fresh = r(store, |c| {
        Ok((copilot::store::bootstrap::is_bootstrapped(c)?, copilot::store::bootstrap::registration_org_id(c)?))
    })
    .await
    .unwrap();
    assert_eq!(fresh, (false, None), "{b}");
    let admin = || copilot::store::bootstrap::Admin {
        username: "root".into(),
        email: "root@example.com".into(),
        password_hash: "hash".into(),
    };
    let (first, second) = w(store, move |c| {
        Ok((copilot::store::bootstrap::bootstrap(c, &admin())?, copilot::store::bootstrap::bootstrap(c, &admin())?))
    })
    .await
    .unwrap();
    assert_eq!((first, second), (true, false), "{b}: once");
    let (done, org, users, roles, perms) = r(store, |c| {
        let org = copilot::store::bootstrap::registration_org_id(c)?.unwrap();
        let q = |t: &str| {
            (format!("SELECT COUNT(*) FROM {t} WHERE ?1 <> ''"), format!("SELECT COUNT(*) FROM {t} WHERE $1 <> ''"))
        };
        let (us, up) = q("users");
        let (rs, rp) = q("roles");
        let (ps, pp) = q("permissions");
        Ok((
            copilot::store::bootstrap::is_bootstrapped(c)?,
            copilot::store::organizations::get_org(c, &Scope::system_all(), &org)?.unwrap(),
            count(c, &us, &up, "x")?,
            count(c, &rs, &rp, "x")?,
            count(c, &ps, &pp, "x")?,
        ))
    })
    .await
    .unwrap();
    assert_eq!((done, org.name.as_str(), users, roles, perms), (true, "Default", 1, 2, 13), "{b}");
    let (o, root) = (org.id.clone(), "root");
    let user = r(store, move |c| {
        let (rows, _) = copilot::store::users::list_users(
            c,
            &Scope::system(&o),
            &copilot::store::users::UserFilter { search: Some(root.into()), is_active: true, role_id: None },
            page(0, 10),
        )?;
        let kind = copilot::store::roles::role_kind(c, &o, rows[0].role_id.as_deref().unwrap())?;
        Ok((rows[0].is_superuser, kind))
    })
    .await
    .unwrap();
    assert_eq!(user, (true, Some(RoleKind::Admin)), "{b}: the superuser holds the admin role");

    // a database from before the setting: ensure_registration_org keeps Default's id, once
    w(store, |c| {
        exec(
            c,
            "DELETE FROM server_settings WHERE key = ?1",
            "DELETE FROM server_settings WHERE key = $1",
            "registration_organization_id",
        )
    })
    .await
    .unwrap();
    let got = w(store, |c| {
        copilot::store::bootstrap::ensure_registration_org(c)?;
        copilot::store::bootstrap::ensure_registration_org(c)?;
        copilot::store::bootstrap::registration_org_id(c)
    })
    .await
    .unwrap();
    assert_eq!(got, Some(org.id), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bootstrap_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_bootstrap_area_on_postgres() {
    on_postgres("postgres_bootstrap_area_on_postgres", |store| async move { bootstrap_area(&store).await });
}
