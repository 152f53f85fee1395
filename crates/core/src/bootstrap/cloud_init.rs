//! Linux rendering: the `#cloud-config` document of a VM's `customData`
//! ([`render_cloud_init`]), the bootstrap shell script it runs once, and the same document as
//! one shell script for Batch nodes, which have no cloud-init step ([`cloud_init_as_script`]).

use std::fmt::Write as _;

use serde::Serialize;

use crate::spec::SpecError;

use super::grammar::smb_parts;
use super::quote::{self, sh};
use super::render::{NodeContext, Resolver, Secrets, env_pairs, host_lines, protocol_str};
use super::section::{BootstrapSpec, EnvValue, MountKind};
use super::validate::err;

/// Where a mount's credentials file lives on Linux.
fn cred_path(i: usize) -> String {
    format!("/etc/renderburst/mount-{i}.cred")
}

/// The node agent: register (retrying until renderburst answers), then a liveness
/// heartbeat every 30 s. It sends `{}` so that it never overwrites the `busy` flag the
/// render manager reports.
const LINUX_AGENT: &str = r#"#!/bin/sh
# renderburst node agent: registers this node, then reports it alive every 30 s.
# The body of the heartbeat is {} (liveness only): "busy" is the render manager's to report.
. /etc/renderburst/node.env
auth="Authorization: Bearer $RENDERBURST_NODE_TOKEN"
until curl -fsS -m 20 -X POST -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"hostname\":\"$(hostname)\"}" "$RENDERBURST_REGISTER_URL" >/dev/null; do
  sleep 10
done
while :; do
  curl -fsS -m 20 -X PUT -H "$auth" -H 'Content-Type: application/json' -d '{}' \
    "$RENDERBURST_HEARTBEAT_URL" >/dev/null || true
  sleep 30
done
"#;

