//! The `node_addresses` table: each node's private IP address as last reported, for people
//! listing nodes. Batch nodes' come from Batch's node list; VM nodes' from their NICs (the
//! controller's NIC listing, Azure's truth) or, until that listing has seen the node, from
//! the node's own registration; a later report replaces an earlier one, so a NIC's address
//! replaces a registration's at the next listing. A row goes with its node's `vms` row.

use std::collections::HashMap;

use crate::{Store, StoreError};

impl Store {
    /// Records nodes' private IP addresses in one transaction; a node whose address is
    /// already that one is not written again, and a node not in the inventory is skipped.
    pub async fn set_node_ips(&self, ips: &[(String, String)]) -> Result<(), StoreError> {
        if ips.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for (node, ip) in ips {
            sqlx::query(
                "INSERT INTO node_addresses (node, private_ip) \
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM vms WHERE name = ?1) \
                 ON CONFLICT (node) DO UPDATE SET private_ip = excluded.private_ip \
                 WHERE private_ip <> excluded.private_ip",
            )
            .bind(node)
            .bind(ip)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every known node address, by node name.
    pub async fn node_ips(&self) -> Result<HashMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT node, private_ip FROM node_addresses")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }
}
