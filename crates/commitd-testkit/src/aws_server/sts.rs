//! STS `AssumeRole` on the test server (AWS Query protocol: `POST /` with
//! `Action=AssumeRole&Version=2011-06-15&RoleArn=...&RoleSessionName=...`, XML answers in the
//! `https://sts.amazonaws.com/doc/2011-06-15/` namespace; errors are
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`), as in
//! the STS API reference. Only what commitd's assume-role path needs: the role ARN and session
//! name checks, DurationSeconds bounds, an external id a role may require, and temporary
//! credentials the server remembers, so that later calls can be checked to be signed with them.

use super::ec2::Params;
use super::world::{ApiError, World};
use super::Reply;
use chrono::{Duration, SecondsFormat, Utc};

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn error_reply(e: &ApiError, request_id: &str) -> Reply {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    Reply {
        status: e.status,
        content_type: "text/xml",
        headers: Vec::new(),
        body: format!(
            "<ErrorResponse xmlns=\"{NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
            esc(&e.code),
            esc(&e.message),
            esc(request_id)
        ),
        request_id: request_id.to_string(),
    }
}

fn validation(field: &str, value: &str, constraint: &str) -> ApiError {
    ApiError::new(
        400,
        "ValidationError",
        format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ),
    )
}

/// `arn:aws:iam::ACCOUNT:role/NAME` (a path is allowed in NAME).
fn role_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].len() > 5
        && parts[5].starts_with("role/"))
    .then_some(parts[4])
}

pub fn reply(world: &mut World, action: &str, p: &Params, request_id: &str) -> Reply {
    let result = match action {
        "AssumeRole" => assume_role(world, p),
        other => Err(ApiError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    };
    match result {
        Ok(body) => Reply {
            status: 200,
            content_type: "text/xml",
            headers: Vec::new(),
            body: format!(
                "<AssumeRoleResponse xmlns=\"{NS}\">\n{body}  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
                esc(request_id)
            ),
            request_id: request_id.to_string(),
        },
        Err(e) => error_reply(&e, request_id),
    }
}

fn assume_role(world: &mut World, p: &Params) -> Result<String, ApiError> {
    let arn = p
        .get("RoleArn")
        .ok_or_else(|| validation("roleArn", "null", "Member must not be null"))?;
    let session = p
        .get("RoleSessionName")
        .ok_or_else(|| validation("roleSessionName", "null", "Member must not be null"))?;
    if arn.len() < 20 || arn.len() > 2048 {
        return Err(validation(
            "roleArn",
            arn,
            "Member must have length between 20 and 2048",
        ));
    }
    let account = role_account(arn)
        .ok_or_else(|| ApiError::new(400, "ValidationError", format!("{arn} is invalid")))?
        .to_string();
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
    {
        return Err(validation(
            "roleSessionName",
            session,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let duration = match p.get("DurationSeconds") {
        None => 3600,
        Some(d) => match d.parse::<i64>() {
            Ok(d) if (900..=43_200).contains(&d) => d,
            _ => {
                return Err(validation(
                    "durationSeconds",
                    d,
                    "Member must have value between 900 and 43200",
                ))
            }
        },
    };
    if let Some(required) = world.role_external_id(arn) {
        if p.get("ExternalId").map(String::as_str) != Some(required) {
            return Err(ApiError::new(
                403,
                "AccessDenied",
                format!(
                    "User: arn:aws:iam::{}:user/commitd is not authorized to perform: sts:AssumeRole on resource: {arn}",
                    world.account_id
                ),
            ));
        }
    }
    let creds = world.issue_session(arn);
    let role_name = arn.rsplit('/').next().unwrap_or("role");
    // The expiry follows the real clock, not the frozen test clock: the SDK compares it with
    // the system time and would discard credentials that look expired.
    let expiration =
        (Utc::now() + Duration::seconds(duration)).to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(format!(
        "  <AssumeRoleResult>\n    <AssumedRoleUser>\n      <Arn>arn:aws:sts::{account}:assumed-role/{}/{}</Arn>\n      <AssumedRoleId>AROA{}:{}</AssumedRoleId>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n    <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n",
        esc(role_name),
        esc(session),
        &creds.access_key_id[4..],
        esc(session),
        creds.access_key_id,
        creds.secret_access_key,
        creds.session_token
    ))
}
