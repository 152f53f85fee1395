//! Node bootstrap: what a fresh VM does on its first boot so that it joins the farm without
//! anyone logging in — time zone, hosts entries, Active Directory, share mounts, firewall
//! ports, a local administrator, environment variables (license servers), the render client,
//! and the call back to renderburst (`POST /v1/nodes/{name}/register` with the node's own
//! token, then heartbeats).
//!
//! The pool's `bootstrap` section ([`BootstrapSpec`]) is rendered by pure functions:
//! [`render_cloud_init`] (`#cloud-config` for Linux VMs' `customData`),
//! [`render_powershell`] (Windows VMs' `customData`), and for Batch pools
//! [`render_start_task`] (one start task for the pool, which enrolls each node) and
//! [`render_enrollment_script`] (what a node gets when it enrolls).
//!
//! Secrets are never inline: a spec names them with a [`SecretRef`] (`{"secret": "ad-join"}`),
//! the name of a secret the operator declared in the daemon's configuration, and the caller
//! passes a resolver that looks them up when a node is rendered (the daemon reads the
//! declared environment variable or file; a preview passes [`masked`]). Nothing here does IO.
//!
//! Every value that enters a script goes through one function of [`quote`] for the language
//! that reads it (POSIX shell, PowerShell, systemd) or through its YAML serializer; fields with
//! a grammar (paths, drive letters, accounts, hosts, share sources) are validated against it
//! (`grammar`), and the daemon's advertised URL by [`validate_advertise_url`].

mod cloud_init;
mod grammar;
mod powershell;
pub mod quote;
mod render;
mod section;
mod start_task;
mod time_zone;
mod validate;

pub use cloud_init::render_cloud_init;
pub use grammar::validate_advertise_url;
pub use powershell::render_powershell;
pub use render::{
    BootstrapDefaults, MASK, MAX_CUSTOM_DATA_BASE64, NodeContext, RenderedNode, Resolver,
    base64_encode, base64_len, masked, render_node,
};
pub use section::{
    AdminAccount, BootstrapSpec, DomainJoin, EnvValue, FirewallPort, HostEntry,
    MAX_REGISTER_TIMEOUT_SECONDS, MAX_SECRET_NAME, MIN_REGISTER_TIMEOUT_SECONDS, Mount, MountKind,
    Protocol, RESERVED_ENV_PREFIX, RenderClient, SecretRef, SecretSource, check_secret_name,
};
pub use start_task::{
    ENROLL_ATTEMPTS, ENV_API_URL, ENV_POOL_TOKEN, StartTask, render_enrollment_script,
    render_start_task,
};
pub use time_zone::windows_time_zone;
