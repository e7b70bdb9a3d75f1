//! The deploy files (`deploy/`, `policies/`) checked against what they deploy. They only read
//! files: no Docker, no AWS account, no systemd.
//!
//! * The IAM policy grants exactly the AWS actions the code calls: the test scans `src/markets/aws`
//!   (not its local test server) for SDK operations on each client and maps each to its IAM
//!   action, so a new call without its permission, or a permission nothing uses, fails here
//!   instead of on a real account. Tagging and role assumption are checked for least privilege.
//! * The Azure role: no Azure client exists yet, so its actions are the documented plan; only
//!   its JSON shape is checked (and the test fails once an Azure client appears, to be extended).
//! * The Dockerfile: images pinned, the builder's Rust at least what the locked crates need, the
//!   HiGHS build dependencies installed, a non-root runtime.
//! * systemd and Kubernetes: the data directory is the writable state directory, not `/etc`.
//! * The shipped policies parse and their thresholds are reachable under their caps.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// AWS IAM policy
// ---------------------------------------------------------------------------------------------

/// The IAM service prefix of each AWS SDK crate commitd makes a client of (the crate name is
/// not always the prefix: Cost Explorer is `ce`).
const IAM_PREFIX: &[(&str, &str)] = &[
    ("aws_sdk_savingsplans", "savingsplans"),
    ("aws_sdk_ec2", "ec2"),
    ("aws_sdk_costexplorer", "ce"),
    ("aws_sdk_sts", "sts"),
];

/// AWS API operations start with one of these verbs; anything else called on a client field
/// must be listed in [`NOT_OPERATIONS`], so that nothing is skipped silently.
const VERBS: &[&str] = &[
    "accept", "cancel", "create", "delete", "describe", "get", "list", "modify", "purchase", "put",
    "return", "start", "stop", "tag", "untag", "update",
];

/// Methods on a client (or on a field of the same name) that call no AWS API.
const NOT_OPERATIONS: &[&str] = &["config", "iter", "clone", "len", "is_empty"];

/// `snake_case` -> `PascalCase`: the SDK's fluent method for an operation is its name in snake
/// case (`describe_reserved_instances_listings` is `DescribeReservedInstancesListings`).
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Client fields of `AwsClients` (`pub ec2: aws_sdk_ec2::Client,`) and their IAM prefixes.
fn client_fields() -> Vec<(String, &'static str)> {
    let text = read("src/markets/aws/client.rs");
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(decl) = line.strip_prefix("pub ") else {
            continue;
        };
        let Some((field, ty)) = decl.split_once(':') else {
            continue;
        };
        let ty = ty.trim().trim_end_matches(',');
        let Some(krate) = ty.strip_suffix("::Client") else {
            continue;
        };
        if !krate.starts_with("aws_sdk_") {
            continue;
        }
        let prefix = IAM_PREFIX
            .iter()
            .find(|(k, _)| *k == krate)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| {
                panic!(
                    "src/markets/aws/client.rs: `{field}` is a {krate} client: add its IAM service prefix to \
                     IAM_PREFIX in tests/deploy/files.rs, and the actions it calls to \
                     deploy/aws/commitd-iam-policy.json"
                )
            });
        fields.push((field.trim().to_string(), prefix));
    }
    assert!(
        fields.len() >= 3,
        "src/markets/aws/client.rs: found only {fields:?}; has AwsClients changed shape?"
    );
    fields
}

