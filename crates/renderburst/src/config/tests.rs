use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join(format!("cfg-{}.toml", fastrand::u64(..)));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults_and_errors_name_key_and_file() {
    let dir = std::env::temp_dir();
    let cfg = Config::load(Some(&write(
        &dir,
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
    )))
    .unwrap();
    assert_eq!(cfg.server.listen.port(), 9000);
    assert_eq!(cfg.controller.reconcile_interval_seconds, 15);
    assert!(cfg.embedded());
    let path = write(&dir, "[controller]\nreconcile_interval = 5\n");
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("reconcile_interval") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let err = Config::load(Some(&write(
        &dir,
        "[azure]\nsubscription_id = \"s\"\ntenant_id = \"t\"\nclient_id = \"c\"\n",
    )))
    .unwrap_err()
    .to_string();
    assert!(err.contains("azure.client_secret"), "{err}");
    let err = Config::load(Some(&write(&dir, "[[pools]]\nname = \"Bad Name\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\n"))).unwrap_err().to_string();
    assert!(err.contains("pools[0]") && err.contains("name"), "{err}");
    assert!(Config::load(Some(Path::new("/nonexistent/renderburst.toml"))).is_err());
    let path = write(&dir, "[server]\nadvertise_url = \"10.0.0.4:7878\"\n");
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("server.advertise_url") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let err = Config::load(Some(&write(
        &dir,
        "[server]\ntime_zone = \"Berlin time\"\n",
    )))
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.time_zone"), "{err}");
    let path = write(&dir, "[controller]\nreconcile_interval_seconds = -5\n");
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("reconcile_interval_seconds")
            && err.contains("must be 0 or more, got -5")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
    let path = write(
        &dir,
        "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = -5\n",
    );
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("max: must be 0 or more, got -5") && err.contains(&path.display().to_string()),
        "{err}"
    );
    // Shaped like a zone, but not in the IANA database: refused naming key and file.
    let path = write(&dir, "[server]\ntime_zone = \"Mars/Base\"\n");
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("server.time_zone")
            && err.contains("Mars/Base")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
    let cfg = Config::load(Some(&write(
        &dir,
        "[server]\nadvertise_url = \"https://render-burst.studio.local:7878/\"\ntime_zone = \"Europe/Berlin\"\n",
    )))
    .unwrap();
    assert_eq!(
        check_advertise_url(cfg.server.advertise_url.as_deref().unwrap()).unwrap(),
        "https://render-burst.studio.local:7878"
    );
    assert!(check_advertise_url("http://h:1/v1").is_err());
    assert!(check_advertise_url("ftp://h").is_err());
}

/// Issue 12 item 8: names that reach ARM URLs follow ARM's rules, and a configured subnet
/// is in the configured subscription.
#[test]
fn azure_names_that_reach_urls_are_checked() {
    let dir = std::env::temp_dir();
    let base = "[azure]\nsubscription_id = \"11111111-2222-3333-4444-555555555555\"\n\
                tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\nensure_network = true\n";
    assert!(Config::load(Some(&write(&dir, base))).is_ok());
    for (extra, key) in [
        ("resource_group = \"..\"\n", "azure.resource_group"),
        ("resource_group = \"a/b\"\n", "azure.resource_group"),
        ("batch_account = \"../x\"\n", "azure.batch_account"),
        ("location = \"west europe\"\n", "azure.location"),
        (
            "subnet_id = \"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/../providers/Microsoft.Network/virtualNetworks/vn/subnets/s\"\n",
            "azure.subnet_id",
        ),
        (
            "subnet_id = \"/subscriptions/99999999-2222-3333-4444-555555555555/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vn/subnets/s\"\n",
            "azure.subscription_id",
        ),
    ] {
        let path = write(&dir, &format!("{base}{extra}"));
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(&path.display().to_string()),
            "{extra}: {err}"
        );
    }
    let err = Config::load(Some(&write(
        &dir,
        &base.replace("11111111-2222-3333-4444-555555555555", "../../x"),
    )))
    .unwrap_err()
    .to_string();
    assert!(err.contains("azure.subscription_id"), "{err}");
}

