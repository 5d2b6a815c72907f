//! The `authsession` binary: parse the CLI and the configuration, then serve or run a tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use authsession::app::App;
use authsession::config::Config;
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
    /// Inspect the Lua scripts: names, versions, SHA1s.
    Scripts {
        #[command(subcommand)]
        action: ScriptsAction,
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
    let mut stdout = std::io::stdout();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Scripts {
            action: ScriptsAction::List,
        } => exit(cli::scripts::list(&mut stdout).is_ok()),
        Command::Scripts {
            action: ScriptsAction::Export { dir },
        } => match cli::scripts::export(&dir, &mut stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authsession scripts export: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Scripts {
            action: ScriptsAction::Check,
        } => {
            let Some(config) = load_config() else {
                return ExitCode::FAILURE;
            };
            match runtime().block_on(cli::scripts::check(&config, &mut stdout)) {
                Ok(all) => exit(all),
                Err(e) => {
                    eprintln!("authsession scripts check: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            let Some(config) = load_config() else {
                return ExitCode::FAILURE;
            };
            telemetry::init(config.log_format, &config.log_level);
            let clean = runtime().block_on(serve(config));
            telemetry::shutdown();
            exit(clean)
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

async fn serve(config: Config) -> bool {
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = %error, "startup failed");
            return false;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let clean = app.run_until_stopped(shutdown).await;
    if clean {
        tracing::info!("shutdown complete");
    } else {
        tracing::error!("shutdown complete: a component overran its budget");
    }
    clean
}

/// SIGINT or SIGTERM cancels the one shutdown token.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "signal received");
    shutdown.cancel();
}
