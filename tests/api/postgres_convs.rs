//! The conversations, completion jobs, limits and audit areas through the storage seam: one body
//! per area, the same calls and the same answers on SQLite and on PostgreSQL (`postgres.rs` has
//! the helpers; `bash tests/ops/postgres.sh postgres_convs` runs them on a real cluster).

use copilot::{
    config::LimitsConfig,
    limits::Period,
    model::{
        audit::Actor,
        completions::JobStatus,
        conversations::{Message, MessageRole},
        usage::UsageGroup,
    },
    store::{
        audit::{Event, Filter},
        completions::{JobEnd, NewJob},
        conn::{Conn, Store},
        conversations::{ConversationChanges, ConversationFilter, MessageKey, NewConversation, NewMessage},
        error::StoreError,
        organizations::NewOrg,
    },
};
use serde_json::json;

use crate::postgres::{count, on_postgres, sqlite_store};

type R<T> = Result<T, StoreError>;

/// The models have no `PartialEq`: compared by their `Debug` text, every field.
fn dbg_text<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

fn page(skip: i64, limit: i64) -> copilot::pagination::Page {
    copilot::pagination::Page::new(Some(skip), Some(limit)).unwrap()
}

/// Runs the same statements, written for each dialect (no parameters).
fn exec(c: &mut Conn, sqlite: &str, pg: &str) -> R<()> {
    match c {
        Conn::Sqlite(c) => c.execute_batch(sqlite)?,
        Conn::Postgres(t) => t.batch_execute(pg)?,
    }
    Ok(())
}

async fn write<T: Send + 'static>(store: &Store, f: impl FnOnce(&mut Conn) -> R<T> + Send + 'static) -> R<T> {
    store.write(f).await
}

async fn read<T: Send + 'static>(store: &Store, f: impl FnOnce(&mut Conn) -> R<T> + Send + 'static) -> R<T> {
    store.read(f).await
}

