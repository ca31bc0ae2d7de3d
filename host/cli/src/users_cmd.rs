//! `sandflow users add|list|token|tokens|revoke|role|disable|enable|budget` and `sandflow audit`:
//! on this machine's store (as its admin: whoever can open the database can change it anyway),
//! or against a server with `--server` and an admin's token.

use std::time::Duration;

use clap::{Args, Subcommand};
use sandflow_service::auth::{BudgetSubject, Principal, UserEdit};
use sandflow_service::Service;
use sandflow_store::{AuditQuery, Role};
use serde_json::{json, Value};

use crate::client::{encode, Client};
use crate::out::outln;
use crate::{table, CliError, Home};

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a user with a role (viewer, author, operator, admin).
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Ask for a password (read from stdin when it is not a terminal); without it the user
        /// logs in with tokens only.
        #[arg(long)]
        password: bool,
    },
    /// List users with their roles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a token for a user and print it (this once).
    Token {
        name: String,
        /// How long it lasts (30d, 12h); without it, until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (ids, owners, expiry; never a secret).
    Tokens {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (tok_...): refused from the next request on.
    Revoke { token_id: String },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Disable a user: their tokens and password are refused at once.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a user's password (asked for, or read from stdin).
    Password { name: String },
    /// Set, show or remove a daily fuel budget of a user (or, with --role, of a role).
    Budget(BudgetArgs),
}

#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// The user (or with --role, the role).
    subject: String,
    /// The subject is a role.
    #[arg(long)]
    role: bool,
    /// Fuel a day (UTC); without it (and without --remove), show the user's figures.
    #[arg(long)]
    fuel_per_day: Option<i64>,
    /// Remove the budget.
    #[arg(long, conflicts_with = "fuel_per_day")]
    remove: bool,
}

/// `sandflow audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long)]
    actor: Option<String>,
    /// An action, or a prefix ending in `.` (user., token., dag.).
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    target: Option<String>,
    /// ok or refused.
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Entries older than this id (the next page).
    #[arg(long)]
    before: Option<i64>,
    #[arg(long)]
    json: bool,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: sandflow_store::UnknownName| e.to_string())
}

/// Where the commands go: this machine's store, or a server.
enum Via {
    Local(Service, Principal),
    Remote(Client),
}

async fn via(home: &Home, server: Option<&str>) -> Result<Via, CliError> {
    Ok(match server {
        Some(url) => Via::Remote(Client::new(url)?),
        None => {
            let store = crate::app::open_store(home).await?;
            Via::Local(crate::app::service(store, home)?, Principal::local(&crate::app::user()))
        }
    })
}

fn failed(e: sandflow_service::ServiceError) -> CliError {
    crate::runs_cmd::service_error(e)
}