#[test]
fn non_loopback_listen_needs_tls_or_an_explicit_insecure_http() {
    let dir = std::env::temp_dir();
    for listen in ["0.0.0.0:7878", "10.0.0.4:7878", "[::]:7878"] {
        let path = write(&dir, &format!("[server]\nlisten = \"{listen}\"\n"));
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.tls_cert_file")
                && err.contains("server.tls_key_file")
                && err.contains("server.insecure_http")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
    let cfg = Config::load(Some(&write(
        &dir,
        "[server]\nlisten = \"0.0.0.0:7878\"\ninsecure_http = true\n",
    )))
    .unwrap();
    assert!(cfg.server.insecure_http && !cfg.server.tls());
    let cfg = Config::load(Some(&write(
        &dir,
        "[server]\nlisten = \"0.0.0.0:7878\"\ntls_cert_file = \"/etc/renderburst/tls/cert.pem\"\ntls_key_file = \"/etc/renderburst/tls/key.pem\"\n",
    )))
    .unwrap();
    assert!(cfg.server.tls());
    let err = Config::load(Some(&write(
        &dir,
        "[server]\ntls_cert_file = \"/etc/renderburst/tls/cert.pem\"\n",
    )))
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.tls_key_file"), "{err}");
    // Loopback needs neither.
    Config::load(Some(&write(&dir, "[server]\nlisten = \"[::1]:7878\"\n"))).unwrap();
}

#[test]
fn connection_limits_have_safe_defaults_and_bounds() {
    let s = ServerConfig::default();
    assert!(s.header_read_timeout_seconds <= 30);
    assert!(s.max_connections >= 256);
    assert!(s.request_timeout_seconds >= 1 && s.idle_timeout_seconds >= 1);
    let dir = std::env::temp_dir();
    for (text, key) in [
        (
            "header_read_timeout_seconds = 31",
            "server.header_read_timeout_seconds",
        ),
        (
            "header_read_timeout_seconds = 0",
            "server.header_read_timeout_seconds",
        ),
        (
            "request_timeout_seconds = 0",
            "server.request_timeout_seconds",
        ),
        ("idle_timeout_seconds = 0", "server.idle_timeout_seconds"),
        ("max_connections = 0", "server.max_connections"),
    ] {
        let path = write(&dir, &format!("[server]\n{text}\n"));
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(&path.display().to_string()),
            "{text}: {err}"
        );
    }
}

#[test]
fn advertise_url_is_strict_because_nodes_source_it() {
    for ok in [
        "http://10.0.0.4:7878",
        "https://render-burst.studio.local",
        "https://render-burst.studio.local:443/",
        "http://[fd00::4]:7878",
        "http://[::1]",
    ] {
        check_advertise_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "http://$(id):7878",
        "http://10.0.0.4:7878$(id)",
        "http://`id`",
        "http://h;reboot",
        "http://h'x",
        "http://h\"x",
        "http://h x",
        "http://h\nRB_X=1",
        "http://h:7878/v1",
        "http://user@h",
        "http://h?x=1",
        "http://h#x",
        "http://h:",
        "http://h:0",
        "http://h:99999",
        "http://-h",
        "http://h..x",
        "http://[::1",
        "http://[nothex]:1",
        "http://",
        "ftp://h",
    ] {
        assert!(check_advertise_url(bad).is_err(), "{bad:?} was accepted");
    }
    let path = write(
        &std::env::temp_dir(),
        "[server]\nadvertise_url = \"http://$(id):7878\"\n",
    );
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("server.advertise_url") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_the_admin_token_or_the_client_secret() {
    let cfg = Config::load(Some(&write(
        &std::env::temp_dir(),
        "[auth]\nadmin_token = \"debug-shows-no-admin-token\"\n[azure]\n\
         subscription_id = \"11111111-2222-3333-4444-555555555555\"\ntenant_id = \"t\"\n\
         client_id = \"c\"\nclient_secret = \"debug-shows-no-client-secret\"\n\
         ensure_network = true\n",
    )))
    .unwrap();
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("debug-shows-no-admin-token"), "{shown}");
    assert!(!shown.contains("debug-shows-no-client-secret"), "{shown}");
}

