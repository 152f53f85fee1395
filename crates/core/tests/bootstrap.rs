//! Bootstrap rendering: the cloud-init document parses as YAML and carries every configured
//! item; the PowerShell script matches its reviewed golden file (no PowerShell parser is
//! installable on this Debian machine without adding Microsoft's repository by hand);
//! secrets come only from the resolver; validation names the field.
//!
//! `UPDATE_GOLDEN=1 cargo test -p renderburst-core --test bootstrap` rewrites the golden
//! files under `tests/testdata/`; review every changed line before committing.

use std::path::PathBuf;

use rb_core::PoolSpec;
use rb_core::bootstrap::{
    BootstrapSpec, ENV_API_URL, ENV_POOL_TOKEN, HostEntry, MASK, NodeContext, SecretRef,
    SecretSource, base64_encode, base64_len, masked, render_cloud_init, render_enrollment_script,
    render_node, render_powershell, render_start_task,
};
use rb_core::spec::Os;
use serde_json::Value;
use serde_json::json;

fn full_section(os: Os) -> serde_json::Value {
    let (target_smb, target_files, target_nfs) = match os {
        Os::Linux => ("/mnt/projects", "/mnt/assets", "/mnt/cache"),
        Os::Windows => ("P:", "A:", "N:"),
    };
    let mut mounts = vec![
        json!({"kind": "smb", "source": "//filer.studio.local/projects", "target": target_smb,
               "username": "render", "password": {"secret": "smb_password"}}),
        json!({"kind": "azure_files", "account": "studioassets", "share": "textures",
               "target": target_files, "key": {"secret": "assets_key"}}),
        json!({"kind": "nfs", "source": "10.1.0.9:/export/cache", "target": target_nfs}),
    ];
    if os == Os::Linux {
        mounts.push(
            json!({"kind": "blob", "account": "studioassets", "share": "plates",
                           "target": "/mnt/plates", "key": {"secret": "blob_key"}}),
        );
    }
    json!({
        "time_zone": "Europe/Berlin",
        "hosts": [{"ip": "10.1.0.5", "names": ["license01", "license01.studio.local"]}],
        "domain": {"name": "studio.local", "ou": "OU=Render,DC=studio,DC=local",
                   "username": "joiner", "password": {"secret": "ad_join_password"}},
        "mounts": mounts,
        "firewall_ports": [{"port": 7774}, {"port": 7773, "protocol": "udp"}],
        "admin": {"username": "artist", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx artist@studio",
                  "password": {"secret": "admin_password"}},
        "env": {"ADSKFLEX_LICENSE_FILE": "2080@license01", "solidangle_LICENSE": "5053@license01",
                "RLM_LICENSE": "5053@license01", "RR_ROOT": {"secret": "rr_root"}},
        "render_client": {"command": "/opt/rr/bin/rrClient -nogui \"$HOME\" 100%"},
        "register_timeout_seconds": 600
    })
}

fn section(v: serde_json::Value) -> BootstrapSpec {
    serde_json::from_value(v).unwrap()
}

/// The declared secrets of the full section, with the reference each replaced (the
/// testdata's values were made from those).
const DECLARED: &[(&str, &str)] = &[
    ("smb_password", "env:SMB_PASSWORD"),
    ("assets_key", "file:/etc/renderburst/assets.key"),
    ("blob_key", "env:BLOB_KEY"),
    ("ad_join_password", "env:AD_JOIN_PASSWORD"),
    ("admin_password", "env:ADMIN_PASSWORD"),
    ("rr_root", "env:RR_ROOT"),
];

/// Secrets as the daemon would resolve them: a distinct value per declared name.
fn resolver(r: &SecretRef) -> Result<String, String> {
    let name = r.name()?;
    let key = DECLARED
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, old)| old);
    Ok(format!(
        "S3CRET-{}",
        key.replace(['/', ':'], "_").to_ascii_uppercase()
    ))
}

fn daemon_host() -> HostEntry {
    HostEntry {
        ip: "10.1.0.4".into(),
        names: vec!["renderburst".into()],
    }
}

