//! `millrace outbox migrate|status|revive` against a private PostgreSQL.

use millrace_tests::PostgresServer;

use crate::common::Env;

fn sql(url: &str, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(*s))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    });
}

#[test]
fn outbox_migrate_status_and_revive() {
    let env = Env::new();
    let pg = PostgresServer::start_local().unwrap_or_else(|e| panic!("{e}"));
    let db = pg.url();
    let with_db = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--database-url", db.as_str()]);
        env.run(&a)
    };
    let out = with_db(&["outbox", "migrate"]).ok();
    assert!(
        out.stdout.contains("outbox tables are up to date"),
        "{out:?}"
    );
    with_db(&["outbox", "migrate"]).ok(); // idempotent

    sql(
        &db,
        &[
            "INSERT INTO millrace_outbox (queue, name, payload) VALUES ('emails', 'send', '{}'), ('emails', 'send', '{}')",
            "UPDATE millrace_outbox SET attempts = 3, last_error = 'redis relay failed: WRONGTYPE', retry_at = now() + interval '1 minute' WHERE id = 1",
            "INSERT INTO millrace_outbox (queue, name, payload, dead_at, last_error) VALUES ('emails', 'send', '{}', now(), 'job id \"x\" is already scheduled')",
        ],
    );
    let s = with_db(&["--json", "outbox", "status"]).ok().json();
    assert_eq!(s["waiting"], 2, "{s}");
    assert_eq!(s["failing"], 1, "{s}");
    assert_eq!(s["dead"], 1, "{s}");
    assert_eq!(s["problems"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(s["problems"][1]["dead"], true, "{s}");
    let text = with_db(&["outbox", "status"]).ok().stdout;
    assert!(text.contains("waiting 2  failing 1  dead 1"), "{text}");
    assert!(
        text.contains("WRONGTYPE") && text.contains("retrying"),
        "{text}"
    );

    let err = with_db(&["outbox", "revive"]).err();
    assert!(err.contains("--all"), "{err}");
    let r = with_db(&["--json", "outbox", "revive", "--all"])
        .ok()
        .json();
    assert_eq!(r["revived"], 1, "{r}");
    let s = with_db(&["--json", "outbox", "status"]).ok().json();
    assert_eq!(
        (s["waiting"].as_i64(), s["dead"].as_i64()),
        (Some(3), Some(0)),
        "{s}"
    );
}

#[test]
fn outbox_commands_name_an_unreachable_database_without_its_password() {
    let env = Env::new();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/app");
    let err = env.run(&["outbox", "status", "--database-url", &url]).err();
    assert!(
        err.contains(&format!(
            "cannot connect to Postgres at postgres://app:***@127.0.0.1:{port}/app"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