/// Two organizations, two users of the first, an active and an inactive project and agent config
/// of it, and an agent config of the other. The first organization's settings set a monthly
/// budget (an integer) and a daily one that is not an integer (ignored, on both backends).
async fn seed(store: &Store) {
    write(store, |c| {
        for (id, name, settings) in [
            ("o1", "One", r#"{"limits": {"org_monthly_tokens": 1000, "user_daily_tokens": 2.5}}"#),
            ("o2", "Two", "{}"),
        ] {
            let o = NewOrg {
                id: id.into(),
                name: name.into(),
                domain: None,
                description: None,
                settings: settings.into(),
                now: "2026-03-01T00:00:00.000000Z".into(),
            };
            copilot::store::organizations::insert_org(c, &o)?;
        }
        let users = "INSERT INTO users (id, organization_id, username, email, password_hash, created_at, updated_at) VALUES \
             ('u1', 'o1', 'ann', 'ann@x', 'h', '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z'), \
             ('u2', 'o1', 'bob', 'bob@x', 'h', '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z');";
        let projects = |t: &str, f: &str| {
            format!(
                "INSERT INTO projects (id, organization_id, name, is_active, created_at, updated_at) VALUES \
                 ('p1', 'o1', 'P1', {t}, '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z'), \
                 ('p2', 'o1', 'P2', {f}, '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z'); \
                 INSERT INTO agent_configs (id, organization_id, name, agent_type, is_active, created_at, updated_at) \
                 VALUES ('a1', 'o1', 'Helper', 'hr', {t}, '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z'), \
                 ('a2', 'o1', 'Old', 'hr', {f}, '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z'), \
                 ('a3', 'o2', 'Theirs', 'hr', {t}, '2026-03-01T00:00:00.000000Z', '2026-03-01T00:00:00.000000Z');"
            )
        };
        exec(c, &format!("{users}{}", projects("1", "0")), &format!("{users}{}", projects("true", "false")))
    })
    .await
    .unwrap();
}

fn new_conversation(user: &str, agent: Option<&str>, project: Option<&str>, title: Option<&str>) -> NewConversation {
    NewConversation {
        user_id: user.into(),
        organization_id: "o1".into(),
        agent_config_id: agent.map(str::to_string),
        project_id: project.map(str::to_string),
        title: title.map(str::to_string),
        context: r#"{"k": [1, {"n": null}], "a": "é"}"#.into(),
    }
}

/// Conversations and messages: validation, ownership, filters, order and tie-breaks, totals,
/// JSON and timestamps as text, the message keyset, soft deletes and counts.
async fn conversations_area(store: &Store) {
    let backend = store.backend();
    seed(store).await;
    use copilot::store::conversations as cs;

    // the agent config and the project are checked, with the same messages
    let bad = [
        (Some("a3"), None, "agent_config_id does not name an agent config of the organization"),
        (Some("a2"), None, "agent_config_id names an inactive agent config"),
        (None, Some("p2"), "project_id does not name an active project of the organization"),
        (None, Some("nope"), "project_id does not name an active project of the organization"),
    ];
    for (agent, project, msg) in bad {
        let n = new_conversation("u1", agent, project, None);
        let e = write(store, move |c| cs::insert_conversation(c, &n, "2026-03-02T00:00:00.000000Z")).await.unwrap_err();
        assert!(matches!(&e, StoreError::Invalid(m) if m == msg), "{backend}: {e:?}");
    }

    // five of u1's (two at the same time: the id breaks the tie), one of u2's
    let specs = [
        (Some("a1"), Some("p1"), Some("Budget 100% Tea"), "2026-03-02T00:00:01.000001Z"),
        (None, None, None, "2026-03-02T00:00:02.000000Z"),
        (Some("a1"), None, Some("ACME plans"), "2026-03-02T00:00:03.000000Z"),
        (None, None, Some("acme notes"), "2026-03-02T00:00:03.000000Z"),
        (None, Some("p1"), Some("under_score"), "2026-03-02T00:00:04.500000Z"),
    ];
    let mut made = vec![];
    for (agent, project, title, now) in specs {
        let n = new_conversation("u1", agent, project, title);
        made.push(write(store, move |c| cs::insert_conversation(c, &n, now)).await.unwrap());
    }
    let theirs = {
        let n = new_conversation("u2", None, None, Some("acme of bob"));
        write(store, move |c| cs::insert_conversation(c, &n, "2026-03-02T00:00:09.000000Z")).await.unwrap()
    };
    let first = made[0].clone();
    assert_eq!(
        (first.agent_config_id.as_deref(), first.project_id.as_deref(), first.title.as_deref()),
        (Some("a1"), Some("p1"), Some("Budget 100% Tea")),
        "{backend}"
    );
    assert_eq!(first.context, json!({"a": "é", "k": [1, {"n": null}]}), "{backend}");
    assert_eq!((first.is_archived, first.message_count), (false, 0), "{backend}");
    assert_eq!(
        (first.created_at.as_str(), first.updated_at.as_str()),
        ("2026-03-02T00:00:01.000001Z", "2026-03-02T00:00:01.000001Z"),
        "{backend}"
    );
    assert_eq!((made[1].title.as_deref(), made[1].agent_config_id.as_deref()), (None, None), "{backend}");

    // get: the owner's only
    let id = first.id.clone();
    let (mine, other) =
        read(store, move |c| Ok((cs::get_conversation(c, "u1", &id)?, cs::get_conversation(c, "u2", &id)?)))
            .await
            .unwrap();
    assert_eq!(dbg_text(&mine.as_ref()), dbg_text(&Some(&first)), "{backend}");
    assert!(other.is_none(), "{backend}");

    // list: newest first, ties by id descending; totals; filters
    let list = |f: ConversationFilter, skip: i64, limit: i64| {
        let store = store.clone();
        async move { read(&store, move |c| cs::list_conversations(c, "u1", &f, page(skip, limit))).await.unwrap() }
    };
    let all = || ConversationFilter { search: None, is_archived: None, agent_config_id: None, project_id: None };
    let mut expected: Vec<_> = made.iter().map(|c| (c.created_at.clone(), c.id.clone())).collect();
    expected.sort();
    expected.reverse();
    let (rows, total) = list(all(), 0, 50).await;
    assert_eq!(total, 5, "{backend}");
    assert_eq!(rows.iter().map(|c| (c.created_at.clone(), c.id.clone())).collect::<Vec<_>>(), expected, "{backend}");
    let (rows, total) = list(all(), 2, 2).await;
    assert_eq!((rows.len(), total), (2, 5), "{backend}");
    assert_eq!(rows[0].id, expected[2].1, "{backend}");
    let titles = |rows: &[copilot::model::conversations::Conversation]| {
        rows.iter().map(|c| c.title.clone().unwrap_or_default()).collect::<Vec<_>>()
    };
    // case-insensitive (ASCII), and %, _ are themselves
    let (rows, total) = list(ConversationFilter { search: Some("aCMe".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 2, "{backend}");
    let mut t = titles(&rows);
    t.sort();
    assert_eq!(t, ["ACME plans", "acme notes"], "{backend}");
    let (_, total) = list(ConversationFilter { search: Some("0% t".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 1, "{backend}");
    let (_, total) = list(ConversationFilter { search: Some("%".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 1, "{backend}");
    let (rows, _) = list(ConversationFilter { search: Some("r_s".into()), ..all() }, 0, 50).await;
    assert_eq!(titles(&rows), ["under_score"], "{backend}");
    let (_, total) = list(ConversationFilter { search: Some("e_s".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 0, "{backend}");
    // a NUL is a character like any other (PostgreSQL text cannot hold one: nothing matches)
    let (_, total) = list(ConversationFilter { search: Some("acme\0".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 0, "{backend}");
    let (_, total) = list(ConversationFilter { agent_config_id: Some("a1".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 2, "{backend}");
    let (_, total) = list(ConversationFilter { project_id: Some("p1".into()), ..all() }, 0, 50).await;
    assert_eq!(total, 2, "{backend}");

    // update: clear the title, archive, replace the context; another user's is not found
    let id = made[2].id.clone();
    let changes =
        ConversationChanges { title: Some(None), is_archived: Some(true), context: Some(r#"{"z": true}"#.into()) };
    let (u, other) = write(store, move |c| {
        let u = cs::update_conversation(c, "u1", &id, &changes, "2026-03-03T00:00:00.000000Z")?;
        let other =
            cs::update_conversation(c, "u2", &id, &ConversationChanges::default(), "2026-03-03T00:00:00.000000Z")?;
        Ok((u, other))
    })
    .await
    .unwrap();
    let u = u.unwrap();
    assert!(other.is_none(), "{backend}");
    assert_eq!((u.title, u.is_archived, u.context), (None, true, json!({"z": true})), "{backend}");
    assert_eq!(
        (u.created_at.as_str(), u.updated_at.as_str()),
        ("2026-03-02T00:00:03.000000Z", "2026-03-03T00:00:00.000000Z"),
        "{backend}"
    );
    // a title kept when not named
    let id = made[0].id.clone();
    let kept = write(store, move |c| {
        let ch = ConversationChanges { is_archived: Some(false), ..Default::default() };
        cs::update_conversation(c, "u1", &id, &ch, "2026-03-03T00:00:00.000000Z")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(kept.title.as_deref(), Some("Budget 100% Tea"), "{backend}");
    let (_, archived) = list(ConversationFilter { is_archived: Some(true), ..all() }, 0, 50).await;
    let (_, live) = list(ConversationFilter { is_archived: Some(false), ..all() }, 0, 50).await;
    assert_eq!((archived, live), (1, 4), "{backend}");

    // messages: seven, three posted with one timestamp (on SQLite the id breaks the tie; on
    // PostgreSQL a post whose clock does not read later than the latest message comes 1 µs
    // after it), one of them deleted
    let cid = first.id.clone();
    let times = [
        "2026-03-04T00:00:01.000000Z",
        "2026-03-04T00:00:02.000000Z",
        "2026-03-04T00:00:02.000000Z",
        "2026-03-04T00:00:02.000000Z",
        "2026-03-04T00:00:03.250000Z",
        "2026-03-04T00:00:04.000000Z",
        "2026-03-04T00:00:05.999999Z",
    ];
    let c2 = cid.clone();
    let inserted: Vec<Message> = write(store, move |c| {
        let mut out = vec![];
        for (i, now) in times.iter().enumerate() {
            let role = if i % 2 == 0 { MessageRole::User } else { MessageRole::Assistant };
            let n = NewMessage {
                id: copilot::db::new_id(),
                role,
                content: format!("m{i} ✓"),
                metadata: json!({"i": i, "x": [null]}).to_string(),
            };
            out.push(cs::insert_message(c, "u1", &c2, &n, now)?.unwrap());
        }
        // not the owner's: nothing is added
        let n = NewMessage {
            id: copilot::db::new_id(),
            role: MessageRole::User,
            content: "no".into(),
            metadata: "{}".into(),
        };
        assert!(cs::insert_message(c, "u2", &c2, &n, "2026-03-04T00:00:06.000000Z")?.is_none());
        Ok(out)
    })
    .await
    .unwrap();
    let mut order: Vec<Message> = inserted.clone();
    order.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let gone = order[2].clone();
    let (c2, gid) = (cid.clone(), gone.id.clone());
    let (deleted, again, theirs_del) = write(store, move |c| {
        Ok((
            cs::delete_message(c, "u1", &c2, &gid, "2026-03-05T00:00:00.000000Z")?,
            cs::delete_message(c, "u1", &c2, &gid, "2026-03-05T00:00:00.000000Z")?,
            cs::delete_message(c, "u2", &c2, "whatever", "2026-03-05T00:00:00.000000Z")?,
        ))
    })
    .await
    .unwrap();
    assert_eq!((deleted, again, theirs_del), (true, false, false), "{backend}");
    order.retain(|m| m.id != gone.id);

    let c2 = cid.clone();
    let (conv, page_all, page_mid, none) = read(store, move |c| {
        Ok((
            cs::get_conversation(c, "u1", &c2)?.unwrap(),
            cs::list_messages(c, "u1", &c2, page(0, 50))?.unwrap(),
            cs::list_messages(c, "u1", &c2, page(2, 3))?.unwrap(),
            cs::list_messages(c, "u2", &c2, page(0, 50))?,
        ))
    })
    .await
    .unwrap();
    let c2 = cid.clone();
    let past_the_end = read(store, move |c| cs::list_messages(c, "u1", &c2, page(6, 5))).await.unwrap();
    assert_eq!(
        dbg_text(&past_the_end),
        dbg_text(&Some((Vec::<Message>::new(), 6))),
        "{backend}: an empty page, the total"
    );
    assert_eq!(conv.message_count, 6, "{backend}");
    assert_eq!(conv.updated_at, "2026-03-05T00:00:00.000000Z", "{backend}");
    assert!(none.is_none(), "{backend}");
    assert_eq!(dbg_text(&page_all), dbg_text(&(order.clone(), 6)), "{backend}");
    assert_eq!(dbg_text(&page_mid), dbg_text(&(order[2..5].to_vec(), 6)), "{backend}");
    let m = &page_all.0[0];
    assert_eq!(
        (m.role, m.content.as_str(), &m.metadata, m.created_at.as_str()),
        (MessageRole::User, "m0 ✓", &json!({"i": 0, "x": [null]}), "2026-03-04T00:00:01.000000Z"),
        "{backend}"
    );

    // get_message: the owner's live ones only
    let (c2, mid, gid) = (cid.clone(), order[3].id.clone(), gone.id.clone());
    let (got, deleted_one, other) = read(store, move |c| {
        Ok((
            cs::get_message(c, "u1", &c2, &mid)?,
            cs::get_message(c, "u1", &c2, &gid)?,
            cs::get_message(c, "u2", &c2, &mid)?,
        ))
    })
    .await
    .unwrap();
    assert_eq!(dbg_text(&got.as_ref()), dbg_text(&Some(&order[3])), "{backend}");
    assert!(deleted_one.is_none() && other.is_none(), "{backend}");

    // the keyset: the last key, walks of two from the start and from inside a tie, newest first
    let c2 = cid.clone();
    let o2 = order.clone();
    let (last, walk, from_tie, upto, newest, empty) = read(store, move |c| {
        let last = cs::last_message_key(c, &c2)?.unwrap();
        let mut walk = vec![];
        let mut after = MessageKey::start();
        loop {
            let step = cs::messages_between(c, &c2, &after, &last, 2)?;
            let Some(m) = step.last() else { break };
            after = MessageKey::of(m);
            walk.push(step);
        }
        let from_tie = cs::messages_between(c, &c2, &MessageKey::of(&o2[1]), &last, 10)?;
        let upto = cs::messages_between(c, &c2, &MessageKey::start(), &MessageKey::of(&o2[2]), 10)?;
        let mut newest = vec![];
        cs::newest_messages(c, &c2, &MessageKey::of(&o2[4]), |m| {
            newest.push(m);
            newest.len() < 3
        })?;
        let empty = cs::last_message_key(c, "no-such-conversation")?;
        Ok((last, walk, from_tie, upto, newest, empty))
    })
    .await
    .unwrap();
    assert_eq!(last, MessageKey::of(order.last().unwrap()), "{backend}");
    assert!(empty.is_none(), "{backend}");
    assert_eq!(walk.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2], "{backend}");
    assert_eq!(dbg_text(&walk.concat()), dbg_text(&order), "{backend}");
    assert_eq!(dbg_text(&from_tie), dbg_text(&order[2..].to_vec()), "{backend}");
    assert_eq!(dbg_text(&upto), dbg_text(&order[..3].to_vec()), "{backend}");
    assert_eq!(dbg_text(&newest), dbg_text(&vec![order[4].clone(), order[3].clone(), order[2].clone()]), "{backend}");

    // a longer history, newest first across several reading steps, ties on their boundaries
    let long = made[1].id.clone();
    let all_of_it: Vec<Message> = write(store, move |c| {
        let mut out = vec![];
        for i in 0..70 {
            let now = format!("2026-03-04T01:00:{:02}.000000Z", i / 5);
            let n = NewMessage {
                id: copilot::db::new_id(),
                role: MessageRole::User,
                content: format!("{i}"),
                metadata: "{}".into(),
            };
            out.push(cs::insert_message(c, "u1", &long, &n, &now)?.unwrap());
        }
        Ok(out)
    })
    .await
    .unwrap();
    let mut desc = all_of_it.clone();
    desc.sort_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
    let (long, until) = (made[1].id.clone(), MessageKey::of(&desc[0]));
    let (every, forty) = read(store, move |c| {
        let mut every = vec![];
        cs::newest_messages(c, &long, &until, |m| {
            every.push(m);
            true
        })?;
        let mut forty = vec![];
        cs::newest_messages(c, &long, &until, |m| {
            forty.push(m);
            forty.len() < 40
        })?;
        Ok((every, forty))
    })
    .await
    .unwrap();
    assert_eq!(dbg_text(&every), dbg_text(&desc), "{backend}");
    assert_eq!(dbg_text(&forty), dbg_text(&desc[..40].to_vec()), "{backend}");

    // pages of that history after deletes (the oldest, the newest, inside ties) and posts whose
    // clocks read earlier than the latest message (behind, on the deleted newest's time, on the
    // oldest's): SQLite files them among the others, PostgreSQL 1 µs after the latest one; its
    // places (migrations-postgres/V12) follow every change
    let mut live: Vec<Message> = desc.iter().rev().cloned().collect();
    let doomed: Vec<String> = [0, 69, 33, 34, 12].iter().map(|&i| live[i].id.clone()).collect();
    let (long, d2) = (made[1].id.clone(), doomed.clone());
    let posted: Vec<Message> = write(store, move |c| {
        for (k, mid) in d2.iter().enumerate() {
            assert!(cs::delete_message(c, "u1", &long, mid, "2026-03-04T02:00:00.000000Z")?, "delete {k}");
        }
        let mut out = vec![];
        for (i, now) in [
            "2026-03-04T01:00:03.500000Z", // a clock behind: among the others
            "2026-03-04T01:00:13.000000Z", // the newest's time (it was deleted): a tie either way
            "2026-03-04T01:00:00.000000Z", // the oldest's time, which is a tie of five
            "2026-03-04T03:00:00.000000Z", // the end
        ]
        .iter()
        .enumerate()
        {
            let n = NewMessage {
                id: copilot::db::new_id(),
                role: MessageRole::Assistant,
                content: format!("late {i}"),
                metadata: "{}".into(),
            };
            out.push(cs::insert_message(c, "u1", &long, &n, now)?.unwrap());
        }
        Ok(out)
    })
    .await
    .unwrap();
    live.retain(|m| !doomed.contains(&m.id));
    live.extend(posted);
    live.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    assert_eq!(live.len(), 69, "{backend}");
    let long = made[1].id.clone();
    let pages = read(store, move |c| {
        let mut out = vec![];
        for (skip, limit) in [(0, 100), (0, 7), (7, 7), (30, 11), (60, 9), (64, 10), (68, 1), (69, 5)] {
            out.push((skip, limit, cs::list_messages(c, "u1", &long, page(skip, limit))?.unwrap()));
        }
        Ok(out)
    })
    .await
    .unwrap();
    for (skip, limit, (got, total)) in pages {
        let from = (skip as usize).min(live.len());
        let want = &live[from..(from + limit as usize).min(live.len())];
        assert_eq!(total, 69, "{backend}: skip {skip}");
        assert_eq!(dbg_text(&got), dbg_text(&want.to_vec()), "{backend}: skip {skip}");
    }
    let long = made[1].id.clone();
    let (all_pages, one_by_one) = read(store, move |c| {
        let all = cs::list_messages(c, "u1", &long, page(0, 100))?.unwrap().0;
        let mut one_by_one = vec![];
        for skip in 0..70 {
            one_by_one.extend(cs::list_messages(c, "u1", &long, page(skip, 1))?.unwrap().0);
        }
        Ok((all, one_by_one))
    })
    .await
    .unwrap();
    assert_eq!(dbg_text(&all_pages), dbg_text(&live), "{backend}");
    assert_eq!(dbg_text(&one_by_one), dbg_text(&live), "{backend}: every place once");

    // delete the conversation: gone for every read, its rows kept (soft delete)
    let (c2, tid) = (cid.clone(), theirs.id.clone());
    let (d1, d2, not_mine) = write(store, move |c| {
        Ok((
            cs::delete_conversation(c, "u1", &c2, "2026-03-06T00:00:00.000000Z")?,
            cs::delete_conversation(c, "u1", &c2, "2026-03-06T00:00:00.000000Z")?,
            cs::delete_conversation(c, "u1", &tid, "2026-03-06T00:00:00.000000Z")?,
        ))
    })
    .await
    .unwrap();
    assert_eq!((d1, d2, not_mine), (true, false, false), "{backend}");
    let (c2, mid) = (cid.clone(), order[0].id.clone());
    let (conv, msgs, msg, kept_rows) = read(store, move |c| {
        Ok((
            cs::get_conversation(c, "u1", &c2)?,
            cs::list_messages(c, "u1", &c2, page(0, 10))?,
            cs::get_message(c, "u1", &c2, &mid)?,
            count(
                c,
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1",
                "SELECT COUNT(*) FROM messages WHERE conversation_id = $1",
                &c2,
            )?,
        ))
    })
    .await
    .unwrap();
    assert!(conv.is_none() && msgs.is_none() && msg.is_none(), "{backend}");
    assert_eq!(kept_rows, 7, "{backend}");
    let (_, total) = list(all(), 0, 50).await;
    assert_eq!(total, 4, "{backend}");
}

fn job(id: &str, conversation: &str, user: &str, agent: Option<&str>, model: &str) -> NewJob {
    NewJob {
        id: id.into(),
        conversation_id: conversation.into(),
        user_id: user.into(),
        organization_id: "o1".into(),
        agent_config_id: agent.map(str::to_string),
        provider: format!("prov-{model}"),
        model: model.into(),
        user_message_id: format!("msg-{id}"),
        instance_id: None,
    }
}

fn end(status: JobStatus, prompt: i64, completion: i64) -> JobEnd<'static> {
    JobEnd {
        status,
        assistant_message_id: Some("am"),
        error: None,
        finish_reason: Some("stop"),
        prompt_tokens: prompt,
        completion_tokens: completion,
        last_event_id: 7,
    }
}

/// Completion jobs, usage reports and the limits that read them.
async fn completions_and_limits_area(store: &Store) {
    let backend = store.backend();
    seed(store).await;
    use copilot::store::{completions as js, conversations as cs, limits as ls};
    let (c1, c2) = write(store, |c| {
        let a =
            cs::insert_conversation(c, &new_conversation("u1", Some("a1"), None, None), "2026-03-02T00:00:00.000000Z")?;
        let b = cs::insert_conversation(c, &new_conversation("u2", None, None, None), "2026-03-02T00:00:00.000000Z")?;
        Ok((a.id, b.id))
    })
    .await
    .unwrap();

    // one running job per conversation: the second is a conflict with SQLite's message
    let (a, b) = (c1.clone(), c1.clone());
    write(store, move |c| js::insert_job(c, &job("j1", &a, "u1", Some("a1"), "alpha"), "2026-03-04T10:00:00.000000Z"))
        .await
        .unwrap();
    let e = write(store, move |c| js::insert_job(c, &job("j2", &b, "u1", None, "Zeta"), "2026-03-05T23:59:59.999999Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m == "A reply is already being generated in this conversation; wait for it or cancel it"),
        "{backend}: {e:?}"
    );
    let (a, b) = (c1.clone(), c2.clone());
    write(store, move |c| {
        js::finish_job(c, "j1", &end(JobStatus::Completed, 10, 5), "2026-03-04T10:00:01.500000Z")?;
        // a closed job stays as it is
        js::finish_job(c, "j1", &end(JobStatus::Failed, 99, 99), "2026-03-04T11:00:00.000000Z")?;
        js::insert_job(c, &job("j2", &a, "u1", None, "Zeta"), "2026-03-05T23:59:59.999999Z")?;
        js::finish_job(c, "j2", &end(JobStatus::Cancelled, 100, 1), "2026-03-06T00:00:00.000000Z")?;
        js::insert_job(c, &job("j3", &b, "u2", Some("a1"), "alpha"), "2026-03-05T00:00:00.000000Z")?;
        // a job of March's last second and one of April: outside the reports below
        js::insert_job(c, &job("j4", &a, "u1", None, "alpha"), "2026-04-01T00:00:00.000000Z")?;
        js::finish_job(c, "j4", &end(JobStatus::Completed, 1000, 1000), "2026-04-01T00:00:00.000000Z")
    })
    .await
    .unwrap();

    let (a, b) = (c1.clone(), c2.clone());
    let (j1, running, other) = read(store, move |c| {
        Ok((
            js::get_job(c, "u1", &a, "j1")?.unwrap(),
            js::get_job(c, "u2", &b, "j3")?.unwrap(),
            js::get_job(c, "u2", &a, "j1")?,
        ))
    })
    .await
    .unwrap();
    assert!(other.is_none(), "{backend}");
    assert_eq!(
        (j1.status, j1.prompt_tokens, j1.completion_tokens, j1.last_event_id),
        (JobStatus::Completed, 10, 5, 7),
        "{backend}"
    );
    assert_eq!(
        (j1.assistant_message_id.as_deref(), j1.finish_reason.as_deref(), j1.error.as_deref()),
        (Some("am"), Some("stop"), None),
        "{backend}"
    );
    assert_eq!(
        (j1.created_at.as_str(), j1.finished_at.as_deref(), j1.agent_config_id.as_deref(), j1.provider.as_str()),
        ("2026-03-04T10:00:00.000000Z", Some("2026-03-04T10:00:01.500000Z"), Some("a1"), "prov-alpha"),
        "{backend}"
    );
    assert_eq!(
        (running.status, running.finished_at, running.last_event_id),
        (JobStatus::Running, None, 0),
        "{backend}"
    );
    // the check a job's instance makes before it stores the reply: running, ended, unknown
    let held = write(store, |c| {
        Ok((js::hold_running_job(c, "j3")?, js::hold_running_job(c, "j1")?, js::hold_running_job(c, "nope")?))
    })
    .await
    .unwrap();
    assert_eq!(held, (true, false, false), "{backend}");

    // limits: the organization's own monthly budget, the daily default (its 2.5 is no integer)
    let defaults =
        LimitsConfig { user_daily_tokens: 100, org_monthly_tokens: 5, max_jobs_per_user: 1, ..Default::default() };
    let now =
        time::OffsetDateTime::parse("2026-03-05T12:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
    let (month, day) = (Period::month(now), Period::day(now));
    let (d, m, dd) = (defaults.clone(), month.clone(), day.clone());
    let (budgets, org_spent, u1_day, u2_day, u1_running, u2_running, in_force, org_force) = read(store, move |c| {
        Ok((
            ls::org_budgets(c, &d, "o1")?,
            ls::org_spent(c, "o1", &m)?,
            ls::user_spent(c, "o1", "u1", &dd)?,
            ls::user_spent(c, "o1", "u2", &dd)?,
            ls::running_jobs(c, "u1")?,
            ls::running_jobs(c, "u2")?,
            ls::budgets_in_force(c, &d, "o1", Some("u1"), &m, &dd)?,
            ls::budgets_in_force(c, &d, "o2", None, &m, &dd)?,
        ))
    })
    .await
    .unwrap();
    assert_eq!((budgets.org_monthly_tokens, budgets.user_daily_tokens), (1000, 100), "{backend}");
    assert_eq!((org_spent, u1_day, u2_day), (116, 101, 0), "{backend}");
    assert_eq!((u1_running, u2_running), (0, 1), "{backend}");
    assert_eq!(
        in_force.iter().map(|b| (b.name.as_str(), b.limit, b.used, b.remaining)).collect::<Vec<_>>(),
        [("user_daily_tokens", 100, 101, 0), ("org_monthly_tokens", 1000, 116, 884)],
        "{backend}"
    );
    assert_eq!(in_force[0].resets_at, "2026-03-06T00:00:00.000000Z", "{backend}");
    assert_eq!(
        org_force.iter().map(|b| (b.name.as_str(), b.limit, b.used)).collect::<Vec<_>>(),
        [("org_monthly_tokens", 5, 0)],
        "{backend}"
    );
    // admission: u2 has its one running reply; u1's day is spent; o2's month has room
    let d = defaults.clone();
    let (u2, u1, other_org) = write(store, move |c| {
        Ok((
            ls::admit_job(c, &d, "o1", "u2", now).unwrap_err(),
            ls::admit_job(c, &d, "o1", "u1", now).unwrap_err(),
            ls::admit_job(c, &d, "o2", "u1", now).is_ok(),
        ))
    })
    .await
    .unwrap();
    assert!(matches!(&u2, StoreError::Conflict(m) if m.contains("max_jobs_per_user")), "{backend}: {u2:?}");
    assert!(
        matches!(&u1, StoreError::Exhausted { detail, retry_after: 43200 } if detail.contains("daily token budget (100 tokens)")),
        "{backend}: {u1:?}"
    );
    assert!(other_org, "{backend}");

    // usage: one row per group in the byte order of its key (NULL first), UTC days
    let report = |user: Option<&'static str>, group| {
        let store = store.clone();
        async move {
            read(&store, move |c| {
                js::usage(c, "o1", user, "2026-03-01T00:00:00.000000Z", "2026-04-01T00:00:00.000000Z", group)
            })
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.label, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.requests))
            .collect::<Vec<_>>()
        }
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        report(None, UsageGroup::Day).await,
        [(s("2026-03-04"), None, 10, 5, 15, 1), (s("2026-03-05"), None, 100, 1, 101, 2)],
        "{backend}"
    );
    assert_eq!(
        report(None, UsageGroup::Model).await,
        [(s("Zeta"), s("prov-Zeta"), 100, 1, 101, 1), (s("alpha"), s("prov-alpha"), 10, 5, 15, 2)],
        "{backend}"
    );
    assert_eq!(
        report(None, UsageGroup::AgentConfig).await,
        [(None, None, 100, 1, 101, 1), (s("a1"), s("Helper"), 10, 5, 15, 2)],
        "{backend}"
    );
    assert_eq!(
        report(None, UsageGroup::User).await,
        [(s("u1"), s("ann"), 110, 6, 116, 2), (s("u2"), s("bob"), 0, 0, 0, 1)],
        "{backend}"
    );
    assert_eq!(report(Some("u2"), UsageGroup::User).await, [(s("u2"), s("bob"), 0, 0, 0, 1)], "{backend}");
    assert!(report(Some("nobody"), UsageGroup::Day).await.is_empty(), "{backend}");

    // start-up recovery: the running job fails, its last event id at least 2; others stay
    let b = c2.clone();
    let (n, again, j3, j1) = write(store, move |c| {
        let n = js::fail_interrupted_jobs(c, "server restarted", "2026-03-07T00:00:00.000000Z")?;
        let again = js::fail_interrupted_jobs(c, "server restarted", "2026-03-07T00:00:00.000000Z")?;
        Ok((n, again, js::get_job(c, "u2", &b, "j3")?.unwrap(), js::get_job(c, "u1", &c1, "j1")?.unwrap()))
    })
    .await
    .unwrap();
    assert_eq!((n, again), (1, 0), "{backend}");
    assert_eq!(
        (j3.status, j3.error.as_deref(), j3.finished_at.as_deref(), j3.last_event_id),
        (JobStatus::Failed, Some("server restarted"), Some("2026-03-07T00:00:00.000000Z"), 2),
        "{backend}"
    );
    assert_eq!((j1.status, j1.last_event_id), (JobStatus::Completed, 7), "{backend}");
    // a deleted conversation's jobs are not found through it
    let b = c2.clone();
    let gone = write(store, move |c| {
        cs::delete_conversation(c, "u2", &b, "2026-03-08T00:00:00.000000Z")?;
        js::get_job(c, "u2", &b, "j3")
    })
    .await
    .unwrap();
    assert!(gone.is_none(), "{backend}");
}

/// The audit log: record (in the caller's transaction), list with filters newest first, JSON
/// changes and NULLs, retract, prune by age in batches.
async fn audit_area(store: &Store) {
    let backend = store.backend();
    use copilot::store::audit;
    let actor = Actor { user_id: Some("u1".into()), api_key_id: None, ..Default::default() };
    let seqs = write(store, move |c| {
        let mut seqs = vec![];
        seqs.push(audit::record(
            c,
            &actor,
            &Event::new("user.create", "o1", "user", "u9").changes(Some(json!({"username": "zed", "n": [1, null]}))),
        )?);
        seqs.push(audit::record(c, &Actor::default(), &Event::new("user.update", "o1", "user", "u9"))?);
        let system = Event {
            action: "server.start",
            organization_id: None,
            target_type: "server",
            target_id: None,
            changes: None,
        };
        seqs.push(audit::record(c, &actor, &system)?);
        seqs.push(audit::record(c, &actor, &Event::new("user.create", "o2", "user", "u8"))?);
        Ok(seqs)
    })
    .await
    .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{backend}: {seqs:?}");

    let list = |f: Filter, skip: i64, limit: i64| {
        let store = store.clone();
        async move { read(&store, move |c| audit::list(c, &f, page(skip, limit))).await.unwrap() }
    };
    let (rows, total) = list(Filter::default(), 0, 50).await;
    assert_eq!(total, 4, "{backend}");
    assert_eq!(
        rows.iter().map(|e| (e.action.as_str(), e.organization_id.as_deref())).collect::<Vec<_>>(),
        [("user.create", Some("o2")), ("server.start", None), ("user.update", Some("o1")), ("user.create", Some("o1"))],
        "{backend}"
    );
    let first = &rows[3];
    assert_eq!(first.changes, Some(json!({"n": [1, null], "username": "zed"})), "{backend}");
    assert_eq!(
        (
            first.actor_user_id.as_deref(),
            first.actor_api_key_id.as_deref(),
            first.target_type.as_deref(),
            first.target_id.as_deref()
        ),
        (Some("u1"), None, Some("user"), Some("u9")),
        "{backend}"
    );
    assert_eq!((rows[2].changes.as_ref(), rows[2].actor_user_id.as_deref()), (None, None), "{backend}");
    assert_eq!((rows[1].target_id.as_deref(), rows[1].organization_id.as_deref()), (None, None), "{backend}");
    // the API's timestamp text: UTC, microseconds
    assert!(
        first.at.len() == 27 && first.at.ends_with('Z') && first.at.as_bytes()[19] == b'.',
        "{backend}: {}",
        first.at
    );
    let (rows, total) = list(Filter::default(), 1, 2).await;
    assert_eq!((rows.len(), total, rows[0].action.as_str()), (2, 4, "server.start"), "{backend}");

    let f = |org: Option<&str>, action: Option<&str>| Filter {
        organization_id: org.map(str::to_string),
        action: action.map(str::to_string),
        ..Filter::default()
    };
    assert_eq!(list(f(Some("o1"), None), 0, 50).await.1, 2, "{backend}");
    assert_eq!(list(f(None, Some("user.create")), 0, 50).await.1, 2, "{backend}");
    assert_eq!(list(f(Some("o1"), Some("user.create")), 0, 50).await.1, 1, "{backend}");
    assert_eq!(list(f(None, Some("user.create\0")), 0, 50).await.1, 0, "{backend}");
    let by = |field: &str| {
        let mut fl = Filter::default();
        match field {
            "actor" => fl.actor_user_id = Some("u1".into()),
            "type" => fl.target_type = Some("server".into()),
            _ => fl.target_id = Some("u8".into()),
        }
        fl
    };
    assert_eq!(list(by("actor"), 0, 50).await.1, 3, "{backend}");
    assert_eq!(list(by("type"), 0, 50).await.1, 1, "{backend}");
    assert_eq!(list(by("target"), 0, 50).await.1, 1, "{backend}");
    // inclusive bounds: `from`/`to` at an event's own time include it
    let at = first.at.clone();
    let bounds = |from: Option<&str>, to: Option<&str>| Filter {
        from: from.map(str::to_string),
        to: to.map(str::to_string),
        ..f(Some("o1"), Some("user.create"))
    };
    assert_eq!(list(bounds(Some(&at), Some(&at)), 0, 50).await.1, 1, "{backend}");
    assert_eq!(list(bounds(Some("2000-01-01T00:00:00.000000Z"), None), 0, 50).await.1, 1, "{backend}");
    assert_eq!(list(bounds(None, Some("2000-01-01T00:00:00.000000Z")), 0, 50).await.1, 0, "{backend}");

    // retract, then prune the events older than a cutoff, oldest first, in batches
    let s = seqs.clone();
    let (pruned, left) = write(store, move |c| {
        audit::retract(c, s[1])?;
        exec(
            c,
            &format!("UPDATE audit_events SET at = '2025-01-01T00:00:00.000000Z' WHERE seq IN ({}, {})", s[0], s[2]),
            &format!("UPDATE audit_events SET at = '2025-01-01T00:00:00.000000Z' WHERE seq IN ({}, {})", s[0], s[2]),
        )?;
        let cutoff = "2025-06-01T00:00:00.000000Z";
        let pruned = [audit::prune(c, cutoff, 1)?, audit::prune(c, cutoff, 1)?, audit::prune(c, cutoff, 1)?];
        let (rows, _) = audit::list(c, &Filter::default(), page(0, 50))?;
        Ok((pruned, rows.into_iter().map(|e| e.action).collect::<Vec<_>>()))
    })
    .await
    .unwrap();
    assert_eq!(pruned, [1, 1, 0], "{backend}");
    assert_eq!(left, ["user.create"], "{backend}");
    // a failed write takes its events with it
    let e = write(store, |c| -> R<()> {
        audit::record(c, &Actor::default(), &Event::new("role.delete", "o1", "role", "r1"))?;
        Err(StoreError::conflict("no"))
    })
    .await;
    assert!(e.is_err());
    assert_eq!(list(Filter::default(), 0, 50).await.1, 1, "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conversations_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conversations_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_conversations_area_on_postgres() {
    on_postgres("postgres_conversations_area_on_postgres", |store| async move { conversations_area(&store).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completions_and_limits_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    completions_and_limits_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_completions_and_limits_area_on_postgres() {
    on_postgres("postgres_completions_and_limits_area_on_postgres", |store| async move {
        completions_and_limits_area(&store).await
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    audit_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_audit_area_on_postgres() {
    on_postgres("postgres_audit_area_on_postgres", |store| async move { audit_area(&store).await });
}

/// migrations-postgres/V12 on a database an older build filled: every live message gets its
/// place in the list order (ties by id, deleted ones left out), each conversation its count and
/// the key of its latest message, and the pages and posts that follow use them.
#[test]
fn postgres_message_positions_are_filled_in_by_their_migration() {
    use copilot::store::conversations as cs;
    let Some(db) = crate::postgres::test_db("postgres_message_positions_are_filled_in_by_their_migration") else {
        return;
    };
    let pool = crate::postgres::pool(&db.url);
    copilot::pg::migrate_until(&pool, Some(11)).unwrap();
    let store = Store::Postgres(pool.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        seed(&store).await;
        let made = write(&store, |c| {
            let a = cs::insert_conversation(
                c,
                &new_conversation("u1", None, None, Some("a")),
                "2026-03-02T00:00:00.000000Z",
            )?;
            let b = cs::insert_conversation(
                c,
                &new_conversation("u1", None, None, Some("b")),
                "2026-03-02T00:00:00.000000Z",
            )?;
            let e = cs::insert_conversation(
                c,
                &new_conversation("u1", None, None, Some("e")),
                "2026-03-02T00:00:00.000000Z",
            )?;
            Ok((a.id, b.id, e.id))
        })
        .await
        .unwrap();
        let (a, b) = (made.0.clone(), made.1.clone());
        // as V11's insert wrote them (no place), three on one timestamp, one deleted, the count wrong
        write(&store, move |c| {
            let Conn::Postgres(t) = c else { unreachable!() };
            for (i, (conv, at, active)) in [
                (&a, "2026-03-04T00:00:03Z", true),
                (&a, "2026-03-04T00:00:01Z", true),
                (&a, "2026-03-04T00:00:02Z", true),
                (&a, "2026-03-04T00:00:02Z", false),
                (&a, "2026-03-04T00:00:02Z", true),
                (&a, "2026-03-04T00:00:02Z", true),
                (&b, "2026-03-04T00:00:09Z", true),
            ]
            .iter()
            .enumerate()
            {
                t.execute(
                    "INSERT INTO messages (id, conversation_id, role, content, metadata, is_active, created_at) \
                     VALUES ($1, $2, 'user', $3, '{}', $4, $5::text::timestamptz)",
                    &[&copilot::db::new_id(), conv, &format!("m{i}"), active, at],
                )?;
            }
            t.execute("UPDATE conversations SET message_count = 99 WHERE id = $1", &[&a])?;
            Ok(())
        })
        .await
        .unwrap();
    });
    copilot::pg::migrate(&pool).unwrap();
    runtime.block_on(async {
        let (a, b, e) = read(&store, |c| {
            let Conn::Postgres(t) = c else { unreachable!() };
            let made: Vec<String> =
                t.query("SELECT id FROM conversations ORDER BY title", &[])?.iter().map(|r| r.get(0)).collect();
            Ok((made[0].clone(), made[1].clone(), made[2].clone()))
        })
        .await
        .unwrap();
        let (a2, b2, e2) = (a.clone(), b.clone(), e.clone());
        let (rows, convs) = read(&store, move |c| {
            let Conn::Postgres(t) = c else { unreachable!() };
            let rows: Vec<(String, String, Option<i64>)> = t
                .query(
                    "SELECT conversation_id, content, position FROM messages \
                     ORDER BY conversation_id, created_at, id",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let convs: Vec<(i64, bool)> = [&a2, &b2, &e2]
                .iter()
                .map(|id| {
                    let r = t.query_one(
                        "SELECT c.message_count, c.last_message_at IS NOT DISTINCT FROM \
                         (SELECT max(created_at) FROM messages WHERE conversation_id = c.id AND is_active) \
                         FROM conversations c WHERE c.id = $1",
                        &[id],
                    )?;
                    Ok((r.get(0), r.get(1)))
                })
                .collect::<R<_>>()?;
            Ok((rows, convs))
        })
        .await
        .unwrap();
        let places = |conv: &str| -> Vec<Option<i64>> { rows.iter().filter(|r| r.0 == conv).map(|r| r.2).collect() };
        // a: m1 (01s), then the 02s tie by id (one of them deleted, no place), then m0 (03s)
        let of_a: Vec<&str> = rows.iter().filter(|r| r.0 == a && r.2.is_some()).map(|r| r.1.as_str()).collect();
        assert_eq!((of_a.first(), of_a.last(), of_a.len()), (Some(&"m1"), Some(&"m0"), 5), "{rows:?}");
        assert_eq!(places(&a).into_iter().flatten().collect::<Vec<_>>(), [0, 1, 2, 3, 4], "{rows:?}");
        assert_eq!(places(&b), [Some(0)], "{rows:?}");
        assert_eq!(convs, [(5, true), (1, true), (0, true)]);

        // the pages read the places; posts are appended, one whose clock reads earlier than the
        // latest message 1 µs after it
        let a2 = a.clone();
        let (before, posted, behind, after) = write(&store, move |c| {
            let before = cs::list_messages(c, "u1", &a2, page(1, 3))?.unwrap();
            let n = |content: &str| NewMessage {
                id: copilot::db::new_id(),
                role: MessageRole::Assistant,
                content: content.into(),
                metadata: "{}".into(),
            };
            let posted = cs::insert_message(c, "u1", &a2, &n("new"), "2026-03-05T00:00:00.000000Z")?.unwrap();
            let behind = cs::insert_message(c, "u1", &a2, &n("behind"), "2026-03-01T00:00:00.000000Z")?.unwrap();
            let after = cs::list_messages(c, "u1", &a2, page(4, 10))?.unwrap();
            Ok((before, posted, behind, after))
        })
        .await
        .unwrap();
        assert_eq!(
            (posted.created_at.as_str(), behind.created_at.as_str()),
            ("2026-03-05T00:00:00.000000Z", "2026-03-05T00:00:00.000001Z")
        );
        let ordered: Vec<&str> = rows.iter().filter(|r| r.0 == a && r.2.is_some()).map(|r| r.1.as_str()).collect();
        let contents = |ms: &[Message]| ms.iter().map(|m| m.content.clone()).collect::<Vec<_>>();
        assert_eq!((contents(&before.0), before.1), (ordered[1..4].iter().map(|s| s.to_string()).collect(), 5));
        assert_eq!((contents(&after.0), after.1), (vec!["m0".to_string(), "new".into(), "behind".into()], 7));
        assert_eq!(dbg_text(&after.0[1..].to_vec()), dbg_text(&vec![posted, behind]));
    });
    drop(runtime);
    drop(store);
    drop(pool);
    drop(db);
}
