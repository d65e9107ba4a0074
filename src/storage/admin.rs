//! The administrative half ([`AdminStore`]), written once for both backends.
//!
//! The two dialects agree on every admin statement: sqlx's SQLite driver
//! takes `$N` placeholders as PostgreSQL does, both have `RETURNING`, and the
//! ids, times, JSON and booleans bind and decode through the same Rust types.
//! What differs is only where a statement runs (SQLite writes on its single
//! writer connection and reads on the reader pool; PostgreSQL runs both on
//! its one pool) and which migrations apply, so those are the arguments.
//!
//! Why a `macro_rules!` rather than functions generic over `sqlx::Database`:
//! a generic body needs a where-clause of higher-ranked `Encode`, `Type`,
//! `FromRow` and `Executor` bounds for every type it binds or reads, longer
//! than the code it shares, and the futures it hands to `detached` must then
//! be proven `Send` through those bounds. The macro expands to the ordinary,
//! concrete `impl AdminStore` each backend had, type-checked against its own
//! driver, and the spans keep their targets (`module_path!()` is the
//! invoking backend's module, so `storage::sqlite` and `storage::postgres`
//! log filters still match).
//!
//! [`AdminStore`]: crate::storage::AdminStore

/// Implements [`AdminStore`](crate::storage::AdminStore) for `$store`: reads
/// run on the pool in the field named after `reads:`, writes (and migrations)
/// on the one after `writes:`, and `migrator:` is the `sqlx::migrate!(..)`
/// of the backend's schema. Backups differ by backend: `$store` has an
/// inherent `async fn backup_into(&self, &Path) -> Result<()>`.
macro_rules! sql_admin_store {
    ($store:ty { reads: $reader:ident, writes: $writer:ident, migrator: $migrator:expr $(,)? }) => {
        // A block of its own, so that these imports neither need nor clash
        // with the invoking module's.
        const _: () = {
            use async_trait::async_trait;
            use tracing::instrument;
            use uuid::Uuid;

            use $crate::{
                domain::{ApiKeyId, WorkspaceId},
                storage::{
                    AdminStore, ApiKeyRecord, DefinitionChanges, DefinitionRecord,
                    IdentitySecretRecord, NewApiKey,
                    NewDefinition, Result, Settings, Workspace, detached, now,
                    unique_violation_is_already_exists,
                },
            };

            impl $store {
                /// Runs a revocation `sql` (`$1` workspace, `$2` id, `$3` now):
                /// API keys and identity secrets are revoked alike. True if
                /// the row exists (revoking twice keeps the first time).
                async fn revoke(&self, sql: &'static str, ws: WorkspaceId, id: ApiKeyId) -> Result<bool> {
                    let writer = self.$writer.clone();
                    detached(async move {
                        let done = sqlx::query(sql)
                            .bind(ws)
                            .bind(id)
                            .bind(now())
                            .execute(&writer)
                            .await?;
                        Ok(done.rows_affected() > 0)
                    })
                    .await
                }
            }

            #[async_trait]
            impl AdminStore for $store {
                #[instrument(level = "debug", skip_all)]
                async fn migrate(&self) -> Result<()> {
                    // sqlx's own refusal ("migration 6 was previously applied
                    // but is missing") names neither version.
                    if let $crate::storage::Schema::Newer { database, binary } = self.schema().await? {
                        return Err($crate::storage::Error::Config(
                            $crate::storage::Schema::newer_message(database, binary),
                        ));
                    }
                    let writer = self.$writer.clone();
                    detached(async move {
                        $migrator.run(&writer).await?;
                        Ok(())
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn backup(&self, path: &std::path::Path) -> Result<()> {
                    self.backup_into(path).await
                }

                #[instrument(level = "debug", skip_all)]
                async fn schema(&self) -> Result<$crate::storage::Schema> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        // sqlx creates the table on the first migration; a
                        // database without it was never migrated.
                        let applied: Vec<i64> = match sqlx::query_scalar(
                            "SELECT version FROM _sqlx_migrations WHERE success",
                        )
                        .fetch_all(&reader)
                        .await
                        {
                            Ok(applied) => applied,
                            Err(sqlx::Error::Database(e))
                                if e.message().contains("no such table")
                                    || e.code().as_deref() == Some("42P01") => Vec::new(),
                            Err(e) => return Err(e.into()),
                        };
                        let known: Vec<i64> = $migrator.iter().map(|m| m.version).collect();
                        Ok($crate::storage::Schema::compare(&applied, &known))
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn ping(&self) -> Result<()> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        sqlx::query("SELECT 1").execute(&reader).await?;
                        Ok(())
                    })
                    .await
                }

                fn pool_usage(&self) -> Vec<$crate::metrics::PoolUsage> {
                    Self::pools(self)
                }

                #[instrument(level = "debug", skip_all)]
                async fn create_workspace(&self, name: &str) -> Result<Workspace> {
                    let writer = self.$writer.clone();
                    let name = name.to_owned();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) \
                             RETURNING id, name, created_at",
                        )
                        .bind(WorkspaceId(Uuid::now_v7()))
                        .bind(name)
                        .bind(now())
                        .fetch_one(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT id, name, created_at FROM workspaces ORDER BY created_at, id",
                        )
                        .fetch_all(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_allowed_origins(&self) -> Result<Vec<Vec<String>>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        let lists: Vec<sqlx::types::Json<Vec<String>>> =
                            sqlx::query_scalar("SELECT allowed_origins FROM workspaces")
                                .fetch_all(&reader)
                                .await?;
                        Ok(lists.into_iter().map(|list| list.0).collect())
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn get_settings(&self, ws: WorkspaceId) -> Result<Option<Settings>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT client_attribute_writes, identity_verification, allowed_origins \
                             FROM workspaces WHERE id = $1",
                        )
                        .bind(ws)
                        .fetch_optional(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn update_settings(
                    &self,
                    ws: WorkspaceId,
                    settings: Settings,
                ) -> Result<Option<Settings>> {
                    let writer = self.$writer.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "UPDATE workspaces SET client_attribute_writes = $2, \
                                 identity_verification = $3, allowed_origins = $4 \
                             WHERE id = $1 \
                             RETURNING client_attribute_writes, identity_verification, \
                                       allowed_origins",
                        )
                        .bind(ws)
                        .bind(settings.client_attribute_writes)
                        .bind(settings.identity_verification.as_str())
                        .bind(sqlx::types::Json(&settings.allowed_origins))
                        .fetch_optional(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn insert_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord> {
                    let writer = self.$writer.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "INSERT INTO api_keys \
                                 (workspace_id, id, kind, mode, hash, display_prefix, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             RETURNING id, workspace_id, kind, mode, display_prefix, created_at, \
                                       revoked_at",
                        )
                        .bind(key.workspace)
                        .bind(ApiKeyId(Uuid::now_v7()))
                        .bind(key.kind.as_str())
                        .bind(key.mode.as_str())
                        .bind(&key.hash[..])
                        .bind(&key.display_prefix)
                        .bind(now())
                        .fetch_one(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
                    let reader = self.$reader.clone();
                    let hash = *hash;
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT id, workspace_id, kind, mode, display_prefix, created_at, \
                                    revoked_at \
                             FROM api_keys WHERE hash = $1",
                        )
                        .bind(&hash[..])
                        .fetch_optional(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyRecord>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT id, workspace_id, kind, mode, display_prefix, created_at, \
                                    revoked_at \
                             FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id",
                        )
                        .bind(ws)
                        .fetch_all(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId) -> Result<bool> {
                    self.revoke(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
                         WHERE workspace_id = $1 AND id = $2",
                        ws,
                        id,
                    )
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn insert_identity_secret(
                    &self,
                    ws: WorkspaceId,
                    secret: &str,
                    display_prefix: &str,
                    max_active: u32,
                ) -> Result<Option<IdentitySecretRecord>> {
                    let writer = self.$writer.clone();
                    let (secret, prefix) = (secret.to_owned(), display_prefix.to_owned());
                    detached(async move {
                        // One statement, so the count and the insert see one
                        // snapshot. PostgreSQL's READ COMMITTED lets two
                        // concurrent creations both pass it (three active
                        // secrets, which verification handles); SQLite's
                        // single writer cannot.
                        Ok(sqlx::query_as(
                            "INSERT INTO identity_secrets \
                                 (workspace_id, id, secret, display_prefix, created_at) \
                             SELECT $1, $2, $3, $4, $5 \
                             WHERE (SELECT count(*) FROM identity_secrets \
                                    WHERE workspace_id = $1 AND revoked_at IS NULL) < $6 \
                             RETURNING id, secret, display_prefix, created_at, revoked_at",
                        )
                        .bind(ws)
                        .bind(ApiKeyId(Uuid::now_v7()))
                        .bind(secret)
                        .bind(prefix)
                        .bind(now())
                        .bind(i64::from(max_active))
                        .fetch_optional(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_identity_secrets(
                    &self,
                    ws: WorkspaceId,
                ) -> Result<Vec<IdentitySecretRecord>> {
                    let reader = self.$reader.clone();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT id, secret, display_prefix, created_at, revoked_at \
                             FROM identity_secrets WHERE workspace_id = $1 \
                             ORDER BY created_at, id",
                        )
                        .bind(ws)
                        .fetch_all(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn revoke_identity_secret(
                    &self,
                    ws: WorkspaceId,
                    id: ApiKeyId,
                ) -> Result<bool> {
                    self.revoke(
                        "UPDATE identity_secrets SET revoked_at = COALESCE(revoked_at, $3) \
                         WHERE workspace_id = $1 AND id = $2",
                        ws,
                        id,
                    )
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn create_definition(
                    &self,
                    ws: WorkspaceId,
                    def: NewDefinition,
                ) -> Result<DefinitionRecord> {
                    let writer = self.$writer.clone();
                    detached(async move {
                        sqlx::query_as(
                            "INSERT INTO attribute_definitions \
                                 (workspace_id, key, attr_type, config, display_name, \
                                  description, client_writable, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                             RETURNING key, attr_type, config, display_name, description, \
                                       archived, client_writable, created_at, updated_at",
                        )
                        .bind(ws)
                        .bind(def.key)
                        .bind(def.attr_type)
                        .bind(def.config)
                        .bind(def.display_name)
                        .bind(def.description)
                        .bind(def.client_writable)
                        .bind(now())
                        .fetch_one(&writer)
                        .await
                        .map_err(unique_violation_is_already_exists)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn get_definition(
                    &self,
                    ws: WorkspaceId,
                    key: &str,
                ) -> Result<Option<DefinitionRecord>> {
                    let reader = self.$reader.clone();
                    let key = key.to_owned();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT key, attr_type, config, display_name, description, archived, \
                                    client_writable, created_at, updated_at \
                             FROM attribute_definitions WHERE workspace_id = $1 AND key = $2",
                        )
                        .bind(ws)
                        .bind(key)
                        .fetch_optional(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn list_definitions(
                    &self,
                    ws: WorkspaceId,
                    include_archived: bool,
                    after: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<DefinitionRecord>> {
                    let reader = self.$reader.clone();
                    // Every key is longer than "", so the first page needs no
                    // special case and the query stays one range scan of the
                    // primary key.
                    let after = after.unwrap_or_default().to_owned();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "SELECT key, attr_type, config, display_name, description, archived, \
                                    client_writable, created_at, updated_at \
                             FROM attribute_definitions \
                             WHERE workspace_id = $1 AND key > $2 AND ($3 OR NOT archived) \
                             ORDER BY key LIMIT $4",
                        )
                        .bind(ws)
                        .bind(after)
                        .bind(include_archived)
                        .bind(i64::from(limit))
                        .fetch_all(&reader)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn update_definition(
                    &self,
                    ws: WorkspaceId,
                    key: &str,
                    changes: DefinitionChanges,
                ) -> Result<Option<DefinitionRecord>> {
                    let writer = self.$writer.clone();
                    let key = key.to_owned();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "UPDATE attribute_definitions SET \
                                 config = COALESCE($3, config), \
                                 display_name = COALESCE($4, display_name), \
                                 description = COALESCE($5, description), \
                                 client_writable = COALESCE($6, client_writable), \
                                 updated_at = $7 \
                             WHERE workspace_id = $1 AND key = $2 \
                             RETURNING key, attr_type, config, display_name, description, \
                                       archived, client_writable, created_at, updated_at",
                        )
                        .bind(ws)
                        .bind(key)
                        .bind(changes.config)
                        .bind(changes.display_name)
                        .bind(changes.description)
                        .bind(changes.client_writable)
                        .bind(now())
                        .fetch_optional(&writer)
                        .await?)
                    })
                    .await
                }

                #[instrument(level = "debug", skip_all)]
                async fn set_archived(
                    &self,
                    ws: WorkspaceId,
                    key: &str,
                    archived: bool,
                ) -> Result<Option<DefinitionRecord>> {
                    let writer = self.$writer.clone();
                    let key = key.to_owned();
                    detached(async move {
                        Ok(sqlx::query_as(
                            "UPDATE attribute_definitions SET archived = $3, updated_at = $4 \
                             WHERE workspace_id = $1 AND key = $2 AND ($3 OR NOT purging) \
                             RETURNING key, attr_type, config, display_name, description, \
                                       archived, client_writable, created_at, updated_at",
                        )
                        .bind(ws)
                        .bind(key)
                        .bind(archived)
                        .bind(now())
                        .fetch_optional(&writer)
                        .await?)
                    })
                    .await
                }
            }
        };
    };
}

pub(super) use sql_admin_store;
