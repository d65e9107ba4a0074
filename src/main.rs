//! The `vevee-attributes` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vevee_attributes::{
    cli,
    config::ServeArgs,
    startup::{Application, shutdown_signal},
    telemetry::{self, LogFormat},
};

// glibc's malloc was ~10% of the server's CPU under load (BENCHMARKS.md);
// mimalloc's thread-local free lists suit the many small, short-lived
// allocations of a request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Typed person attributes for vevee analytics, over gRPC.
#[derive(Parser)]
#[command(name = "vevee-attributes", version, about)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines. Filter with RUST_LOG.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    /// The operator commands: migrate, workspace, keys, attributes, settings.
    #[command(flatten)]
    Admin(cli::Command),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // One line naming the flag; clap's usage hints would bury it.
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(cli.log_format, std::io::stderr);
    let runtime = match &cli.command {
        Command::Serve(args) => args.runtime(),
        Command::Admin(_) => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => Ok(Application::build(args)
                .await?
                .run_until_stopped(shutdown_signal())
                .await?),
            Command::Admin(command) => Ok(cli::run(command).await?),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err)
            if err
                .downcast_ref::<vevee_attributes::startup::StartupError>()
                .is_some_and(|e| e.is_usage()) =>
        {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
