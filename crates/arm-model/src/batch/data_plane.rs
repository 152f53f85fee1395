//! Azure Batch's data plane: nodes, their removal, and the plane's pages and errors.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Data plane (`https://{accountEndpoint}`, not ARM)
// ---------------------------------------------------------------------------------------------

/// One page of a data-plane list call. Clients follow `odata.nextLink`, not `nextLink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPage<T> {
    #[serde(
        rename = "odata.metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_metadata: Option<String>,
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(
        rename = "odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_next_link: Option<String>,
}

impl<T> Default for BatchPage<T> {
    fn default() -> Self {
        Self {
            odata_metadata: None,
            value: Vec::new(),
            odata_next_link: None,
        }
    }
}

/// `GET /pools/{pool}/nodes`.
pub type ComputeNodeListResult = BatchPage<ComputeNode>;

/// A node of a pool, as the data plane lists it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeNode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// See [`ComputeNodeState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// See [`SchedulingState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// False for Spot/low-priority nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_dedicated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_task_slots_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tasks_run: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tasks_succeeded: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task_info: Option<serde_json::Value>,
    /// Why a node is `unusable` or its start task failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ComputeNodeError>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_agent_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_info: Option<serde_json::Value>,
}

impl ComputeNode {
    /// Idle nodes are the cheap ones to remove: nothing is requeued.
    pub fn is_idle(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(ComputeNodeState::IDLE))
    }
}

/// Values of a node's `state`, lowercase as the data plane sends them. Open set.
pub struct ComputeNodeState;

impl ComputeNodeState {
    pub const IDLE: &'static str = "idle";
    pub const REBOOTING: &'static str = "rebooting";
    pub const REIMAGING: &'static str = "reimaging";
    pub const RUNNING: &'static str = "running";
    pub const UNUSABLE: &'static str = "unusable";
    pub const CREATING: &'static str = "creating";
    pub const STARTING: &'static str = "starting";
    pub const WAITING_FOR_START_TASK: &'static str = "waitingforstarttask";
    pub const START_TASK_FAILED: &'static str = "starttaskfailed";
    pub const UNKNOWN: &'static str = "unknown";
    pub const LEAVING_POOL: &'static str = "leavingpool";
    pub const OFFLINE: &'static str = "offline";
    /// A Spot/low-priority node that was evicted.
    pub const PREEMPTED: &'static str = "preempted";
    pub const UPGRADING_OS: &'static str = "upgradingos";
    pub const DEALLOCATED: &'static str = "deallocated";
    pub const DEALLOCATING: &'static str = "deallocating";
}

/// Values of a node's `schedulingState`.
pub struct SchedulingState;

impl SchedulingState {
    pub const ENABLED: &'static str = "enabled";
    pub const DISABLED: &'static str = "disabled";
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeNodeError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Vec<NameValuePair>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Body of `POST /pools/{pool}/removenodes`: at most 100 node ids per call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRemoveParameter {
    pub node_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<String>,
    /// See [`NodeDeallocationOption`] (lowercase on this plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deallocation_option: Option<String>,
}

impl NodeRemoveParameter {
    /// The service rejects larger `nodeList`s.
    pub const MAX_NODES: usize = 100;
}

/// A data-plane error: `{"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchError {
    #[serde(
        rename = "odata.metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_metadata: Option<String>,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<BatchErrorMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<BatchErrorDetail>>,
}

impl BatchError {
    /// The message text, or "" when the service sent none.
    pub fn message_text(&self) -> &str {
        self.message
            .as_ref()
            .and_then(|m| m.value.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchErrorMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}
