//! The IPMI ioctl path against a real kernel and a real (simulated) BMC: this test binary boots
//! itself as the init of a QEMU guest that has QEMU's `ipmi-bmc-sim` behind a KCS interface,
//! loads the kernel's IPMI modules, and asks the BMC through /dev/ipmi0.
//!
//! Needs qemu-system-x86_64, cpio, and an unpacked Debian kernel package: the directory named by
//! IA_TEST_KERNEL_ROOT, else build/kernel/*/root (what initramfs/build.sh leaves). Without them
//! the test says so and does nothing.

use ironic_agent::hardware::bmc::{detect_bmc, IpmiDevice, IpmiTransport};
use ironic_agent::hardware::HostRoot;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MODULES: [&str; 3] = ["ipmi_msghandler", "ipmi_devintf", "ipmi_si"];

/// Guest side: runs as PID 1.
fn guest() -> ! {
    let mut console = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/console")
        .ok();
    let mut say = |s: String| {
        if let Some(c) = console.as_mut() {
            let _ = writeln!(c, "{s}");
        }
    };
    for (src, dst, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = std::fs::create_dir_all(dst);
        let _ = nix::mount::mount(
            Some(src),
            dst,
            Some(fs),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    for m in MODULES {
        let path = format!("/modules/{m}.ko");
        match std::fs::File::open(&path) {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                let rc = unsafe {
                    libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0)
                };
                if rc != 0 {
                    say(format!(
                        "IPMI-VM insmod {m} failed: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
            Err(e) => say(format!("IPMI-VM cannot open {path}: {e}")),
        }
    }
    let started = Instant::now();
    while !Path::new("/dev/ipmi0").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Get Device ID straight through the transport, then the whole detection.
    match IpmiDevice::open(Path::new("/dev/ipmi0"), Duration::from_secs(5)) {
        Ok(mut dev) => match dev.request(0x06, 0x01, &[]) {
            Ok(resp) => say(format!("IPMI-VM device-id {}", hex(&resp))),
            Err(e) => say(format!("IPMI-VM device-id error {e}")),
        },
        Err(e) => say(format!("IPMI-VM open error {e}")),
    }
    let started = Instant::now();
    let info = detect_bmc(&HostRoot::system());
    say(format!(
        "IPMI-VM detect {:?} {:?} {:?} in {} ms",
        info.address,
        info.v6address,
        info.mac,
        started.elapsed().as_millis()
    ));
    unsafe { libc::sync() };
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kernel_root() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("IA_TEST_KERNEL_ROOT") {
        return Some(PathBuf::from(p));
    }
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/kernel");
    std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("root"))
        .find(|p| p.join("boot").is_dir())
}

fn find(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let p = e.path();
        if pred(&p) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(found) = find(&p, pred) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn talks_to_a_simulated_bmc() {
    if std::process::id() == 1 {
        guest();
    }
    let Some(root) = kernel_root() else {
        eprintln!("SKIPPED: no unpacked kernel package (set IA_TEST_KERNEL_ROOT or run initramfs/build.sh)");
        return;
    };
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !have("qemu-system-x86_64") || !have("cpio") {
        eprintln!("SKIPPED: qemu-system-x86_64 and cpio are needed");
        return;
    }
    let kernel = find(&root.join("boot"), &|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    })
    .expect("a vmlinuz in the kernel package");
    let work = tempfile::tempdir().unwrap();
    let initrd = work.path().join("rd");
    std::fs::create_dir_all(initrd.join("modules")).unwrap();
    std::fs::copy(std::env::current_exe().unwrap(), initrd.join("init")).unwrap();
    for m in MODULES {
        let ko = find(&root.join("lib/modules"), &|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{m}.ko").as_str())
        })
        .unwrap_or_else(|| panic!("{m}.ko in the kernel package"));
        std::fs::copy(ko, initrd.join("modules").join(format!("{m}.ko"))).unwrap();
    }
    let cpio = work.path().join("rd.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc > '{}' 2>/dev/null",
            initrd.display(),
            cpio.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("timeout")
        .args([
            "180",
            "qemu-system-x86_64",
            "-machine",
            "q35,accel=tcg",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
        ])
        .args([
            "-device",
            "ipmi-bmc-sim,id=bmc0",
            "-device",
            "isa-ipmi-kcs,bmc=bmc0",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&cpio)
        .args(["-append", "console=ttyS0 quiet panic=-1 rdinit=/init"])
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("IPMI-VM")).collect();
    eprintln!("{}", lines.join("\n"));
    let device_id = lines
        .iter()
        .find_map(|l| l.split("IPMI-VM device-id ").nth(1))
        .unwrap_or_else(|| panic!("{console}"));
    // Completion code 0 and at least the 11 bytes of a Get Device ID answer.
    assert!(
        device_id.starts_with("00") && device_id.trim().len() >= 24,
        "{device_id}"
    );
    let detect = lines
        .iter()
        .find(|l| l.contains("IPMI-VM detect"))
        .unwrap_or_else(|| panic!("{console}"));
    // The simulated BMC has no LAN channel configured: IPA's "IPMI present, nothing set".
    assert!(
        detect.contains("Some(\"0.0.0.0\") Some(\"::/0\") None"),
        "{detect}"
    );
}
