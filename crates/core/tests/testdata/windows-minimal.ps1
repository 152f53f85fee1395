# renderburst bootstrap of node maya-00007 (pool maya). Rendered by renderburst: do not edit.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# This script holds secrets: delete it and customData now (PowerShell has read all of it).
foreach ($f in @($PSCommandPath, 'C:\AzureData\CustomData.bin')) { if ($f -and (Test-Path -LiteralPath $f)) { Remove-Item -LiteralPath $f -Force } }
$dir = Join-Path $env:ProgramData 'renderburst'
New-Item -ItemType Directory -Force -Path $dir | Out-Null
# Only SYSTEM and Administrators may read what is written here (the node token).
icacls.exe $dir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null

# Time zone (America/Los_Angeles).
Set-TimeZone -Id 'Pacific Standard Time'

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

# Start now (they also start at every boot).
Start-ScheduledTask -TaskName 'renderburst-node'
