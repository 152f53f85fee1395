//! Injection-proof bootstrap: fields with a grammar are refused when they leave it, and the
//! daemon's advertised URL is validated strictly.

use rb_core::bootstrap::{BootstrapSpec, validate_advertise_url};
use rb_core::spec::Os;
use serde_json::{Value, json};

fn section(v: Value) -> BootstrapSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn advertise_urls_are_validated_strictly() {
    for ok in [
        "http://10.1.0.4:7878",
        "https://renderburst.studio.local",
        "https://rb-1.studio.local:8443/renderburst",
        "http://[fd00::4]:7878",
        "https://rb.studio.local/",
    ] {
        assert_eq!(validate_advertise_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "10.1.0.4:7878",
        "ftp://rb.studio.local",
        "http://",
        "http://rb.studio.local:7878/$(id)",
        "http://$(id)",
        "http://rb`id`.local",
        "http://rb.studio.local/'x'",
        "http://rb.studio.local/a b",
        "http://rb.studio.local:78x8",
        "http://rb.studio.local:99999",
        "http://user@rb.studio.local",
        "http://rb.studio.local/?q=1",
        "http://rb.studio.local/#x",
        "http://[fd00::4:7878",
        "http://[not-v6]:7878",
        "http://rb.studio.local\n",
        "http://rb_studio.local",
    ] {
        assert!(validate_advertise_url(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn fields_with_a_grammar_are_refused_outside_it() {
    let smb = |source: &str, user: &str| {
        json!({"mounts": [{"kind": "smb", "source": source, "target": "/mnt/p",
                           "username": user, "password": {"secret": "env:P"}}]})
    };
    let linux_target =
        |t: &str| json!({"mounts": [{"kind": "nfs", "source": "filer:/export", "target": t}]});
    let win_target =
        |t: &str| json!({"mounts": [{"kind": "nfs", "source": "filer:/export", "target": t}]});
    let domain = |user: &str, ou: &str| {
        json!({"domain": {"name": "studio.local", "ou": ou, "username": user,
                          "password": {"secret": "env:P"}}})
    };
    let cases: Vec<(Os, Value, &str)> = vec![
        (
            Os::Linux,
            json!({"mounts": [{"kind": "blob", "account": "acct", "share": "abc",
            "target": "/mnt/x';};touch${IFS}/tmp/PWNED;#", "key": {"secret": "env:K"}}]}),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            linux_target("/mnt/$(id)"),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            linux_target("/mnt/a`b`"),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            linux_target("/mnt/caf\u{e9}"),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            linux_target("/mnt/../etc"),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            linux_target("/mnt/x\\y"),
            "bootstrap.mounts[0].target",
        ),
        (Os::Linux, linux_target("/"), "bootstrap.mounts[0].target"),
        (Os::Windows, win_target("r:"), "bootstrap.mounts[0].target"),
        (Os::Windows, win_target("1:"), "bootstrap.mounts[0].target"),
        (
            Os::Windows,
            win_target("R:\\"),
            "bootstrap.mounts[0].target",
        ),
        (
            Os::Linux,
            smb("//filer/pro$(id)", "render"),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            smb("//filer/a;b", "render"),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            smb("//filer/a/../b", "render"),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            smb("//filer/projects", "ren`der`"),
            "bootstrap.mounts[0].username",
        ),
        (
            Os::Linux,
            smb("//filer/projects", "ren$(x)"),
            "bootstrap.mounts[0].username",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "filer:/x;reboot", "target": "/mnt/x"}]}),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "filer:/x/../y", "target": "/mnt/x"}]}),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "fi$ler:/x", "target": "/mnt/x"}]}),
            "bootstrap.mounts[0].source",
        ),
        (
            Os::Linux,
            domain("join$(id)", "OU=Render,DC=studio,DC=local"),
            "bootstrap.domain.username",
        ),
        (
            Os::Linux,
            domain("joiner", "OU=Render,DC=studio,DC=local';x"),
            "bootstrap.domain.ou",
        ),
        (
            Os::Windows,
            domain("joiner", "OU=Render\u{2019},DC=studio"),
            "bootstrap.domain.ou",
        ),
        (
            Os::Linux,
            json!({"admin": {"username": "artist", "ssh_public_key": "ssh-ed25519 AAAA caf\u{e9}"}}),
            "bootstrap.admin.ssh_public_key",
        ),
    ];
    for (os, v, field) in cases {
        let spec = section(v.clone());
        let e = spec.validate(os).expect_err(&v.to_string());
        assert_eq!(e.field, field, "{v}: {}", e.message);
    }
    // What studios use stays valid.
    for (os, v) in [
        (
            Os::Linux,
            smb(
                "//filer.studio.local/projects$/shots_2026",
                "STUDIO\\render",
            ),
        ),
        (
            Os::Linux,
            smb("\\\\10.1.0.9\\projects", "render@studio.local"),
        ),
        (Os::Linux, linux_target("/mnt/render-cache_1/a.b")),
        (Os::Windows, win_target("R:")),
        (
            Os::Linux,
            domain(
                "STUDIO\\joiner",
                "OU=Render Nodes,OU=Farm,DC=studio,DC=local",
            ),
        ),
        (
            Os::Linux,
            json!({"mounts": [{"kind": "nfs", "source": "[fd00::9]:/export/cache", "target": "/mnt/c"}]}),
        ),
    ] {
        let spec = section(v.clone());
        assert_eq!(spec.validate(os), Ok(()), "{v}");
    }
}
