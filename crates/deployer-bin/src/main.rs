//! The `deployer` binary: the daemon (`run`) and the CLI that talks to it.

mod cli;
mod client;
mod config;
mod exit;
mod proxy;
mod run;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConfigCommand, ProxyArgs, ProxyCommand};
use exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on bad flags, but 2 here means "the deploy ran and failed": bad
            // flags are bad input, 64 like a bad config. Help and version are successes.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("deployer: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            eprintln!("deployer: {exit}");
            ExitCode::from(exit.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Exit> {
    match cli.command {
        Command::Run { config, overrides } => {
            run::run(config.as_deref(), &overrides, cli.log_format).await
        }
        Command::Config {
            command: ConfigCommand::Check { file, overrides },
        } => {
            // Exactly what `run` validates before binding or connecting anything, the
            // adapters' own checks (secret lengths, retry bounds, ...) included.
            let (settings, _, _) = run::load(Some(&file), &overrides)?;
            for warning in &settings.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} service{}, coordinator {})",
                file.display(),
                settings.services.len(),
                if settings.services.len() == 1 {
                    ""
                } else {
                    "s"
                },
                match settings.coordinator {
                    config::CoordinatorSettings::Memory => "memory",
                    config::CoordinatorSettings::Etcd(_) => "etcd",
                }
            );
            Ok(())
        }
        Command::Proxy { command } => match command {
            ProxyCommand::Run { paths, takeover } => {
                let paths = proxy_paths(paths)?;
                let log = cli.log_format.unwrap_or_default();
                proxy::serve(&paths, log, takeover.as_deref()).await
            }
            ProxyCommand::Routes { paths } => proxy::routes(&proxy_paths(paths)?).await,
            ProxyCommand::Call { request, paths } => {
                proxy::call(&proxy_paths(paths)?, &request).await
            }
            ProxyCommand::Upgrade { paths } => proxy::upgrade(&proxy_paths(paths)?).await,
        },
        Command::Status { client } => client::Client::new(&client)?.status().await,
        Command::History {
            service,
            limit,
            client,
        } => {
            client::Client::new(&client)?
                .history(service.as_deref(), limit)
                .await
        }
        Command::Deploy {
            service,
            image,
            wait,
            client,
        } => {
            client::Client::new(&client)?
                .deploy(&service, image.as_deref(), false, &wait)
                .await
        }
        Command::Reload { client } => client::Client::new(&client)?.reload().await,
        Command::Pause {
            service,
            hold,
            client,
        } => {
            let body = serde_json::json!({ "hold_seconds": hold.as_secs().max(1) });
            client::Client::new(&client)?
                .gate(&service, "pause", body)
                .await
        }
        Command::Maintenance {
            service,
            message,
            client,
        } => {
            let body = serde_json::json!({ "message": message });
            client::Client::new(&client)?
                .gate(&service, "maintenance", body)
                .await
        }
        Command::Resume { service, client } => {
            client::Client::new(&client)?
                .gate(&service, "resume", serde_json::json!({}))
                .await
        }
        Command::Rollback {
            service,
            wait,
            client,
        } => {
            client::Client::new(&client)?
                .deploy(&service, None, true, &wait)
                .await
        }
    }
}

fn proxy_paths(args: ProxyArgs) -> Result<proxy::ProxyPaths, Exit> {
    proxy::ProxyPaths::resolve(args.socket, args.state, args.config.as_deref())
}