fn ctx<'a>(daemon: &'a HostEntry, token: &'a str) -> NodeContext<'a> {
    NodeContext {
        pool: "maya",
        node: "maya-00007",
        api_url: "http://10.1.0.4:7878",
        token,
        default_time_zone: "UTC",
        daemon_host: Some(daemon),
    }
}

const TOKEN: &str = "rbn_0123456789abcdefghijklmnopqrstuvwxyzABCD";

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                panic!(
                    "{name} differs at line {}:\n  golden: {e}\n  actual: {a}",
                    i + 1
                );
            }
        }
        panic!(
            "{name}: line counts differ (golden {}, actual {})",
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

/// Parses a YAML document (cloud-init, blobfuse2's configuration) into a JSON value.
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

fn file<'a>(doc: &'a Value, path: &str) -> &'a str {
    doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("no write_files entry for {path}"))["content"]
        .as_str()
        .unwrap()
}

#[test]
fn cloud_init_is_yaml_with_every_configured_item() {
    let spec = section(full_section(Os::Linux));
    spec.validate(Os::Linux).unwrap();
    let daemon = daemon_host();
    let text = render_cloud_init(&spec, &ctx(&daemon, TOKEN), &resolver).unwrap();
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    let doc = yaml(&text);

    assert_eq!(doc["timezone"].as_str(), Some("Europe/Berlin"));
    let hosts = file(&doc, "/etc/hosts");
    assert!(hosts.contains("10.1.0.4 renderburst\n"), "{hosts}");
    assert!(
        hosts.contains("10.1.0.5 license01 license01.studio.local\n"),
        "{hosts}"
    );

    // Sourced by the node agent: every value shell-quoted.
    let node_env = file(&doc, "/etc/renderburst/node.env");
    assert!(
        node_env.contains(
            "RENDERBURST_REGISTER_URL='http://10.1.0.4:7878/v1/nodes/maya-00007/register'\n"
        ),
        "{node_env}"
    );
    assert!(node_env.contains(
        "RENDERBURST_HEARTBEAT_URL='http://10.1.0.4:7878/v1/nodes/maya-00007/heartbeat'\n"
    ));
    assert!(node_env.contains(&format!("RENDERBURST_NODE_TOKEN='{TOKEN}'\n")));
    let agent = file(&doc, "/usr/local/lib/renderburst/node-agent.sh");
    assert!(agent.contains("-X POST") && agent.contains("$RENDERBURST_REGISTER_URL"));
    assert!(agent.contains("-X PUT") && agent.contains("-d '{}'"));

    let script = file(&doc, "/usr/local/lib/renderburst/bootstrap.sh");
    // Domain.
    assert!(script.contains("realm join --verbose --computer-ou='OU=Render,DC=studio,DC=local' -U 'joiner' 'studio.local'"), "{script}");
    assert_eq!(
        file(&doc, "/etc/renderburst/domain-join.pw"),
        "S3CRET-ENV_AD_JOIN_PASSWORD\n"
    );
    // Mounts: SMB with its credentials file, Azure Files, NFS, Blob.
    assert!(script.contains(
        "//filer.studio.local/projects /mnt/projects cifs credentials=/etc/renderburst/mount-0.cred"
    ));
    assert_eq!(
        file(&doc, "/etc/renderburst/mount-0.cred"),
        "username=render\npassword=S3CRET-ENV_SMB_PASSWORD\n"
    );
    assert!(script.contains("//studioassets.file.core.windows.net/textures /mnt/assets cifs credentials=/etc/renderburst/mount-1.cred"));
    assert_eq!(
        file(&doc, "/etc/renderburst/mount-1.cred"),
        "username=studioassets\npassword=S3CRET-FILE__ETC_RENDERBURST_ASSETS.KEY\n"
    );
    assert!(script.contains("10.1.0.9:/export/cache /mnt/cache nfs defaults,_netdev,nofail 0 0"));
    assert!(
        script.contains(
            "blobfuse2 mount '/mnt/plates' --config-file=/etc/renderburst/blobfuse-3.yaml"
        )
    );
    let blob = yaml(file(&doc, "/etc/renderburst/blobfuse-3.yaml"));
    assert_eq!(blob["azstorage"]["container"].as_str(), Some("plates"));
    assert_eq!(
        blob["azstorage"]["account-key"].as_str(),
        Some("S3CRET-ENV_BLOB_KEY")
    );
    // Firewall.
    assert!(script.contains("ufw allow 7774/tcp") && script.contains("--add-port=7773/udp"));
    // Packages the items need.
    assert!(script.contains("install_packages curl cifs-utils nfs-common realmd"));
    // Admin account.
    let users = doc["users"].as_array().unwrap();
    assert_eq!(users[0].as_str(), Some("default"));
    assert_eq!(users[1]["name"].as_str(), Some("artist"));
    assert_eq!(
        users[1]["ssh_authorized_keys"][0].as_str(),
        Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx artist@studio")
    );
    assert_eq!(doc["chpasswd"]["users"][0]["name"].as_str(), Some("artist"));
    assert_eq!(
        doc["chpasswd"]["users"][0]["password"].as_str(),
        Some("S3CRET-ENV_ADMIN_PASSWORD")
    );
    // Environment: the render client's file has every variable, secrets included; the
    // world-readable profile has no secret.
    let env = file(&doc, "/etc/renderburst/render.env");
    for line in [
        "ADSKFLEX_LICENSE_FILE=\"2080@license01\"",
        "solidangle_LICENSE=\"5053@license01\"",
        "RLM_LICENSE=\"5053@license01\"",
        "RR_ROOT=\"S3CRET-ENV_RR_ROOT\"",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in {env}");
    }
    let profile = file(&doc, "/etc/profile.d/renderburst.sh");
    assert!(profile.contains("export RLM_LICENSE='5053@license01'"));
    assert!(!profile.contains("S3CRET"), "{profile}");
    // Render client, quoted for systemd.
    let unit = file(
        &doc,
        "/etc/systemd/system/renderburst-render-client.service",
    );
    assert!(
        unit.contains(r#"ExecStart=/bin/sh -c "/opt/rr/bin/rrClient -nogui \"$$HOME\" 100%%""#),
        "{unit}"
    );
    assert!(script.contains("systemctl enable --now renderburst-render-client.service"));
    // Registering is the last thing the script does.
    assert!(
        script
            .trim_end()
            .ends_with("systemctl enable --now renderburst-node.service")
    );
    assert_eq!(
        doc["runcmd"][0][0].as_str(),
        Some("/usr/local/lib/renderburst/bootstrap.sh")
    );
    golden("linux-full.cloud-init.yaml", &text);
}

#[test]
fn a_minimal_section_still_registers_and_takes_the_daemon_time_zone() {
    let spec = section(json!({}));
    spec.validate(Os::Linux).unwrap();
    assert_eq!(spec.register_timeout_seconds, 900);
    let daemon = daemon_host();
    let ctx = NodeContext {
        default_time_zone: "America/Los_Angeles",
        daemon_host: None,
        ..ctx(&daemon, TOKEN)
    };
    let text = render_cloud_init(&spec, &ctx, &resolver).unwrap();
    let doc = yaml(&text);
    assert_eq!(doc["timezone"].as_str(), Some("America/Los_Angeles"));
    assert!(doc.get("users").is_none() && doc.get("chpasswd").is_none());
    assert!(file(&doc, "/etc/renderburst/node.env").contains(TOKEN));
    let paths: Vec<&str> = doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(!paths.contains(&"/etc/hosts"), "{paths:?}");
    golden("linux-minimal.cloud-init.yaml", &text);

    let ps = render_powershell(&spec, &ctx, &resolver).unwrap();
    assert!(
        ps.contains("Set-TimeZone -Id 'Pacific Standard Time'"),
        "{ps}"
    );
    golden("windows-minimal.ps1", &ps);
}

#[test]
fn powershell_has_every_configured_item_and_matches_the_reviewed_golden_file() {
    let spec = section(full_section(Os::Windows));
    spec.validate(Os::Windows).unwrap();
    let daemon = daemon_host();
    let text = render_powershell(&spec, &ctx(&daemon, TOKEN), &resolver).unwrap();
    for needle in [
        "Set-TimeZone -Id 'W. Europe Standard Time'",
        "Add-Content -Path $hosts -Value '10.1.0.4 renderburst'",
        "Add-Content -Path $hosts -Value '10.1.0.5 license01 license01.studio.local'",
        "New-NetFirewallRule -DisplayName 'renderburst 7774/tcp' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 7774",
        "-Protocol UDP -LocalPort 7773",
        "New-LocalUser -Name 'artist' -Password $password",
        "ConvertTo-SecureString 'S3CRET-ENV_ADMIN_PASSWORD'",
        "administrators_authorized_keys",
        "'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx artist@studio'",
        "[Environment]::SetEnvironmentVariable('ADSKFLEX_LICENSE_FILE', '2080@license01', 'Machine')",
        "[Environment]::SetEnvironmentVariable('solidangle_LICENSE', '5053@license01', 'Machine')",
        "[Environment]::SetEnvironmentVariable('RLM_LICENSE', '5053@license01', 'Machine')",
        "[Environment]::SetEnvironmentVariable('RR_ROOT', 'S3CRET-ENV_RR_ROOT', 'Machine')",
        "New-SmbGlobalMapping -RemotePath '\\\\filer.studio.local\\projects' -LocalPath 'P:'",
        "'S3CRET-ENV_SMB_PASSWORD'",
        "New-SmbGlobalMapping -RemotePath '\\\\studioassets.file.core.windows.net\\textures' -LocalPath 'A:'",
        "'localhost\\studioassets'",
        "& mount.exe -o anon,nolock '10.1.0.9:/export/cache' 'N:'",
        "$RegisterUrl = 'http://10.1.0.4:7878/v1/nodes/maya-00007/register'",
        "$HeartbeatUrl = 'http://10.1.0.4:7878/v1/nodes/maya-00007/heartbeat'",
        &format!("Authorization = 'Bearer ' + '{TOKEN}'"),
        "-Argument '/c /opt/rr/bin/rrClient -nogui \"$HOME\" 100%'",
        "Add-Computer -DomainName 'studio.local' -OUPath 'OU=Render,DC=studio,DC=local' -Credential $joinCredential -Force -Restart",
        "ConvertTo-SecureString 'S3CRET-ENV_AD_JOIN_PASSWORD'",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // The domain join restarts the machine: it is the last line.
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Add-Computer")
    );
    golden("windows-full.ps1", &text);
}

#[test]
fn quotes_in_values_are_escaped_for_powershell_and_the_shell() {
    let spec = section(json!({
        "env": {"NOTE": "it's \"quoted\""},
        "render_client": {"command": "echo 'hi'"}
    }));
    spec.validate(Os::Windows).unwrap();
    let daemon = daemon_host();
    let ps = render_powershell(&spec, &ctx(&daemon, TOKEN), &resolver).unwrap();
    assert!(
        ps.contains("SetEnvironmentVariable('NOTE', 'it''s \"quoted\"', 'Machine')"),
        "{ps}"
    );
    assert!(ps.contains("-Argument '/c echo ''hi'''"), "{ps}");
    let ci = render_cloud_init(&spec, &ctx(&daemon, TOKEN), &resolver).unwrap();
    let doc = yaml(&ci);
    assert!(
        file(&doc, "/etc/profile.d/renderburst.sh").contains(r#"export NOTE='it'\''s "quoted"'"#)
    );
    assert!(file(&doc, "/etc/renderburst/render.env").contains(r#"NOTE="it's \"quoted\"""#));
}

#[test]
fn masked_previews_show_no_secret_and_no_token() {
    let spec = section(full_section(Os::Linux));
    let daemon = daemon_host();
    let text = render_cloud_init(&spec, &ctx(&daemon, MASK), &masked).unwrap();
    assert!(!text.contains("S3CRET") && !text.contains(TOKEN));
    assert!(text.contains(&format!("RENDERBURST_NODE_TOKEN='{MASK}'")));
    let spec = section(full_section(Os::Windows));
    let text = render_powershell(&spec, &ctx(&daemon, MASK), &masked).unwrap();
    assert!(!text.contains("S3CRET") && !text.contains(TOKEN));
}

#[test]
fn an_unresolvable_or_multi_line_secret_names_its_field() {
    let spec = section(full_section(Os::Linux));
    let daemon = daemon_host();
    let fail = |r: &SecretRef| {
        if r.secret == "smb_password" {
            Err("not set".to_string())
        } else {
            Ok("x".to_string())
        }
    };
    let e = render_cloud_init(&spec, &ctx(&daemon, TOKEN), &fail).unwrap_err();
    assert_eq!(e.field, "bootstrap.mounts[0].password");
    assert!(e.message.contains("smb_password") && e.message.contains("not set"));
    let two_lines = |_: &SecretRef| Ok("a\nb".to_string());
    let e = render_cloud_init(&spec, &ctx(&daemon, TOKEN), &two_lines).unwrap_err();
    assert_eq!(e.field, "bootstrap.domain.password");
}

#[test]
fn validation_names_the_field() {
    let cases: Vec<(Os, serde_json::Value, &str)> = vec![
        (
            Os::Linux,
            json!({"time_zone": "Berlin time"}),
            "bootstrap.time_zone",
        ),
        (
            Os::Windows,
            json!({"time_zone": "Antarctica/Troll"}),
            "bootstrap.time_zone",
        ),
        (
            Os::Linux,
            json!({"hosts": [{"ip": "10.0.0.300", "names": ["a"]}]}),
            "bootstrap.hosts[0].ip",
        ),
        (
            Os::Linux,
            json!({"hosts": [{"ip": "10.0.0.3", "names": ["bad name"]}]}),
            "bootstrap.hosts[0].names[0]",
        ),
        (
            Os::Linux,
            json!({"domain": {"name": "studio", "username": "j", "password": {"secret": "p"}}}),
            "bootstrap.domain.name",
        ),
        (
            Os::Linux,
            json!({"domain": {"name": "studio.local", "ou": "Render", "username": "j", "password": {"secret": "p"}}}),
            "bootstrap.domain.ou",
        ),
        (
            Os::Linux,
            json!({"domain": {"name": "studio.local", "username": "j", "password": {"secret": "vault:p"}}}),
            "bootstrap.domain.password.secret",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "smb", "source": "filer/projects", "target": "/mnt/p"}]}),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "smb", "target": "/mnt/p"}]}),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "filer:/x", "target": "mnt"}]}),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Windows,
            json!({"mounts": [{"kind": "nfs", "source": "filer:/x", "target": "/mnt/x"}]}),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "smb", "source": "//f/p", "target": "/mnt/p", "username": "u"}]}),
            "bootstrap.mounts[0].password",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "filer:/x", "target": "/mnt/x", "key": {"secret": "k"}}]}),
            "bootstrap.mounts[0].key",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "azure_files", "account": "Bad_Account", "share": "abc", "target": "/mnt/x", "key": {"secret": "k"}}]}),
            "bootstrap.mounts[0].account",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "azure_files", "account": "acct", "share": "abc", "target": "/mnt/x"}]}),
            "bootstrap.mounts[0].key",
        ),
        (
            Os::Windows,
            json!({"mounts": [{"kind": "blob", "account": "acct", "share": "abc", "target": "B:", "key": {"secret": "k"}}]}),
            "bootstrap.mounts[0].kind",
        ),
        (
            Os::Linux,
            json!({"firewall_ports": [{"port": 0}]}),
            "bootstrap.firewall_ports[0].port",
        ),
        (
            Os::Linux,
            json!({"admin": {"username": "artist"}}),
            "bootstrap.admin",
        ),
        (
            Os::Linux,
            json!({"admin": {"username": "root", "password": {"secret": "p"}}}),
            "bootstrap.admin.username",
        ),
        (
            Os::Linux,
            json!({"admin": {"username": "artist", "ssh_public_key": "not a key"}}),
            "bootstrap.admin.ssh_public_key",
        ),
        (
            Os::Linux,
            json!({"env": {"1BAD": "x"}}),
            "bootstrap.env.1BAD",
        ),
        (
            Os::Linux,
            json!({"env": {"RENDERBURST_NODE": "x"}}),
            "bootstrap.env.RENDERBURST_NODE",
        ),
        (
            Os::Linux,
            json!({"env": {"A": "two\nlines"}}),
            "bootstrap.env.A",
        ),
        (
            Os::Linux,
            json!({"render_client": {"command": " "}}),
            "bootstrap.render_client.command",
        ),
        (
            Os::Linux,
            json!({"register_timeout_seconds": 0}),
            "bootstrap.register_timeout_seconds",
        ),
    ];
    for (os, v, field) in cases {
        let spec = section(v.clone());
        let e = spec.validate(os).expect_err(&v.to_string());
        assert_eq!(e.field, field, "{v}: {}", e.message);
    }
}

