//! `commitd proposals ...`: decide on proposals from a shell with database access (the HTTP API
//! offers the same decisions). Who decides is proven, not typed: see [`super::tokens`].

use super::runtime;
use super::tokens::{resolve_actor, IdentityArgs, AS_REFUSED};
use crate::config::Config;
use crate::execute::journal;
use crate::identity::Role;
use crate::markets::Operation;
use crate::proposals::{Proposal, ProposalError, ProposalState, ProposalStore};
use crate::store::Store;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// The configuration file (TOML); its database is used.
    #[arg(
        long,
        short,
        env = "COMMITD_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub config: Option<PathBuf>,
}

/// Proposals waiting for (or past) a decision.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List proposals, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this state: proposed, approved, rejected, expired, executing, executed, failed,
        /// needs_review (a provider call whose outcome commitd could not establish).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one proposal with its decisions.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a proposal (never your own; large ones need a second approver). You are the
    /// approver token's name (--token-file or COMMITD_TOKEN), or your OS user's mapping in
    /// [identity] os_users.
    Approve {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        id: String,
        /// Refused: a typed name proves nothing (kept only to say what to do instead).
        #[arg(long = "as", value_name = "NAME", hide = true)]
        actor: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a proposal; the reason goes to the audit log. Identity as for approve.
    Reject {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        id: String,
        /// Refused: a typed name proves nothing (kept only to say what to do instead).
        #[arg(long = "as", value_name = "NAME", hide = true)]
        actor: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Settle a proposal in `needs_review` after checking the provider's console: either it
    /// was bought (give the commitment id) or it was not. commitd never retries it by itself.
    ///
    /// Examples:
    ///   commitd proposals resolve p-1a2b3c --bought 4d5e6f7a-... --reason "found in the console"
    ///   commitd proposals resolve p-1a2b3c --not-bought --reason "no RI since the request"
    ///
    /// Identity as for approve (an approver token or a mapped OS user).
    Resolve {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        id: String,
        /// Refused: a typed name proves nothing (kept only to say what to do instead).
        #[arg(long = "as", value_name = "NAME", hide = true)]
        actor: Option<String>,
        /// The commitment the provider shows for it (RI id, savings plan id, listing id).
        #[arg(
            long,
            value_name = "COMMITMENT_ID",
            conflicts_with = "not_bought",
            required_unless_present = "not_bought"
        )]
        bought: Option<String>,
        /// The provider shows nothing: the proposal fails, and a later plan may propose again.
        #[arg(long)]
        not_bought: bool,
        /// What was checked (goes to the audit log).
        #[arg(long)]
        reason: String,
    },
}

async fn open_with_config(config: &ConfigArg) -> anyhow::Result<(Config, Store)> {
    let cfg = Config::load(config.config.as_deref())?;
    let url = cfg.database_url();
    let store = Store::connect(url.expose())
        .await
        .context("opening the database")?;
    Ok((cfg, store))
}

async fn open(config: &ConfigArg) -> anyhow::Result<Store> {
    Ok(open_with_config(config).await?.1)
}

