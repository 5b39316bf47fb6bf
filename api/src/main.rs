//! The `wayfinder` binary: parse the command line, hand over to the library.

use clap::Parser;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        #[cfg(feature = "jemalloc")]
        if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
            tracing::warn!(%err, "jemalloc's background purging is off: freed memory returns to the system only as the allocator works");
        }
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
