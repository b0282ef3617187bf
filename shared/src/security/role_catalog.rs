//! The roles (names and permissions) kept in memory, so the statement run
//! on every authenticated request reads only the caller's role ids and the
//! catalog's version (`role_catalog.version`, bumped in the transaction of
//! every change to `roles`). When a statement reports a version newer than
//! the copy, the copy is reloaded first: a role's changed permissions apply
//! from the first request after their commit, as when they were joined in
//! SQL on every request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::PgPool;
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
#[derive(Debug, Clone)]
pub struct RoleCatalog {
    pool: PgPool,
    current: Arc<RwLock<Arc<Roles>>>,
}

impl RoleCatalog {
    /// An empty copy (version 0), loaded on first use from `pool` (the
    /// primary: a version read there must be found there).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            current: Arc::default(),
        }
    }

    /// The roles at `version` or later.
    pub async fn at(&self, version: i64) -> sqlx::Result<Arc<Roles>> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        if current.version >= version {
            return Ok(current);
        }
        let loaded = Arc::new(load(&self.pool).await?);
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if loaded.version > slot.version {
            *slot = Arc::clone(&loaded);
        }
        Ok(loaded)
    }
}

/// The roles and their version, read in one statement (one snapshot).
async fn load(pool: &PgPool) -> sqlx::Result<Roles> {
    let rows = sqlx::query!(
        r#"SELECT c.version, r.id AS "id?", r.name AS "name?", r.permissions AS "permissions?"
           FROM role_catalog c LEFT JOIN roles r ON TRUE"#
    )
    .fetch_all(pool)
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