/// Every IAM action the AWS code needs, with where it is called (for the failure message).
fn actions_the_code_calls() -> BTreeMap<String, String> {
    let fields = client_fields();
    let mut files = Vec::new();
    rust_files(&root().join("src/markets/aws"), &mut files);
    let mut actions = BTreeMap::new();
    let mut unknown = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        // Comments may quote calls; only code counts (blanked, so line numbers stay right).
        let code: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (field, prefix) in &fields {
            let needle = format!(".{field}");
            for (at, _) in code.match_indices(&needle) {
                let rest = &code[at + needle.len()..];
                // `.ec2` but not `.ec2_client`; the call is the next `.method(` (possibly on
                // the next line, as rustfmt writes chains).
                if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let Some(rest) = rest.trim_start().strip_prefix('.') else {
                    continue;
                };
                let method: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !rest[method.len()..].trim_start().starts_with('(') {
                    continue;
                }
                let verb = method.split('_').next().unwrap_or("");
                if !VERBS.contains(&verb) {
                    if !NOT_OPERATIONS.contains(&method.as_str()) {
                        unknown.push(format!("{rel}: .{field}.{method}()"));
                    }
                    continue;
                }
                let line = code[..at].lines().count();
                actions
                    .entry(format!("{prefix}:{}", pascal(&method)))
                    .or_insert_with(|| format!("{rel}:{line}"));
                // Tags sent with a create call are authorized as a tagging action too.
                let statement = rest.split(';').next().unwrap_or("");
                if statement.contains(".tags(") && *prefix == "savingsplans" {
                    actions
                        .entry("savingsplans:TagResource".into())
                        .or_insert_with(|| format!("{rel}:{line} (tags on create)"));
                }
                if statement.contains(".tag_specifications(") && *prefix == "ec2" {
                    actions
                        .entry("ec2:CreateTags".into())
                        .or_insert_with(|| format!("{rel}:{line} (tags on create)"));
                }
            }
        }
        // Role assumption goes through the SDK's credentials provider, not a client field.
        if code.contains("AssumeRoleProvider::builder") {
            actions
                .entry("sts:AssumeRole".into())
                .or_insert_with(|| rel.clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "calls on AWS clients that are neither a known AWS operation verb nor a known \
         non-operation (extend VERBS or NOT_OPERATIONS in tests/deploy/files.rs): {unknown:#?}"
    );
    actions
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("a list of strings").to_string())
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

fn iam_policy() -> Value {
    serde_json::from_str(&read("deploy/aws/commitd-iam-policy.json"))
        .expect("deploy/aws/commitd-iam-policy.json is JSON")
}

fn statements(policy: &Value) -> Vec<&Value> {
    policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .collect()
}

/// The statements granting `action`.
fn granting<'a>(policy: &'a Value, action: &str) -> Vec<&'a Value> {
    statements(policy)
        .into_iter()
        .filter(|s| strings(&s["Action"]).iter().any(|a| a == action))
        .collect()
}

/// The idempotency tag key the AWS code writes (`IDEMPOTENCY_TAG`).
fn idempotency_tag() -> &'static str {
    commitd::markets::aws::inventory::IDEMPOTENCY_TAG
}

#[test]
fn the_iam_policy_grants_exactly_the_aws_calls_the_code_makes() {
    let code = actions_the_code_calls();
    // The scanner must see the calls the issue found missing (#24); if the code stops making
    // one of them, take it off this list.
    for known in [
        "ec2:DescribeReservedInstancesListings",
        "savingsplans:ReturnSavingsPlan",
        "savingsplans:DeleteQueuedSavingsPlan",
        "ec2:CreateReservedInstancesListing",
        "ce:GetCostAndUsage",
        "ec2:PurchaseReservedInstancesOffering",
        "savingsplans:CreateSavingsPlan",
        "sts:AssumeRole",
    ] {
        assert!(
            code.contains_key(known),
            "the scan of src/markets/aws did not find {known}: {code:#?}"
        );
    }
    let policy = iam_policy();
    assert_eq!(policy["Version"], "2012-10-17");
    let mut granted = BTreeSet::new();
    for s in statements(&policy) {
        assert_eq!(s["Effect"], "Allow", "{s}");
        assert!(
            s.get("NotAction").is_none() && s.get("NotResource").is_none(),
            "{s}"
        );
        for a in strings(&s["Action"]) {
            assert!(
                !a.contains('*'),
                "a wildcard action grants more than the code calls: {a}"
            );
            granted.insert(a);
        }
    }
    let missing: Vec<_> = code
        .iter()
        .filter(|(a, _)| !granted.contains(*a))
        .map(|(a, at)| format!("{a} (called at {at})"))
        .collect();
    let unused: Vec<_> = granted.iter().filter(|a| !code.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "deploy/aws/commitd-iam-policy.json lacks actions the code calls: {missing:#?}"
    );
    assert!(
        unused.is_empty(),
        "deploy/aws/commitd-iam-policy.json grants actions no code calls (least privilege): {unused:?}"
    );
}

