//! The `wayfinder` binary: parse the command line, hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wayfinder::cli::Cli::parse();
    wayfinder::telemetry::init(&cli.config.log_format);
    let mut stdout = std::io::stdout();
    match wayfinder::cli::run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