#[test]
fn schedules_parse_and_errors_name_key_and_file() {
    let dir = std::env::temp_dir();
    let ok = "[[schedules]]\nname = \"gpu-night\"\npool = \"maya\"\ncron = \"0 20 * * MON-FRI\"\ntimezone = \"Europe/London\"\nset = { max = 0 }\n\n[[schedules]]\nname = \"warm\"\npool_tag = { show = \"ep101\" }\ncron = \"0 30 7 * * *\"\ntimezone = \"UTC\"\nset = { target = 10, max = 20 }\n";
    let path = write(&dir, ok);
    let cfg = Config::load(Some(&path)).unwrap();
    assert_eq!(cfg.schedules.len(), 2);
    assert_eq!(cfg.schedules[0].set.max, Some(0));
    assert_eq!(cfg.schedules[1].pool_tag.as_ref().unwrap()["show"], "ep101");
    assert_eq!(cfg.source, path.display().to_string());
    for (text, key) in [
        (
            ok.replace("0 20 * * MON-FRI", "0 25 * * *"),
            "schedules[0] (gpu-night).cron",
        ),
        (
            ok.replace("Europe/London", "Europe/Londres"),
            "schedules[0] (gpu-night).timezone",
        ),
        (
            ok.replace("{ max = 0 }", "{ }"),
            "schedules[0] (gpu-night).set",
        ),
        (
            ok.replace("name = \"warm\"", "name = \"gpu-night\""),
            "gpu-night appears twice",
        ),
        (
            ok.replace("set = { max = 0 }", "set = { max = 0 }\nwhen = 1"),
            "when",
        ),
    ] {
        let path = write(&dir, &text);
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(&path.display().to_string()),
            "{key}: {err}"
        );
    }
}

/// Issue 13 item 8: a `pool_tag` schedule and a `pool` schedule of the file that set one
/// bound differently at the same minute on a `[[pools]]` pool carrying the tag are an
/// error naming the key, both schedules and the pool; on an untagged pool they are not.
#[test]
fn a_tag_schedule_clashing_with_a_pool_schedule_is_an_error() {
    let dir = std::env::temp_dir();
    let text = "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\ntags = { show = \"ep101\" }\n\n\
                [[schedules]]\nname = \"night\"\npool = \"maya\"\ncron = \"0 20 * * *\"\ntimezone = \"UTC\"\nset = { max = 0 }\n\n\
                [[schedules]]\nname = \"show-night\"\npool_tag = { show = \"ep101\" }\ncron = \"0 20 * * *\"\ntimezone = \"UTC\"\nset = { max = 5 }\n";
    let path = write(&dir, text);
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("schedules[1] (show-night).set.max")
            && err.contains("\"show-night\" and \"night\"")
            && err.contains("pool maya (tagged show=ep101)")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
    let untagged = text.replace("tags = { show = \"ep101\" }", "tags = { show = \"ep102\" }");
    Config::load(Some(&write(&dir, &untagged))).unwrap();
}