#[test]
fn the_pool_spec_parses_the_section_and_names_unknown_fields() {
    let mut body = json!({
        "name": "maya", "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 3,
        "bootstrap": full_section(Os::Linux),
    });
    let spec = PoolSpec::from_json(body.to_string().as_bytes()).unwrap();
    spec.validate(&|_| true).unwrap();
    // Secrets stay references in the stored spec.
    let stored = serde_json::to_string(&spec).unwrap();
    assert!(stored.contains(r#"{"secret":"smb_password"}"#), "{stored}");

    body["bootstrap"]["mounts"][0]["sorce"] = json!("x");
    let e = PoolSpec::from_json(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.field, "bootstrap.mounts[0].sorce");

    // Validation through the pool names the section's field.
    let mut body = json!({
        "name": "maya", "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 3,
        "bootstrap": {"mounts": [{"kind": "smb", "source": "nope", "target": "/mnt/p"}]},
    });
    let spec = PoolSpec::from_json(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        spec.validate(&|_| true).unwrap_err().field,
        "bootstrap.mounts[0].source"
    );

    // A section that would not fit in customData is refused.
    let hosts: Vec<_> = (0..100)
        .map(|i| json!({"ip": format!("10.2.0.{i}"), "names": (0..8).map(|j| format!("{}-{i}-{j}.studio.local", "h".repeat(50))).collect::<Vec<_>>()}))
        .collect();
    body["bootstrap"] = json!({"hosts": hosts});
    let spec = PoolSpec::from_json(body.to_string().as_bytes()).unwrap();
    let e = spec.validate(&|_| true).unwrap_err();
    assert_eq!(e.field, "bootstrap");
    assert!(e.message.contains("customData"), "{}", e.message);
}

#[test]
fn render_node_checks_the_custom_data_limit_and_base64_is_standard() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_len(6), 8);
    assert_eq!(base64_len(7), 12);
    let spec = section(full_section(Os::Linux));
    let daemon = daemon_host();
    let node = render_node(&spec, Os::Linux, &ctx(&daemon, TOKEN), &resolver).unwrap();
    assert_eq!(node.format, "cloud-init");
    let node = render_node(
        &section(full_section(Os::Windows)),
        Os::Windows,
        &ctx(&daemon, TOKEN),
        &resolver,
    )
    .unwrap();
    assert_eq!(node.format, "powershell");
}