#[test]
fn tagging_is_limited_to_commitments_and_the_idempotency_key() {
    let policy = iam_policy();
    for (action, resource) in [
        ("ec2:CreateTags", "arn:aws:ec2:*:*:reserved-instances/*"),
        (
            "savingsplans:TagResource",
            "arn:aws:savingsplans:*:*:savingsplan/*",
        ),
    ] {
        let s = granting(&policy, action);
        assert_eq!(s.len(), 1, "{action} must be granted by one statement");
        let s = s[0];
        // Alone in its statement, so the narrow resource and condition apply to it only.
        assert_eq!(strings(&s["Action"]), vec![action.to_string()], "{s}");
        assert_eq!(strings(&s["Resource"]), vec![resource.to_string()], "{s}");
        let c = &s["Condition"];
        assert_eq!(
            strings(&c["ForAllValues:StringEquals"]["aws:TagKeys"]),
            vec![idempotency_tag().to_string()],
            "{action}: only the idempotency tag key ({}) may be written: {s}",
            idempotency_tag()
        );
        // ForAllValues is true for a request without tags; the Null test makes tags required.
        assert_eq!(c["Null"]["aws:TagKeys"], "false", "{s}");
    }
}

#[test]
fn roles_are_assumed_only_inside_the_organization() {
    let policy = iam_policy();
    let s = granting(&policy, "sts:AssumeRole");
    assert_eq!(s.len(), 1);
    let s = s[0];
    assert_eq!(strings(&s["Action"]), vec!["sts:AssumeRole".to_string()]);
    for r in strings(&s["Resource"]) {
        let name = r
            .strip_prefix("arn:aws:iam::*:role/")
            .unwrap_or_else(|| panic!("{r}: not an IAM role ARN"));
        assert!(
            name == "commitd" || name.starts_with("commitd-"),
            "{r}: roles named commitd or commitd-*, not {name}"
        );
    }
    let org = s["Condition"]["StringEquals"]["aws:ResourceOrgID"]
        .as_str()
        .unwrap_or_else(|| panic!("AssumeRole needs an aws:ResourceOrgID condition: {s}"));
    assert!(org.starts_with("o-"), "{org}: an organization id is o-...");
    // The placeholder is documented where operators read how to deploy.
    assert!(
        read("docs/operations.md").contains(org),
        "docs/operations.md must say to replace the organization id placeholder {org}"
    );
}

// ---------------------------------------------------------------------------------------------
// Azure role
// ---------------------------------------------------------------------------------------------

#[test]
fn the_azure_role_grants_exactly_the_azure_calls_the_code_makes() {
    // The client declares the RBAC action of each call it makes, beside the calls
    // (markets::azure::client::RBAC_ACTIONS); the role grants those and nothing else.
    let wanted: std::collections::BTreeSet<String> = commitd::markets::azure::client::RBAC_ACTIONS
        .iter()
        .map(|(_, action)| action.to_string())
        .collect();
    let role_json: Value = serde_json::from_str(&read("deploy/azure/commitd-role.json"))
        .expect("deploy/azure/commitd-role.json is JSON");
    let granted: std::collections::BTreeSet<String> =
        strings(&role_json["Actions"]).into_iter().collect();
    assert_eq!(
        granted, wanted,
        "deploy/azure/commitd-role.json must grant exactly the actions of the Azure client's calls"
    );
    // Every call named in the table is a call the client source makes.
    let source = read("src/markets/azure/client.rs");
    let code = source
        .split_once("impl AzureClients {")
        .map(|(_, code)| code)
        .expect("src/markets/azure/client.rs has impl AzureClients");
    for (calls, _) in commitd::markets::azure::client::RBAC_ACTIONS {
        for call in calls.split(", ") {
            assert!(
                code.contains(&format!("\"{call}\"")),
                "{call}: named in RBAC_ACTIONS but not called in src/markets/azure/client.rs"
            );
        }
    }
    let role: Value = serde_json::from_str(&read("deploy/azure/commitd-role.json"))
        .expect("deploy/azure/commitd-role.json is JSON");
    assert!(role["Name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(role["IsCustom"], true);
    let actions = strings(&role["Actions"]);
    assert!(!actions.is_empty());
    for a in &actions {
        assert!(
            a.starts_with("Microsoft.") && !a.contains('*'),
            "{a}: a Microsoft.* provider action, no wildcard"
        );
    }
    for key in ["NotActions", "DataActions", "NotDataActions"] {
        assert!(role[key].is_array(), "{key} is a list");
    }
    let scopes = strings(&role["AssignableScopes"]);
    assert!(!scopes.is_empty() && scopes.iter().all(|s| s.starts_with('/')));
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

fn version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    ))
}

/// The crate's `rust-version` (Cargo.toml).
fn crate_rust_version() -> (u32, u32, u32) {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let v = manifest["package"]["rust-version"]
        .as_str()
        .expect("Cargo.toml sets package.rust-version");
    version(v).unwrap_or_else(|| panic!("rust-version {v}"))
}

