use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ironic-agent", version, about = "Ironic's ramdisk agent")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write an image to a block device or file.
    WriteImage(ironic_agent::image::cli::WriteImageArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::WriteImage(a)) => rt.block_on(a.run()),
        None => Ok(()),
    }
}
