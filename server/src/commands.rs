//! Transient commands to one gateway (identify, channel test, resync, discover): sent once,
//! not retained, with an expiry; the gateway's ack is stored beside the command.

use nightscape_core::GatewayId;
use nightscape_core::wire::{self, Action, Command, Topic};
use rumqttc::QoS;
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;

use crate::store::{self, Audit, Store, StoreError};

/// How long a command stays valid; one that reaches the gateway later is acked `expired`.
pub const VALID_MS: i64 = 60_000;

/// A command and what became of it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CommandView {
    pub id: String,
    pub gateway: String,
    pub action: serde_json::Value,
    pub sent_by: String,
    pub sent_at_ms: i64,
    pub expires_at_ms: i64,
    /// applied, rejected or expired; none while unanswered.
    pub result: Option<String>,
    pub reason: Option<String>,
}

/// Stores the command (and its audit row), then sends it.
pub async fn send(
    store: &Store,
    mqtt: &crate::mqtt::MqttHandle,
    prefix: &str,
    gateway: &GatewayId,
    action: Action,
    by: &str,
    now_ms: i64,
) -> Result<CommandView, StoreError> {
    let command = Command {
        schema: wire::SCHEMA,
        id: format!("cmd-{now_ms:x}-{}", &crate::auth::secret()[..8]),
        expires_ms: now_ms + VALID_MS,
        action,
    };
    let action_json = serde_json::to_value(&command.action).unwrap_or_default();
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO commands (id, gateway, action_json, sent_by, sent_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&command.id)
    .bind(gateway.as_str())
    .bind(action_json.to_string())
    .bind(by)
    .bind(now_ms)
    .bind(command.expires_ms)
    .execute(&mut *tx)
    .await?;
    store::audit(
        &mut tx,
        &Audit {
            actor: by,
            action: "command.send",
            target: format!("gateway:{gateway}"),
            before: None,
            after: Some(serde_json::json!({"id": command.id, "action": action_json})),
        },
        now_ms,
    )
    .await?;
    tx.commit().await?;
    mqtt.publish(
        wire::topic(prefix, gateway, Topic::Cmd),
        wire::encode(&command),
        false,
        QoS::AtLeastOnce,
    )
    .await
    .map_err(|e| {
        StoreError::Conflict(format!("command {} stored but not sent: {e}", command.id))
    })?;
    Ok(CommandView {
        id: command.id,
        gateway: gateway.to_string(),
        action: action_json,
        sent_by: by.to_owned(),
        sent_at_ms: now_ms,
        expires_at_ms: command.expires_ms,
        result: None,
        reason: None,
    })
}

/// Records a gateway's answer to a command.
pub async fn answered(
    db: &mut sqlx::AnyConnection,
    gateway: &GatewayId,
    id: &str,
    result: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE commands SET result = $1, reason = $2, answered_at_ms = $3 WHERE id = $4 AND gateway = $5",
    )
    .bind(result)
    .bind(reason)
    .bind(now_ms)
    .bind(id)
    .bind(gateway.as_str())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn recent(store: &Store, limit: i64) -> Result<Vec<CommandView>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, gateway, action_json, sent_by, sent_at_ms, expires_at_ms, result, reason FROM commands \
         ORDER BY sent_at_ms DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let action: String = r.try_get("action_json")?;
            Ok(CommandView {
                id: r.try_get("id")?,
                gateway: r.try_get("gateway")?,
                action: serde_json::from_str(&action).unwrap_or_default(),
                sent_by: r.try_get("sent_by")?,
                sent_at_ms: r.try_get("sent_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
                result: r.try_get("result")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect()
}
