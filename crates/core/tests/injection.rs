//! Injection-proof bootstrap: every value that enters a rendered script reaches the node
//! unchanged, whatever its characters, and fields with a grammar are refused when they leave
//! it.
//!
//! The shell's quoting is checked by the shell itself (`sh` and `bash` run the quoted word and
//! print it back); PowerShell's, with no PowerShell installable here, by a tokenizer of its
//! single-quoted string rules; cloud-init's YAML by a YAML 1.1 reader (PyYAML, what cloud-init
//! itself uses) when one is installed, and by the emitted text otherwise.

use std::process::Command;

use proptest::prelude::*;
use rb_core::bootstrap::{
    BootstrapSpec, HostEntry, MASK, NodeContext, SecretRef, masked, quote, render_cloud_init,
    render_enrollment_script, render_powershell, render_start_task, validate_advertise_url,
};
use rb_core::spec::Os;
use serde_json::{Value, json};

const TOKEN: &str = "rbn_0123456789abcdefghijklmnopqrstuvwxyzABCD";

/// The characters that end a single-quoted string in PowerShell: ASCII `'` and the four
/// typographic single quotes (PowerShell's `CharExtensions.IsSingleQuote`).
const PS_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// The shape of the quoting function's output for a value that is not printable ASCII.
const PS_DECODE_PREFIX: &str =
    "([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String(";
const PS_DECODE_SUFFIX: &str = ")))";

fn daemon_host() -> HostEntry {
    HostEntry {
        ip: "10.1.0.4".into(),
        names: vec!["renderburst".into()],
    }
}

fn ctx<'a>(daemon: &'a HostEntry, api_url: &'a str, token: &'a str) -> NodeContext<'a> {
    NodeContext {
        pool: "maya",
        node: "maya-00007",
        api_url,
        token,
        default_time_zone: "UTC",
        daemon_host: Some(daemon),
    }
}

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

fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .args(["-c", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("no {program} here: that part is not checked");
    }
    ok
}

