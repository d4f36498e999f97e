//! The agent's lifecycle (contract §2): inspect? -> lookup -> serve the API (auto-TLS) ->
//! heartbeat, until a command stops serving.

use crate::api::routes::Router;
use crate::api::{server, Executor};
use crate::config::Config;
use crate::context::{AgentContext, ServeState};
use crate::hardware::{HostRoot, Inventory};
use crate::ironic::heartbeat::{heartbeat_once, is_token_rejection, HeartbeatBody, Schedule};
use crate::ironic::lookup::{lookup_node, lookup_once, LookupRequest};
use crate::ironic::IronicClient;
use crate::safety::DiskGuard;
use crate::state::StateDir;
use crate::tls::{AgentCertificate, TlsPolicy};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to wait at startup for the first network interface with a MAC (as IPA).
const WAIT_FOR_INTERFACES: Duration = Duration::from_secs(60);

/// What `ironic-agent run` is started with.
pub struct RunOptions {
    pub config: Config,
    pub state_dir: PathBuf,
    pub allow_devices: Vec<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub host: HostRoot,
}

/// The Ironic side of a running agent: who we are to Ironic and how to reach it.
struct Link {
    client: Arc<IronicClient>,
    callback_url: String,
    /// The auto-TLS certificate: served by the API, sent as `agent_verify_ca`.
    cert: Option<AgentCertificate>,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let config = opts.config;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let state = StateDir::open(&opts.state_dir)
        .with_context(|| format!("creating the state directory {}", opts.state_dir.display()))?;
    let guard = DiskGuard::detect(opts.allow_devices);
    let policy = TlsPolicy {
        min_version: config.tls_min_version,
        cipher_suites: config.tls_cipher_suites.clone(),
    };
    let ca_file = opts.ca_file.or_else(default_ca_file);
    let client_tls = policy.client_config(config.insecure, ca_file.as_deref())?;
    let ironic = ironic_client(&config, client_tls.clone())?;
    let ctx = Arc::new(AgentContext::new(
        config,
        opts.host,
        guard,
        state,
        client_tls.clone(),
        ironic,
    ));
    tracing::info!(
        "ironic-agent {} starting ({})",
        crate::version(),
        if ctx.guard.is_ramdisk() {
            "running from a ramdisk"
        } else {
            "not in a ramdisk: disks and power are off limits"
        }
    );
    if ctx.host.path(crate::commands::RESCUE_MARKER).exists() {
        // finalize_rescue ran in an earlier life of this process: the node belongs to its
        // tenant now, reachable through the ramdisk's rescue user only.
        return idle_forever("the node is in rescue mode (/etc/.rescued)").await;
    }
    if let Some(t) = &ctx.config.agent_token {
        ctx.preset_token(t);
    }
    if let Some(server) = &ctx.config.ntp_server {
        // As IPA: a failed clock sync at startup is logged, not fatal.
        if let Err(e) = crate::ntp::sync_clock(server).await {
            tracing::warn!("{e}");
        }
    }
    tokio::time::sleep(ctx.config.hardware_initialization_delay).await;
    wait_for_interfaces(&ctx.host).await;
    if ctx.config.inspection_enabled() {
        // Inspection reports addresses: wait for DHCP before taking the inventory.
        crate::inspect::wait_for_dhcp(&ctx.host, &ctx.config).await;
    }
    let mut inventory = inventory(&ctx).await?;
    if !ctx.config.enable_vlan_interfaces.is_empty() {
        let (items, nics, lldp) = (
            ctx.config.enable_vlan_interfaces.clone(),
            inventory.interfaces.clone(),
            ctx.config.collect_lldp,
        );
        let created =
            tokio::task::spawn_blocking(move || crate::vlan::bring_up(&items, &nics, lldp)).await?;
        if !created.is_empty() {
            // Report the new interfaces like the others.
            inventory = self::inventory(&ctx).await?;
        }
    }

    let node_uuid = if ctx.config.inspection_enabled() {
        crate::inspect::inspect(&ctx, &inventory, client_tls).await
    } else {
        None
    };
    let link = match &ctx.ironic {
        Some(client) => match connect(&ctx, client.clone(), &inventory, node_uuid).await? {
            Some(link) => Some(link),
            None => return idle_forever("this agent has no agent token for its node").await,
        },
        None => {
            tracing::warn!(
                "no ipa-api-url given: serving the API without looking up or heartbeating"
            );
            None
        }
    };
    serve(ctx, link, policy).await
}

