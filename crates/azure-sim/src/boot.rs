//! Booting VMs (`boot.enabled`): a VM that reached running for the first time reads its
//! `customData` like a node's bootstrap would, finds the register URL
//! (`http(s)://HOST/v1/nodes/{name}/register`) and its node token (`rbn_...`), and calls
//! it; once registered it sends one liveness heartbeat (`PUT .../heartbeat` with `{}`).
//! A Batch node whose pool's start task is renderburst's enrollment first enrolls
//! (`POST .../v1/nodes/{id}/enroll` with the pool's token, retried while the daemon has not
//! listed the node yet, as the start task's curl does) and reads the script it gets back.
//!
//! The state only queues boots (time stays lazy: a VM reaches running when a request
//! advances the world); the calls run as tasks, outside the lock, so the simulator never
//! waits on the daemon it is calling.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::Shared;
use crate::state::{BootScript, PendingBoot};

/// Register attempts while the daemon does not answer or answers 5xx, 500 ms apart.
const ATTEMPTS: u32 = 60;

/// Starts the calls of every VM that booted since the last time.
pub(crate) fn spawn_pending(shared: &Arc<Shared>) {
    let boots = std::mem::take(&mut shared.lock().boots);
    for boot in boots {
        let shared = shared.clone();
        tokio::spawn(async move { run(shared, boot).await });
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    })
}

/// The register URL and node token in a bootstrap script, if both are there.
pub fn find_registration(custom_data: &str) -> Option<(String, String)> {
    let words = || custom_data.split(|c: char| c.is_whitespace() || "'\"=`;,()".contains(c));
    let url = words().find(|w| {
        (w.starts_with("http://") || w.starts_with("https://"))
            && w.contains("/v1/nodes/")
            && w.ends_with("/register")
    })?;
    let token = custom_data.match_indices("rbn_").find_map(|(i, _)| {
        let t: String = custom_data[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (t.len() > "rbn_".len() + 8).then_some(t)
    })?;
    Some((url.to_string(), token))
}

async fn run(shared: Arc<Shared>, boot: PendingBoot) {
    let delay = shared.lock().cfg.boot.delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let script = match boot.script {
        BootScript::CustomData(text) => text,
        BootScript::Enroll { url, token } => match enroll(&boot.vm, &url, &token).await {
            Some(text) => text,
            None => {
                shared.lock().stats.boots_failed += 1;
                return;
            }
        },
    };
    let Some((url, token)) = find_registration(&script) else {
        tracing::warn!(vm = %boot.vm, "booted, but its bootstrap has no register URL and node token");
        shared.lock().stats.boots_failed += 1;
        return;
    };
    let body = serde_json::json!({ "hostname": boot.vm });
    let registered = call_until_answered(&boot.vm, "register", || {
        client().post(&url).bearer_auth(&token).json(&body)
    })
    .await;
    if registered.is_none() {
        shared.lock().stats.boots_failed += 1;
        return;
    }
    tracing::info!(vm = %boot.vm, "booted and registered");
    shared.lock().stats.boots_registered += 1;
    let heartbeat = format!("{}/heartbeat", url.trim_end_matches("/register"));
    let _ = client()
        .put(heartbeat)
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await;
}

/// A Batch node's start task: trades the pool's token for the node's script. A 404 means
/// the daemon has not listed the node yet: retried, as other transient failures.
async fn enroll(node: &str, url: &str, token: &str) -> Option<String> {
    let resp =
        call_until_answered(node, "enroll", || client().post(url).bearer_auth(token)).await?;
    resp.text().await.ok()
}

/// Sends the request until the daemon answers it: a success is returned; a 4xx other than
/// 404 is final (None); 404, 5xx and connection errors are retried, 500 ms apart.
async fn call_until_answered(
    vm: &str,
    what: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    for attempt in 1..=ATTEMPTS {
        match request().send().await {
            Ok(resp) if resp.status().is_success() => return Some(resp),
            Ok(resp)
                if resp.status().is_client_error()
                    && resp.status() != reqwest::StatusCode::NOT_FOUND =>
            {
                tracing::warn!(vm = %vm, status = %resp.status(), "{what} refused");
                return None;
            }
            Ok(resp) => {
                tracing::debug!(vm = %vm, status = %resp.status(), attempt, "{what} failed; retrying");
            }
            Err(e) => {
                tracing::debug!(vm = %vm, error = %e, attempt, "{what} failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_and_token_in_cloud_init_and_powershell() {
        let ci = "write_files:\n- content: |\n    RENDERBURST_REGISTER_URL=http://127.0.0.1:7878/v1/nodes/maya-00001/register\n    RENDERBURST_NODE_TOKEN=rbn_abcdefghijABCDEFGHIJ0123456789abcdefghij\n";
        assert_eq!(
            find_registration(ci),
            Some((
                "http://127.0.0.1:7878/v1/nodes/maya-00001/register".into(),
                "rbn_abcdefghijABCDEFGHIJ0123456789abcdefghij".into()
            ))
        );
        let ps = "$RegisterUrl = 'https://rb.studio:7878/v1/nodes/w-00002/register'\n$Headers = @{ Authorization = 'Bearer ' + 'rbn_0123456789abcdefghij' }";
        assert_eq!(
            find_registration(ps),
            Some((
                "https://rb.studio:7878/v1/nodes/w-00002/register".into(),
                "rbn_0123456789abcdefghij".into()
            ))
        );
        assert_eq!(find_registration("#cloud-config\nruncmd: []\n"), None);
        // A masked preview has no token to call with.
        assert_eq!(
            find_registration("http://h/v1/nodes/n/register ********"),
            None
        );
    }
}
