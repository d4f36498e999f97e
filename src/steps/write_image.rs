//! The `write_image` deploy step and `standby.prepare_image` (contract §11): pick the target
//! disk, stream the image onto it through [`crate::image`], check the result and record the
//! partition UUIDs Ironic asks for next.

use super::{configdrive, partition_image};
use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind, IntoCommandError};
use crate::image::{write_image, ImageInfo, ImageSettings, Progress};
use crate::safety::DiskGuard;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress goes to the log at most this often (the console is slow under emulation).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The MBR disk signature: what Ironic records as `root_uuid_or_disk_id` for whole disks.
const DISK_ID_OFFSET: u64 = 440;

/// The image settings from the kernel command line and Ironic's lookup config.
pub fn image_settings(ctx: &AgentContext) -> ImageSettings {
    let lookup = ctx.session().lookup;
    let mut settings = ImageSettings {
        // IPA 13 disables md5 unless Ironic's lookup says otherwise.
        md5_allowed: lookup
            .as_ref()
            .and_then(|l| l.agent_md5_checksum_enable)
            .unwrap_or(false),
        ..ImageSettings::default()
    };
    if let Some(formats) = lookup
        .as_ref()
        .and_then(|l| l.permitted_image_formats.clone())
    {
        settings.permitted_formats = formats;
    }
    let d = &ctx.config.image_download;
    settings.fetch.connect_timeout = d.connection_timeout;
    settings.fetch.stall_timeout = d.connection_timeout;
    settings.fetch.retries = d.retries;
    settings.fetch.retry_interval = d.retry_interval;
    settings.fetch.max_duration = d.max_duration;
    settings.fetch.tls.config = Some(Arc::new(ctx.download_tls.clone()));
    settings
}

/// `prepare_image`: the image onto the install disk (whole disk, or into the root partition of
/// a fresh layout for partition images), the config drive, and the partition UUIDs
/// `get_partition_uuids` reports next. Returns IPA's result sentence.
pub async fn prepare_image(
    ctx: Arc<AgentContext>,
    image_info: &Value,
    configdrive: Option<&Value>,
) -> Result<String, CommandError> {
    let settings = image_settings(&ctx);
    let info = ImageInfo::parse(image_info, settings.md5_allowed)
        .map_err(IntoCommandError::into_command_error)?;
    let request = info
        .to_request(&settings)
        .map_err(IntoCommandError::into_command_error)?;
    let device = target_disk(&ctx).await?;
    let node = ctx.node().unwrap_or(Value::Null);
    let node_uuid = image_info["node_uuid"]
        .as_str()
        .map(str::to_string)
        .or_else(|| ctx.node_uuid())
        .unwrap_or_else(|| "local".into());
    let layout = if partition_image::is_partition_image(image_info) {
        Some(partition_image::Layout::from_request(
            image_info, &node, &ctx.host,
        )?)
    } else {
        None
    };
    // Fetched before anything is written: a bad config drive leaves the disk as it was.
    let drive = match configdrive::requested(configdrive, image_info) {
        Some(src) => Some(configdrive::load(&ctx, src, &node_uuid).await?),
        None => None,
    };
    let target = Target {
        request: &request,
        id: &info.id,
        device: &device,
        node_uuid: &node_uuid,
    };
    let uuids = match layout {
        Some(layout) => write_partition_image(&ctx, &target, layout, drive).await?,
        None => {
            write_whole_disk_image(&ctx, &target, drive).await?;
            let dev = device.clone();
            let root_uuid = blocking(&device, move || disk_identifier(&dev)).await?;
            Map::from_iter([("root uuid".to_string(), json!(root_uuid))])
        }
    };
    let root_uuid = uuids["root uuid"].as_str().unwrap_or_default().to_string();
    let efi_uuid = uuids
        .get("efi system partition uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Ok(mut d) = ctx.deployment.lock() {
        d.partition_uuids = uuids;
    }
    let mut message = format!(
        "image ({}) written to device {} root_uuid={root_uuid}",
        info.id,
        device.display()
    );
    if let (Some("uefi"), Some(efi)) = (image_info["deploy_boot_mode"].as_str(), efi_uuid) {
        message.push_str(&format!(" efi_system_partition_uuid={efi}"));
    }
    Ok(message)
}

/// What is written where.
struct Target<'a> {
    request: &'a crate::image::WriteRequest,
    id: &'a str,
    device: &'a Path,
    node_uuid: &'a str,
}

/// Runs blocking disk work off the async workers.
async fn blocking<T: Send + 'static>(
    device: &Path,
    f: impl FnOnce() -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        CommandError::new(
            ErrorKind::Deployment,
            format!("working on {} failed: {e}", device.display()),
        )
    })?
}