fn ironic_client(
    config: &Config,
    tls: rustls::ClientConfig,
) -> anyhow::Result<Option<Arc<IronicClient>>> {
    if config.api_urls.iter().any(|u| u == "mdns") {
        tracing::error!(
            "ipa-api-url=mdns asks for mDNS discovery, which this agent does not implement; \
                         give the Ironic API URL explicitly"
        );
    }
    let urls: Vec<String> = config
        .api_urls
        .iter()
        .filter(|u| *u != "mdns")
        .cloned()
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    let client = IronicClient::new(
        urls,
        tls,
        config.http_request_timeout,
        config.global_request_id.clone(),
        config.ironic_api_version,
    )?;
    Ok(Some(Arc::new(client)))
}

/// The CA bundle IPA's configuration names (`[DEFAULT]cafile`, which Ironic sets in
/// `ironic-tls.conf` on virtual media), else the `ironic.crt` Ironic puts beside it (§1.1).
fn default_ca_file() -> Option<PathBuf> {
    let mut files = vec![PathBuf::from(
        "/etc/ironic-python-agent/ironic-python-agent.conf",
    )];
    if let Ok(dir) = std::fs::read_dir("/etc/ironic-python-agent.d") {
        let mut d: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        d.sort();
        files.extend(d);
    }
    let configured = files.iter().rev().find_map(|f| {
        let ini = ini::Ini::load_from_file(f).ok()?;
        ini.section(Some("DEFAULT"))
            .and_then(|s| s.get("cafile"))
            .map(PathBuf::from)
    });
    configured
        .or_else(|| Some(PathBuf::from("/etc/ironic-python-agent/ironic.crt")))
        .filter(|p| p.exists())
}

async fn inventory(ctx: &Arc<AgentContext>) -> anyhow::Result<Inventory> {
    let (host, opts) = (ctx.host.clone(), ctx.inventory_options());
    let started = Instant::now();
    let inv = tokio::task::spawn_blocking(move || crate::hardware::collect_inventory(&host, &opts))
        .await
        .context("collecting the hardware inventory")?;
    tracing::info!(
        "inventory collected in {} ms: {} interfaces, {} disks",
        started.elapsed().as_millis(),
        inv.interfaces.len(),
        inv.disks.len()
    );
    Ok(inv)
}

