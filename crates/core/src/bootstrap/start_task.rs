//! Batch pools: the one start task of a pool ([`render_start_task`]), which enrolls each
//! node, and the script a node gets when it enrolls ([`render_enrollment_script`]).

use crate::spec::{Os, SpecError};

use super::cloud_init::{cloud_config, cloud_init_as_script};
use super::powershell::render_powershell;
use super::render::{NodeContext, Resolver, base64_encode};
use super::section::BootstrapSpec;

/// A Batch start task: its command line and environment settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTask {
    pub command_line: String,
    /// Batch `environmentSettings` (`name`, `value`).
    pub environment: Vec<(String, String)>,
    /// Batch runs start tasks as a user; bootstrap needs an elevated (admin) one.
    pub elevated: bool,
}

/// The start task's variable holding the daemon's URL.
pub const ENV_API_URL: &str = "RENDERBURST_API_URL";
/// The start task's variable holding the pool's enrollment token.
pub const ENV_POOL_TOKEN: &str = "RENDERBURST_POOL_TOKEN";
/// Enrollment attempts of the start task, 5 s apart: a node can boot before the daemon has
/// seen it in the pool's node list (it looks again when asked about an unknown node).
pub const ENROLL_ATTEMPTS: u32 = 60;

/// Renders the start task of a Batch pool with a `bootstrap` section.
///
/// One start task serves every node of a Batch pool and anyone who can read the pool can
/// read it, so it carries no secret and no node token: only the daemon's URL and the pool's
/// **enrollment token**, which can do one thing, enroll a node of this pool that the daemon
/// sees in the pool's node list and that has not enrolled yet
/// (`POST /v1/nodes/{AZ_BATCH_NODE_ID}/enroll`). The answer is the node's own bootstrap
/// script ([`render_enrollment_script`]: its node token, the resolved secrets), run at once
/// and not kept. Batch runs the start task again after a reboot; a node bootstrapped
/// already (its node agent is installed) stops there.
pub fn render_start_task(os: Os, api_url: &str, pool_token: &str) -> StartTask {
    let command_line = match os {
        // Single quotes around the whole script: it contains none itself.
        Os::Linux => format!(
            "/bin/bash -c 'set -eu; umask 077; if [ -s /etc/renderburst/node.env ]; then echo renderburst: bootstrapped already; exit 0; fi; s=\"$AZ_BATCH_TASK_WORKING_DIR/renderburst-bootstrap.sh\"; trap \"rm -f $s\" EXIT; curl -fsS --retry {ENROLL_ATTEMPTS} --retry-delay 5 --retry-all-errors --max-time 60 -X POST -H \"Authorization: Bearer ${ENV_POOL_TOKEN}\" -o \"$s\" \"${ENV_API_URL}/v1/nodes/$AZ_BATCH_NODE_ID/enroll\"; /bin/bash \"$s\"'"
        ),
        Os::Windows => {
            let script = format!(
                "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\nif (Test-Path (Join-Path $env:ProgramData 'renderburst\\node-agent.ps1')) {{ Write-Output 'renderburst: bootstrapped already'; exit 0 }}\n$uri = $env:{ENV_API_URL} + '/v1/nodes/' + $env:AZ_BATCH_NODE_ID + '/enroll'\n$headers = @{{ Authorization = 'Bearer ' + $env:{ENV_POOL_TOKEN} }}\n$script = $null\nfor ($i = 0; $i -lt {ENROLL_ATTEMPTS} -and -not $script; $i++) {{\n    try {{ $script = (Invoke-WebRequest -UseBasicParsing -Method Post -Uri $uri -Headers $headers -TimeoutSec 60).Content }} catch {{ Start-Sleep -Seconds 5 }}\n}}\nif (-not $script) {{ throw 'renderburst: enrollment failed' }}\nInvoke-Expression $script\n"
            );
            let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
            format!(
                "powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand {}",
                base64_encode(&utf16)
            )
        }
    };
    StartTask {
        command_line,
        environment: vec![
            (ENV_API_URL.to_string(), api_url.to_string()),
            (ENV_POOL_TOKEN.to_string(), pool_token.to_string()),
        ],
        elevated: true,
    }
}

/// The script a Batch node gets when it enrolls: the cloud-init document's files and
/// commands as one shell script on Linux (Batch has no cloud-init step), the PowerShell
/// bootstrap on Windows. It holds the node's token and resolved secrets; it travels only as
/// the answer to the node's own enrollment.
pub fn render_enrollment_script(
    spec: &BootstrapSpec,
    os: Os,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    match os {
        Os::Linux => Ok(cloud_init_as_script(&cloud_config(spec, ctx, resolve)?)),
        Os::Windows => render_powershell(spec, ctx, resolve),
    }
}