/// A spec names a declared secret, never the daemon's environment or files: the old forms
/// are refused with how to declare what they named.
#[test]
fn secret_references_are_declared_names() {
    let r = |s: &str| SecretRef { secret: s.into() };
    assert_eq!(r("ad-join").name(), Ok("ad-join"));
    assert_eq!(r("smb_pw2").name(), Ok("smb_pw2"));
    for bad in ["", "Ad", "-x", "a.b", "a/b", "hunter 2", &"x".repeat(64)] {
        assert!(r(bad).name().is_err(), "{bad:?}");
    }
    let e = r("env:AD_PASS").name().unwrap_err();
    assert_eq!(
        e,
        r#"secret "env:AD_PASS" is no longer accepted: declare [secrets.ad_pass] env = "AD_PASS" in the config file and refer to it as {"secret": "ad_pass"}"#
    );
    let e = r("file:/etc/renderburst/smb.password").name().unwrap_err();
    assert!(
        e.contains(r#"[secrets.smb_password] file = "/etc/renderburst/smb.password""#),
        "{e}"
    );
    assert_eq!(
        r("env:RENDERBURST__AZURE__CLIENT_SECRET").legacy_source(),
        Some(SecretSource::Env(
            "RENDERBURST__AZURE__CLIENT_SECRET".into()
        ))
    );
    assert_eq!(r("ad-join").legacy_source(), None);
    // In a spec: 422 naming the field.
    let spec = section(json!({"admin": {"username": "artist",
        "password": {"secret": "env:RENDERBURST__AZURE__CLIENT_SECRET"}}}));
    let e = spec.validate(Os::Linux).unwrap_err();
    assert_eq!(e.field, "bootstrap.admin.password.secret");
    assert!(e.message.contains("no longer accepted"), "{}", e.message);
}

#[test]
fn batch_start_tasks_carry_no_secret_only_the_enrollment() {
    const POOL_TOKEN: &str = "rbp_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let task = render_start_task(Os::Linux, "https://rb.studio:7878", POOL_TOKEN);
    assert!(task.elevated);
    assert_eq!(
        task.environment,
        vec![
            (ENV_API_URL.into(), "https://rb.studio:7878".into()),
            (ENV_POOL_TOKEN.into(), POOL_TOKEN.into()),
        ]
    );
    // One single-quoted bash script: nothing inside may close the quotes.
    let body = task
        .command_line
        .strip_prefix("/bin/bash -c '")
        .and_then(|b| b.strip_suffix('\''))
        .expect(&task.command_line);
    assert!(!body.contains('\''), "{body}");
    for part in [
        "if [ -s /etc/renderburst/node.env ]; then",
        "-X POST -H \"Authorization: Bearer $RENDERBURST_POOL_TOKEN\"",
        "\"$RENDERBURST_API_URL/v1/nodes/$AZ_BATCH_NODE_ID/enroll\"",
        "--retry-all-errors",
        "trap \"rm -f $s\" EXIT",
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }

    let task = render_start_task(Os::Windows, "https://rb.studio:7878", POOL_TOKEN);
    let encoded = task
        .command_line
        .strip_prefix("powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand ")
        .expect(&task.command_line);
    // -EncodedCommand is base64 of UTF-16LE.
    let bytes = decode_bytes(encoded);
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let script = String::from_utf16(&units).unwrap();
    for part in [
        "Test-Path (Join-Path $env:ProgramData 'renderburst\\node-agent.ps1')",
        "$uri = $env:RENDERBURST_API_URL + '/v1/nodes/' + $env:AZ_BATCH_NODE_ID + '/enroll'",
        "Authorization = 'Bearer ' + $env:RENDERBURST_POOL_TOKEN",
        "Invoke-Expression $script",
    ] {
        assert!(script.contains(part), "{part} not in {script}");
    }
    assert_eq!(task.environment[1].1, POOL_TOKEN);
}

/// `bash -n` (parse, run nothing) accepts the Linux start task, the enrollment script and the
/// scripts cloud-init writes.
#[test]
fn bash_parses_the_batch_start_task_and_the_enrollment_script() {
    let Ok(out) = std::process::Command::new("bash").arg("--version").output() else {
        eprintln!("no bash here: syntax not checked");
        return;
    };
    assert!(out.status.success());
    let task = render_start_task(Os::Linux, "https://rb.studio:7878", "rbp_x");
    let body = task
        .command_line
        .strip_prefix("/bin/bash -c '")
        .and_then(|b| b.strip_suffix('\''))
        .unwrap()
        .to_string();
    let daemon = daemon_host();
    let script = render_enrollment_script(
        &section(full_section(Os::Linux)),
        Os::Linux,
        &ctx(&daemon, TOKEN),
        &resolver,
    )
    .unwrap();
    // And the scripts cloud-init writes (the enrollment script carries them as data).
    let doc = yaml(
        &render_cloud_init(
            &section(full_section(Os::Linux)),
            &ctx(&daemon, TOKEN),
            &resolver,
        )
        .unwrap(),
    );
    let bootstrap = file(&doc, "/usr/local/lib/renderburst/bootstrap.sh").to_string();
    let agent = file(&doc, "/usr/local/lib/renderburst/node-agent.sh").to_string();
    for (what, text) in [
        ("start task", body),
        ("enrollment script", script),
        ("bootstrap.sh", bootstrap),
        ("node-agent.sh", agent),
    ] {
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", &text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_enrollment_script_is_the_bootstrap_as_a_shell_or_powershell_script() {
    let daemon = daemon_host();
    let spec = section(full_section(Os::Linux));
    let script =
        render_enrollment_script(&spec, Os::Linux, &ctx(&daemon, TOKEN), &resolver).unwrap();
    assert!(script.starts_with("#!/bin/bash\n"));
    assert!(script.contains("timedatectl set-timezone 'Europe/Berlin'"));
    assert!(
        script.contains("useradd -m -s '/bin/bash' 'artist'"),
        "{script}"
    );
    assert!(script.contains("/etc/renderburst/node.env"));
    assert!(script.contains(&format!("RENDERBURST_NODE_TOKEN='\\''{TOKEN}'\\''")));
    assert!(script.contains("http://10.1.0.4:7878/v1/nodes/maya-00007/register"));
    assert!(script.contains("S3CRET-ENV_SMB_PASSWORD"));
    assert!(
        script
            .trim_end()
            .ends_with("'/usr/local/lib/renderburst/bootstrap.sh'")
    );
    let masked_script =
        render_enrollment_script(&spec, Os::Linux, &ctx(&daemon, MASK), &masked).unwrap();
    assert!(!masked_script.contains("S3CRET") && !masked_script.contains("rbn_"));

    let spec = section(full_section(Os::Windows));
    let script =
        render_enrollment_script(&spec, Os::Windows, &ctx(&daemon, TOKEN), &resolver).unwrap();
    assert_eq!(
        script,
        render_powershell(&spec, &ctx(&daemon, TOKEN), &resolver).unwrap()
    );
}

#[test]
fn batch_pools_take_a_bootstrap_section_with_renderburst_s_start_task() {
    let mut body = json!({
        "name": "nuke", "mode": "batch", "vm_sizes": ["Standard_D4s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 3,
        "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04"},
        "licenses": [{"name": "nuke", "variable": "foundry_LICENSE", "server": "4101@lic"}],
        "bootstrap": full_section(Os::Linux),
    });
    let spec = PoolSpec::from_json(body.to_string().as_bytes()).unwrap();
    spec.validate(&|_| true).unwrap();
    // The licenses reach the nodes with the section's environment.
    let b = spec.node_bootstrap().unwrap();
    assert_eq!(
        serde_json::to_value(&b.env["foundry_LICENSE"]).unwrap(),
        json!("4101@lic")
    );
    assert_eq!(b.env.len(), spec.bootstrap.as_ref().unwrap().env.len() + 1);

    let refused = |body: &serde_json::Value| {
        PoolSpec::from_json(body.to_string().as_bytes())
            .unwrap()
            .validate(&|_| true)
            .unwrap_err()
    };
    let mut clash = body.clone();
    clash["licenses"][0]["variable"] = json!("RLM_LICENSE");
    let e = refused(&clash);
    assert_eq!(e.field, "licenses[0].variable", "{}", e.message);

    let mut adopted = body.clone();
    adopted["batch"]["existing_pool"] = json!("theirs");
    let e = refused(&adopted);
    assert_eq!(e.field, "bootstrap", "{}", e.message);
    assert!(e.message.contains("existing_pool"), "{}", e.message);

    body["batch"]["start_task"] = json!({"command_line": "/bin/true"});
    let e = refused(&body);
    assert_eq!(e.field, "batch.start_task", "{}", e.message);
    assert!(e.message.contains("render_client"), "{}", e.message);
}

fn decode_bytes(s: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}
