//! The `vevee-attributes` binary: parses the command line and runs it.

use std::{io::IsTerminal, process::ExitCode};

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
        Err(err) => {
            // clap's whole message: the missing argument's name, "did you
            // mean", the allowed values. --help and --version go to stdout
            // with status 0, errors to stderr with status 2.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // clap checks that values parse; these checks that they make sense,
    // before anything starts. One line and status 2, like clap's own.
    let valid = match &cli.command {
        Command::Serve(args) => args.validate(),
        Command::Admin(command) => command.database().validate(),
    };
    if let Err(err) = valid {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    telemetry::init(
        cli.log_format,
        std::io::stderr().is_terminal(),
        std::io::stderr,
    );
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
