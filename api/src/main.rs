//! The `wayfinder` binary: parse the command line, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = wayfinder::cli::Cli::parse();
    // Before the runtime starts any thread (see the function's docs).
    if cli.config.embedding_model_dir.is_some() {
        wayfinder::embeddings::local::set_thread_count_env();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        wayfinder::telemetry::init(&cli.config.log_format);
        let mut stdout = std::io::stdout();
        match wayfinder::cli::run(cli, &mut stdout).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
