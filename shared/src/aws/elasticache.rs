//! ElastiCache: the primary endpoint of a replication group, as a `rediss://` URL.

use anyhow::Context;

/// Looks up the replication group's primary endpoint (in-transit encryption: `rediss`).
pub async fn discover(client: &aws_sdk_elasticache::Client, id: &str) -> anyhow::Result<String> {
    let output = client
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot be described: {}",
                aws_sdk_elasticache::error::DisplayErrorContext(e)
            )
        })?;
    let group = output
        .replication_groups()
        .first()
        .context("no such replication group")?;
    let endpoint = group
        .node_groups()
        .iter()
        .find_map(|ng| ng.primary_endpoint())
        .or(group.configuration_endpoint())
        .context("the replication group has no primary endpoint yet")?;
    let host = endpoint.address().context("the endpoint has no address")?;
    let port = endpoint.port().unwrap_or(6379);
    Ok(format!("rediss://{host}:{port}"))
}
