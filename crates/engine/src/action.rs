//! APPLICATION webhooks: the request decided in a batch, performed after that batch commits.

use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub timeout_ms: u64,
    pub step_seq: i64,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    pub lead_id: String,
    pub step_seq: i64,
    pub success: bool,
    pub status_code: Option<u16>,
    pub response: Value,
    pub error: Option<String>,
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Whether `url` resolves only to public addresses.
async fn target_allowed(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return !is_private(ip);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| !is_private(a.ip()))
        }
        Err(_) => false,
    }
}

fn failure(lead_id: String, request: &ActionRequest, error: &str) -> ActionResult {
    ActionResult {
        lead_id,
        step_seq: request.step_seq,
        success: false,
        status_code: None,
        response: Value::Null,
        error: Some(error.to_string()),
    }
}

pub(crate) async fn perform(
    http: &reqwest::Client,
    lead_id: String,
    request: ActionRequest,
    allow_private: bool,
) -> ActionResult {
    let Ok(url) = reqwest::Url::parse(&request.url) else {
        return failure(lead_id, &request, "invalid_url");
    };
    if !allow_private && !target_allowed(&url).await {
        return failure(lead_id, &request, "target_forbidden");
    }
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut builder = http
        .request(method, url)
        .timeout(Duration::from_millis(request.timeout_ms))
        .header("Idempotency-Key", &request.idempotency_key);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return failure(lead_id, &request, "timeout"),
        Err(_) => return failure(lead_id, &request, "connection_error"),
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(_) => return failure(lead_id, &request, "connection_error"),
    };
    let kept = &bytes[..bytes.len().min(MAX_RESPONSE_BYTES)];
    let body = serde_json::from_slice::<Value>(kept).unwrap_or_else(|_| json!(String::from_utf8_lossy(kept)));
    ActionResult {
        lead_id,
        step_seq: request.step_seq,
        success: status.is_success(),
        status_code: Some(status.as_u16()),
        response: body,
        error: (!status.is_success()).then(|| format!("http_{}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "100.64.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