async fn wait_for_interfaces(host: &HostRoot) {
    let deadline = Instant::now() + WAIT_FOR_INTERFACES;
    loop {
        let has_nic = std::fs::read_dir(host.path("/sys/class/net"))
            .map(|d| d.flatten().any(|e| e.file_name() != "lo"))
            .unwrap_or(false);
        if has_nic || Instant::now() >= deadline {
            if !has_nic {
                tracing::warn!(
                    "no network interface appeared within {} s",
                    WAIT_FOR_INTERFACES.as_secs()
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Lookup, token, advertise address and certificate. `None` when the agent must not serve.
async fn connect(
    ctx: &Arc<AgentContext>,
    client: Arc<IronicClient>,
    inventory: &Inventory,
    node_uuid: Option<String>,
) -> anyhow::Result<Option<Link>> {
    let macs = inventory
        .interfaces
        .iter()
        .map(|i| i.mac_address.to_ascii_lowercase())
        .filter(|m| !m.is_empty())
        .collect();
    let req = LookupRequest { macs, node_uuid };
    if let Ok(mut slot) = ctx.lookup_request.lock() {
        *slot = Some(req.clone());
    }
    let reply = lookup_node(
        &client,
        &req,
        ctx.config.lookup_timeout,
        ctx.config.lookup_interval,
    )
    .await?;
    if !ctx.apply_lookup(&reply) {
        return Ok(None);
    }
    let host = crate::net::advertise_host(&ctx.config).await?;
    let auto_tls = match client.server_max().await {
        Ok(v) => v >= crate::ironic::client::HEARTBEAT_VERSION,
        Err(e) => {
            tracing::warn!(
                "could not read Ironic's API version ({e}); assuming it supports auto-TLS"
            );
            true
        }
    };
    let (scheme, cert) = if auto_tls {
        let cert = AgentCertificate::load_or_generate(
            ctx.state.path(),
            &host,
            ctx.config.tls_certificate_curve,
        )?;
        ("https", Some(cert))
    } else {
        (ctx.config.advertise_protocol.scheme(), None)
    };
    let callback_url = crate::net::callback_url(scheme, &host, ctx.config.advertise_port);
    tracing::info!("advertising {callback_url} to Ironic");
    Ok(Some(Link {
        client,
        callback_url,
        cert,
    }))
}

async fn serve(
    ctx: Arc<AgentContext>,
    link: Option<Link>,
    policy: TlsPolicy,
) -> anyhow::Result<()> {
    let tls = match link.as_ref().and_then(|l| l.cert.as_ref()) {
        Some(cert) => Some(policy.server_config(cert)?),
        None => None,
    };
    let addr = SocketAddr::new(
        ctx.config
            .listen_host
            .unwrap_or_else(crate::net::default_listen_address),
        ctx.config.listen_port,
    );
    let listener = server::bind(addr).await?;
    tracing::info!(
        "agent API listening on {addr} ({})",
        if tls.is_some() { "HTTPS" } else { "HTTP" }
    );
    let executor = Executor::new(crate::commands::registry(), ctx.clone());
    let router = Arc::new(Router::new(executor, tls.is_some()));
    let mut server = AbortOnDrop(tokio::spawn(server::serve(
        listener,
        tls,
        router,
        ctx.serve_state(),
    )));
    let _heartbeats = link.map(|link| AbortOnDrop(tokio::spawn(heartbeat_loop(ctx.clone(), link))));
    let mut serve_state = ctx.serve_state();
    let why = tokio::select! {
        s = serve_state.wait_for(|s| *s != ServeState::Serving) => s.map(|s| *s).unwrap_or(ServeState::Serving),
        _ = shutdown_signal() => {
            tracing::info!("termination signal received; stopping");
            return Ok(());
        }
    };
    let _ = (&mut server.0).await;
    match why {
        ServeState::LockedDown => {
            let (host, ramdisk) = (ctx.host.clone(), ctx.guard.is_ramdisk());
            let _ = tokio::task::spawn_blocking(move || {
                crate::lockdown::all_interfaces_down(&host, ramdisk)
            })
            .await;
            idle_forever("the node is locked down").await
        }
        _ => {
            tracing::info!("the agent stopped serving (rescue finalized); exiting");
            Ok(())
        }
    }
}

/// Stops a background task when the agent's run future is dropped (tests run several agents in
/// one process; a stopped agent must release its port and stop heartbeating).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Neither API nor heartbeats; the process stays so the ramdisk's supervisor does not restart it.
async fn idle_forever(why: &str) -> anyhow::Result<()> {
    tracing::error!("{why}: not serving the API and not heartbeating");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Heartbeats until the agent stops serving (contract §5.4).
async fn heartbeat_loop(ctx: Arc<AgentContext>, link: Link) {
    let mut schedule = Schedule::new();
    let mut serve_state = ctx.serve_state();
    loop {
        if *serve_state.borrow() != ServeState::Serving {
            tracing::info!("heartbeats stopped");
            return;
        }
        let now = Instant::now();
        if schedule.is_due(now) {
            beat(&ctx, &link, &mut schedule).await;
            continue;
        }
        let due = schedule.due_at().unwrap_or(now);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = ctx.heartbeat_requested() => schedule.force(),
            _ = serve_state.changed() => {}
        }
    }
}

async fn beat(ctx: &Arc<AgentContext>, link: &Link, schedule: &mut Schedule) {
    let Some(uuid) = ctx.node_uuid() else {
        schedule.failed(Instant::now());
        return;
    };
    let body = HeartbeatBody {
        callback_url: link.callback_url.clone(),
        agent_token: ctx.token(),
        agent_version: crate::version().to_string(),
        agent_verify_ca: link.cert.as_ref().map(|c| c.cert_pem.clone()),
    };
    let timeout = ctx
        .session()
        .lookup
        .map(|l| l.heartbeat_timeout)
        .unwrap_or(300.0);
    match heartbeat_once(&link.client, &uuid, &body).await {
        Ok(()) => {
            schedule.succeeded(Instant::now(), Duration::from_secs_f64(timeout));
            tracing::info!(
                "heartbeat accepted; next in {:.0} s",
                schedule.interval().as_secs_f64()
            );
        }
        Err(e) => {
            schedule.failed(Instant::now());
            if e.status() == Some(409) {
                tracing::warn!(
                    "{e}; retrying in {:.1} s",
                    schedule.interval().as_secs_f64()
                );
            } else {
                tracing::error!(
                    "{e}; retrying in {:.1} s",
                    schedule.interval().as_secs_f64()
                );
            }
            if is_token_rejection(&e) {
                refresh_token(ctx, &link.client).await;
            }
        }
    }
}

/// Ironic wiped our token (end of a deploy or clean, a failure): a new lookup can issue a new
/// one, which keeps a fast-track agent usable instead of stranding it (IPA retries forever).
async fn refresh_token(ctx: &Arc<AgentContext>, client: &IronicClient) {
    let Some(req) = ctx.lookup_request.lock().ok().and_then(|r| r.clone()) else {
        return;
    };
    match lookup_once(client, &req).await {
        Ok(reply) => {
            ctx.apply_lookup(&reply);
        }
        Err(e) => tracing::info!("looking up a new agent token failed: {e}"),
    }
}
