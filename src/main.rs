use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    socialnet::cli::run(socialnet::cli::Cli::parse()).await
}