/// Reads a password: without echo on a terminal, else the first line of stdin.
fn read_password() -> Result<String, CliError> {
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        rpassword::prompt_password("password: ")
            .map_err(|e| CliError::Usage(anyhow::anyhow!("reading a password: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| CliError::Usage(anyhow::anyhow!("reading stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    Ok(password)
}

fn user_rows(users: &Value) -> Vec<Vec<String>> {
    users
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            vec![
                u["name"].as_str().unwrap_or("").to_string(),
                u["role"].as_str().unwrap_or("").to_string(),
                if u["disabled"].as_bool() == Some(true) { "disabled" } else { "" }.to_string(),
                if u["has_password"].as_bool() == Some(true) { "password" } else { "tokens only" }.to_string(),
            ]
        })
        .collect()
}

fn show_token(token: &Value) {
    let expires = token["expires_at"].as_str().map(|t| format!(", expires {t}")).unwrap_or_default();
    outln!(
        "token {} for {}{expires} (shown this once; send it as Authorization: Bearer, or SANDFLOW_TOKEN):",
        token["id"].as_str().unwrap_or("?"),
        token["user"].as_str().unwrap_or("?")
    );
    outln!("{}", token["token"].as_str().unwrap_or(""));
}

pub async fn run(cmd: UsersCmd, home: &Home, server: Option<&str>) -> Result<(), CliError> {
    let via = via(home, server).await?;
    match cmd {
        UsersCmd::Add { name, role, password } => {
            let password = if password { Some(read_password()?) } else { None };
            match &via {
                Via::Local(service, by) => {
                    service.add_user(by, &name, role, password.as_deref()).await.map_err(failed)?;
                }
                Via::Remote(client) => {
                    client.post("/api/v1/users", &json!({"name": name, "role": role, "password": password})).await?;
                }
            }
            outln!("user {name} added with the {role} role");
        }
        UsersCmd::List { json: as_json } => {
            let users = match &via {
                Via::Local(service, _) => json!(service.users().await.map_err(failed)?),
                Via::Remote(client) => client.get("/api/v1/users").await?["items"].take(),
            };
            if as_json {
                return Ok(table::json(&users)?);
            }
            table::print(&["user", "role", "state", "login"], &user_rows(&users));
        }
        UsersCmd::Token { name, expires } => {
            let token = match &via {
                Via::Local(service, by) => {
                    json!(service.issue_token(by, &name, expires, "cli").await.map_err(failed)?)
                }
                Via::Remote(client) => {
                    let expires = expires.map(|d| humantime::format_duration(d).to_string());
                    let path = format!("/api/v1/users/{}/tokens", encode(&name));
                    client.post(&path, &json!({"expires": expires, "purpose": "cli"})).await?
                }
            };
            show_token(&token);
        }
        UsersCmd::Tokens { user, json: as_json } => {
            let tokens = match &via {
                Via::Local(service, _) => json!(service.tokens(user.as_deref()).await.map_err(failed)?),
                Via::Remote(client) => {
                    let query = user.map(|u| format!("?user={}", encode(&u))).unwrap_or_default();
                    client.get(&format!("/api/v1/tokens{query}")).await?["items"].take()
                }
            };
            if as_json {
                return Ok(table::json(&tokens)?);
            }
            let field = |t: &Value, k: &str| t[k].as_str().unwrap_or("").to_string();
            let rows: Vec<Vec<String>> = tokens
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let state = if t["revoked_at"].is_string() { "revoked" } else { "" };
                    vec![
                        field(t, "id"),
                        field(t, "user_name"),
                        field(t, "purpose"),
                        field(t, "created_at"),
                        field(t, "expires_at"),
                        state.to_string(),
                    ]
                })
                .collect();
            table::print(&["token", "user", "purpose", "created", "expires", "state"], &rows);
        }
        UsersCmd::Revoke { token_id } => {
            match &via {
                Via::Local(service, by) => service.revoke_token(by, &token_id).await.map_err(failed)?,
                Via::Remote(client) => {
                    client.delete(&format!("/api/v1/tokens/{}", encode(&token_id))).await?;
                }
            }
            outln!("token {token_id} revoked");
        }
        UsersCmd::Role { name, role } => {
            change(&via, &name, UserEdit { role: Some(role), ..UserEdit::default() }).await?;
            outln!("user {name} now has the {role} role");
        }
        UsersCmd::Disable { name } => {
            change(&via, &name, UserEdit { disabled: Some(true), ..UserEdit::default() }).await?;
            outln!("user {name} disabled: their tokens and password are refused");
        }
        UsersCmd::Enable { name } => {
            change(&via, &name, UserEdit { disabled: Some(false), ..UserEdit::default() }).await?;
            outln!("user {name} enabled");
        }
        UsersCmd::Password { name } => {
            let password = read_password()?;
            change(&via, &name, UserEdit { password: Some(password), ..UserEdit::default() }).await?;
            outln!("password of {name} set");
        }
        UsersCmd::Budget(args) => budget(&via, args).await?,
    }
    Ok(())
}

