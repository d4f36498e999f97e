//! The deploy-time commands as Ironic calls them, against a fake conductor and a fixture host:
//! config drives on whole-disk images, install_bootloader (BIOS refusal, UEFI entries in a fake
//! efivars), inject_files (on a loop device this test creates), rescue and lockdown.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::agent::*;
use support::fake_ironic::{FakeIronic, NODE_UUID};
use support::loopdev::Loop;

const T: Duration = Duration::from_secs(20);
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

struct Setup {
    ironic: FakeIronic,
    host: tempfile::TempDir,
    state: tempfile::TempDir,
    agent: RunningAgent,
    c: Conductor,
}

async fn setup_with(host: tempfile::TempDir, allow: Vec<PathBuf>) -> Setup {
    let ironic = FakeIronic::start().await;
    let state = tempdir();
    let port = free_port();
    let cmdline = agent_cmdline(
        &ironic,
        port,
        "ipa-image-download-connection-retries=0 ipa-image-download-connection-retry-interval=0.1",
    );
    let opts = ironic_agent::agent::RunOptions {
        config: ironic_agent::config::Config::from_cmdline(&cmdline),
        state_dir: state_path(&state),
        allow_devices: allow,
        ca_file: None,
        host: ironic_agent::hardware::HostRoot::new(host.path()),
    };
    let agent = RunningAgent {
        port,
        task: tokio::spawn(ironic_agent::agent::run(opts)),
    };
    let hb = ironic.wait_for("/v1/heartbeat/", 202, 1, T).await.remove(0);
    let c = Conductor::new(agent.port, hb.body["agent_verify_ca"].as_str().unwrap());
    Setup {
        ironic,
        host,
        state,
        agent,
        c,
    }
}

async fn setup() -> Setup {
    setup_with(fixture_host(&[("vda", 5 * GIB)]), vec![]).await
}

fn gzip_b64(data: &[u8]) -> String {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
}

/// A FAT image labelled config-2 with one file, as a config drive.
fn config_drive() -> Vec<u8> {
    let d = tempdir();
    let p = d.path().join("cd");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.set_len(2 * MIB).unwrap();
    ironic_agent::disk::format::vfat(&f, &p, 0, 2 * MIB, "config-2", false).unwrap();
    std::fs::read(&p).unwrap()
}

fn step(name: &str, args: Value) -> Value {
    json!({"step": name, "interface": "deploy", "priority": 0, "args": args})
}

async fn deploy_step(c: &Conductor, name: &str, args: Value, node: Value) -> Value {
    c.run_async(
        "deploy.execute_deploy_step",
        json!({"step": step(name, args), "node": node, "ports": []}),
    )
    .await
}