#[test]
fn the_crate_rust_version_covers_every_locked_crate() {
    let lock: toml::Table = read("Cargo.lock").parse().unwrap();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registries: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut needed = ((0, 0, 0), String::new());
    let mut seen = 0;
    for p in lock["package"].as_array().unwrap() {
        let (Some(name), Some(v)) = (p["name"].as_str(), p["version"].as_str()) else {
            continue;
        };
        // Crates for other platforms are locked but never downloaded here.
        let Some(manifest) = registries
            .iter()
            .map(|r| r.join(format!("{name}-{v}/Cargo.toml")))
            .find(|m| m.exists())
        else {
            continue;
        };
        seen += 1;
        let text = std::fs::read_to_string(&manifest).unwrap();
        let Ok(t) = text.parse::<toml::Table>() else {
            continue;
        };
        if let Some(rv) = t
            .get("package")
            .and_then(|p| p.get("rust-version"))
            .and_then(|v| v.as_str())
            .and_then(version)
        {
            if rv > needed.0 {
                needed = (rv, format!("{name} {v}"));
            }
        }
    }
    // The test runs after cargo built the crate, so its dependencies are in the registry.
    assert!(
        seen > 100,
        "found only {seen} locked crates under {}/registry/src",
        cargo_home.display()
    );
    assert!(
        crate_rust_version() >= needed.0,
        "Cargo.toml rust-version {:?} is older than {} needs ({:?})",
        crate_rust_version(),
        needed.1,
        needed.0
    );
}

#[test]
fn the_dockerfile_builds_with_the_locked_toolchain_and_runs_unprivileged() {
    let text = read("deploy/Dockerfile");
    // Instructions, with `\` continuations joined and comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                instructions.push(std::mem::take(&mut pending));
            }
        }
    }
    // Stages: each FROM and the instructions after it.
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for i in instructions {
        let (op, args) = i.split_once(' ').unwrap_or((&i, ""));
        if op.eq_ignore_ascii_case("FROM") {
            let image = args
                .split_whitespace()
                .find(|a| !a.starts_with("--"))
                .unwrap()
                .to_string();
            stages.push((image, Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .1
                .push(i.clone());
        }
    }
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    for (image, _) in &stages {
        let (name_tag, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (image.as_str(), None),
        };
        let tag = name_tag
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{image}: no tag"));
        assert_ne!(tag, "latest", "{image}: latest is not a version");
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            assert!(
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{image}: a digest is sha256:<64 hex digits>"
            );
        } else {
            // Without a digest the tag must at least name an exact version (x.y.z).
            let exact = tag
                .split('-')
                .next()
                .is_some_and(|v| v.split('.').count() == 3 && version(v).is_some());
            assert!(exact, "{image}: pin an exact version tag, or a digest");
        }
    }

    let (builder, build_steps) = &stages[0];
    let tag = builder
        .split('@')
        .next()
        .and_then(|n| n.strip_prefix("rust:"))
        .unwrap_or_else(|| panic!("{builder}: the builder is the official rust image"));
    let rust = tag.split('-').next().and_then(version).unwrap();
    assert!(
        rust >= crate_rust_version(),
        "{builder}: Rust {rust:?} is older than the crate's rust-version {:?}",
        crate_rust_version()
    );
    let installs: Vec<&str> = build_steps
        .iter()
        .filter(|s| s.starts_with("RUN") && s.contains("apt-get install"))
        .flat_map(|s| s.split_whitespace())
        .collect();
    for package in ["cmake", "libclang-dev", "g++"] {
        assert!(
            installs.contains(&package),
            "the builder must install {package} (HiGHS and its bindgen bindings)"
        );
    }

    let (runtime, steps) = stages.last().unwrap();
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-"),
        "{runtime}: a minimal runtime with glibc and CA certificates (distroless cc)"
    );
    let user = steps
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap().trim();
    assert!(name != "root" && name != "0", "runs as {user}");
    assert!(
        steps
            .iter()
            .any(|s| s == "ENV COMMITD_DATA_DIR=/var/lib/commitd"),
        "the data directory is pinned to the volume"
    );
    assert!(
        steps.iter().any(|s| s.starts_with("COPY")
            && s.contains(&format!("--chown={user}"))
            && s.ends_with(" /var/lib/commitd")),
        "the data directory belongs to the runtime user {user}"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd and Kubernetes
// ---------------------------------------------------------------------------------------------

/// `Key=value` settings of a unit file (keys may repeat).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_keeps_state_in_the_state_directory_and_reads_etc() {
    let text = read("deploy/systemd/commitd.service");
    let settings = unit_settings(&text);
    let one = |key: &str| -> String {
        let values: Vec<_> = settings.iter().filter(|(k, _)| k == key).collect();
        assert_eq!(values.len(), 1, "{key} is set once: {values:?}");
        values[0].1.clone()
    };
    assert_eq!(one("StateDirectory"), "commitd");
    assert_eq!(one("ConfigurationDirectory"), "commitd");
    assert_eq!(one("WorkingDirectory"), "/var/lib/commitd");
    // Everything but the state directory is read-only...
    assert_eq!(one("ProtectSystem"), "strict");
    // ...and nothing else is opened for writing.
    for (k, v) in &settings {
        assert!(
            k != "ReadWritePaths"
                || v.split_whitespace()
                    .all(|p| p.starts_with("/var/lib/commitd")),
            "{k}={v}: commitd writes only its state directory"
        );
    }
    assert!(one("ExecStart").contains("--config /etc/commitd/commitd.toml"));
    let data_dir_env = settings
        .iter()
        .filter(|(k, _)| k == "Environment")
        .find_map(|(_, v)| v.strip_prefix("COMMITD_DATA_DIR="))
        .expect("the unit pins COMMITD_DATA_DIR");
    assert_eq!(data_dir_env, "/var/lib/commitd");
    assert!(
        text.contains("install -m 0644 deploy/systemd/commitd.toml /etc/commitd/commitd.toml"),
        "the unit's instructions install the systemd configuration"
    );

    // The configuration the unit installs, read by commitd's own loader: as the unit runs it
    // (with its environment) and as the file alone says.
    let config = root().join("deploy/systemd/commitd.toml");
    let env = BTreeMap::from([("COMMITD_DATA_DIR".to_string(), data_dir_env.to_string())]);
    for env in [env, BTreeMap::new()] {
        let c = commitd::config::Config::load_with_env(Some(&config), &env)
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        assert_eq!(c.data_dir, Path::new("/var/lib/commitd"), "{env:?}");
        assert!(
            c.policies_dir.starts_with("/etc/commitd"),
            "{:?}",
            c.policies_dir
        );
    }
}

