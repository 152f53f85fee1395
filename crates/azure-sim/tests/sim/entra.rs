//! Entra ID: discovery, client-credentials tokens, and how ARM and the Batch data plane
//! check them; plus what the Azure CLI reads to register a cloud.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn openid_configuration_names_the_token_endpoint() {
    let s = spawn_sim(json!({})).await;
    let r = s
        .send(
            Method::GET,
            &format!("/{}/v2.0/.well-known/openid-configuration", s.tenant),
            None,
            None,
        )
        .await;
    r.expect(200);
    let b = &r.body;
    assert_eq!(
        b["token_endpoint"],
        json!(format!("{}/{}/oauth2/v2.0/token", s.base, s.tenant))
    );
    assert!(
        b["authorization_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&s.base)
    );
    assert_eq!(b["issuer"], json!(format!("{}/{}/v2.0", s.base, s.tenant)));
    assert!(b["jwks_uri"].is_string());
}

#[tokio::test]
async fn token_with_the_right_secret_is_a_jwt() {
    let s = spawn_sim(json!({})).await;
    let r = s.token_request(&s.tenant, &s.secret, ARM_SCOPE).await;
    r.expect(200);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_u64().unwrap() > 0);
    let token = r.body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT-shaped: {token}");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["tid"], json!(s.tenant));
    assert!(claims["aud"].as_str().unwrap().contains("management"));
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let s = spawn_sim(json!({})).await;
    let r = s
        .token_request(&s.tenant, "not-the-secret", ARM_SCOPE)
        .await;
    r.expect(401);
    assert_eq!(r.body["error"], "invalid_client");
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.starts_with("AADSTS7000215: Invalid client secret provided."),
        "{d}"
    );
    assert!(
        r.body["error_codes"]
            .as_array()
            .unwrap()
            .contains(&json!(7000215))
    );
}

#[tokio::test]
async fn unknown_tenant_and_bad_scope_are_refused() {
    let s = spawn_sim(json!({})).await;
    let r = s
        .token_request("99999999-9999-9999-9999-999999999999", &s.secret, ARM_SCOPE)
        .await;
    assert!((400..500).contains(&r.status), "{r:#?}");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002"),
        "{r:#?}"
    );
    assert!(r.body.get("access_token").is_none());

    let r = s
        .token_request(&s.tenant, &s.secret, "https://graph.microsoft.com/.default")
        .await;
    r.expect(400);
    assert_eq!(r.body["error"], "invalid_scope", "{r:#?}");
    assert!(r.body.get("access_token").is_none());
}

#[tokio::test]
async fn batch_token_works_on_the_data_plane_not_on_arm() {
    let s = spawn_sim(json!({})).await;
    let batch = s.fetch_token(BATCH_SCOPE).await;
    // On ARM: 401.
    let url = with_api(&format!("{}/resourceGroups", s.sub_path()), API);
    let r = s.send(Method::GET, &url, Some(&batch), None).await;
    r.expect_err(401, "InvalidAuthenticationTokenAudience");
    // On the data plane: accepted (the pool does not exist, so 404 PoolNotFound, not 401/403).
    let dp = with_api("/batch/acct/pools/nope/nodes", BATCH_DATA_API);
    let r = s.send(Method::GET, &dp, Some(&batch), None).await;
    r.expect(404);
    assert_eq!(r.body["code"], "PoolNotFound", "{r:#?}");
    // And the ARM token is not good for the data plane.
    let r = s.send(Method::GET, &dp, Some(&s.token), None).await;
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(r.body["code"], "InvalidAuthenticationTokenAudience");
    // Nor is no token.
    let r = s.send(Method::GET, &dp, None, None).await;
    assert_eq!(r.status, 401, "{r:#?}");
}

#[tokio::test]
async fn arm_without_a_token_is_authentication_failed() {
    let s = spawn_sim(json!({})).await;
    let url = with_api(&format!("{}/resourceGroups", s.sub_path()), API);
    s.send(Method::GET, &url, None, None)
        .await
        .expect_err(401, "AuthenticationFailed");
    // A forged token (valid shape, wrong signature) is refused too.
    let mut forged = s.token.clone();
    forged.push('x');
    s.send(Method::GET, &url, Some(&forged), None)
        .await
        .expect_err(401, "InvalidAuthenticationToken");
    // The real token works.
    s.send(Method::GET, &url, Some(&s.token), None)
        .await
        .expect(200);
}

#[tokio::test]
async fn tokens_expire() {
    let s = spawn_sim(json!({})).await;
    s.set_config(json!({"identity": {"token_lifetime_seconds": 1}}))
        .await;
    let short = s.fetch_token(ARM_SCOPE).await;
    let url = with_api(&format!("{}/resourceGroups", s.sub_path()), API);
    let r = eventually("the 1 s token to expire", async || {
        let r = s.send(Method::GET, &url, Some(&short), None).await;
        (r.status == 401).then_some(r)
    })
    .await;
    r.expect_err(401, "ExpiredAuthenticationToken");
    // A fresh token works again (and the old long-lived one still does).
    let fresh = s.fetch_token(ARM_SCOPE).await;
    let r = s.send(Method::GET, &url, Some(&fresh), None).await;
    assert!(
        matches!(r.status, 200 | 401),
        "fresh token: {r:#?} (401 only if a second passed already)"
    );
    s.send(Method::GET, &url, Some(&s.token), None)
        .await
        .expect(200);
}

#[tokio::test]
async fn cli_cloud_metadata_subscriptions_and_tenants() {
    let s = spawn_sim(json!({})).await;
    let r = s
        .send(
            Method::GET,
            "/metadata/endpoints?api-version=2022-09-01",
            None,
            None,
        )
        .await;
    r.expect(200);
    // One cloud object (what current CLIs read); older versions answered an array.
    let doc = match r.body.as_array() {
        Some(clouds) => &clouds[0],
        None => &r.body,
    };
    assert_eq!(doc["resourceManager"], json!(format!("{}/", s.base)));
    assert_eq!(
        doc["authentication"]["loginEndpoint"],
        json!(format!("{}/", s.base))
    );
    let audiences = doc["authentication"]["audiences"].as_array().unwrap();
    assert!(audiences.contains(&json!("https://management.azure.com/")));

    let r = s.get("/subscriptions?api-version=2022-12-01").await;
    r.expect(200);
    let subs = r.body["value"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["subscriptionId"], json!(s.sub));
    assert_eq!(subs[0]["tenantId"], json!(s.tenant));
    assert_eq!(subs[0]["state"], "Enabled");

    let r = s.get("/tenants?api-version=2022-12-01").await;
    r.expect(200);
    assert_eq!(r.body["value"][0]["tenantId"], json!(s.tenant));
}
