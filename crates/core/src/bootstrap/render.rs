//! What every renderer shares: the node's context ([`NodeContext`], from
//! [`BootstrapDefaults`]), secrets resolved through a [`Resolver`], the hosts and environment
//! lines both OSes write, base64, and [`render_node`], which picks the renderer for the OS
//! and checks Azure's `customData` limit.

use std::collections::BTreeMap;

use crate::spec::{Os, SpecError};

use super::cloud_init::render_cloud_init;
use super::powershell::render_powershell;
use super::section::{BootstrapSpec, EnvValue, HostEntry, Protocol, SecretRef};
use super::validate::err;

/// Azure's limit on `osProfile.customData`, counted here on the base64 text (the stricter
/// reading: 64 KiB of base64 is 48 KiB of script).
pub const MAX_CUSTOM_DATA_BASE64: usize = 64 * 1024;

/// What a masked secret or token shows as.
pub const MASK: &str = "********";

/// Length of base64 text for `n` bytes (standard alphabet, padded).
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A resolver that masks every secret, for previews.
pub fn masked(_: &SecretRef) -> Result<String, String> {
    Ok(MASK.to_string())
}

/// Looks a secret up by reference. The daemon's reads its environment or a file.
pub type Resolver<'a> = &'a dyn Fn(&SecretRef) -> Result<String, String>;

/// What the daemon knows that a pool spec does not: shared by the controller (which renders
/// real nodes) and the API (which previews them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapDefaults {
    /// The daemon's URL as nodes reach it (`[server] advertise_url`), without a trailing `/`.
    pub api_url: String,
    /// The daemon's IANA time zone: nodes get it when their pool names none.
    pub default_time_zone: String,
    /// The daemon's own hosts entry, added to every node's hosts file.
    pub daemon_host: Option<HostEntry>,
}

impl BootstrapDefaults {
    /// The context of node `node` of `pool`, with `token`.
    pub fn node<'a>(&'a self, pool: &'a str, node: &'a str, token: &'a str) -> NodeContext<'a> {
        NodeContext {
            pool,
            node,
            api_url: &self.api_url,
            token,
            default_time_zone: &self.default_time_zone,
            daemon_host: self.daemon_host.as_ref(),
        }
    }
}

/// Everything about one node that the spec does not say.
#[derive(Debug, Clone)]
pub struct NodeContext<'a> {
    pub pool: &'a str,
    /// The VM name, as in `/v1/nodes/{name}`.
    pub node: &'a str,
    /// The daemon's URL as nodes reach it (`[server] advertise_url`), no trailing `/`.
    pub api_url: &'a str,
    /// The node's own token (or [`MASK`] in a preview).
    pub token: &'a str,
    /// The daemon's IANA time zone, used when the spec names none.
    pub default_time_zone: &'a str,
    /// The daemon's own hosts entry, added before the spec's.
    pub daemon_host: Option<&'a HostEntry>,
}

impl NodeContext<'_> {
    pub fn register_url(&self) -> String {
        format!("{}/v1/nodes/{}/register", self.api_url, self.node)
    }

    pub fn heartbeat_url(&self) -> String {
        format!("{}/v1/nodes/{}/heartbeat", self.api_url, self.node)
    }
}

/// Secrets resolved for one rendering, by field.
pub(super) struct Secrets(BTreeMap<String, String>);

impl Secrets {
    pub(super) fn resolve(
        spec: &BootstrapSpec,
        resolver: Resolver<'_>,
    ) -> Result<Secrets, SpecError> {
        let mut map = BTreeMap::new();
        for (field, r) in spec.secret_refs() {
            let value = resolver(r).map_err(|m| {
                err(
                    field.clone(),
                    format!("cannot resolve secret {:?}: {m}", r.secret),
                )
            })?;
            if value.is_empty() || value.contains(['\n', '\r', '\0']) {
                return Err(err(
                    field,
                    format!("secret {:?} must be one non-empty line", r.secret),
                ));
            }
            map.insert(field, value);
        }
        Ok(Secrets(map))
    }

    pub(super) fn get(&self, field: &str) -> &str {
        self.0.get(field).map_or("", String::as_str)
    }
}

pub(super) fn host_lines(ctx: &NodeContext<'_>, spec: &BootstrapSpec) -> Vec<String> {
    ctx.daemon_host
        .into_iter()
        .chain(spec.hosts.iter())
        .map(|h| format!("{} {}", h.ip, h.names.join(" ")))
        .collect()
}

pub(super) fn env_pairs(spec: &BootstrapSpec, secrets: &Secrets) -> Vec<(String, String)> {
    spec.env
        .iter()
        .map(|(k, v)| {
            let value = match v {
                EnvValue::Plain(s) => s.clone(),
                EnvValue::Secret(_) => secrets.get(&format!("bootstrap.env.{k}")).to_string(),
            };
            (k.clone(), value)
        })
        .collect()
}

pub(super) fn protocol_str(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// What a node gets, for either OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNode {
    /// `cloud-init` or `powershell`.
    pub format: &'static str,
    pub text: String,
}

/// Renders the node's script for its OS and checks it fits in `customData`.
pub fn render_node(
    spec: &BootstrapSpec,
    os: Os,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<RenderedNode, SpecError> {
    let (format, text) = match os {
        Os::Linux => ("cloud-init", render_cloud_init(spec, ctx, resolve)?),
        Os::Windows => ("powershell", render_powershell(spec, ctx, resolve)?),
    };
    let size = base64_len(text.len());
    if size > MAX_CUSTOM_DATA_BASE64 {
        return Err(err(
            "bootstrap",
            format!(
                "renders to {size} bytes of base64 customData, above Azure's limit of {MAX_CUSTOM_DATA_BASE64}: fewer or shorter items"
            ),
        ));
    }
    Ok(RenderedNode { format, text })
}

/// Standard base64 with padding (kept here so `core` needs no encoding crate).
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(base64_len(data.len()));
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(A[(n >> 18) as usize & 63]));
        out.push(char::from(A[(n >> 12) as usize & 63]));
        out.push(if chunk.len() > 1 {
            char::from(A[(n >> 6) as usize & 63])
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            char::from(A[n as usize & 63])
        } else {
            '='
        });
    }
    out
}
