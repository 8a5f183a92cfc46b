use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{Cli, execute};

#[tokio::main]
async fn main() -> ExitCode {
    execute(Cli::parse()).await
}