/// The lines of a YAML block scalar `key: |` (dedented), e.g. a ConfigMap's file.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no {key}: | block"));
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubernetes_writes_only_to_its_data_volume_and_ships_a_valid_policy() {
    let yaml = read("deploy/kubernetes/commitd.yaml");
    let config = block(&yaml, "commitd.toml");
    let config: toml::Table = config
        .parse()
        .expect("the ConfigMap's commitd.toml is TOML");
    let data_dir = config["data_dir"].as_str().expect("data_dir");
    // The root file system is read-only; the data directory must be a writable volume.
    assert!(yaml.contains("readOnlyRootFilesystem: true"));
    let mount = yaml
        .lines()
        .find(|l| {
            l.contains(&format!("mountPath: {data_dir}}}"))
                || l.contains(&format!("mountPath: {data_dir},"))
        })
        .unwrap_or_else(|| panic!("no volume mounted at data_dir {data_dir}"));
    assert!(!mount.contains("readOnly: true"), "{mount}");
    let policy = block(&yaml, "aws.toml");
    commitd::policy::Policy::parse(
        &policy,
        Path::new("deploy/kubernetes/commitd.yaml (aws.toml)"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// Shipped policies
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_policies_parse_and_every_threshold_can_apply() {
    use commitd::domain::Money;
    let set = commitd::sources::policies::load_dir(&root().join("policies"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.policies.len(), 2);
    for p in &set.policies {
        let (l, a) = (&p.limits, &p.approval);
        let cap = |day: Option<Money>, month: Option<Money>| match (day, month) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (d, m) => d.or(m),
        };
        let hourly = cap(
            l.max_new_hourly_commitment_per_day,
            l.max_new_hourly_commitment_per_30_days,
        );
        let upfront = cap(l.max_upfront_per_day, l.max_upfront_per_30_days);
        let given_up = cap(
            l.max_hourly_given_up_per_day,
            l.max_hourly_given_up_per_30_days,
        );
        for (what, threshold, cap) in [
            (
                "two_approvers_from_hourly_commitment",
                a.two_approvers_from_hourly_commitment,
                hourly,
            ),
            (
                "autopilot_max_hourly_commitment",
                a.autopilot_max_hourly_commitment,
                hourly,
            ),
            (
                "two_approvers_from_upfront",
                a.two_approvers_from_upfront,
                upfront,
            ),
            ("autopilot_max_upfront", a.autopilot_max_upfront, upfront),
            (
                "two_approvers_from_hourly_given_up",
                a.two_approvers_from_hourly_given_up,
                given_up,
            ),
            (
                "autopilot_max_hourly_given_up",
                a.autopilot_max_hourly_given_up,
                given_up,
            ),
        ] {
            if let (Some(t), Some(c)) = (threshold, cap) {
                assert!(
                    t <= c,
                    "{}: {what} {t} can never apply under the cap {c}",
                    p.name
                );
            }
        }
        // The shipped examples say what may be given up, and how fast, explicitly.
        let text = std::fs::read_to_string(&p.source).unwrap();
        assert!(text.contains("\ngive_up = "), "{}: allow.give_up", p.name);
        assert!(
            given_up.is_some() && a.two_approvers_from_hourly_given_up.is_some(),
            "{}: caps and a two-approver threshold on giving up",
            p.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CI: PostgreSQL tests fail instead of skipping
// ---------------------------------------------------------------------------------------------

use crate::common;

#[test]
fn postgresql_tests_fail_instead_of_skipping_when_required() {
    use common::pg::decide;
    let url = || Some("postgres://h/db".to_string());
    assert_eq!(decide(None, None), Ok(None), "outside CI: SQLite only");
    assert_eq!(decide(Some(" ".into()), Some("0".into())), Ok(None));
    assert_eq!(decide(url(), None), Ok(url()));
    assert_eq!(decide(url(), Some("1".into())), Ok(url()));
    for require in ["1", "true"] {
        let e = decide(None, Some(require.into())).unwrap_err();
        assert!(e.contains("COMMITD_TEST_DATABASE_URL"), "{e}");
        assert!(decide(Some(String::new()), Some(require.into())).is_err());
    }
}

/// Sources `.ci/postgres.sh` with `pg_isready` answering `answers`, then prints what it exported.
fn ci_postgres(ci: bool, answers: bool) -> std::process::Output {
    let stub = tempfile::tempdir().unwrap();
    let pg_isready = stub.path().join("pg_isready");
    std::fs::write(
        &pg_isready,
        format!("#!/bin/sh\nexit {}\n", if answers { 0 } else { 2 }),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pg_isready, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        stub.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(
            "set -euo pipefail; source .ci/postgres.sh; \
             echo \"URL=${COMMITD_TEST_DATABASE_URL:-unset} REQUIRE=${COMMITD_TEST_REQUIRE_POSTGRES:-unset}\"",
        )
        .current_dir(root())
        .env("PATH", path)
        // A server named explicitly: the script never tries to start the machine's cluster.
        .env(
            "COMMITD_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres",
        )
        .env_remove("COMMITD_TEST_REQUIRE_POSTGRES");
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    cmd.output().unwrap()
}

#[test]
fn ci_fails_when_postgresql_does_not_answer() {
    let out = ci_postgres(true, false);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("CI=true but PostgreSQL does not answer") && !stdout.contains("URL="),
        "{stdout}{stderr}"
    );

    let out = ci_postgres(true, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("URL=postgres://postgres@127.0.0.1:1/postgres REQUIRE=1"),
        "{stdout}"
    );

    // Outside CI: SQLite only, said out loud, nothing required.
    let out = ci_postgres(false, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("SQLite only") && stdout.contains("URL=unset REQUIRE=unset"),
        "{stdout}"
    );

    // CI runs the decision before the tests.
    let run = read(".ci/run");
    let source = run
        .find("source .ci/postgres.sh")
        .expect(".ci/run sources it");
    assert!(
        source
            < run
                .find("cargo test --workspace --locked")
                .expect("the test step")
    );
}

/// CI runs the README's test command, word for word, and checks that the core builds alone.
#[test]
fn ci_runs_the_readmes_test_command_and_builds_the_core_alone() {
    let readme = read("README.md");
    let command = readme
        .split("## Tests")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .map(str::trim)
        .expect("README.md has a ## Tests section with a sh block");
    assert!(command.starts_with("cargo test"), "{command}");
    let run = read(".ci/run");
    assert!(
        run.lines().any(|l| l.trim() == command),
        ".ci/run must run the README's test command `{command}`"
    );
    assert!(run
        .lines()
        .any(|l| l.trim() == "cargo check --locked -p commitd-core"));
}