/// Secrets are declared in the file or the environment only; an unknown key, a name of
/// the wrong shape, the daemon's own credentials and a pool naming an undeclared secret
/// are errors naming the key (and the file).
#[test]
fn secrets_are_declared_by_name_in_the_file_or_the_environment() {
    let dir = std::env::temp_dir();
    let pool = "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\nbootstrap = { domain = { name = \"studio.local\", username = \"j\", password = { secret = \"ad_join\" } } }\n";
    let secrets = "[secrets.ad_join]\nenv = \"AD_JOIN_PASSWORD\"\n[secrets.smb]\nfile = \"/etc/renderburst/smb.password\"\n";
    let cfg = Config::load(Some(&write(&dir, &format!("{secrets}{pool}")))).unwrap();
    let s = cfg.declared_secrets().unwrap();
    assert_eq!(
        s.names().into_iter().collect::<Vec<_>>(),
        ["ad_join", "smb"]
    );
    // From the environment alone, like every key.
    let env: std::collections::HashMap<String, String> = [(
        "RENDERBURST__SECRETS__AD_JOIN__ENV".to_string(),
        "AD_JOIN_PASSWORD".to_string(),
    )]
    .into();
    let path = write(&dir, pool);
    let cfg = Config::load_with_env(Some(&path), Some(env.clone())).unwrap();
    assert_eq!(
        cfg.secrets["ad_join"].env.as_deref(),
        Some("AD_JOIN_PASSWORD")
    );
    let cfg = Config::load_with_env(None, Some(env)).unwrap();
    assert!(cfg.declared_secrets().unwrap().names().contains("ad_join"));
    // Not declared: the pool's key is named.
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("pools[0] (maya).bootstrap.domain.password.secret")
            && err.contains("[secrets.ad_join]")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
    // The old form in a pool: how to declare it.
    let path = write(&dir, &pool.replace("\"ad_join\"", "\"env:AD_PASS\""));
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("no longer accepted") && err.contains("[secrets.ad_pass] env = \"AD_PASS\""),
        "{err}"
    );
    for (text, key) in [
        ("[secrets.x]\nenvv = \"A\"\n", "envv"),
        ("[secrets.x]\nenv = \"A\"\nfile = \"/x\"\n", "secrets.x"),
        ("[secrets.x]\n", "secrets.x"),
        ("[secrets.Bad]\nenv = \"A\"\n", "secrets.Bad"),
        (
            "[secrets.x]\nenv = \"RENDERBURST__AZURE__CLIENT_SECRET\"\n",
            "secrets.x.env",
        ),
        (
            "[secrets.x]\nenv = \"AZURE_FEDERATED_TOKEN_FILE\"\n",
            "secrets.x.env",
        ),
        (
            "[secrets.x]\nfile = \"/proc/self/environ\"\n",
            "secrets.x.file",
        ),
        (
            "[store]\nurl = \"sqlite:///var/lib/rb/state.db\"\n[secrets.x]\nfile = \"/var/lib/rb/admin.token\"\n",
            "secrets.x.file",
        ),
    ] {
        let path = write(&dir, text);
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(&path.display().to_string()),
            "{text}: {err}"
        );
    }
    // The configuration file itself (it may hold the client secret).
    let path = write(&dir, "");
    std::fs::write(
        &path,
        format!("[secrets.x]\nfile = \"{}\"\n", path.display()),
    )
    .unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("secrets.x.file") && err.contains("own"),
        "{err}"
    );
}

#[test]
fn store_urls() {
    let mut cfg = Config::default();
    assert_eq!(cfg.store_path().unwrap(), PathBuf::from("renderburst.db"));
    cfg.store.url = "sqlite:///var/lib/renderburst/state.db?mode=rwc".into();
    assert_eq!(
        cfg.store_path().unwrap(),
        PathBuf::from("/var/lib/renderburst/state.db")
    );
    cfg.store.url = "postgres://x".into();
    assert!(cfg.store_path().is_err());
    cfg.store.url = "sqlite::memory:".into();
    assert!(cfg.store_path().is_err());
}

#[test]
fn shipped_example_files_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let cfg = Config::load(Some(&root.join("default.toml"))).unwrap();
    assert!(cfg.embedded());
    assert_eq!(cfg.server.listen, default_listen());
    // The file says the defaults, so it cannot drift from them.
    let d = ServerConfig::default();
    assert_eq!(
        (
            cfg.server.insecure_http,
            cfg.server.header_read_timeout_seconds,
            cfg.server.request_timeout_seconds,
            cfg.server.idle_timeout_seconds,
            cfg.server.max_connections,
        ),
        (
            d.insecure_http,
            d.header_read_timeout_seconds,
            d.request_timeout_seconds,
            d.idle_timeout_seconds,
            d.max_connections,
        )
    );
    // The Azure example keeps the secret out of the file on purpose.
    // The commented [[schedules]] example, uncommented, is a valid configuration.
    let text = std::fs::read_to_string(root.join("default.toml")).unwrap();
    let example: String = text[text.find("# [[schedules]]").unwrap()..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l).to_owned() + "\n")
        .collect();
    let cfg = Config::load(Some(&write(&std::env::temp_dir(), &example))).unwrap();
    assert_eq!(cfg.schedules.len(), 2, "{example}");
    let err = Config::load(Some(&root.join("azure.example.toml")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("azure.client_secret"), "{err}");
    let cfg = Config::load(Some(&root.join("batch.example.toml"))).unwrap();
    assert_eq!(cfg.pools.len(), 1);
    assert_eq!(cfg.pools[0].mode, rb_core::PoolMode::Batch);
    assert_eq!(cfg.pools[0].licenses.len(), 2);
}