async fn change(via: &Via, name: &str, edit: UserEdit) -> Result<(), CliError> {
    match via {
        Via::Local(service, by) => {
            service.change_user(by, name, edit).await.map_err(failed)?;
        }
        Via::Remote(client) => {
            let body = json!({"role": edit.role, "disabled": edit.disabled, "password": edit.password});
            let body = Value::Object(
                body.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            client.patch(&format!("/api/v1/users/{}", encode(name)), &body).await?;
        }
    }
    Ok(())
}

async fn budget(via: &Via, args: BudgetArgs) -> Result<(), CliError> {
    let kind = if args.role { "role" } else { "user" };
    let subject = if args.role {
        BudgetSubject::Role(parse_role(&args.subject).map_err(|e| CliError::Usage(anyhow::anyhow!(e)))?)
    } else {
        BudgetSubject::User(args.subject.clone())
    };
    let fuel = if args.remove { None } else { args.fuel_per_day };
    if args.remove || fuel.is_some() {
        match via {
            Via::Local(service, by) => service.set_budget(by, &subject, fuel).await.map_err(failed)?,
            Via::Remote(client) => {
                let path = format!("/api/v1/budgets/{kind}/{}", encode(&args.subject));
                match fuel {
                    Some(f) => client.put(&path, &json!({"fuel_per_day": f})).await?,
                    None => client.delete(&path).await?,
                };
            }
        }
        match fuel {
            Some(f) => outln!("budget of {kind} {}: {f} fuel a day", args.subject),
            None => outln!("budget of {kind} {} removed", args.subject),
        }
        return Ok(());
    }
    if args.role {
        return Err(CliError::Usage(anyhow::anyhow!("say --fuel-per-day N or --remove for a role's budget")));
    }
    let view = match via {
        Via::Local(service, _) => json!(service.budget_of(&args.subject).await.map_err(failed)?),
        Via::Remote(client) => client.get(&format!("/api/v1/users/{}/budget", encode(&args.subject))).await?,
    };
    let budget = match view["fuel_per_day"].as_i64() {
        Some(b) => format!(
            "{b} a day (the {}'s budget), {} remaining",
            view["budget_of"].as_str().unwrap_or("?"),
            view["remaining"]
        ),
        None => "no budget".to_string(),
    };
    outln!(
        "{} ({}): {} fuel used today; {budget}",
        args.subject,
        view["role"].as_str().unwrap_or("?"),
        view["used_today"]
    );
    Ok(())
}

pub async fn audit(args: AuditArgs, home: &Home, server: Option<&str>) -> Result<(), CliError> {
    if !(1..=1000).contains(&args.limit) {
        return Err(CliError::Usage(anyhow::anyhow!("--limit {}: from 1 to 1000", args.limit)));
    }
    let entries = match via(home, server).await? {
        Via::Local(service, _) => {
            let query = AuditQuery {
                actor: args.actor,
                action: args.action,
                target: args.target,
                outcome: args.outcome,
                before_id: args.before,
                limit: args.limit,
            };
            json!(service.audit_log(&query).await.map_err(failed)?)
        }
        Via::Remote(client) => {
            let mut query = vec![format!("limit={}", args.limit)];
            for (key, value) in
                [("actor", args.actor), ("action", args.action), ("target", args.target), ("outcome", args.outcome)]
            {
                if let Some(v) = value {
                    query.push(format!("{key}={}", encode(&v)));
                }
            }
            if let Some(before) = args.before {
                query.push(format!("before={before}"));
            }
            client.get(&format!("/api/v1/audit?{}", query.join("&"))).await?["items"].take()
        }
    };
    if args.json {
        return Ok(table::json(&entries)?);
    }
    let field = |e: &Value, k: &str| match &e[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            ["id", "at", "actor", "action", "target", "outcome", "address", "detail"]
                .iter()
                .map(|k| field(e, k))
                .collect()
        })
        .collect();
    table::print(&["id", "at", "actor", "action", "target", "outcome", "from", "detail"], &rows);
    Ok(())
}