/// A `#cloud-config` document: what renderburst writes of cloud-init's schema, typed so that the
/// YAML serializer (not string formatting) writes every value. The Batch enrollment script is
/// made from the same value ([`cloud_init_as_script`]).
#[derive(Debug, Serialize)]
pub(super) struct CloudConfig {
    timezone: String,
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<CloudUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chpasswd: Option<Chpasswd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_pwauth: Option<bool>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct WriteFile {
    path: String,
    permissions: &'static str,
    owner: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    append: bool,
    content: String,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum CloudUser {
    /// `default`: the image's default user stays.
    Default(&'static str),
    Account(CloudAccount),
}

#[derive(Debug, Serialize)]
struct CloudAccount {
    name: String,
    shell: &'static str,
    sudo: String,
    lock_passwd: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Chpasswd {
    expire: bool,
    users: Vec<ChpasswdUser>,
}

#[derive(Debug, Serialize)]
struct ChpasswdUser {
    name: String,
    password: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// blobfuse2's configuration file for one container.
#[derive(Debug, Serialize)]
struct BlobfuseConfig {
    #[serde(rename = "allow-other")]
    allow_other: bool,
    components: [&'static str; 4],
    azstorage: BlobfuseStorage,
}

#[derive(Debug, Serialize)]
struct BlobfuseStorage {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "account-name")]
    account_name: String,
    container: String,
    mode: &'static str,
    #[serde(rename = "account-key")]
    account_key: String,
}

fn write_file(path: &str, mode: &'static str, content: String, append: bool) -> WriteFile {
    WriteFile {
        path: path.to_string(),
        permissions: mode,
        owner: "root:root",
        append,
        content,
    }
}

fn yaml_error(e: String) -> SpecError {
    err("bootstrap", format!("cannot render YAML: {e}"))
}

/// Renders the `#cloud-config` document for a Linux node. Secrets are resolved through
/// `resolve` (pass [`masked`](super::masked) for a preview).
pub fn render_cloud_init(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    let doc = cloud_config(spec, ctx, resolve)?;
    let body = quote::yaml(&doc).map_err(yaml_error)?;
    Ok(format!(
        "#cloud-config\n# renderburst bootstrap of node {} (pool {}). Rendered by renderburst: do not edit.\n{body}",
        quote::comment(ctx.node),
        quote::comment(ctx.pool)
    ))
}

pub(super) fn cloud_config(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<CloudConfig, SpecError> {
    let secrets = Secrets::resolve(spec, resolve)?;
    let file = write_file;
    let tz = spec.time_zone.as_deref().unwrap_or(ctx.default_time_zone);

    let mut files = Vec::new();
    let hosts = host_lines(ctx, spec);
    if !hosts.is_empty() {
        let mut text = String::from("# added by renderburst bootstrap\n");
        for h in &hosts {
            text.push_str(h);
            text.push('\n');
        }
        files.push(file("/etc/hosts", "0644", text, true));
    }
    // Sourced by the node agent (`. /etc/renderburst/node.env`): every value shell-quoted.
    let mut node_env = String::new();
    for (k, v) in [
        ("RENDERBURST_POOL", ctx.pool.to_string()),
        ("RENDERBURST_NODE", ctx.node.to_string()),
        ("RENDERBURST_REGISTER_URL", ctx.register_url()),
        ("RENDERBURST_HEARTBEAT_URL", ctx.heartbeat_url()),
        ("RENDERBURST_NODE_TOKEN", ctx.token.to_string()),
    ] {
        let _ = writeln!(node_env, "{k}={}", sh(&v));
    }
    files.push(file("/etc/renderburst/node.env", "0600", node_env, false));
    files.push(file(
        "/usr/local/lib/renderburst/node-agent.sh",
        "0755",
        LINUX_AGENT.to_string(),
        false,
    ));
    files.push(file(
        "/etc/systemd/system/renderburst-node.service",
        "0644",
        "[Unit]\nDescription=renderburst node agent (register, heartbeat)\nAfter=network-online.target remote-fs.target\nWants=network-online.target\n\n[Service]\nExecStart=/usr/local/lib/renderburst/node-agent.sh\nRestart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n".to_string(),
        false,
    ));
    let env = env_pairs(spec, &secrets);
    // The render client's environment: the section's variables (systemd EnvironmentFile
    // syntax) ...
    let mut render_env = String::new();
    for (k, v) in &env {
        let _ = writeln!(render_env, "{k}={}", quote::systemd_env(v));
    }
    if !env.is_empty() {
        files.push(file(
            "/etc/renderburst/render.env",
            "0600",
            render_env,
            false,
        ));
        // ... and the same for login shells, without secrets (profile.d is world-readable).
        let mut profile = String::from("# renderburst bootstrap: the pool's environment\n");
        for (k, v) in &spec.env {
            if let EnvValue::Plain(value) = v {
                let _ = writeln!(profile, "export {k}={}", sh(value));
            }
        }
        files.push(file(
            "/etc/profile.d/renderburst.sh",
            "0644",
            profile,
            false,
        ));
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        match m.kind {
            MountKind::Smb => {
                if let Some(u) = &m.username {
                    let pw = secrets.get(&format!("bootstrap.mounts[{i}].password"));
                    files.push(file(
                        &cred_path(i),
                        "0600",
                        format!("username={u}\npassword={pw}\n"),
                        false,
                    ));
                }
            }
            MountKind::AzureFiles => {
                let account = m.account.as_deref().unwrap_or_default();
                let key = secrets.get(&format!("bootstrap.mounts[{i}].key"));
                files.push(file(
                    &cred_path(i),
                    "0600",
                    format!("username={account}\npassword={key}\n"),
                    false,
                ));
            }
            MountKind::Blob => {
                let config = BlobfuseConfig {
                    allow_other: true,
                    components: ["libfuse", "file_cache", "attr_cache", "azstorage"],
                    azstorage: BlobfuseStorage {
                        kind: "block",
                        account_name: m.account.clone().unwrap_or_default(),
                        container: m.share.clone().unwrap_or_default(),
                        mode: "key",
                        account_key: secrets
                            .get(&format!("bootstrap.mounts[{i}].key"))
                            .to_string(),
                    },
                };
                files.push(file(
                    &format!("/etc/renderburst/blobfuse-{i}.yaml"),
                    "0600",
                    quote::yaml(&config).map_err(yaml_error)?,
                    false,
                ));
            }
            MountKind::Nfs => {}
        }
    }
    if spec.domain.is_some() {
        files.push(file(
            DOMAIN_PASSWORD_FILE,
            "0600",
            format!("{}\n", secrets.get("bootstrap.domain.password")),
            false,
        ));
    }
    if let Some(rc) = &spec.render_client {
        let env_file = if env.is_empty() {
            String::new()
        } else {
            "EnvironmentFile=/etc/renderburst/render.env\n".to_string()
        };
        files.push(file(
            "/etc/systemd/system/renderburst-render-client.service",
            "0644",
            format!(
                "[Unit]\nDescription=Render client (renderburst bootstrap)\nAfter=network-online.target remote-fs.target\nWants=network-online.target\n\n[Service]\n{env_file}ExecStart=/bin/sh -c {}\nRestart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n",
                quote::systemd_exec(&rc.command)
            ),
            false,
        ));
    }
    files.push(file(BOOTSTRAP_SCRIPT, "0700", linux_script(spec), false));

    let mut doc = CloudConfig {
        timezone: tz.to_string(),
        write_files: files,
        users: Vec::new(),
        chpasswd: None,
        ssh_pwauth: None,
        runcmd: vec![vec![BOOTSTRAP_SCRIPT.to_string()]],
    };
    if let Some(a) = &spec.admin {
        doc.users = vec![
            CloudUser::Default("default"),
            CloudUser::Account(CloudAccount {
                name: a.username.clone(),
                shell: "/bin/bash",
                sudo: "ALL=(ALL) NOPASSWD:ALL".to_string(),
                lock_passwd: a.password.is_none(),
                ssh_authorized_keys: a.ssh_public_key.iter().cloned().collect(),
            }),
        ];
        if a.password.is_some() {
            doc.chpasswd = Some(Chpasswd {
                expire: false,
                users: vec![ChpasswdUser {
                    name: a.username.clone(),
                    password: secrets.get("bootstrap.admin.password").to_string(),
                    kind: "text",
                }],
            });
            doc.ssh_pwauth = Some(true);
        }
    }
    Ok(doc)
}

/// The bootstrap script cloud-init (or the Batch enrollment script) runs once.
const BOOTSTRAP_SCRIPT: &str = "/usr/local/lib/renderburst/bootstrap.sh";
/// The domain-join password, read once by `realm join` and removed on every exit.
const DOMAIN_PASSWORD_FILE: &str = "/etc/renderburst/domain-join.pw";

/// The shell script cloud-init runs once (`runcmd`): packages, firewall, domain, mounts,
/// then the render client and the node agent, which registers last — a node that failed to
/// bootstrap never registers and is replaced as a zombie.
fn linux_script(spec: &BootstrapSpec) -> String {
    let mut o = String::new();
    o.push_str("#!/bin/bash\n# renderburst bootstrap, run once by cloud-init. Registers the node last.\nset -euo pipefail\nexec >>/var/log/renderburst-bootstrap.log 2>&1\n");
    if spec.domain.is_some() {
        // Whether the join works or not, the password does not stay on the disk.
        let _ = writeln!(
            o,
            "trap {} EXIT",
            sh(&format!("rm -f {DOMAIN_PASSWORD_FILE}"))
        );
    }
    o.push('\n');
    o.push_str("install_packages() {\n  if command -v apt-get >/dev/null; then\n    DEBIAN_FRONTEND=noninteractive apt-get -y -q update\n    DEBIAN_FRONTEND=noninteractive apt-get -y -q install \"$@\"\n  elif command -v dnf >/dev/null; then\n    dnf -y -q install \"$@\"\n  else\n    zypper -n -q install \"$@\"\n  fi\n}\n\n");
    let mut pkgs: Vec<&str> = vec!["curl"];
    if spec
        .mounts
        .iter()
        .any(|m| matches!(m.kind, MountKind::Smb | MountKind::AzureFiles))
    {
        pkgs.push("cifs-utils");
    }
    if spec.mounts.iter().any(|m| m.kind == MountKind::Nfs) {
        pkgs.push("nfs-common");
    }
    if spec.domain.is_some() {
        pkgs.extend([
            "realmd",
            "sssd",
            "sssd-tools",
            "adcli",
            "samba-common-bin",
            "krb5-user",
            "packagekit",
        ]);
    }
    let _ = writeln!(
        o,
        "# Packages (Debian and Ubuntu names; apt-get, dnf or zypper is used).\ninstall_packages {}\n",
        pkgs.join(" ")
    );
    if !spec.firewall_ports.is_empty() {
        o.push_str("# Firewall ports for the render manager.\n");
        for p in &spec.firewall_ports {
            let rule = format!("{}/{}", p.port, protocol_str(p.protocol));
            let _ = writeln!(
                o,
                "if command -v ufw >/dev/null; then ufw allow {rule}; fi\nif command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --permanent --add-port={rule}; fi"
            );
        }
        o.push_str("if command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --reload; fi\n\n");
    }
    if let Some(d) = &spec.domain {
        o.push_str("# Active Directory (realmd).\n");
        let ou =
            d.ou.as_ref()
                .map(|ou| format!(" --computer-ou={}", sh(ou)))
                .unwrap_or_default();
        let _ = writeln!(
            o,
            "if ! realm list | grep -qi {dom}; then\n  realm join --verbose{ou} -U {user} {dom} <{pw}\nfi\nrm -f {pw}\n",
            dom = sh(&d.name),
            user = sh(&d.username),
            pw = sh(DOMAIN_PASSWORD_FILE),
        );
    }
    if !spec.mounts.is_empty() {
        o.push_str("# Share mounts.\n");
        for (i, m) in spec.mounts.iter().enumerate() {
            // Validated (`^/[A-Za-z0-9._/-]+$`), so it can stand in an fstab line; quoted
            // wherever it reaches the shell.
            let target = &m.target;
            let _ = writeln!(o, "mkdir -p {}", sh(target));
            let line = match m.kind {
                MountKind::Smb => {
                    let (host, path) =
                        smb_parts(m.source.as_deref().unwrap_or_default()).unwrap_or_default();
                    let creds = if m.username.is_some() {
                        format!("credentials={}", cred_path(i))
                    } else {
                        "guest".to_string()
                    };
                    Some(format!(
                        "//{host}/{path} {target} cifs {creds},vers=3.0,serverino,_netdev,nofail,dir_mode=0777,file_mode=0777 0 0"
                    ))
                }
                MountKind::AzureFiles => Some(format!(
                    "//{}.file.core.windows.net/{} {target} cifs credentials={},vers=3.1.1,serverino,nosharesock,actimeo=30,_netdev,nofail,dir_mode=0777,file_mode=0777 0 0",
                    m.account.as_deref().unwrap_or_default(),
                    m.share.as_deref().unwrap_or_default(),
                    cred_path(i)
                )),
                MountKind::Nfs => Some(format!(
                    "{} {target} nfs defaults,_netdev,nofail 0 0",
                    m.source.as_deref().unwrap_or_default()
                )),
                MountKind::Blob => None,
            };
            match line {
                Some(line) => {
                    let _ = writeln!(
                        o,
                        "grep -qsF {q} /etc/fstab || echo {q} >>/etc/fstab\nmount {t} || mountpoint -q {t}",
                        q = sh(&line),
                        t = sh(target)
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "command -v blobfuse2 >/dev/null || {{ echo {message}; exit 1; }}\nmkdir -p /mnt/blobfuse-cache-{i}\nblobfuse2 mount {t} --config-file=/etc/renderburst/blobfuse-{i}.yaml --tmp-path=/mnt/blobfuse-cache-{i}",
                        message = sh(&format!(
                            "blobfuse2 is not installed on this image: cannot mount {target}"
                        )),
                        t = sh(target)
                    );
                }
            }
        }
        o.push('\n');
    }
    o.push_str("# Services: the render client, then the node agent (registers with renderburst).\nsystemctl daemon-reload\n");
    if spec.render_client.is_some() {
        o.push_str("systemctl enable --now renderburst-render-client.service\n");
    }
    o.push_str("systemctl enable --now renderburst-node.service\n");
    o
}

/// Turns a `#cloud-config` document into a plain shell script (for Batch, which has no
/// cloud-init step): the time zone and users set, the files written with their modes, then
/// the bootstrap script runs. Every value is shell-quoted.
pub(super) fn cloud_init_as_script(doc: &CloudConfig) -> String {
    let mut o = String::from("#!/bin/bash\nset -euo pipefail\n");
    let _ = writeln!(o, "timedatectl set-timezone {} || true", sh(&doc.timezone));
    for user in &doc.users {
        let CloudUser::Account(u) = user else {
            continue;
        };
        let n = sh(&u.name);
        // sudo skips files of /etc/sudoers.d whose names hold a '.'.
        let sudoers = format!("/etc/sudoers.d/renderburst-{}", u.name.replace('.', "_"));
        let _ = writeln!(
            o,
            "id -u {n} >/dev/null 2>&1 || useradd -m -s {shell} {n}\nprintf '%s\\n' {rule} >{sudoers}",
            shell = sh(u.shell),
            rule = sh(&format!("{} {}", u.name, u.sudo)),
            sudoers = sh(&sudoers),
        );
        if !u.ssh_authorized_keys.is_empty() {
            // sshd reads the keys as the user: the directory and the file are theirs.
            let _ = writeln!(
                o,
                "home=$(getent passwd {n} | cut -d: -f6)\ninstall -d -m 0700 -o {n} \"$home/.ssh\""
            );
            for k in &u.ssh_authorized_keys {
                let _ = writeln!(
                    o,
                    "printf '%s\\n' {} >>\"$home/.ssh/authorized_keys\"",
                    sh(k)
                );
            }
            let _ = writeln!(
                o,
                "chmod 0600 \"$home/.ssh/authorized_keys\"\nchown {n} \"$home/.ssh/authorized_keys\""
            );
        }
    }
    for u in doc.chpasswd.iter().flat_map(|c| &c.users) {
        let _ = writeln!(
            o,
            "printf '%s\\n' {} | chpasswd",
            sh(&format!("{}:{}", u.name, u.password))
        );
    }
    for f in &doc.write_files {
        let redirect = if f.append { ">>" } else { ">" };
        let _ = writeln!(
            o,
            "mkdir -p \"$(dirname {p})\"\nprintf '%s' {c} {redirect}{p}\nchmod {mode} {p}",
            p = sh(&f.path),
            c = sh(&f.content),
            mode = sh(f.permissions),
        );
    }
    for command in &doc.runcmd {
        let words: Vec<String> = command.iter().map(|w| sh(w)).collect();
        let _ = writeln!(o, "{}", words.join(" "));
    }
    o
}
