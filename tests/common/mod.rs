//! One database per test, on either backend, behind one handle.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::sync::Mutex;
use vevee_attributes::storage::{self, Store, StoreOptions};

/// Emits every listed test twice, as `sqlite::name` and `postgres::name`, each
/// calling the shared `async fn name(db: &TestDb)` with a database of its own.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite();
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::common::TestDb::postgres(stringify!($name)).await
                    else {
                        return;
                    };
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// A fresh, empty database that only this test uses.
pub(crate) struct TestDb {
    /// The URL a store connects to.
    pub(crate) url: String,
    backend: Backend,
}

enum Backend {
    /// Held so the directory (and the database file) lives as long as the test.
    Sqlite { _dir: TempDir },
    Postgres {
        admin_url: String,
        name: String,
        /// Opened on first use and kept, so that checks can run often.
        watcher: Mutex<Option<PgConnection>>,
    },
}

impl TestDb {
    /// A database file in a temporary directory of its own.
    pub(crate) fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        TestDb {
            url,
            backend: Backend::Sqlite { _dir: dir },
        }
    }

    /// A database with a random name on the PostgreSQL of `TEST_DATABASE_URL`
    /// (default: the local one). `None` means PostgreSQL is unreachable and the
    /// test is skipped, which is only allowed outside CI.
    pub(crate) async fn postgres(test: &str) -> Option<TestDb> {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut admin = match admin_connection(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                let shown = redacted(&admin_url);
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL unreachable at {shown} and CI=true, so {test} fails: {e}");
                }
                // Straight to the process's stderr: the test harness
                // captures eprintln! of passing tests, and a skip must show.
                let line = format!("SKIPPED (PostgreSQL unreachable at {shown}): {test}: {e}\n");
                std::io::stderr().write_all(line.as_bytes()).ok();
                return None;
            }
        };
        let name = format!("vevee_test_{}", uuid::Uuid::new_v4().simple());
        // A database name cannot be a bound parameter; this one is generated
        // above from hex digits only.
        //
        // A linguistic default collation (ICU en-US sorts "_x" before "0x"
        // and "B" between "aa" and "Zeta"), so that the byte-order tests
        // prove the schema asks for byte order instead of inheriting it
        // from a C-collated cluster.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        );
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(icu))
            .execute(&mut admin)
            .await
        {
            eprintln!("{test}: no ICU collation ({e}); the database gets the cluster default");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .expect("create the test database");
        }
        admin.close().await.ok();
        let url = replace_database(&admin_url, &name);
        Some(TestDb {
            url,
            backend: Backend::Postgres {
                admin_url,
                name,
                watcher: Mutex::new(None),
            },
        })
    }

    /// A migrated store with the default options.
    pub(crate) async fn store(&self) -> Arc<dyn Store> {
        self.store_with(&StoreOptions::default()).await
    }

    /// A migrated store with `opts`.
    pub(crate) async fn store_with(&self, opts: &StoreOptions) -> Arc<dyn Store> {
        let store = storage::connect(&self.url, opts)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        store.migrate().await.expect("migrate");
        store
    }

    /// A URL of the same backend whose database cannot be reached.
    pub(crate) fn unreachable_url(&self) -> String {
        match &self.backend {
            // Root ignores permissions, so a directory where the file should
            // be is the reliable way to make it unopenable. (A missing
            // directory is a configuration error, not an outage.)
            Backend::Sqlite { _dir } => format!("sqlite://{}", _dir.path().display()),
            // Port 1 (tcpmux) is not served here: the connection is refused.
            Backend::Postgres { .. } => "postgres://postgres@127.0.0.1:1/test".to_owned(),
        }
    }

    /// How many connections to this test's database sit inside a transaction
    /// with nothing running (always 0 for SQLite, whose connections are
    /// private to the process).
    pub(crate) async fn idle_in_transaction(&self) -> i64 {
        let Backend::Postgres {
            admin_url,
            name,
            watcher,
        } = &self.backend
        else {
            return 0;
        };
        let mut watcher = watcher.lock().await;
        if watcher.is_none() {
            *watcher = Some(admin_connection(admin_url).await.expect("admin connection"));
        }
        let conn = watcher.as_mut().expect("opened above");
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(name)
        .fetch_one(conn)
        .await
        .expect("count idle transactions")
    }

    /// Drops the PostgreSQL database of a test that passed (a failed test
    /// panics before this and leaves its database to look at).
    pub(crate) async fn finish(self) {
        if let Backend::Postgres {
            admin_url,
            name,
            watcher,
        } = self.backend
        {
            if let Some(conn) = watcher.into_inner() {
                conn.close().await.ok();
            }
            let mut admin = admin_connection(&admin_url)
                .await
                .expect("admin connection");
            // FORCE ends the connections the test's pools still hold.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("drop the test database");
            admin.close().await.ok();
        }
    }
}

async fn admin_connection(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out after 5s".to_owned()),
    }
}

/// `url` with its path (the database name) replaced by `database`.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` without the password, for messages.
fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[scheme_end..].find('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..scheme_end + colon], &url[at..]),
        None => url.to_owned(),
    }
}
