//! Windows rendering: the PowerShell script a VM runs on its first logon from its
//! `customData`, and a Batch node runs when it enrolls.

use std::fmt::Write as _;

use crate::spec::SpecError;

use super::grammar::smb_parts;
use super::quote::{self, powershell as ps};
use super::render::{NodeContext, Resolver, Secrets, env_pairs, host_lines, protocol_str};
use super::section::{BootstrapSpec, MountKind, Protocol};
use super::time_zone::windows_time_zone;

/// Where Azure saves a Windows VM's `customData` (the VM's `FirstLogonCommands` copy it to a
/// `.ps1` beside it and run that).
const WINDOWS_CUSTOM_DATA: &str = "C:\\AzureData\\CustomData.bin";

/// Renders the PowerShell script a Windows node runs on its first logon (Azure saves
/// `customData` as `C:\AzureData\CustomData.bin`; the VM's `FirstLogonCommands` run it).
pub fn render_powershell(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    let secrets = Secrets::resolve(spec, resolve)?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# renderburst bootstrap of node {} (pool {}). Rendered by renderburst: do not edit.",
        quote::comment(ctx.node),
        quote::comment(ctx.pool)
    );
    // PowerShell parses the whole script before it runs a line of it, so the script can delete
    // itself (and Azure's copy of customData) first: its secrets are not left on the disk,
    // whether it succeeds or not. Run by Invoke-Expression (Batch), it has no path.
    let _ = writeln!(
        o,
        "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n# This script holds secrets: delete it and customData now (PowerShell has read all of it).\nforeach ($f in @($PSCommandPath, {})) {{ if ($f -and (Test-Path -LiteralPath $f)) {{ Remove-Item -LiteralPath $f -Force }} }}",
        ps(WINDOWS_CUSTOM_DATA)
    );
    o.push_str("$dir = Join-Path $env:ProgramData 'renderburst'\nNew-Item -ItemType Directory -Force -Path $dir | Out-Null\n# Only SYSTEM and Administrators may read what is written here (the node token).\nicacls.exe $dir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null\n\n");
    let tz = spec.time_zone.as_deref().unwrap_or(ctx.default_time_zone);
    match windows_time_zone(tz) {
        Some(id) => {
            let _ = writeln!(
                o,
                "# Time zone ({}).\nSet-TimeZone -Id {}\n",
                quote::comment(tz),
                ps(id)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "# Time zone: {} has no known Windows id; the image's zone is kept.\n",
                quote::comment(tz)
            );
        }
    }
    let hosts = host_lines(ctx, spec);
    if !hosts.is_empty() {
        o.push_str("# Hosts entries.\n$hosts = Join-Path $env:SystemRoot 'System32\\drivers\\etc\\hosts'\n");
        for h in &hosts {
            let _ = writeln!(
                o,
                "Add-Content -Path $hosts -Value {} -Encoding ASCII",
                ps(h)
            );
        }
        o.push('\n');
    }
    if !spec.firewall_ports.is_empty() {
        o.push_str("# Firewall ports for the render manager.\n");
        for p in &spec.firewall_ports {
            let proto = match p.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            let _ = writeln!(
                o,
                "New-NetFirewallRule -DisplayName {} -Direction Inbound -Action Allow -Protocol {proto} -LocalPort {} | Out-Null",
                ps(&format!(
                    "renderburst {}/{}",
                    p.port,
                    protocol_str(p.protocol)
                )),
                p.port
            );
        }
        o.push('\n');
    }
    if let Some(a) = &spec.admin {
        o.push_str("# Local administrator for remote sessions.\n");
        let user = ps(&a.username);
        match &a.password {
            Some(_) => {
                let _ = writeln!(
                    o,
                    "$password = ConvertTo-SecureString {} -AsPlainText -Force\nNew-LocalUser -Name {user} -Password $password -PasswordNeverExpires | Out-Null",
                    ps(secrets.get("bootstrap.admin.password"))
                );
            }
            None => {
                let _ = writeln!(o, "New-LocalUser -Name {user} -NoPassword | Out-Null");
            }
        }
        let _ = writeln!(
            o,
            "Add-LocalGroupMember -Group 'Administrators' -Member {user}\nAdd-LocalGroupMember -Group 'Remote Desktop Users' -Member {user}"
        );
        if let Some(key) = &a.ssh_public_key {
            let _ = writeln!(
                o,
                "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null\n$keys = Join-Path $env:ProgramData 'ssh\\administrators_authorized_keys'\nNew-Item -ItemType Directory -Force -Path (Split-Path $keys) | Out-Null\nSet-Content -Path $keys -Value {} -Encoding ASCII\nicacls.exe $keys /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null\nSet-Service -Name sshd -StartupType Automatic\nStart-Service sshd\nNew-NetFirewallRule -DisplayName 'renderburst ssh' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 22 | Out-Null",
                ps(key)
            );
        }
        o.push('\n');
    }
    let env = env_pairs(spec, &secrets);
    if !env.is_empty() {
        o.push_str("# Environment (license servers...), machine-wide.\n");
        for (k, v) in &env {
            let _ = writeln!(
                o,
                "[Environment]::SetEnvironmentVariable({}, {}, 'Machine')",
                ps(k),
                ps(v)
            );
        }
        o.push('\n');
    }
    if !spec.mounts.is_empty() {
        o.push_str("# Share mounts (global mappings: visible to services and every session).\n");
        for (i, m) in spec.mounts.iter().enumerate() {
            let target = ps(&m.target);
            match m.kind {
                MountKind::Smb => {
                    let (host, path) =
                        smb_parts(m.source.as_deref().unwrap_or_default()).unwrap_or_default();
                    let unc = format!("\\\\{host}\\{}", path.replace('/', "\\"));
                    match &m.username {
                        Some(u) => {
                            let _ = writeln!(
                                o,
                                "$credential = New-Object System.Management.Automation.PSCredential({}, (ConvertTo-SecureString {} -AsPlainText -Force))\nNew-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Credential $credential -Persistent $true | Out-Null",
                                ps(u),
                                ps(secrets.get(&format!("bootstrap.mounts[{i}].password"))),
                                ps(&unc)
                            );
                        }
                        None => {
                            let _ = writeln!(
                                o,
                                "New-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Persistent $true | Out-Null",
                                ps(&unc)
                            );
                        }
                    }
                }
                MountKind::AzureFiles => {
                    let account = m.account.as_deref().unwrap_or_default();
                    let unc = format!(
                        "\\\\{account}.file.core.windows.net\\{}",
                        m.share.as_deref().unwrap_or_default()
                    );
                    let _ = writeln!(
                        o,
                        "$credential = New-Object System.Management.Automation.PSCredential({}, (ConvertTo-SecureString {} -AsPlainText -Force))\nNew-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Credential $credential -Persistent $true | Out-Null",
                        ps(&format!("localhost\\{account}")),
                        ps(secrets.get(&format!("bootstrap.mounts[{i}].key"))),
                        ps(&unc)
                    );
                }
                MountKind::Nfs => {
                    let _ = writeln!(
                        o,
                        "Install-WindowsFeature -Name NFS-Client | Out-Null\n& mount.exe -o anon,nolock {} {target}",
                        ps(m.source.as_deref().unwrap_or_default())
                    );
                }
                // Refused for Windows by validation.
                MountKind::Blob => {}
            }
        }
        o.push('\n');
    }
    // The node agent registers, then beats; a start-up task, so it runs after reboots too.
    let _ = writeln!(
        o,
        "# Node agent: registers with renderburst, then reports the node alive every 30 s.\n# The heartbeat body is {{}} (liveness only): \"busy\" is the render manager's to report.\n$agent = @'\n$RegisterUrl = {}\n$HeartbeatUrl = {}\n$Headers = @{{ Authorization = 'Bearer ' + {} }}\nwhile ($true) {{\n    try {{\n        Invoke-RestMethod -Method Post -Uri $RegisterUrl -Headers $Headers -ContentType 'application/json' -Body (@{{ hostname = $env:COMPUTERNAME }} | ConvertTo-Json) | Out-Null\n        break\n    }} catch {{ Start-Sleep -Seconds 10 }}\n}}\nwhile ($true) {{\n    try {{ Invoke-RestMethod -Method Put -Uri $HeartbeatUrl -Headers $Headers -ContentType 'application/json' -Body '{{}}' | Out-Null }} catch {{ }}\n    Start-Sleep -Seconds 30\n}}\n'@\nSet-Content -Path (Join-Path $dir 'node-agent.ps1') -Value $agent -Encoding UTF8\n$action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -ExecutionPolicy Bypass -File \"' + (Join-Path $dir 'node-agent.ps1') + '\"')\n$trigger = New-ScheduledTaskTrigger -AtStartup\n$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1)\nRegister-ScheduledTask -TaskName 'renderburst-node' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null\n",
        ps(&ctx.register_url()),
        ps(&ctx.heartbeat_url()),
        ps(ctx.token),
    );
    let mut tasks = vec!["renderburst-node"];
    if let Some(rc) = &spec.render_client {
        let _ = writeln!(
            o,
            "# Render client: a start-up task running as SYSTEM.\n$action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument {}\nRegister-ScheduledTask -TaskName 'renderburst-render-client' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null\n",
            ps(&format!("/c {}", rc.command))
        );
        tasks.insert(0, "renderburst-render-client");
    }
    match &spec.domain {
        Some(d) => {
            let ou =
                d.ou.as_ref()
                    .map(|ou| format!(" -OUPath {}", ps(ou)))
                    .unwrap_or_default();
            let _ = writeln!(
                o,
                "# Active Directory: join, then restart; the start-up tasks run after the restart.\n$joinPassword = ConvertTo-SecureString {} -AsPlainText -Force\n$joinCredential = New-Object System.Management.Automation.PSCredential({}, $joinPassword)\nAdd-Computer -DomainName {}{ou} -Credential $joinCredential -Force -Restart",
                ps(secrets.get("bootstrap.domain.password")),
                ps(&d.username),
                ps(&d.name),
            );
        }
        None => {
            o.push_str("# Start now (they also start at every boot).\n");
            for t in tasks {
                let _ = writeln!(o, "Start-ScheduledTask -TaskName {}", ps(t));
            }
        }
    }
    Ok(o)
}
