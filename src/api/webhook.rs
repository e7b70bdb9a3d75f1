//! Chat notifications: a Slack-compatible incoming-webhook message for each new proposal, with
//! its summary, the numbers an approver needs and a link to it.
//!
//! The body is plain Slack JSON (`text` plus `blocks`), which Mattermost, Rocket.Chat and most
//! chat relays accept too. The POST is HTTP/1.1 over a plain TCP connection: commitd ships no
//! TLS stack, so an `https://` hook is reached through a local relay or sidecar (see
//! docs/operations.md); `http://` URLs are posted directly.

use crate::proposals::Proposal;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook URL must start with http:// (put a TLS relay in front of https hooks): {0}")]
    Scheme(String),
    #[error("webhook {url}: {message}")]
    Http { url: String, message: String },
}

/// The Slack message for a proposal. `base_url` is where people reach commitd's API.
pub fn proposal_message(p: &Proposal, base_url: &str) -> Value {
    let link = format!(
        "{}/api/v1/proposals/{}",
        base_url.trim_end_matches('/'),
        p.id
    );
    let a = &p.action;
    let approvers = if p.approvals_needed > 1 {
        format!("needs {} distinct approvers", p.approvals_needed)
    } else {
        "needs 1 approver".to_string()
    };
    let text = format!(
        "commitd proposes {} ({}): {} USD/h, {} USD upfront, expected savings {} USD; {}. {}",
        a.spec.describe(),
        p.id,
        a.hourly_cost,
        a.upfront,
        a.expected_savings,
        approvers,
        link
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*commitd proposal `{}`*\n{}\n>{}", p.id, a.spec.describe(), a.summary)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Hourly commitment*\n{} USD/h", a.hourly_cost)},
                {"type": "mrkdwn", "text": format!("*Upfront*\n{} USD", a.upfront)},
                {"type": "mrkdwn", "text": format!("*Expected savings*\n{} USD", a.expected_savings)},
                {"type": "mrkdwn", "text": format!("*Policy*\n{} ({approvers})", p.policy)},
                {"type": "mrkdwn", "text": format!("*Expires*\n{}", p.expires_at.to_rfc3339())},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "<{link}|Review it> · approve: `commitd proposals approve {}` or POST {link}/approve", p.id)}}
        ]
    })
}

/// POSTs `body` as JSON to an `http://` URL; succeeds on any 2xx status.
pub async fn post_json(url: &str, body: &Value) -> Result<(), WebhookError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| WebhookError::Scheme(crate::store::redact_url(url)))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Never log the path: for Slack it is the secret.
    let shown = format!("http://{authority}/...");
    let err = |message: String| WebhookError::Http {
        url: shown.clone(),
        message,
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let payload = serde_json::to_vec(body).map_err(|e| err(e.to_string()))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: commitd\r\n\r\n",
        payload.len()
    );
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(&payload).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| err("timed out after 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| err(format!("not an HTTP response: '{status_line}'")))?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(err(format!("status {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposals::{PlannedAction, ProposalState};
    use chrono::{TimeZone, Utc};

    fn proposal() -> Proposal {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
        let action: PlannedAction = crate::proposals::tests::action("2.5");
        Proposal {
            id: "p-123".into(),
            plan_id: "plan-1".into(),
            created_at: t,
            expires_at: t,
            updated_at: t,
            state: ProposalState::Proposed,
            proposer: "commitd".into(),
            approvals_needed: 2,
            policy: "aws".into(),
            action,
            idempotency_key: None,
            requested_at: None,
            commitment_id: None,
            provider_request_id: None,
            outcome: None,
            decisions: vec![],
        }
    }

    #[test]
    fn message_has_summary_numbers_and_link() {
        let m = proposal_message(&proposal(), "http://commitd.internal:8080/");
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("p-123"), "{text}");
        assert!(text.contains("2.5 USD/h"), "{text}");
        assert!(text.contains("needs 2 distinct approvers"), "{text}");
        assert!(
            text.contains("http://commitd.internal:8080/api/v1/proposals/p-123"),
            "{text}"
        );
        assert_eq!(m["blocks"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn posts_json_to_an_http_hook() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    if got.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = format!("http://{addr}/services/T000/B000/secret");
        post_json(&url, &json!({"text": "hello"})).await.unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /services/T000/B000/secret HTTP/1.1"),
            "{request}"
        );
        assert!(request.ends_with("{\"text\":\"hello\"}"), "{request}");
        let e = post_json("https://hooks.example/x", &json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Scheme(_)));
    }
}
