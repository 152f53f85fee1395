# renderburst bootstrap of node maya-00007 (pool maya). Rendered by renderburst: do not edit.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# This script holds secrets: delete it and customData now (PowerShell has read all of it).
foreach ($f in @($PSCommandPath, 'C:\AzureData\CustomData.bin')) { if ($f -and (Test-Path -LiteralPath $f)) { Remove-Item -LiteralPath $f -Force } }
$dir = Join-Path $env:ProgramData 'renderburst'
New-Item -ItemType Directory -Force -Path $dir | Out-Null
# Only SYSTEM and Administrators may read what is written here (the node token).
icacls.exe $dir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null

# Time zone (Europe/Berlin).
Set-TimeZone -Id 'W. Europe Standard Time'

# Hosts entries.
$hosts = Join-Path $env:SystemRoot 'System32\drivers\etc\hosts'
Add-Content -Path $hosts -Value '10.1.0.4 renderburst' -Encoding ASCII
Add-Content -Path $hosts -Value '10.1.0.5 license01 license01.studio.local' -Encoding ASCII

# Firewall ports for the render manager.
New-NetFirewallRule -DisplayName 'renderburst 7774/tcp' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 7774 | Out-Null
New-NetFirewallRule -DisplayName 'renderburst 7773/udp' -Direction Inbound -Action Allow -Protocol UDP -LocalPort 7773 | Out-Null

# Local administrator for remote sessions.
$password = ConvertTo-SecureString 'S3CRET-ENV_ADMIN_PASSWORD' -AsPlainText -Force
New-LocalUser -Name 'artist' -Password $password -PasswordNeverExpires | Out-Null
Add-LocalGroupMember -Group 'Administrators' -Member 'artist'
Add-LocalGroupMember -Group 'Remote Desktop Users' -Member 'artist'
Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null
$keys = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
New-Item -ItemType Directory -Force -Path (Split-Path $keys) | Out-Null
Set-Content -Path $keys -Value 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx artist@studio' -Encoding ASCII
icacls.exe $keys /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null
Set-Service -Name sshd -StartupType Automatic
Start-Service sshd
New-NetFirewallRule -DisplayName 'renderburst ssh' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 22 | Out-Null

# Environment (license servers...), machine-wide.
[Environment]::SetEnvironmentVariable('ADSKFLEX_LICENSE_FILE', '2080@license01', 'Machine')
[Environment]::SetEnvironmentVariable('RLM_LICENSE', '5053@license01', 'Machine')
[Environment]::SetEnvironmentVariable('RR_ROOT', 'S3CRET-ENV_RR_ROOT', 'Machine')
[Environment]::SetEnvironmentVariable('solidangle_LICENSE', '5053@license01', 'Machine')

# Share mounts (global mappings: visible to services and every session).
$credential = New-Object System.Management.Automation.PSCredential('render', (ConvertTo-SecureString 'S3CRET-ENV_SMB_PASSWORD' -AsPlainText -Force))
New-SmbGlobalMapping -RemotePath '\\filer.studio.local\projects' -LocalPath 'P:' -Credential $credential -Persistent $true | Out-Null
$credential = New-Object System.Management.Automation.PSCredential('localhost\studioassets', (ConvertTo-SecureString 'S3CRET-FILE__ETC_RENDERBURST_ASSETS.KEY' -AsPlainText -Force))
New-SmbGlobalMapping -RemotePath '\\studioassets.file.core.windows.net\textures' -LocalPath 'A:' -Credential $credential -Persistent $true | Out-Null
Install-WindowsFeature -Name NFS-Client | Out-Null
& mount.exe -o anon,nolock '10.1.0.9:/export/cache' 'N:'

# Node agent: registers with renderburst, then reports the node alive every 30 s.
# The heartbeat body is {} (liveness only): "busy" is the render manager's to report.
$agent = @'
$RegisterUrl = 'http://10.1.0.4:7878/v1/nodes/maya-00007/register'
$HeartbeatUrl = 'http://10.1.0.4:7878/v1/nodes/maya-00007/heartbeat'
$Headers = @{ Authorization = 'Bearer ' + 'rbn_0123456789abcdefghijklmnopqrstuvwxyzABCD' }
while ($true) {
    try {
        Invoke-RestMethod -Method Post -Uri $RegisterUrl -Headers $Headers -ContentType 'application/json' -Body (@{ hostname = $env:COMPUTERNAME } | ConvertTo-Json) | Out-Null
        break
    } catch { Start-Sleep -Seconds 10 }
}
while ($true) {
    try { Invoke-RestMethod -Method Put -Uri $HeartbeatUrl -Headers $Headers -ContentType 'application/json' -Body '{}' | Out-Null } catch { }
    Start-Sleep -Seconds 30
}
'@
Set-Content -Path (Join-Path $dir 'node-agent.ps1') -Value $agent -Encoding UTF8
$action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -ExecutionPolicy Bypass -File "' + (Join-Path $dir 'node-agent.ps1') + '"')
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1)
Register-ScheduledTask -TaskName 'renderburst-node' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null

# Render client: a start-up task running as SYSTEM.
$action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument '/c /opt/rr/bin/rrClient -nogui "$HOME" 100%'
Register-ScheduledTask -TaskName 'renderburst-render-client' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null

# Active Directory: join, then restart; the start-up tasks run after the restart.
$joinPassword = ConvertTo-SecureString 'S3CRET-ENV_AD_JOIN_PASSWORD' -AsPlainText -Force
$joinCredential = New-Object System.Management.Automation.PSCredential('joiner', $joinPassword)
Add-Computer -DomainName 'studio.local' -OUPath 'OU=Render,DC=studio,DC=local' -Credential $joinCredential -Force -Restart
