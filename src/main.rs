//! `ironic-agent`: the command line.

use clap::{Args, Parser, Subcommand};
use ironic_agent::config::Config;
use ironic_agent::hardware::{HostRoot, InventoryOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ironic-agent",
    version,
    about = "The ramdisk agent OpenStack Ironic drives to inspect, clean and deploy bare-metal hosts",
    long_about = "The ramdisk agent OpenStack Ironic drives to inspect, clean and deploy bare-metal hosts.\n\n\
        Without a subcommand it runs the agent (`run`), reading the ipa-* parameters Ironic puts on \
        the kernel command line.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: inspect if asked, look the node up in Ironic, serve the API on port 9999
    /// and heartbeat (the default).
    Run(RunArgs),
    /// Print this host's hardware inventory as JSON (what Ironic stores after inspection).
    Inventory(InventoryArgs),
    /// Stream an image (raw, qcow2, gzip, xz, zstd) to a block device or file, verified.
    WriteImage(ironic_agent::image::cli::WriteImageArgs),
    /// Erase one device (overwrite passes or metadata wipe), as the erase clean steps do.
    EraseDevice(ironic_agent::steps::erase::cli::EraseDeviceArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Read the kernel parameters from this file instead of /proc/cmdline.
    #[arg(long, value_name = "PATH")]
    cmdline_file: Option<PathBuf>,
    /// Where the token, certificate, command history and log survive a restart.
    #[arg(long, value_name = "DIR", default_value = ironic_agent::state::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Let destructive steps touch this block device although the agent is not in a ramdisk
    /// (repeatable). Inside the ramdisk every disk is allowed.
    #[arg(long = "allow-device", value_name = "DEVICE")]
    allow_devices: Vec<PathBuf>,
    /// Extra CA bundle (PEM) trusted for Ironic and image downloads.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
struct InventoryArgs {
    /// Read /sys, /proc and /dev under this directory instead of / (fixture trees).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Skip the BMC queries over /dev/ipmi0.
    #[arg(long)]
    skip_bmc: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inventory(a)) => inventory(a),
        Some(Command::WriteImage(a)) => runtime().and_then(|rt| rt.block_on(a.run())),
        Some(Command::EraseDevice(a)) => a.run(),
        Some(Command::Run(a)) => run_agent(a),
        None => run_agent(cli.run),
    };
    ironic_agent::logs::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the operation and the object, with each cause appended.
            eprintln!("ironic-agent: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_agent(args: RunArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = args
        .cmdline_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc/cmdline"));
    let cmdline = std::fs::read_to_string(&path)
        .with_context(|| format!("reading kernel parameters from {}", path.display()))?;
    let mut params = ironic_agent::config::tokenize(&cmdline);
    let log_dir = ironic_agent::state::StateDir::open(&args.state_dir)
        .ok()
        .map(|s| s.path().to_path_buf());
    ironic_agent::logs::init(Config::from_params(&params).debug, log_dir.as_deref());
    if params.get("boot_method").map(String::as_str) == Some("vmedia") {
        params = with_vmedia_parameters(params, &args.state_dir);
    }
    let config = Config::from_params(&params);
    let opts = ironic_agent::agent::RunOptions {
        config,
        state_dir: args.state_dir,
        allow_devices: args.allow_devices,
        ca_file: args.ca_file,
        host: HostRoot::system(),
    };
    runtime()?.block_on(ironic_agent::agent::run(opts))
}

/// Adds the virtual media's parameters (and, in the ramdisk, its configuration files).
fn with_vmedia_parameters(
    params: std::collections::HashMap<String, String>,
    state_dir: &std::path::Path,
) -> std::collections::HashMap<String, String> {
    use ironic_agent::vmedia;
    let host = HostRoot::system();
    let mount_dir = state_dir.join("vmedia");
    if ironic_agent::safety::DiskGuard::detect(vec![]).is_ramdisk() {
        if let Err(e) = vmedia::copy_config(&host, &mount_dir, std::path::Path::new("/etc")) {
            tracing::error!("{e}");
        }
    }
    match vmedia::read_parameters(&host, &mount_dir) {
        Ok(extra) => vmedia::merge(params, extra),
        Err(e) => {
            tracing::error!("{e}; using the kernel command line only");
            params
        }
    }
}

fn inventory(args: InventoryArgs) -> anyhow::Result<()> {
    ironic_agent::logs::init(false, None);
    let cmdline = std::fs::read_to_string(args.root.join("proc/cmdline")).unwrap_or_default();
    let config = Config::from_cmdline(&cmdline);
    let opts = InventoryOptions {
        skip_bmc_detect: args.skip_bmc,
        collect_lldp: config.collect_lldp,
        lldp_timeout: config.lldp_timeout,
        bootif: config.bootif,
    };
    let inv = ironic_agent::hardware::collect_inventory(&HostRoot::new(args.root), &opts);
    println!("{}", serde_json::to_string_pretty(&inv)?);
    Ok(())
}