/// Strings a hostile pool spec would use: quotes of every kind, shell and PowerShell
/// metacharacters, line breaks, YAML indicators, and anything else.
fn hostile() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\'', '"', '`', '$', '\\', ';', '&', '|', '(', ')', '{', '}', '<', '>', '*', '?', '#', '~',
        '!', '%', ':', '-', '@', '[', ']', ',', ' ', '\t', '\n', '\r', '\u{2018}', '\u{2019}',
        '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}', '\u{FEFF}', '\u{85}', '\u{2028}', 'é',
        '字',
    ]);
    let piece = prop_oneof![
        3 => special.prop_map(String::from),
        3 => "[a-z0-9/._]{1,6}",
        1 => any::<char>().prop_map(String::from),
        1 => prop::sample::select(vec![
            "$(touch /tmp/rb-pwned)", "`id`", "';};touch${IFS}/tmp/rb-pwned;#", "'@\n",
            "\n'@\n", "${IFS}", "%PATH%", "--- ", "- ", ": ", " #", "&a", "*a", "!!str",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Runs `script` with `shell -c` and returns what it printed.
fn run(shell: &str, script: &str) -> Vec<u8> {
    let out = Command::new(shell).args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{shell}: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------
// The quoting functions
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// POSIX quoting: `printf %s WORD` prints the value back, in `sh` and in `bash`. (Today's
    /// quoting already did this right; the test guards it.)
    #[test]
    fn sh_quoting_comes_back_unchanged_from_the_shell(s in hostile()) {
        let s = s.replace('\0', "");
        for shell in ["sh", "bash"] {
            if have(shell) {
                let printed = run(shell, &format!("printf %s {}", quote::sh(&s)));
                prop_assert_eq!(String::from_utf8_lossy(&printed), s.as_str());
            }
        }
    }

    /// PowerShell quoting yields exactly one string token whose value is the input, under
    /// PowerShell's rules (a single-quoted string ends at any of five quote characters unless
    /// doubled), and is printable ASCII (PowerShell 5.1 reads a BOM-less file in the ANSI
    /// code page).
    #[test]
    fn powershell_quoting_is_one_token_with_the_same_value(s in hostile()) {
        let quoted = quote::powershell(&s);
        prop_assert!(quoted.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", quoted);
        prop_assert_eq!(ps_value(&quoted), Some(s));
    }
}

/// Reads one PowerShell single-quoted string at the start of `s`: its value and what follows.
fn ps_single_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices().peekable();
    let (_, open) = chars.next()?;
    if !PS_QUOTES.contains(&open) {
        return None;
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if !PS_QUOTES.contains(&c) {
            value.push(c);
            continue;
        }
        match chars.peek() {
            Some(&(_, next)) if PS_QUOTES.contains(&next) => {
                value.push(next);
                chars.next();
            }
            _ => return Some((value, &s[i + c.len_utf8()..])),
        }
    }
    None
}

/// The value of what the quoting function emitted: a single-quoted string, or the base64
/// decoding expression around one. None if it is anything else or leaves text after it.
fn ps_value(quoted: &str) -> Option<String> {
    if let Some(inner) = quoted.strip_prefix(PS_DECODE_PREFIX) {
        let (b64, rest) = ps_single_quoted(inner)?;
        if rest != PS_DECODE_SUFFIX {
            return None;
        }
        return String::from_utf8(decode_base64(&b64)?).ok();
    }
    match ps_single_quoted(quoted)? {
        (value, "") => Some(value),
        _ => None,
    }
}

#[test]
fn the_powershell_tokenizer_of_this_test_knows_the_typographic_quotes() {
    assert_eq!(ps_value("'it''s'"), Some("it's".into()));
    assert_eq!(
        ps_value("'it\u{2019}\u{2019}s'"),
        Some("it\u{2019}s".into())
    );
    // Yesterday's quoting of `’;calc;’`: the string ends early.
    assert_eq!(ps_value("'\u{2019};calc;\u{2019}'"), None);
}

#[test]
fn typographic_quotes_and_non_ascii_values_stay_inside_one_powershell_string() {
    for s in [
        "\u{2019}; Start-Process calc; \u{2019}",
        "\u{2018}\u{201A}\u{201B}",
        "Grüße, 字",
        "tab\tand\nnewline",
        "plain 'quoted'",
    ] {
        let q = quote::powershell(s);
        assert!(q.is_ascii(), "{q}");
        assert_eq!(ps_value(&q).as_deref(), Some(s), "{q}");
    }
    assert_eq!(quote::powershell("it's"), "'it''s'");
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Rendered scripts with hostile values (validation bypassed: the renderers hold on their own)
// ---------------------------------------------------------------------------------------

/// A section whose every free-text field is `h`, as if validation had let it through.
fn hostile_section(h: &str, os: Os) -> BootstrapSpec {
    let mut mounts = vec![
        json!({"kind": "smb", "source": format!("//filer/{h}"), "target": h, "username": h,
               "password": {"secret": "p"}}),
        json!({"kind": "azure_files", "account": h, "share": h, "target": h,
               "key": {"secret": "k"}}),
        json!({"kind": "nfs", "source": h, "target": h}),
    ];
    if os == Os::Linux {
        mounts.push(
            json!({"kind": "blob", "account": h, "share": h, "target": h,
                           "key": {"secret": "k"}}),
        );
    }
    serde_json::from_value(json!({
        "time_zone": h,
        "hosts": [{"ip": h, "names": [h]}],
        "domain": {"name": h, "ou": h, "username": h, "password": {"secret": "d"}},
        "mounts": mounts,
        "admin": {"username": h, "ssh_public_key": h, "password": {"secret": "a"}},
        "env": {"PLAIN": h, "SECRET": {"secret": "s"}},
        "render_client": {"command": h},
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `bash -n` accepts every Linux script rendered from hostile values, cloud-init's
    /// document stays YAML, and `node.env` sourced by `sh` gives back the exact URLs and token.
    #[test]
    fn linux_scripts_from_hostile_values_parse_and_node_env_comes_back(h in hostile()) {
        let h = h.replace('\0', "");
        let secret = h.replace(['\n', '\r'], " ");
        let secret = if secret.is_empty() { "x".to_string() } else { secret };
        let resolve = move |_: &SecretRef| Ok(secret.clone());
        let daemon = daemon_host();
        let api_url = format!("http://10.1.0.4:7878{h}");
        let ctx = ctx(&daemon, &api_url, &h);
        let spec = hostile_section(&h, Os::Linux);
        let doc = yaml(&render_cloud_init(&spec, &ctx, &resolve).unwrap());
        let script = render_enrollment_script(&spec, Os::Linux, &ctx, &resolve).unwrap();
        if have("bash") {
            for (what, text) in [
                ("bootstrap.sh", file(&doc, "/usr/local/lib/renderburst/bootstrap.sh")),
                ("node-agent.sh", file(&doc, "/usr/local/lib/renderburst/node-agent.sh")),
                ("profile", file(&doc, "/etc/profile.d/renderburst.sh")),
                ("enrollment script", &script),
            ] {
                let out = Command::new("bash").args(["-n", "-c", text]).output().unwrap();
                prop_assert!(
                    out.status.success(),
                    "{}: {}\n{}", what, String::from_utf8_lossy(&out.stderr), text
                );
            }
        }
        if have("sh") {
            let env = file(&doc, "/etc/renderburst/node.env");
            let printed = run(
                "sh",
                &format!(
                    "{env}\nprintf '%s\\n%s\\n%s' \"$RENDERBURST_REGISTER_URL\" \"$RENDERBURST_HEARTBEAT_URL\" \"$RENDERBURST_NODE_TOKEN\""
                ),
            );
            prop_assert_eq!(
                String::from_utf8_lossy(&printed),
                format!("{}\n{}\n{}", ctx.register_url(), ctx.heartbeat_url(), h)
            );
        }
    }

    /// The Windows script from hostile values is printable ASCII with the same lines as from
    /// tame ones: no value adds a line, so none can add a command.
    #[test]
    fn powershell_from_hostile_values_is_ascii_and_adds_no_line(h in hostile()) {
        let secret = h.replace(['\n', '\r', '\0'], " ");
        let secret = if secret.is_empty() { "x".to_string() } else { secret };
        let resolve = move |_: &SecretRef| Ok(secret.clone());
        let daemon = daemon_host();
        let api_url = format!("http://10.1.0.4:7878{h}");
        let text = render_powershell(
            &hostile_section(&h, Os::Windows),
            &ctx(&daemon, &api_url, &h),
            &resolve,
        )
        .unwrap();
        prop_assert!(text.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)), "{}", text);
        let tame = render_powershell(
            &hostile_section("tame", Os::Windows),
            &ctx(&daemon, "http://10.1.0.4:7878", "tame"),
            &|_: &SecretRef| Ok("x".to_string()),
        )
        .unwrap();
        prop_assert_eq!(text.lines().count(), tame.lines().count());
    }
}

#[test]
fn advertise_url_with_a_command_substitution_is_quoted_in_node_env() {
    let daemon = daemon_host();
    let url = "http://10.1.0.4:7878/$(echo INJECTED)`echo INJECTED`";
    let token = "rbn_it's";
    let ctx = ctx(&daemon, url, token);
    let doc = yaml(&render_cloud_init(&section(json!({})), &ctx, &masked).unwrap());
    let env = file(&doc, "/etc/renderburst/node.env");
    if !have("sh") {
        return;
    }
    let printed = run(
        "sh",
        &format!("{env}\nprintf '%s %s' \"$RENDERBURST_REGISTER_URL\" \"$RENDERBURST_NODE_TOKEN\""),
    );
    assert_eq!(
        String::from_utf8_lossy(&printed),
        format!("{} {token}", ctx.register_url())
    );
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

fn section(v: Value) -> BootstrapSpec {
    serde_json::from_value(v).unwrap()
}

// ---------------------------------------------------------------------------------------
// YAML: strings stay strings for a YAML 1.1 reader
// ---------------------------------------------------------------------------------------

/// Strings a YAML 1.1 reader (cloud-init's PyYAML) would take for something else.
const LOOKALIKES: &[&str] = &[
    "on",
    "no",
    "yes",
    "off",
    "y",
    "n",
    "Y",
    "N",
    "ON",
    "No",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "0x10",
    "1e3",
    "010",
    "0o10",
    "1_000",
    "12:30",
    "2001-12-14",
    ".inf",
    "-.5",
    "<<",
    "=",
];

#[test]
fn cloud_init_quotes_strings_that_yaml_1_1_would_read_as_something_else() {
    let daemon = daemon_host();
    for &word in LOOKALIKES {
        let is_user = word.starts_with(|c: char| c.is_ascii_alphabetic())
            && word.chars().all(|c| c.is_ascii_alphanumeric());
        let user = if is_user { word } else { "artist" };
        let spec = section(json!({
            "admin": {"username": user, "password": {"secret": "admin-password"}},
            "mounts": [{"kind": "blob", "account": "acct", "share": "abc", "target": "/mnt/b",
                        "key": {"secret": "k"}}],
        }));
        let resolve = |_: &SecretRef| Ok(word.to_string());
        let text = render_cloud_init(
            &spec,
            &ctx(&daemon, "http://10.1.0.4:7878", TOKEN),
            &resolve,
        )
        .unwrap();
        let quoted = [format!("'{word}'"), format!("\"{word}\"")];
        for key in ["password: ", "name: "] {
            if key == "name: " && !is_user {
                continue;
            }
            assert!(
                quoted.iter().any(|q| text.contains(&format!("{key}{q}\n"))),
                "{key}{word} is not quoted:\n{text}"
            );
        }
        let doc = yaml(&text);
        assert_eq!(doc["chpasswd"]["users"][0]["password"], json!(word));
        assert_eq!(doc["users"][1]["name"], json!(user));
        // blobfuse2's configuration is YAML too.
        let blob = yaml(file(&doc, "/etc/renderburst/blobfuse-0.yaml"));
        assert_eq!(blob["azstorage"]["account-key"], json!(word), "{word}");
        yaml_1_1_reads_strings(&text, &[word, user]);
    }
}

#[test]
fn a_masked_blob_key_is_still_yaml() {
    let daemon = daemon_host();
    let spec = section(json!({
        "mounts": [{"kind": "blob", "account": "acct", "share": "abc", "target": "/mnt/b",
                    "key": {"secret": "k"}}],
    }));
    let doc = yaml(&render_cloud_init(&spec, &ctx(&daemon, "http://h", MASK), &masked).unwrap());
    let blob = yaml(file(&doc, "/etc/renderburst/blobfuse-0.yaml"));
    assert_eq!(blob["azstorage"]["account-key"], json!(MASK));
}

/// Runs `program` under python3 with `input` on its standard input. None, said on stderr,
/// where python3 or PyYAML is missing, except under CI (`CI` set), whose machines have both:
/// there a missing reader fails the test rather than skipping what it checks.
fn pyyaml(program: &str, input: &str) -> Option<std::process::Output> {
    use std::io::Write as _;
    let ci = std::env::var_os("CI").is_some();
    let Ok(mut child) = Command::new("python3")
        .args(["-c", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(!ci, "python3 is missing: CI must check YAML 1.1 reading");
        eprintln!("no python3: YAML 1.1 reading not checked");
        return None;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") {
        assert!(!ci, "PyYAML is missing: CI must check YAML 1.1 reading");
        eprintln!("no PyYAML: YAML 1.1 reading not checked");
        return None;
    }
    Some(out)
}

/// With PyYAML installed, reads `doc` as cloud-init does and checks that each of `words`
/// appears in it as a string, never as a boolean, number, date or null.
fn yaml_1_1_reads_strings(doc: &str, words: &[&str]) {
    let program = r#"
import sys, yaml
doc = yaml.safe_load(sys.stdin)
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(k); walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
    elif not isinstance(v, str):
        print(repr(v))
walk(doc)
"#;
    let Some(out) = pyyaml(program, doc) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The only non-strings of the document are cloud-init's own booleans.
    let non_strings = String::from_utf8_lossy(&out.stdout);
    for line in non_strings.lines() {
        assert!(
            matches!(line, "True" | "False"),
            "{words:?}: YAML 1.1 read {line} in\n{doc}"
        );
    }
    let count = non_strings.lines().count();
    // append (hosts), lock_passwd, expire, ssh_pwauth, allow-other is in blobfuse's file.
    assert!(count <= 4, "{words:?}: {count} non-strings in\n{doc}");
}

// ---------------------------------------------------------------------------------------
// Grammars
// ---------------------------------------------------------------------------------------

#[test]
fn fields_with_a_grammar_are_refused_outside_it() {
    let smb = |source: &str, user: &str| {
        json!({"mounts": [{"kind": "smb", "source": source, "target": "/mnt/p",
                           "username": user, "password": {"secret": "p"}}]})
    };
    let linux_target =
        |t: &str| json!({"mounts": [{"kind": "nfs", "source": "filer:/export", "target": t}]});
    let win_target =
        |t: &str| json!({"mounts": [{"kind": "nfs", "source": "filer:/export", "target": t}]});
    let domain = |user: &str, ou: &str| {
        json!({"domain": {"name": "studio.local", "ou": ou, "username": user,
                          "password": {"secret": "p"}}})
    };
    let cases: Vec<(Os, Value, &str)> = vec![
        (
            Os::Linux,
            json!({"mounts": [{"kind": "blob", "account": "acct", "share": "abc",
            "target": "/mnt/x';};touch${IFS}/tmp/PWNED;#", "key": {"secret": "k"}}]}),
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

// ---------------------------------------------------------------------------------------
// Secret-bearing scripts do not stay on the node
// ---------------------------------------------------------------------------------------

#[test]
fn the_windows_script_deletes_itself_and_custom_data_before_it_uses_a_secret() {
    let daemon = daemon_host();
    let spec = section(json!({
        "admin": {"username": "artist", "password": {"secret": "admin-password"}},
    }));
    let text = render_powershell(
        &spec,
        &ctx(&daemon, "http://10.1.0.4:7878", TOKEN),
        &|_: &SecretRef| Ok("S3CRET".to_string()),
    )
    .unwrap();
    let removal = text
        .lines()
        .position(|l| l.contains("Remove-Item") && l.contains("$PSCommandPath"))
        .unwrap_or_else(|| panic!("the script does not delete itself:\n{text}"));
    let custom_data = text
        .lines()
        .position(|l| l.contains("Remove-Item") && l.contains("CustomData.bin"))
        .unwrap_or_else(|| panic!("customData is left on the disk:\n{text}"));
    let first_secret = text
        .lines()
        .position(|l| l.contains("S3CRET") || l.contains(TOKEN))
        .unwrap();
    assert!(
        removal < first_secret && custom_data < first_secret,
        "{text}"
    );
}

#[test]
fn linux_one_shot_secrets_and_the_enrollment_script_are_deleted_on_every_exit() {
    // Batch: the start task deletes the enrollment script it ran, whatever happened (today's
    // start task already did; this guards it).
    let task = render_start_task(Os::Linux, "https://rb.studio:7878", "rbp_x");
    assert!(task.command_line.contains("trap \"rm -f $s\" EXIT"));
    // The domain-join password is removed even when the join fails.
    let daemon = daemon_host();
    let spec = section(json!({
        "domain": {"name": "studio.local", "username": "joiner", "password": {"secret": "p"}},
    }));
    let doc = yaml(
        &render_cloud_init(&spec, &ctx(&daemon, "http://10.1.0.4:7878", TOKEN), &masked).unwrap(),
    );
    let script = file(&doc, "/usr/local/lib/renderburst/bootstrap.sh");
    let trap = script
        .find("trap 'rm -f /etc/renderburst/domain-join.pw' EXIT")
        .unwrap_or_else(|| panic!("no trap removes the password file:\n{script}"));
    assert!(trap < script.find("realm join").unwrap(), "{script}");
}

#[test]
fn quoting_functions_are_the_ones_in_use() {
    // A value with every kind of quote reaches each script only in its quoted form.
    let v = "a'b\u{2019}c\"d";
    let daemon = daemon_host();
    let spec = section(json!({"env": {"NOTE": v}}));
    let ps = render_powershell(&spec, &ctx(&daemon, "http://h", TOKEN), &masked).unwrap();
    assert!(ps.contains(&quote::powershell(v)), "{ps}");
    let doc = yaml(&render_cloud_init(&spec, &ctx(&daemon, "http://h", TOKEN), &masked).unwrap());
    assert!(file(&doc, "/etc/profile.d/renderburst.sh").contains(&quote::sh(v)));
}

/// Hostile strings written by the YAML function come back unchanged from a YAML 1.1 reader
/// (PyYAML, as cloud-init reads them) and from our own reader.
#[test]
fn yaml_strings_come_back_unchanged_from_a_yaml_1_1_reader() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut values: Vec<String> = LOOKALIKES.iter().map(|s| s.to_string()).collect();
    for _ in 0..400 {
        values.push(hostile().new_tree(&mut runner).unwrap().current());
    }
    // As cloud-init's documents carry them: file contents and one-line values.
    values.retain(|v| !v.contains('\0'));
    let text = quote::yaml(&values).unwrap();
    let ours: Vec<String> = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(ours, values);
    let program =
        "import sys, yaml, json\nsys.stdout.write(json.dumps(yaml.safe_load(sys.stdin.read())))";
    let Some(out) = pyyaml(program, &text) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let theirs: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for (a, b) in values.iter().zip(&theirs) {
        assert_eq!(a, b, "YAML 1.1 read {a:?} back as {b:?}");
    }
    assert_eq!(theirs.len(), values.len());
}
