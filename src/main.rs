//! The `authsession` binary: parse the CLI and the configuration, then serve or run a tool.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use authsession::app::App;
use authsession::cli::inspect::Target;
use authsession::config::Config;
use authsession::domain::{ChallengeId, DeviceSessionId, UserId};
use authsession::{cli, telemetry};

#[derive(Parser)]
#[command(
    name = "authsession",
    version,
    about = "Passwordless e-mail-code login with device-bound sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// The runbook's steady-state verification against the configured listeners and Redis.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a record, its gateway projection and recent events, with a triage verdict.
    Inspect {
        #[command(subcommand)]
        target: InspectTarget,
    },
    /// Repair a session's gateway projection from source of truth.
    Republish {
        // Generated ids may start with `-`: never take them for flags.
        #[arg(allow_hyphen_values = true)]
        device_session_id: String,
    },
    /// Inspect the Lua scripts: names, versions, SHA1s.
    Scripts {
        #[command(subcommand)]
        action: ScriptsAction,
    },
    /// Print the partition layout (tag, slot and stream of each partition) from configuration:
    /// the streams a gateway follows.
    Partitions,
    /// Print the OpenAPI 3.1 document of both HTTP surfaces.
    Openapi,
    /// The reference client: log in with an e-mail code, then sign requests with the session's
    /// device key (docs/gateway.md "Authenticating requests").
    Client {
        #[command(subcommand)]
        action: ClientAction,
        /// Where the key and the device_session_id are kept (created mode 0600).
        #[arg(long, global = true, default_value = "authsession-session.json")]
        session_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClientAction {
    /// Send a code to ADDR, read it from standard input, confirm with a new Ed25519 key.
    Login {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        email: String,
    },
    /// Sign one request with the saved session and print the answer.
    Request {
        method: String,
        url: String,
        /// The request body (sent as application/json, with its Content-Digest).
        #[arg(long)]
        data: Option<String>,
        /// A DPoP proof (RFC 9449) instead of an HTTP message signature.
        #[arg(long)]
        dpop: bool,
    },
}

#[derive(Subcommand)]
enum InspectTarget {
    /// A login challenge by challenge_id.
    Challenge {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// A device session by device_session_id.
    Session {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// A user's sessions by user_id.
    User {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand)]
enum ScriptsAction {
    /// Print `name version sha1` for every script.
    List,
    /// Write the assembled scripts to a directory, for pre-loading.
    Export { dir: PathBuf },
    /// Check that the configured Redis has every script cached (exit 1 otherwise).
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    let command = cli.command.unwrap_or(Command::Serve);
    // Commands that need neither configuration nor Redis.
    match &command {
        Command::Openapi => return exit(out.write_all(cli::openapi::DOCUMENT.as_bytes()).is_ok()),
        Command::Scripts {
            action: ScriptsAction::List,
        } => return exit(cli::scripts::list(&mut out).is_ok()),
        Command::Scripts {
            action: ScriptsAction::Export { dir },
        } => {
            return report(
                "scripts export",
                cli::scripts::export(dir, &mut out)
                    .map(|()| true)
                    .map_err(Into::into),
            )
        }
        Command::Client {
            action,
            session_file,
        } => return client(action, session_file),
        _ => {}
    }
    let Some(config) = load_config() else {
        return ExitCode::FAILURE;
    };
    if let Command::Partitions = command {
        return exit(cli::partitions::print(&config, &mut out).is_ok());
    }
    if let Command::Serve = command {
        let budget = config.shutdown_timeout;
        // Kept to the end: dropped, it writes the last log lines.
        let mut telemetry = telemetry::init(config.log_format, &config.log_level);
        let served = runtime().block_on(serve(config));
        // Telemetry last: the runtime (and every task that could still emit) is gone by now.
        let flushed = telemetry.shutdown(budget);
        let Some(clean) = served else {
            return ExitCode::FAILURE; // startup failed; already logged
        };
        if clean && flushed {
            tracing::info!("shutdown complete");
        } else {
            tracing::error!(
                clean,
                flushed,
                "shutdown complete: a component overran its budget or failed"
            );
        }
        return exit(clean && flushed);
    }
    let outcome = runtime().block_on(async {
        match command {
            Command::Verify { json } => cli::verify::run(&config, json, &mut out).await,
            Command::Inspect { target } => {
                let target = match target {
                    InspectTarget::Challenge { id } => {
                        ChallengeId::parse(&id).map(Target::Challenge)
                    }
                    InspectTarget::Session { id } => {
                        DeviceSessionId::parse(&id).map(Target::Session)
                    }
                    InspectTarget::User { id } => UserId::parse(&id).map(Target::User),
                }
                .map_err(|e| cli::Error::Usage(e.0.to_owned()))?;
                cli::inspect::run(&config, &target, &mut out).await
            }
            Command::Republish { device_session_id } => {
                let id = DeviceSessionId::parse(&device_session_id)
                    .map_err(|e| cli::Error::Usage(e.0.to_owned()))?;
                cli::republish::run(&config, &id, &mut out).await
            }
            Command::Scripts {
                action: ScriptsAction::Check,
            } => cli::scripts::check(&config, &mut out).await,
            Command::Serve
            | Command::Openapi
            | Command::Partitions
            | Command::Scripts { .. }
            | Command::Client { .. } => {
                unreachable!("handled above")
            }
        }
    });
    report("command", outcome)
}

/// `authsession client ...`: needs no configuration, only the service's URL.
fn client(action: &ClientAction, file: &std::path::Path) -> ExitCode {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let outcome = runtime().block_on(async {
        match action {
            ClientAction::Login { base_url, email } => {
                let mut input = std::io::stdin().lock();
                cli::client::login(base_url, email, file, &mut input, &mut err).await
            }
            ClientAction::Request {
                method,
                url,
                data,
                dpop,
            } => {
                cli::client::request(
                    file,
                    method,
                    url,
                    data.as_deref(),
                    *dpop,
                    &mut out,
                    &mut err,
                )
                .await
            }
        }
    });
    report("client", outcome)
}

/// Exit 0 when the command found everything healthy, 1 when it did not or could not answer.
fn report(what: &str, outcome: Result<bool, cli::Error>) -> ExitCode {
    match outcome {
        Ok(healthy) => exit(healthy),
        Err(e) => {
            eprintln!("authsession {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every configuration problem at once, before anything connects.
fn load_config() -> Option<Config> {
    match Config::from_env() {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("authsession: {e}");
            None
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// `None` when startup failed; otherwise whether every listener drained within its budget.
async fn serve(config: Config) -> Option<bool> {
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = %error, "startup failed");
            return None;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(authsession::app::stop_on_signal(shutdown.clone()));
    Some(app.run_until_stopped(shutdown).await)
}