/// The decider: refuses `--as` before anything is opened, then resolves the proven identity.
async fn decider(
    config: &ConfigArg,
    identity: &IdentityArgs,
    typed: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(String, Store)> {
    if typed.is_some() {
        bail!("{AS_REFUSED}");
    }
    let (cfg, store) = open_with_config(config).await?;
    let who = resolve_actor(&cfg, &store, identity, Role::Approver, now).await?;
    Ok((who, store))
}

fn print(p: &Proposal) {
    println!("{}  {}  {}", p.id, p.state, p.action.describe());
    println!(
        "  cost {} per hour, upfront {}, expected savings {}",
        p.action.hourly_cost.for_people(),
        p.action.upfront.for_people(),
        p.action.expected_savings.for_people()
    );
    match &p.action.operation {
        Operation::Purchase => {}
        Operation::Return {
            hourly_cost_removed,
            ..
        } => println!(
            "  returning stops {} per hour of cost",
            hourly_cost_removed.for_people()
        ),
        Operation::Exchange {
            source_value,
            true_up,
            ..
        } => println!(
            "  gives up {} of remaining value; true-up planned {}, approved up to {}",
            source_value.for_people(),
            true_up.for_people(),
            p.action.upfront.for_people()
        ),
        Operation::Sell {
            instances,
            hourly_cost_removed,
            price,
            ..
        } => println!(
            "  lists {instances} instances on the RI Marketplace asking {} (less AWS's 12% fee); once sold, {} per hour of cost stops",
            price.for_people(),
            hourly_cost_removed.for_people()
        ),
    }
    println!(
        "  plan {}, policy {}, proposed by {} at {}, expires {}",
        p.plan_id,
        p.policy,
        p.proposer,
        p.created_at.to_rfc3339(),
        p.expires_at.to_rfc3339()
    );
    println!(
        "  approvals {}/{}{}",
        p.approvals(),
        p.approvals_needed,
        p.decisions
            .iter()
            .map(|d| format!(
                "; {} {} at {}{}",
                d.actor,
                if d.approve { "approved" } else { "rejected" },
                d.at.to_rfc3339(),
                d.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ))
            .collect::<String>()
    );
    if let Some(c) = &p.commitment_id {
        println!(
            "  commitment {c} (key {})",
            p.idempotency_key.as_deref().unwrap_or("-")
        );
    }
    if let Some(o) = &p.outcome {
        println!("  outcome: {o}");
    }
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match cmd {
            Command::List {
                config,
                state,
                json,
            } => {
                let state = match state.as_deref() {
                    Some(s) => Some(
                        ProposalState::parse(s)
                            .with_context(|| format!("--state {s}: unknown state"))?,
                    ),
                    None => None,
                };
                let list = ProposalStore::new(open(&config).await?).list(state).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no proposals");
                } else {
                    for p in &list {
                        println!(
                            "{}  {:<9}  {}/{}  {}",
                            p.id,
                            p.state.as_str(),
                            p.approvals(),
                            p.approvals_needed,
                            p.action.describe()
                        );
                    }
                }
            }
            Command::Show { config, id, json } => {
                let p = ProposalStore::new(open(&config).await?)
                    .get(&id)
                    .await?
                    .ok_or(ProposalError::NotFound(id))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&p)?);
                } else {
                    print(&p);
                }
            }
            Command::Approve {
                config,
                identity,
                id,
                actor: typed,
                reason,
            } => {
                let now = chrono::Utc::now();
                let (who, store) = decider(&config, &identity, typed, now).await?;
                let proposals = ProposalStore::new(store);
                // The approval (or the expiry that refuses it) commits with its audit event.
                let a = proposals.approve(&id, &who, now, reason.as_deref()).await?;
                print(&a.proposal);
                if !a.complete {
                    println!("waiting for one more approver");
                }
            }
            Command::Reject {
                config,
                identity,
                id,
                actor: typed,
                reason,
            } => {
                let now = chrono::Utc::now();
                let (who, store) = decider(&config, &identity, typed, now).await?;
                let proposals = ProposalStore::new(store);
                let p = proposals.reject(&id, &who, now, &reason).await?;
                print(&p);
            }
            Command::Resolve {
                config,
                identity,
                id,
                actor: typed,
                bought,
                not_bought: _,
                reason,
            } => {
                if reason.trim().is_empty() {
                    bail!("--reason: say what was checked at the provider");
                }
                let now = chrono::Utc::now();
                let (who, store) = decider(&config, &identity, typed, now).await?;
                let proposals = ProposalStore::new(store);
                let p = proposals
                    .get(&id)
                    .await?
                    .ok_or_else(|| ProposalError::NotFound(id.clone()))?;
                if p.state != ProposalState::NeedsReview {
                    bail!(
                        "proposal {id} is {}, not needs_review: nothing to resolve",
                        p.state
                    );
                }
                let key = p.idempotency_key.clone();
                let done = match &bought {
                    Some(commitment) => {
                        let event = crate::audit::NewEvent::new(
                            now,
                            &who,
                            &id,
                            crate::audit::Executed {
                                proposal_id: id.clone(),
                                idempotency_key: key.unwrap_or_default(),
                                provider_request_id: "resolved-by-hand".into(),
                                commitment_id: commitment.clone(),
                            },
                        )
                        .with_amount(crate::audit::Amount::usd(journal::term_total(&p.action)))
                        .with_rationale(serde_json::json!({
                            "resolved_by_hand": true,
                            "reason": reason,
                            "what": p.action.describe(),
                        }));
                        proposals
                            .finish_execution(&id, commitment, "resolved-by-hand", now, event)
                            .await?
                    }
                    None => {
                        let why = format!("not bought (checked by {who}): {reason}");
                        let event = crate::audit::NewEvent::new(
                            now,
                            &who,
                            &id,
                            crate::audit::Failed {
                                proposal_id: id.clone(),
                                idempotency_key: key,
                                error: why.clone(),
                                retryable: false,
                            },
                        )
                        .with_rationale(serde_json::json!({"resolved_by_hand": true}));
                        proposals.fail(&id, &why, now, event).await?
                    }
                };
                if !done {
                    bail!("proposal {id} changed state meanwhile; look again");
                }
                if let Some(p) = proposals.get(&id).await? {
                    print(&p);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