/// The image through the pipeline onto `dest` (the disk, or the root partition).
async fn stream(t: &Target<'_>, dest: &Path, guard: &DiskGuard) -> Result<(), CommandError> {
    tracing::info!("writing image {} to {}", t.id, dest.display());
    let report = write_image(t.request, dest, guard, progress_logger(t.id.to_string()))
        .await
        .map_err(IntoCommandError::into_command_error)?;
    tracing::info!(
        "image {} written to {}: {} bytes downloaded, {} ({} bytes) in {:.1} s; agent peak memory {}",
        t.id,
        dest.display(),
        report.bytes_downloaded,
        report.format,
        report.virtual_size,
        report.duration.as_secs_f64(),
        peak_memory()
    );
    Ok(())
}

/// The agent's peak resident set (VmHWM), logged after each image so operators can see that
/// memory does not grow with the image, which is what lets small-RAM nodes take big images.
fn peak_memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    crate::hardware::memory::kib_field(&status, "VmHWM")
        .map(|kib| format!("{} MiB", kib.div_ceil(1024)))
        .unwrap_or_else(|| "unknown".into())
}

async fn write_whole_disk_image(
    ctx: &Arc<AgentContext>,
    t: &Target<'_>,
    drive: Option<Vec<u8>>,
) -> Result<(), CommandError> {
    stream(t, t.device, &ctx.guard).await?;
    let dev = t.device.to_path_buf();
    blocking(t.device, move || validate_partitioning(&dev)).await?;
    if let Some(data) = drive {
        let (dev, guard, node) = (
            t.device.to_path_buf(),
            ctx.guard.clone(),
            t.node_uuid.to_string(),
        );
        let part = blocking(t.device, move || {
            configdrive::add_to_whole_disk_at(&dev, &guard, &data, &node)
        })
        .await?;
        tracing::info!(
            "config drive for node {} written to partition {} of {}",
            t.node_uuid,
            part.number,
            t.device.display()
        );
    }
    Ok(())
}

/// The layout, the image into the root partition, then the UUIDs of what was made.
async fn write_partition_image(
    ctx: &Arc<AgentContext>,
    t: &Target<'_>,
    layout: partition_image::Layout,
    drive: Option<Vec<u8>>,
) -> Result<Map<String, Value>, CommandError> {
    let (dev, guard, l, node) = (
        t.device.to_path_buf(),
        ctx.guard.clone(),
        layout.clone(),
        t.node_uuid.to_string(),
    );
    let prepared = blocking(t.device, move || {
        partition_image::prepare(&dev, &guard, &l, drive.as_deref(), &node)
    })
    .await?;
    let root = prepared
        .node("root")
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            CommandError::new(ErrorKind::Deployment, "the layout has no root partition")
        })?;
    // The disk passed the guard when it was partitioned; its root partition may be written too.
    let root_guard = DiskGuard::new(ctx.guard.is_ramdisk(), vec![root.clone()]);
    stream(t, &root, &root_guard).await?;
    let (dev, guard) = (t.device.to_path_buf(), ctx.guard.clone());
    blocking(t.device, move || {
        validate_partitioning(&dev)?;
        partition_image::partition_uuids(&prepared, &guard, &layout)
    })
    .await
}

/// The install disk by root device hints, refreshing the node from Ironic first when it carries
/// no hints (they may have been set after this agent looked the node up).
pub(crate) async fn target_disk(ctx: &Arc<AgentContext>) -> Result<PathBuf, CommandError> {
    if !has_root_device_hints(ctx.node().as_ref()) {
        refresh_node(ctx).await;
    }
    let node = ctx.node().unwrap_or(Value::Null);
    let host = ctx.host.clone();
    let disk = tokio::task::spawn_blocking(move || {
        let disks = crate::hardware::list_disks(&host);
        crate::hardware::select_root_device(&disks, &node)
    })
    .await
    .map_err(|e| {
        CommandError::new(
            ErrorKind::DeviceNotFound,
            format!("choosing the install disk failed: {e}"),
        )
    })?
    .map_err(IntoCommandError::into_command_error)?;
    // Under a fixture root (tests) the device node is a file inside it; in the ramdisk the root is /.
    Ok(ctx.host.path(&disk.name))
}

fn has_root_device_hints(node: Option<&Value>) -> bool {
    node.is_some_and(|n| {
        n["instance_info"]["root_device"].is_object() || n["properties"]["root_device"].is_object()
    })
}

/// Looks the node up again (Ironic answers `******` for the token; only the node is used).
async fn refresh_node(ctx: &Arc<AgentContext>) {
    let (Some(client), Some(req)) = (
        ctx.ironic.clone(),
        ctx.lookup_request.lock().ok().and_then(|r| r.clone()),
    ) else {
        return;
    };
    match crate::ironic::lookup::lookup_once(&client, &req).await {
        Ok(reply) => {
            ctx.cache_node(&reply.node);
            tracing::info!(
                "refreshed node {} from Ironic before choosing the install disk",
                reply.node_uuid()
            );
        }
        Err(e) => {
            tracing::warn!("refreshing the node before choosing the install disk failed: {e}")
        }
    }
}

