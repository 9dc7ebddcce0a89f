use clap::Parser;

// mimalloc: fewer cycles per allocation than glibc malloc on the request path (measured in
// docs/benchmarks/users.md) and no per-thread arena growth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = socialnet::cli::Cli::parse();
    // Before the runtime: the trace exporter's HTTP client (when one is configured) runs its own
    // thread, and is flushed and dropped after the runtime is gone.
    let telemetry = socialnet::telemetry::init(cli.log_format(), cli.service_name());
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(socialnet::cli::run(cli));
    drop(telemetry);
    result
}
