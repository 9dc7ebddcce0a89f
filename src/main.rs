use clap::Parser;

// mimalloc: fewer cycles per allocation than glibc malloc on the request path (measured in
// docs/benchmarks/users.md) and no per-thread arena growth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = socialnet::cli::Cli::parse();
    socialnet::telemetry::init(cli.log_format());
    socialnet::cli::run(cli).await
}
