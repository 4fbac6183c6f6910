//! The outbox relay as the README's least-privilege `millrace-relay` user
//! (its `acl-users` block, read by the harness): rows due now and later
//! are relayed, marks let go after the commit, and not one command is
//! denied.

use std::time::Duration;

use millrace::outbox;
use millrace_core::CancellationToken;
use millrace_postgres::Relay;
use millrace_tests::readme_acl_users;

use crate::common::{Ping, assert_exactly_once, env, eventually};

#[tokio::test]
async fn the_relay_runs_as_its_acl_user_without_a_denied_command() {
    let env = env().await;
    let users = readme_acl_users().unwrap_or_else(|e| panic!("{e}"));
    env.redis
        .create_users(&users)
        .unwrap_or_else(|e| panic!("the README's ACL lines fail: {e}"));
    let relay_user = users
        .iter()
        .find(|u| u.name == "millrace-relay")
        .unwrap_or_else(|| panic!("the README has no millrace-relay user"));
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let mut committed = Vec::new();
    for n in 0..20 {
        let id = outbox::enqueue(&mut tx, &Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        committed.push(id.0);
    }
    let later = outbox::enqueue_in(&mut tx, &Ping { n: 99 }, Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    committed.push(later.0);
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    let relay = Relay::new(&env.db_url, &env.redis.url_as(relay_user), env.config())
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    eventually("the outbox to empty", || async {
        env.outbox_rows().await == 0
    })
    .await;
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_exactly_once(&env.jobs_in("outbox"), &committed);
    assert_eq!(env.marks("outbox"), 0, "marks let go after the commit");
    let denied = env
        .redis
        .acl_denials("millrace-relay")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(denied.is_empty(), "the relay was denied {denied:?}");
}