fn progress_logger(id: String) -> impl Fn(Progress) + Send + Sync + 'static {
    let last = std::sync::Mutex::new(Instant::now());
    let started = Instant::now();
    move |p: Progress| {
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() < PROGRESS_EVERY {
            return;
        }
        *last = Instant::now();
        let rate = p.downloaded as f64 / started.elapsed().as_secs_f64().max(0.001) / 1_048_576.0;
        match p.total {
            Some(t) if t > 0 => tracing::info!(
                "image {id}: {} of {} MiB downloaded ({:.0}%), {rate:.1} MiB/s",
                p.downloaded >> 20,
                t >> 20,
                p.downloaded as f64 * 100.0 / t as f64
            ),
            _ => tracing::info!(
                "image {id}: {} MiB downloaded, {rate:.1} MiB/s",
                p.downloaded >> 20
            ),
        }
    }
}

/// The written disk must carry a readable partition table with at least one partition.
fn validate_partitioning(device: &Path) -> Result<(), CommandError> {
    let fail = |msg: String| CommandError::new(ErrorKind::Deployment, msg);
    let probe = blkid::prober::Prober::new_from_filename(device).map_err(|e| {
        fail(format!(
            "opening {} to check its partition table failed: {e}",
            device.display()
        ))
    })?;
    let table = probe
        .enable_partitions(true)
        .and_then(|_| probe.do_safe_probe())
        .and_then(|_| probe.part_list());
    let count = table.and_then(|l| l.numof_partitions()).map_err(|e| {
        fail(format!(
            "Unable to find a valid partition table on the disk {} after writing the image. The image may be \
             corrupted or it uses a different sector size than the device. Error: {e}",
            device.display()
        ))
    })?;
    if count == 0 {
        return Err(fail(format!(
            "No partitions found on the device {} after writing the image.",
            device.display()
        )));
    }
    Ok(())
}

/// `0x%08x` of the MBR disk signature (bytes 440-443, little-endian), as IPA reports it.
fn disk_identifier(device: &Path) -> Result<String, CommandError> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 4];
    std::fs::File::open(device)
        .and_then(|f| f.read_exact_at(&mut buf, DISK_ID_OFFSET))
        .map_err(|e| {
            CommandError::new(
                ErrorKind::Deployment,
                format!(
                    "reading the disk identifier of {} failed: {e}",
                    device.display()
                ),
            )
        })?;
    Ok(format!("0x{:08x}", u32::from_le_bytes(buf)))
}

/// `standby.prepare_image`'s validator: a malformed `image_info` is refused with HTTP 400
/// before anything runs, as IPA's `_validate_image_info`.
pub fn validate_image_info(
    ctx: &AgentContext,
    params: &Map<String, Value>,
) -> Result<(), CommandError> {
    let md5 = image_settings(ctx).md5_allowed;
    ImageInfo::parse(params.get("image_info").unwrap_or(&Value::Null), md5)
        .map(|_| ())
        .map_err(IntoCommandError::into_command_error)
}

/// The step: runs `prepare_image` and reports its result as the deploy result.
pub async fn run(ctx: Arc<AgentContext>, args: Map<String, Value>) -> Result<Value, CommandError> {
    let image_info = args.get("image_info").cloned().unwrap_or(Value::Null);
    let message = prepare_image(ctx, &image_info, args.get("configdrive")).await?;
    Ok(json!({ "result": format!("prepare_image: {message}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_identifier_reads_the_mbr_signature() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("disk");
        let mut data = vec![0u8; 512];
        data[440..444].copy_from_slice(&[0x4d, 0x3c, 0x2b, 0x1a]);
        std::fs::write(&f, &data).unwrap();
        assert_eq!(disk_identifier(&f).unwrap(), "0x1a2b3c4d");
        std::fs::write(&f, vec![0u8; 512]).unwrap();
        assert_eq!(disk_identifier(&f).unwrap(), "0x00000000");
    }

    #[test]
    fn a_disk_without_partitions_fails_validation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("disk");
        std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
        let e = validate_partitioning(&f).unwrap_err();
        assert_eq!(e.kind, "DeploymentError");
        assert!(e.details.contains("disk"), "{}", e.details);
    }

    #[test]
    fn hints_are_found_in_instance_info_or_properties() {
        assert!(!has_root_device_hints(None));
        assert!(!has_root_device_hints(Some(&json!({"properties": {}}))));
        assert!(has_root_device_hints(Some(
            &json!({"instance_info": {"root_device": {"name": "/dev/vda"}}})
        )));
        assert!(has_root_device_hints(Some(
            &json!({"properties": {"root_device": {"size": ">= 10"}}})
        )));
    }
}
