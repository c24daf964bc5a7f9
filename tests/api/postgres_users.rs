//! The users and auth areas through the storage seam: one body per area, run on SQLite and on
//! PostgreSQL (`bash tests/ops/postgres.sh postgres_users`), with the same calls and answers.

use copilot::{
    authz::Scope,
    pagination::Page,
    store::{
        auth::{self, Attempt, Rotation},
        conn::{Conn, Store},
        error::StoreError,
        organizations::{NewOrg, OrgChanges},
        users::{self, NewUser, UserChanges, UserFilter},
    },
};

use crate::postgres::{count, on_postgres, sqlite_store};

type R<T> = Result<T, StoreError>;

/// Two organizations with their system roles; answers their ids.
async fn two_orgs(store: &Store) -> (String, String) {
    store.write(copilot::store::bootstrap::ensure_permissions).await.unwrap();
    let ids = (copilot::db::new_id(), copilot::db::new_id());
    let (a, b) = ids.clone();
    store
        .write(move |c| -> R<()> {
            for (id, name) in [(a, "Acme"), (b, "Globex")] {
                let now = "2026-03-04T05:06:00.000000Z".to_string();
                let org = NewOrg { id, name: name.into(), domain: None, description: None, settings: "{}".into(), now };
                copilot::store::organizations::insert_org(c, &org)?;
                copilot::store::bootstrap::insert_system_roles(c, &org.id, &org.now)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    ids
}

fn new_user(org: &str, role: Option<String>, name: &str, full_name: Option<&str>, at: &str) -> NewUser {
    NewUser {
        id: format!("id-{name}"),
        organization_id: org.into(),
        role_id: role,
        username: name.into(),
        email: format!("{name}@example.com"),
        full_name: full_name.map(str::to_string),
        password_hash: format!("hash-{name}"),
        is_superuser: false,
        now: at.into(),
    }
}

fn usernames(rows: &[copilot::model::users::User]) -> Vec<&str> {
    rows.iter().map(|u| u.username.as_str()).collect()
}

fn conflict(e: StoreError) -> String {
    match e {
        StoreError::Conflict(m) => m,
        other => panic!("not a conflict: {other:?}"),
    }
}

const T1: &str = "2026-03-04T09:00:01.000001Z";
const T2: &str = "2026-03-04T09:00:02.000000Z";

async fn users_area(store: &Store) {
    let backend = store.backend();
    let (acme, globex) = two_orgs(store).await;
    let (a, g, g0) = (acme.clone(), globex.clone(), globex.clone());
    // inserts: bob and a_b share a created_at (the tie-break is id DESC); conflicts in any case
    let admin_role = store
        .write(move |c| -> R<_> {
            let member = users::role_id_by_name(c, &a, "member")?;
            let admin = users::role_id_by_name(c, &a, "admin")?.unwrap();
            assert!(member.is_some() && users::role_id_by_name(c, &a, "nope")?.is_none());
            users::insert_user(c, &new_user(&a, member.clone(), "alice", Some("Alice Żółw"), T1))?;
            users::insert_user(c, &new_user(&a, member.clone(), "bob", None, T2))?;
            users::insert_user(c, &new_user(&a, Some(admin.clone()), "a_b", Some("100% sure"), T2))?;
            users::insert_user(c, &new_user(&g0, None, "greg", Some("Alice's friend"), T1))?;
            Ok(admin)
        })
        .await
        .unwrap();
    // each in a transaction of its own: a failed statement ends a PostgreSQL transaction
    let insert = |u: NewUser| store.write(move |c| users::insert_user(c, &u));
    let a = acme.clone();
    let e_name =
        insert(NewUser { email: "x@example.com".into(), ..new_user(&a, None, "ALICE", None, T1) }).await.unwrap_err();
    let e_mail = insert(NewUser { email: "Alice@EXAMPLE.com".into(), ..new_user(&a, None, "alice2", None, T1) })
        .await
        .unwrap_err();
    assert_eq!(conflict(e_name), "Username already taken", "{backend}");
    assert_eq!(conflict(e_mail), "Email already registered", "{backend}");

    // get: the scope decides; timestamps are the API's text; NULL stays None
    let (alice, bob, hidden, alias) = store
        .read(move |c| -> R<_> {
            let alice = users::get_user(c, &Scope::system_all(), "id-alice")?.unwrap();
            let bob = users::get_user(c, &Scope::system(&acme), "id-bob")?.unwrap();
            let hidden = users::get_user(c, &Scope::system(&globex), "id-bob")?;
            Ok((alice, bob, hidden, users::get_user(c, &Scope::system_all(), "id-greg")?))
        })
        .await
        .unwrap();
    assert_eq!((alice.created_at.as_str(), alice.updated_at.as_str()), (T1, T1), "{backend}");
    assert_eq!((alice.full_name.as_deref(), bob.full_name.as_deref()), (Some("Alice Żółw"), None), "{backend}");
    assert!(alice.is_active && !alice.is_superuser && hidden.is_none(), "{backend}");
    assert_eq!(alias.unwrap().organization_id, g, "{backend}");

    // list: newest first with the id tie-break, paging totals, search and filters
    let list = |scope: Scope, search: Option<&str>, active: bool, role: Option<String>, page: Page| {
        let filter = UserFilter { search: search.map(str::to_string), is_active: active, role_id: role };
        store.read(move |c| users::list_users(c, &scope, &filter, page))
    };
    let acme_scope = Scope::system(&alice.organization_id);
    let all = Page::new(None, None).unwrap();
    let (rows, total) = list(acme_scope.clone(), None, true, None, Page::new(Some(0), Some(2)).unwrap()).await.unwrap();
    assert_eq!((usernames(&rows), total), (vec!["bob", "a_b"], 3), "{backend}");
    let (rows, total) = list(acme_scope.clone(), None, true, None, Page::new(Some(2), Some(2)).unwrap()).await.unwrap();
    assert_eq!((usernames(&rows), total), (vec!["alice"], 3), "{backend}");
    let searches: [(&str, &[&str]); 9] = [
        ("ALI", &["alice", "greg"]), // username, and greg's full name (all organizations)
        ("al", &["alice", "greg"]),  // shorter than a trigram
        ("_", &["a_b"]),             // literal, not a wildcard
        ("%", &["a_b"]),             // in "100% sure"
        ("EXAMPLE.COM", &["bob", "a_b", "alice", "greg"]),
        ("Żółw", &["alice"]),
        ("żółw", &[]), // letter case folds ASCII only, as SQLite's lower()
        ("nobody", &[]),
        ("a\0b", &[]),
    ];
    for (term, want) in searches {
        let (rows, total) = list(Scope::system_all(), Some(term), true, None, all).await.unwrap();
        let mut got = usernames(&rows);
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!((got, total as usize), (want.clone(), want.len()), "{backend}: search {term:?}");
    }
    let (rows, _) = list(acme_scope.clone(), None, true, Some(admin_role.clone()), all).await.unwrap();
    assert_eq!(usernames(&rows), ["a_b"], "{backend}");

    // update: a taken email is a 409; Some(None) clears; the other scope changes nothing
    let s = acme_scope.clone();
    let taken = UserChanges { email: Some("BOB@example.com".into()), ..Default::default() };
    let e = store.write(move |c| users::update_user(c, &s, "id-alice", &taken, T2)).await.unwrap_err();
    let (s, s2, admin) = (acme_scope.clone(), Scope::system(&g), admin_role.clone());
    let (updated, other, hash, unchanged) = store
        .write(move |c| -> R<_> {
            let changes = UserChanges {
                email: Some("alice@new.example".into()),
                full_name: Some(None),
                is_superuser: Some(true),
                password_hash: Some("hash-2".into()),
                ..Default::default()
            };
            let updated = users::update_user(c, &s, "id-alice", &changes, "2026-03-05T00:00:00.000000Z")?.unwrap();
            let other = users::update_user(c, &s2, "id-alice", &changes, T2)?;
            users::set_password_hash(c, "id-bob", "hash-3", "2026-03-05T00:00:01.000000Z")?;
            let hash = count(
                c,
                "SELECT COUNT(*) FROM users WHERE password_hash = 'hash-3' AND id = ?1",
                "SELECT COUNT(*) FROM users WHERE password_hash = 'hash-3' AND id = $1",
                "id-bob",
            )?;
            // deactivating twice leaves the first updated_at; the wrong scope does nothing
            users::set_active(c, &s, "id-bob", false, "2026-03-06T00:00:00.000000Z")?;
            users::set_active(c, &s, "id-bob", false, "2026-03-07T00:00:00.000000Z")?;
            users::set_active(c, &s2, "id-a_b", false, T2)?;
            users::set_role(c, &s2, "id-bob", &admin, T2)?;
            users::set_role(c, &s, "id-alice", &admin, "2026-03-08T00:00:00.000000Z")?;
            Ok((updated, other, hash, users::get_user(c, &s, "id-bob")?.unwrap()))
        })
        .await
        .unwrap();
    assert_eq!(conflict(e), "Email already registered", "{backend}");
    assert_eq!(
        (updated.email.as_str(), updated.full_name.as_deref(), updated.is_superuser, updated.updated_at.as_str()),
        ("alice@new.example", None, true, "2026-03-05T00:00:00.000000Z"),
        "{backend}"
    );
    assert!(other.is_none() && hash == 1, "{backend}");
    assert_eq!(
        (unchanged.is_active, unchanged.updated_at.as_str(), unchanged.role_id.as_deref() == Some(&admin_role)),
        (false, "2026-03-06T00:00:00.000000Z", false),
        "{backend}"
    );
    let (rows, total) = list(acme_scope.clone(), None, false, None, all).await.unwrap();
    assert_eq!((usernames(&rows), total), (vec!["bob"], 1), "{backend}");
    let (rows, _) = list(acme_scope.clone(), Some("alice"), true, None, all).await.unwrap();
    assert_eq!(rows[0].role_id, Some(admin_role.clone()), "{backend}");
    assert_eq!(rows[0].updated_at, "2026-03-08T00:00:00.000000Z", "{backend}");

    // standing and move_to_org
    let (ga, gs) = (g.clone(), acme_scope.clone());
    let (no_role, with_role, moved) = store
        .write(move |c| -> R<_> {
            let greg = users::get_user(c, &Scope::system_all(), "id-greg")?.unwrap();
            let no_role = users::standing(c, &greg)?;
            let alice = users::get_user(c, &gs, "id-alice")?.unwrap();
            let with_role = users::standing(c, &alice).map(|s| (s.is_superuser, s.role.is_some()));
            let member = users::role_id_by_name(c, &ga, "member")?.unwrap();
            users::move_to_org(c, "id-bob", &ga, &member, "2026-03-09T00:00:00.000000Z")?;
            Ok((no_role, with_role, users::get_user(c, &Scope::system(&ga), "id-bob")?))
        })
        .await
        .unwrap();
    assert!(!no_role.is_superuser && no_role.role.is_none(), "{backend}");
    assert_eq!(with_role.unwrap(), (true, true), "{backend}");
    let moved = moved.unwrap();
    assert_eq!((moved.updated_at.as_str(), moved.is_active), ("2026-03-09T00:00:00.000000Z", false), "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_users_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    users_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_users_area_on_postgres() {
    on_postgres("postgres_users_area_on_postgres", |store| async move { users_area(&store).await });
}

fn failures(c: &mut Conn, key: &str) -> R<i64> {
    count(
        c,
        "SELECT COUNT(*) FROM login_failures WHERE account_key = ?1",
        "SELECT COUNT(*) FROM login_failures WHERE account_key = $1",
        key,
    )
}

async fn auth_area(store: &Store) {
    let backend = store.backend();
    let (acme, _) = two_orgs(store).await;
    let a = acme.clone();
    store
        .write(move |c| -> R<()> {
            let member = users::role_id_by_name(c, &a, "member")?;
            users::insert_user(c, &new_user(&a, member, "alice", None, T1))?;
            users::insert_user(c, &NewUser { is_superuser: true, ..new_user(&a, None, "root", None, T1) })?;
            Ok(())
        })
        .await
        .unwrap();

    // login candidates by username or e-mail in any case; an inactive organization shows
    let a = acme.clone();
    let (by_name, by_mail, none, deactivated, root) = store
        .write(move |c| -> R<_> {
            let by_name = auth::find_login_candidate(c, "ALICE")?.unwrap();
            let by_mail = auth::find_login_candidate(c, "Alice@Example.COM")?.map(|u| u.id);
            let none = auth::find_login_candidate(c, "nobody")?.is_none();
            let off = OrgChanges { is_active: Some(false), ..Default::default() };
            copilot::store::organizations::update_org(c, &Scope::system_all(), &a, &off, T2)?;
            let deactivated = auth::candidate_by_id(c, "id-alice")?.unwrap();
            let root = auth::candidate_by_id(c, "id-root")?.unwrap();
            Ok((by_name, by_mail, none, deactivated, root))
        })
        .await
        .unwrap();
    assert_eq!(
        (by_name.id.as_str(), by_name.username.as_str(), by_name.password_hash.as_str()),
        ("id-alice", "alice", "hash-alice")
    );
    assert!(by_name.is_active && by_name.org_is_active && none, "{backend}");
    assert_eq!(by_mail.as_deref(), Some("id-alice"), "{backend}");
    assert!(!deactivated.org_is_active && root.org_is_active, "{backend}");

    // failed logins: at most max in the window, the oldest reported when locked; forgetting
    // one frees a place; failures before the window are dropped on the way
    let times = ["2026-03-04T10:00:00.000001Z", "2026-03-04T10:00:01.000000Z", "2026-03-04T10:00:02.500000Z"];
    let (locked, left, again, after_prune) = store
        .write(move |c| -> R<_> {
            let since = "2026-03-04T09:59:00.000000Z";
            auth::reserve_attempt(c, "k", "2026-03-04T09:00:00.000000Z", "2026-03-04T08:00:00.000000Z", 3)?;
            let mut reserved = Vec::new();
            for t in times {
                match auth::reserve_attempt(c, "k", t, since, 3)? {
                    Attempt::Reserved(a) => reserved.push(a),
                    Attempt::Locked(_) => panic!("locked too early"),
                }
            }
            let locked = match auth::reserve_attempt(c, "k", "2026-03-04T10:00:03.000000Z", since, 3)? {
                Attempt::Locked(oldest) => oldest,
                Attempt::Reserved(_) => panic!("not locked"),
            };
            let before = failures(c, "k")?; // the old one went with the first reservation
            auth::forget_attempt(c, "k", reserved[1])?;
            let left = (before, failures(c, "k")?);
            let again =
                matches!(auth::reserve_attempt(c, "k", "2026-03-04T10:00:04.000000Z", since, 3)?, Attempt::Reserved(_));
            auth::reserve_attempt(c, "other", "2026-03-04T10:00:00.000000Z", since, 3)?;
            auth::clear_failures(c, "other")?;
            Ok((locked, left, again, failures(c, "other")?))
        })
        .await
        .unwrap();
    assert_eq!(locked.as_deref(), Some(times[0]), "{backend}");
    assert_eq!((left, again, after_prune), ((3, 2), true, 0), "{backend}");

    // a burst of attempts at once: exactly the attempts left get through (PostgreSQL: the
    // advisory lock; SQLite: the single writer)
    let burst = (0..6).map(|i| {
        let at = format!("2026-03-05T10:00:0{i}.000000Z");
        store.write(move |c| auth::reserve_attempt(c, "burst", &at, "2026-03-04T09:00:00.000000Z", 3))
    });
    let reserved = futures_util::future::join_all(burst)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Attempt::Reserved(_))))
        .count();
    assert_eq!(reserved, 3, "{backend}");

    // sessions: the caller as the database says now, refresh rotation and reuse, revocation
    let a = acme.clone();
    let (me, rotations, after_reuse, kept, revoked_n, inactive_org) = store
        .write(move |c| -> R<_> {
            let far = "2099-01-01T00:00:00.000000Z";
            for (sid, user) in [("s1", "id-alice"), ("s2", "id-alice"), ("s3", "id-alice"), ("r1", "id-root")] {
                auth::create_session(c, sid, user, &format!("jti-{sid}"), T1, far)?;
            }
            auth::create_session(c, "old", "id-alice", "jti-old", T1, "2026-03-04T09:30:00.000000Z")?;
            let on = OrgChanges { is_active: Some(true), ..Default::default() };
            copilot::store::organizations::update_org(c, &Scope::system_all(), &a, &on, T2)?;
            let me = auth::current_user(c, "s1", "id-alice")?.unwrap();
            let now = "2026-03-04T10:00:00.000000Z";
            let rotations = [
                auth::rotate_refresh(c, "s1", "id-alice", "jti-s1", "jti-s1b", now)?,
                auth::rotate_refresh(c, "s1", "id-alice", "jti-s1b", "jti-s1c", now)?,
                auth::rotate_refresh(c, "s1", "id-alice", "jti-s1", "jti-s1d", now)?, // reused
                auth::rotate_refresh(c, "s1", "id-alice", "jti-s1c", "jti-s1e", now)?, // revoked now
                auth::rotate_refresh(c, "old", "id-alice", "jti-old", "x", now)?,     // expired
                auth::rotate_refresh(c, "s2", "id-root", "jti-s2", "x", now)?,        // not theirs
                auth::rotate_refresh(c, "nope", "id-alice", "jti-s2", "x", now)?,
            ];
            let after_reuse = auth::current_user(c, "s1", "id-alice")?.is_none();
            let revoked_n = auth::revoke_user_sessions(c, "id-alice", Some("s2"), "password changed", now)?;
            let kept = (
                auth::current_user(c, "s2", "id-alice")?.is_some(),
                auth::current_user(c, "s3", "id-alice")?.is_none(),
            );
            auth::revoke_session(c, "s2", "logout", now)?;
            let off = OrgChanges { is_active: Some(false), ..Default::default() };
            copilot::store::organizations::update_org(c, &Scope::system_all(), &a, &off, T2)?;
            // a superuser still signs in to a deactivated organization
            let inactive_org = auth::current_user(c, "r1", "id-root")?.map(|u| (u.is_superuser, u.role_name));
            Ok((
                me,
                rotations,
                after_reuse,
                kept,
                revoked_n,
                (inactive_org, auth::current_user(c, "s2", "id-alice")?.is_none()),
            ))
        })
        .await
        .unwrap();
    assert_eq!((me.id.as_str(), me.session_id.as_str(), me.role_name.as_deref()), ("id-alice", "s1", Some("member")));
    assert_eq!((me.created_at.as_str(), me.email.as_str(), me.full_name.as_deref()), (T1, "alice@example.com", None));
    assert!(me.role_is_system && !me.is_superuser && me.api_key_id.is_none(), "{backend}");
    use Rotation::*;
    assert_eq!(rotations, [Rotated, Rotated, Reused, Dead, Dead, Dead, Dead], "{backend}");
    // s3 and old (s1 is already revoked, s2 kept)
    assert_eq!((after_reuse, kept, revoked_n), (true, (true, true), 2), "{backend}");
    assert_eq!(inactive_org, (Some((true, None)), true), "{backend}");
    let role = me.role_id.clone().unwrap();
    let perms = store
        .read(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM role_permissions WHERE role_id = ?1",
                "SELECT COUNT(*) FROM role_permissions WHERE role_id = $1",
                &role,
            )
        })
        .await
        .unwrap();
    assert!(perms > 0 && me.permissions.names().len() as i64 == perms, "{backend}: {perms}");

    // two refreshes with one token at once: one rotates, the other is a reuse (PostgreSQL: the
    // session row is locked)
    store
        .write(|c| auth::create_session(c, "race", "id-root", "jti-race", T1, "2099-01-01T00:00:00.000000Z"))
        .await
        .unwrap();
    let race = (0..2).map(|i| {
        store.write(move |c| {
            auth::rotate_refresh(c, "race", "id-root", "jti-race", &format!("n{i}"), "2026-03-04T10:00:00.000000Z")
        })
    });
    let mut outcomes: Vec<String> =
        futures_util::future::join_all(race).await.into_iter().map(|r| format!("{:?}", r.unwrap())).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["Reused", "Rotated"], "{backend}");

    // prune: old failures, expired and long-revoked sessions, in batches of `limit` each
    let (first, second, sessions_left) = store
        .write(move |c| -> R<_> {
            let (before, now, revoked_before) =
                ("2026-03-04T10:00:02.000000Z", "2026-03-04T10:00:00.000000Z", "2026-03-04T10:00:00.000000Z");
            let first = auth::prune(c, before, now, revoked_before, 1)?;
            let second = auth::prune(c, before, now, revoked_before, 100)?;
            let left = count(
                c,
                "SELECT COUNT(*) FROM sessions WHERE ?1 <> ''",
                "SELECT COUNT(*) FROM sessions WHERE $1 <> ''",
                "x",
            )?;
            Ok((first, second, left))
        })
        .await
        .unwrap();
    // first run, one of each: the failure of k at 10:00:00.000001 (10:00:01 was forgotten), old
    // (expired), one of s1/s2/s3/race (revoked at 10:00); then the other three; r1 stays
    assert_eq!((first, second, sessions_left), (3, 3, 1), "{backend}");

    // settings: the first value stays
    let settings = store
        .write(|c| -> R<_> {
            let none = auth::get_setting(c, "jwt_secret")?;
            let first = auth::init_setting(c, "jwt_secret", "one", T1)?;
            let second = auth::init_setting(c, "jwt_secret", "two", T2)?;
            Ok((none, first, second, auth::get_setting(c, "jwt_secret")?))
        })
        .await
        .unwrap();
    assert_eq!(settings, (None, "one".into(), "one".into(), Some("one".into())), "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_auth_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    auth_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_auth_area_on_postgres() {
    on_postgres("postgres_auth_area_on_postgres", |store| async move { auth_area(&store).await });
}