#[tokio::test]
async fn whole_disk_image_with_a_config_drive() {
    let s = setup().await;
    let srv = support::Server::start().await;
    // partition 1 covers the first 6 MiB; zeros up to 80 MiB leave room for the config drive
    let mut image = mbr_disk_image(6 << 20);
    image.resize(80 << 20, 0);
    srv.put("/disk.img", image.clone());
    let sha = support::sha256_hex(&image);
    let cd = config_drive();
    let args = json!({
        "image_info": {"id": "disk.img", "urls": [srv.url("/disk.img")], "os_hash_algo": "sha256",
                       "os_hash_value": sha, "disk_format": "raw", "stream_raw_images": true,
                       "node_uuid": NODE_UUID},
        "configdrive": gzip_b64(&cd),
    });
    let done = deploy_step(&s.c, "write_image", args, json!({"uuid": NODE_UUID})).await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let (_, uuids) =
        s.c.post("standby.get_partition_uuids", json!({}), true)
            .await;
    assert_eq!(
        uuids["command_result"],
        json!({"root uuid": "0x1a2b3c4d"}),
        "{uuids}"
    );
    // the config drive is a new primary partition over the last 64 MiB of the disk
    let disk = s.host.path().join("dev/vda");
    let f = std::fs::File::open(&disk).unwrap();
    let mut mbr = [0u8; 512];
    f.read_exact_at(&mut mbr, 0).unwrap();
    let e = &mbr[446 + 16..446 + 32];
    let start = u32::from_le_bytes(e[8..12].try_into().unwrap()) as u64 * 512;
    let len = u32::from_le_bytes(e[12..16].try_into().unwrap()) as u64 * 512;
    assert_eq!((e[4], start, len), (0x0c, 16 * MIB, 64 * MIB));
    let mut got = vec![0u8; cd.len()];
    f.read_exact_at(&mut got, start).unwrap();
    assert!(got == cd, "config drive bytes differ");

    // a malformed config drive fails before the disk is touched
    let args = json!({
        "image_info": {"id": "disk.img", "urls": [srv.url("/disk.img")], "os_hash_algo": "sha256",
                       "os_hash_value": support::sha256_hex(&image), "node_uuid": NODE_UUID},
        "configdrive": "%%% not base64 %%%",
    });
    std::fs::write(&disk, b"").unwrap();
    let done = deploy_step(&s.c, "write_image", args, json!({"uuid": NODE_UUID})).await;
    assert_eq!(done["command_status"], "FAILED");
    assert!(done["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("not base64"));
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 0);
}

#[tokio::test]
async fn partition_images_need_a_block_device() {
    let s = setup().await;
    let args = json!({
        "image_info": {"id": "p.img", "urls": ["http://127.0.0.1:9/p.img"], "os_hash_algo": "sha256",
                       "os_hash_value": "0".repeat(64), "image_type": "partition", "root_mb": 1024,
                       "swap_mb": 0, "ephemeral_mb": 0, "node_uuid": NODE_UUID},
        "configdrive": null,
    });
    let done = deploy_step(&s.c, "write_image", args, json!({"uuid": NODE_UUID})).await;
    assert_eq!(done["command_status"], "FAILED");
    let details = done["command_error"]["details"].as_str().unwrap();
    assert!(details.contains("block device"), "{details}");
}

#[tokio::test]
async fn install_bootloader_in_bios_mode() {
    let s = setup().await;
    let run = |params: Value| s.c.run_async("image.install_bootloader", params);
    // whole-disk image: nothing to do
    let done = run(json!({"root_uuid": null, "efi_system_part_uuid": null,
                          "prep_boot_part_uuid": null, "target_boot_mode": "bios"}))
    .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    // a partition image would need grub2-install: IPA's CVE-2026-43003 refusal
    let done = run(
        json!({"root_uuid": "1234-abcd", "efi_system_part_uuid": null,
                          "prep_boot_part_uuid": null, "target_boot_mode": "bios"}),
    )
    .await;
    assert_eq!(done["command_status"], "FAILED");
    assert_eq!(done["command_error"]["type"], "InvalidImage");
    assert!(done["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("CVE-2026-43003"));
    let done = run(json!({"root_uuid": "1234-abcd", "ignore_bootloader_failure": true})).await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    // root_uuid is required, as in IPA's signature
    let (_, r) =
        s.c.post(
            "image.install_bootloader",
            json!({"target_boot_mode": "bios"}),
            false,
        )
        .await;
    assert_eq!(r["command_error"]["type"], "TypeError", "{r}");
}

#[tokio::test]
async fn install_bootloader_registers_the_esp_loader_in_uefi_mode() {
    let host = fixture_host(&[("vda", 5 * GIB)]);
    let efivars = host.path().join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    // the whole-disk image: GPT with an ESP holding EFI/BOOT/BOOTX64.EFI
    let disk_path = host.path().join("dev/vda");
    {
        use ironic_agent::disk::{format, table, Disk};
        let disk = Disk::open(
            &disk_path,
            &ironic_agent::safety::DiskGuard::new(false, vec![]),
        )
        .unwrap();
        let t = table::create(
            &disk.file,
            &disk_path,
            disk.geo,
            table::Label::Gpt,
            &[table::NewPartition {
                size_mib: 64,
                role: table::Role::Esp,
                bootable: false,
            }],
        )
        .unwrap();
        let esp = &t.partitions[0];
        format::vfat(&disk.file, &disk_path, esp.start, esp.size, "ESP", true).unwrap();
        let fs = fatfs::FileSystem::new(
            ironic_agent::disk::window::Window::new(&disk.file, esp.start, esp.size),
            fatfs::FsOptions::new(),
        )
        .unwrap();
        let dir = fs
            .root_dir()
            .create_dir("EFI")
            .unwrap()
            .create_dir("BOOT")
            .unwrap();
        dir.create_file("BOOTX64.EFI")
            .unwrap()
            .write_all(b"MZ")
            .unwrap();
    }
    let s = setup_with(host, vec![]).await;
    let done =
        s.c.run_async(
            "image.install_bootloader",
            json!({"root_uuid": null, "efi_system_part_uuid": null,
                   "prep_boot_part_uuid": null, "target_boot_mode": "uefi"}),
        )
        .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let boot = efivars.join("Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c");
    let raw = std::fs::read(&boot).unwrap();
    let text = String::from_utf16_lossy(
        &raw[10..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    );
    assert!(text.starts_with("ironic1\0"), "{text:?}");
    let order =
        std::fs::read(efivars.join("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c")).unwrap();
    assert_eq!(&order[4..], &[0, 0]);
    // clean_uefi_nvram (a clean step) removes it again: its path starts with HD(
    let done =
        s.c.run_async(
            "clean.execute_clean_step",
            json!({"step": {"step": "clean_uefi_nvram", "interface": "deploy", "priority": 0,
                            "args": {}},
                   "node": {"uuid": NODE_UUID}, "ports": []}),
        )
        .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert!(!boot.exists());
}

#[tokio::test]
async fn inject_files_into_the_partitions_of_the_install_disk() {
    let work = tempdir();
    let backing = work.path().join("disk.bin");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(96 * MIB)
        .unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    // two ext4 partitions: p1 holds /boot, p2 holds /etc
    let guard = ironic_agent::safety::DiskGuard::new(false, vec![dev.clone()]);
    let parts = {
        use ironic_agent::disk::{kernel, table, Disk};
        let disk = Disk::open(dev, &guard).unwrap();
        let part = |size_mib| table::NewPartition {
            size_mib,
            role: table::Role::Linux,
            bootable: false,
        };
        let t = table::create(
            &disk.file,
            dev,
            disk.geo,
            table::Label::Gpt,
            &[part(32), part(32)],
        )
        .unwrap();
        kernel::sync_partitions(&disk.file, dev, &t).unwrap();
        [1, 2].map(|n| kernel::partition_node(dev, n).unwrap())
    };
    for (p, dir) in parts.iter().zip(["boot", "etc"]) {
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(mkdir_tree(work.path(), dir))
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED: mkfs.ext4 not available (e2fsprogs)");
            return;
        }
    }
    // the fixture host's only disk is the loop device
    let host = fixture_host(&[]);
    std::fs::create_dir_all(host.path().join("sys/block/vda/queue")).unwrap();
    for (f, v) in [
        ("size", format!("{}\n", 96 * MIB / 512)),
        ("dev", "252:0\n".into()),
        ("queue/rotational", "0\n".into()),
        ("queue/logical_block_size", "512\n".into()),
    ] {
        std::fs::write(host.path().join("sys/block/vda").join(f), v).unwrap();
    }
    std::os::unix::fs::symlink(dev, host.path().join("dev/vda")).unwrap();
    let srv = support::Server::start().await;
    srv.put(&format!("/n/{NODE_UUID}"), b"from a url".to_vec());
    let s = setup_with(host, vec![dev.clone()]).await;
    let node = json!({"uuid": NODE_UUID, "instance_info": {"root_device": {"name": "/dev/vda"}},
                      "properties": {"inject_files": [
        {"path": "/etc/hostname", "content": base64::engine::general_purpose::STANDARD.encode("node-1\n"),
         "mode": 0o640, "owner": 1000, "group": 100}
    ]}});
    let files = json!([
        {"path": "/etc/new/dir/conf", "content": srv.url("/n/{node[uuid]}"), "dirmode": 0o700},
        {"path": "/boot/old.cfg", "deleted": true},
        {"path": "/marker", "partition": 1, "content": "eA=="},
    ]);
    let done = deploy_step(&s.c, "inject_files", json!({"files": files}), node).await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let hinted = json!({"uuid": NODE_UUID, "instance_info": {"root_device": {"name": "/dev/vda"}}});
    let nothing = deploy_step(&s.c, "inject_files", json!({}), hinted.clone()).await;
    assert_eq!(nothing["command_status"], "SUCCEEDED", "{nothing}");
    let missing = deploy_step(
        &s.c,
        "inject_files",
        json!({"files": [{"path": "/nowhere/x", "content": "eA=="}]}),
        hinted,
    )
    .await;
    assert_eq!(missing["command_status"], "FAILED");
    assert_eq!(
        missing["command_error"]["type"], "DeviceNotFound",
        "{missing}"
    );
    drop(s);

    // read back what landed where
    let check = |part: &Path, f: &dyn Fn(&Path)| {
        let mnt = work.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        nix::mount::mount(
            Some(part),
            &mnt,
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        f(&mnt);
        nix::mount::umount(&mnt).unwrap();
    };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    check(&parts[1], &|m| {
        assert_eq!(std::fs::read(m.join("etc/hostname")).unwrap(), b"node-1\n");
        let meta = std::fs::metadata(m.join("etc/hostname")).unwrap();
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.uid(), meta.gid()),
            (0o640, 1000, 100)
        );
        assert_eq!(
            std::fs::read(m.join("etc/new/dir/conf")).unwrap(),
            b"from a url"
        );
        let dir = std::fs::metadata(m.join("etc/new/dir")).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    });
    check(&parts[0], &|m| {
        assert!(!m.join("boot/old.cfg").exists());
        assert_eq!(std::fs::read(m.join("marker")).unwrap(), b"x");
    });
}

/// A directory `<base>/<name>-tree/<name>/` with one file, for mkfs.ext4 -d.
fn mkdir_tree(base: &Path, name: &str) -> PathBuf {
    let root = base.join(format!("{name}-tree"));
    std::fs::create_dir_all(root.join(name)).unwrap();
    std::fs::write(root.join(name).join("old.cfg"), b"old").unwrap();
    root
}

#[tokio::test]
async fn finalize_rescue_writes_the_hash_and_stops_then_a_restart_idles() {
    let s = setup().await;
    let (status, r) =
        s.c.post(
            "rescue.finalize_rescue",
            json!({"rescue_password": "s3cret", "hashed": false}),
            true,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let hash = std::fs::read_to_string(
        s.host
            .path()
            .join("etc/ipa-rescue-config/ipa-rescue-password"),
    )
    .unwrap();
    assert!(hash.starts_with("$5$"), "{hash}");
    assert!(sha_crypt::sha256_check("s3cret", &hash).is_ok());
    assert!(s.host.path().join("etc/.rescued").exists());
    // the agent stops serving and exits
    let Setup {
        ironic,
        host,
        state,
        agent,
        c,
    } = s;
    let deadline = std::time::Instant::now() + T;
    while !agent.task.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.http.get(&c.base).send().await.is_err(),
        "API still up on {}",
        agent.port
    );
    // restarted (as the ramdisk's supervisor does): it sees the marker and idles without lookup
    let lookups = ironic.requests("/v1/lookup").len();
    let again = start_agent_with_host(&ironic, &state_path(&state), host.path(), "");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ironic.requests("/v1/lookup").len(), lookups);
    assert!(!again.task.is_finished());
    // an already hashed password is written as given
    let s = setup().await;
    let (_, r) =
        s.c.post(
            "rescue.finalize_rescue",
            json!({"rescue_password": "$6$salt$abc", "hashed": true}),
            true,
        )
        .await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let hash = std::fs::read_to_string(
        s.host
            .path()
            .join("etc/ipa-rescue-config/ipa-rescue-password"),
    )
    .unwrap();
    assert_eq!(hash, "$6$salt$abc");
}

#[tokio::test]
async fn lockdown_replies_then_stops_api_and_heartbeats() {
    let s = setup().await;
    let (status, r) = s.c.post("system.lockdown", json!({}), true).await;
    assert_eq!(status, 200);
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(r["command_result"], Value::Null);
    // Ironic then expects GET /v1/commands/ to fail
    let deadline = std::time::Instant::now() + T;
    loop {
        let res =
            s.c.http
                .get(format!(
                    "{}/v1/commands/?agent_token={}",
                    s.c.base, s.c.token
                ))
                .send()
                .await;
        if res.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API is still answering"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let beats = s.ironic.requests("/v1/heartbeat/").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.ironic.requests("/v1/heartbeat/").len(), beats);
    // the process stays (idle forever), so no supervisor restarts it into service
    assert!(!s.agent.task.is_finished());
    let _ = (&s.host, &s.state);
}
