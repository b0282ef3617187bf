//! The roles (names and permissions) kept in memory, so the statement run
//! on every authenticated request reads only the caller's role ids and the
//! catalog's version (`role_catalog.version`, bumped in the transaction of
//! every change to `roles`). When a statement reports another version than
//! the copy's, the copy is reloaded first: a role's changed permissions apply
//! from the first request after their commit, as when they were joined in
//! SQL on every request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::PgExecutor;
use uuid::Uuid;

/// One version of the roles.
#[derive(Debug, Default)]
pub struct Roles {
    version: i64,
    by_id: HashMap<Uuid, (String, Vec<String>)>,
}

impl Roles {
    /// The names of `ids`, sorted (roles deleted since are skipped).
    pub fn names(&self, ids: &[Uuid]) -> Vec<String> {
        let mut names: Vec<String> = ids
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|(name, _)| name.clone()))
            .collect();
        names.sort();
        names
    }

    /// Every permission `ids` grant, once each.
    pub fn permissions(&self, ids: &[Uuid]) -> Vec<String> {
        let mut permissions: Vec<String> = Vec::new();
        for (_, granted) in ids.iter().filter_map(|id| self.by_id.get(id)) {
            for p in granted {
                if !permissions.contains(p) {
                    permissions.push(p.clone());
                }
            }
        }
        permissions
    }
}

/// The process's copy of the roles, shared by every request.
#[derive(Debug, Clone, Default)]
pub struct RoleCatalog {
    current: Arc<RwLock<Arc<Roles>>>,
}

impl RoleCatalog {
    /// The roles at exactly `version` (what the caller's statement read),
    /// reloaded through `conn` when the copy is at another version; `None`
    /// when the roles changed again between that statement and the reload:
    /// the caller reads its role ids again. Exactly, not "at least": role
    /// ids and role definitions then come from one moment, and a version
    /// that went backwards (a restore, a re-run migration) is reloaded too.
    pub async fn at(
        &self,
        conn: impl PgExecutor<'_>,
        version: i64,
    ) -> sqlx::Result<Option<Arc<Roles>>> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        if current.version == version {
            return Ok(Some(current));
        }
        let loaded = Arc::new(load(conn).await?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&loaded);
        Ok((loaded.version == version).then_some(loaded))
    }
}

/// The roles and their version, read in one statement (one snapshot).
async fn load(conn: impl PgExecutor<'_>) -> sqlx::Result<Roles> {
    let rows = sqlx::query!(
        r#"SELECT c.version, r.id AS "id?", r.name AS "name?", r.permissions AS "permissions?"
           FROM role_catalog c LEFT JOIN roles r ON TRUE"#
    )
    .fetch_all(conn)
    .await?;
    let mut roles = Roles::default();
    for row in rows {
        roles.version = row.version;
        if let (Some(id), Some(name), Some(permissions)) = (row.id, row.name, row.permissions) {
            let permissions = serde_json::from_value(permissions).unwrap_or_default();
            roles.by_id.insert(id, (name, permissions));
        }
    }
    Ok(roles)
}
