//! The `dmi-decode` inspection collector: IPA runs `dmidecode -t bios -t processor -t memory`
//! and turns its text into `{bios: {...}, cpu: [{...}], memory: {..., "Number Of Devices": n,
//! devices: [{...}]}}`. Here the SMBIOS table the kernel exports is decoded natively into the
//! same text dmidecode prints for the four structure types IPA keeps (0 BIOS, 4 Processor,
//! 16 Physical Memory Array, 17 Memory Device), and that text goes through the same parsing
//! rules IPA applies, so the keys and values are exactly those of dmidecode (3.4 to 3.6).

use super::smbios::{self, Structure, Version};
use super::HostRoot;
use serde_json::{json, Map, Value};

const OUT_OF_SPEC: &str = "<OUT OF SPEC>";

#[derive(Debug, thiserror::Error)]
#[error("failed to read the SMBIOS tables from {path}: {source}")]
pub struct DmiError {
    path: String,
    source: std::io::Error,
}

/// A dmidecode block being written: `Handle ...` line, title, then tab-indented attributes.
struct Block {
    text: String,
}

impl Block {
    fn new(s: &Structure<'_>, title: &str) -> Self {
        Self {
            text: format!(
                "Handle 0x{:04X}, DMI type {}, {} bytes\n{title}\n",
                s.handle,
                s.kind,
                s.len()
            ),
        }
    }
    fn attr(&mut self, key: &str, value: impl AsRef<str>) {
        self.text
            .push_str(&format!("\t{key}: {}\n", value.as_ref()));
    }
    fn list(&mut self, key: &str, items: &[&str]) {
        self.text.push_str(&format!("\t{key}:\n"));
        for i in items {
            self.text.push_str(&format!("\t\t{i}\n"));
        }
    }
}

/// dmidecode's size printing: the largest power-of-1024 unit, or the next smaller one when the
/// value does not divide evenly. `shift` 1 means the value is in kB.
fn memory_size(code: u64, shift: usize) -> String {
    const UNITS: [&str; 8] = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB"];
    let split: Vec<u64> = (0..7).map(|i| (code >> (10 * i)) & 0x3ff).collect();
    let mut i = 6;
    while i > 0 && split[i] == 0 {
        i -= 1;
    }
    let capacity = if i > 0 && split[i - 1] != 0 {
        i -= 1;
        split[i] + (split[i + 1] << 10)
    } else {
        split[i]
    };
    format!("{capacity} {}", UNITS[(i + shift).min(7)])
}

fn table_name(table: &[&'static str], first: u16, code: u16) -> &'static str {
    code.checked_sub(first)
        .and_then(|i| table.get(usize::from(i)))
        .copied()
        .unwrap_or(OUT_OF_SPEC)
}

fn flags_list(code: u64, first_bit: u32, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| code & (1u64 << (first_bit + *i as u32)) != 0)
        .map(|(_, n)| *n)
        .collect()
}

// ---------------------------------------------------------------- type 0

const BIOS_CHARACTERISTICS: [&str; 28] = [
    "ISA is supported",
    "MCA is supported",
    "EISA is supported",
    "PCI is supported",
    "PC Card (PCMCIA) is supported",
    "PNP is supported",
    "APM is supported",
    "BIOS is upgradeable",
    "BIOS shadowing is allowed",
    "VLB is supported",
    "ESCD support is available",
    "Boot from CD is supported",
    "Selectable boot is supported",
    "BIOS ROM is socketed",
    "Boot from PC Card (PCMCIA) is supported",
    "EDD is supported",
    "Japanese floppy for NEC 9800 1.2 MB is supported (int 13h)",
    "Japanese floppy for Toshiba 1.2 MB is supported (int 13h)",
    "5.25\"/360 kB floppy services are supported (int 13h)",
    "5.25\"/1.2 MB floppy services are supported (int 13h)",
    "3.5\"/720 kB floppy services are supported (int 13h)",
    "3.5\"/2.88 MB floppy services are supported (int 13h)",
    "Print screen service is supported (int 5h)",
    "8042 keyboard services are supported (int 9h)",
    "Serial services are supported (int 14h)",
    "Printer services are supported (int 17h)",
    "CGA/mono video services are supported (int 10h)",
    "NEC PC-98",
];
const BIOS_CHARACTERISTICS_X1: [&str; 8] = [
    "ACPI is supported",
    "USB legacy is supported",
    "AGP is supported",
    "I2O boot is supported",
    "LS-120 boot is supported",
    "ATAPI Zip drive boot is supported",
    "IEEE 1394 boot is supported",
    "Smart battery is supported",
];
const BIOS_CHARACTERISTICS_X2: [&str; 7] = [
    "BIOS boot specification is supported",
    "Function key-initiated network boot is supported",
    "Targeted content distribution is supported",
    "UEFI is supported",
    "System is a virtual machine",
    "Manufacturing mode is supported",
    "Manufacturing mode is enabled",
];

fn bios(s: &Structure<'_>) -> Option<String> {
    let mut b = Block::new(s, "BIOS Information");
    if s.len() < 0x12 {
        return Some(b.text);
    }
    b.attr("Vendor", s.string_at(0x04)?);
    b.attr("Version", s.string_at(0x05)?);
    b.attr("Release Date", s.string_at(0x08)?);
    let segment = s.word(0x06)?;
    if segment != 0 {
        b.attr("Address", format!("0x{segment:04X}0"));
        let runtime = (0x10000 - u32::from(segment)) << 4;
        b.attr(
            "Runtime Size",
            if runtime & 0x3ff != 0 {
                format!("{runtime} bytes")
            } else {
                format!("{} kB", runtime >> 10)
            },
        );
    }
    let rom = s.byte(0x09)?;
    let rom_size = if rom != 0xff {
        memory_size((u64::from(rom) + 1) << 6, 1)
    } else {
        let code2 = if s.len() < 0x1a { 16 } else { s.word(0x18)? };
        let unit = ["MB", "GB", OUT_OF_SPEC, OUT_OF_SPEC][usize::from(code2 >> 14)];
        format!("{} {unit}", code2 & 0x3fff)
    };
    b.attr("ROM Size", rom_size);
    let chars = s.qword(0x0a)?;
    let mut items: Vec<&str> = if chars & (1 << 3) != 0 {
        vec!["BIOS characteristics not supported"]
    } else {
        flags_list(chars & 0xffff_ffff, 4, &BIOS_CHARACTERISTICS)
    };
    if s.len() >= 0x13 {
        items.extend(flags_list(
            u64::from(s.byte(0x12)?),
            0,
            &BIOS_CHARACTERISTICS_X1,
        ));
    }
    if s.len() >= 0x14 {
        items.extend(flags_list(
            u64::from(s.byte(0x13)?),
            0,
            &BIOS_CHARACTERISTICS_X2,
        ));
    }
    b.list("Characteristics", &items);
    if s.len() >= 0x18 {
        let (major, minor) = (s.byte(0x14)?, s.byte(0x15)?);
        if major != 0xff && minor != 0xff {
            b.attr("BIOS Revision", format!("{major}.{minor}"));
        }
        let (major, minor) = (s.byte(0x16)?, s.byte(0x17)?);
        if major != 0xff && minor != 0xff {
            b.attr("Firmware Revision", format!("{major}.{minor}"));
        }
    }
    Some(b.text)
}

// ---------------------------------------------------------------- type 4

/// Processor family names (SMBIOS 7.5.2); 0xBE is decided by the manufacturer.
const PROCESSOR_FAMILIES: &[(u16, &str)] = &[
    (0x01, "Other"),
    (0x02, "Unknown"),
    (0x03, "8086"),
    (0x04, "80286"),
    (0x05, "80386"),
    (0x06, "80486"),
    (0x07, "8087"),
    (0x08, "80287"),
    (0x09, "80387"),
    (0x0A, "80487"),
    (0x0B, "Pentium"),
    (0x0C, "Pentium Pro"),
    (0x0D, "Pentium II"),
    (0x0E, "Pentium MMX"),
    (0x0F, "Celeron"),
    (0x10, "Pentium II Xeon"),
    (0x11, "Pentium III"),
    (0x12, "M1"),
    (0x13, "M2"),
    (0x14, "Celeron M"),
    (0x15, "Pentium 4 HT"),
    (0x16, "Intel"),
    (0x18, "Duron"),
    (0x19, "K5"),
    (0x1A, "K6"),
    (0x1B, "K6-2"),
    (0x1C, "K6-3"),
    (0x1D, "Athlon"),
    (0x1E, "AMD29000"),
    (0x1F, "K6-2+"),
    (0x20, "Power PC"),
    (0x21, "Power PC 601"),
    (0x22, "Power PC 603"),
    (0x23, "Power PC 603+"),
    (0x24, "Power PC 604"),
    (0x25, "Power PC 620"),
    (0x26, "Power PC x704"),
    (0x27, "Power PC 750"),
    (0x28, "Core Duo"),
    (0x29, "Core Duo Mobile"),
    (0x2A, "Core Solo Mobile"),
    (0x2B, "Atom"),
    (0x2C, "Core M"),
    (0x2D, "Core m3"),
    (0x2E, "Core m5"),
    (0x2F, "Core m7"),
    (0x30, "Alpha"),
    (0x31, "Alpha 21064"),
    (0x32, "Alpha 21066"),
    (0x33, "Alpha 21164"),
    (0x34, "Alpha 21164PC"),
    (0x35, "Alpha 21164a"),
    (0x36, "Alpha 21264"),
    (0x37, "Alpha 21364"),
    (0x38, "Turion II Ultra Dual-Core Mobile M"),
    (0x39, "Turion II Dual-Core Mobile M"),
    (0x3A, "Athlon II Dual-Core M"),
    (0x3B, "Opteron 6100"),
    (0x3C, "Opteron 4100"),
    (0x3D, "Opteron 6200"),
    (0x3E, "Opteron 4200"),
    (0x3F, "FX"),
    (0x40, "MIPS"),
    (0x41, "MIPS R4000"),
    (0x42, "MIPS R4200"),
    (0x43, "MIPS R4400"),
    (0x44, "MIPS R4600"),
    (0x45, "MIPS R10000"),
    (0x46, "C-Series"),
    (0x47, "E-Series"),
    (0x48, "A-Series"),
    (0x49, "G-Series"),
    (0x4A, "Z-Series"),
    (0x4B, "R-Series"),
    (0x4C, "Opteron 4300"),
    (0x4D, "Opteron 6300"),
    (0x4E, "Opteron 3300"),
    (0x4F, "FirePro"),
    (0x50, "SPARC"),
    (0x51, "SuperSPARC"),
    (0x52, "MicroSPARC II"),
    (0x53, "MicroSPARC IIep"),
    (0x54, "UltraSPARC"),
    (0x55, "UltraSPARC II"),
    (0x56, "UltraSPARC IIi"),
    (0x57, "UltraSPARC III"),
    (0x58, "UltraSPARC IIIi"),
    (0x60, "68040"),
    (0x61, "68xxx"),
    (0x62, "68000"),
    (0x63, "68010"),
    (0x64, "68020"),
    (0x65, "68030"),
    (0x66, "Athlon X4"),
    (0x67, "Opteron X1000"),
    (0x68, "Opteron X2000"),
    (0x69, "Opteron A-Series"),
    (0x6A, "Opteron X3000"),
    (0x6B, "Zen"),
    (0x70, "Hobbit"),
    (0x78, "Crusoe TM5000"),
    (0x79, "Crusoe TM3000"),
    (0x7A, "Efficeon TM8000"),
    (0x80, "Weitek"),
    (0x82, "Itanium"),
    (0x83, "Athlon 64"),
    (0x84, "Opteron"),
    (0x85, "Sempron"),
    (0x86, "Turion 64"),
    (0x87, "Dual-Core Opteron"),
    (0x88, "Athlon 64 X2"),
    (0x89, "Turion 64 X2"),
    (0x8A, "Quad-Core Opteron"),
    (0x8B, "Third-Generation Opteron"),
    (0x8C, "Phenom FX"),
    (0x8D, "Phenom X4"),
    (0x8E, "Phenom X2"),
    (0x8F, "Athlon X2"),
    (0x90, "PA-RISC"),
    (0x91, "PA-RISC 8500"),
    (0x92, "PA-RISC 8000"),
    (0x93, "PA-RISC 7300LC"),
    (0x94, "PA-RISC 7200"),
    (0x95, "PA-RISC 7100LC"),
    (0x96, "PA-RISC 7100"),
    (0xA0, "V30"),
    (0xA1, "Quad-Core Xeon 3200"),
    (0xA2, "Dual-Core Xeon 3000"),
    (0xA3, "Quad-Core Xeon 5300"),
    (0xA4, "Dual-Core Xeon 5100"),
    (0xA5, "Dual-Core Xeon 5000"),
    (0xA6, "Dual-Core Xeon LV"),
    (0xA7, "Dual-Core Xeon ULV"),
    (0xA8, "Dual-Core Xeon 7100"),
    (0xA9, "Quad-Core Xeon 5400"),
    (0xAA, "Quad-Core Xeon"),
    (0xAB, "Dual-Core Xeon 5200"),
    (0xAC, "Dual-Core Xeon 7200"),
    (0xAD, "Quad-Core Xeon 7300"),
    (0xAE, "Quad-Core Xeon 7400"),
    (0xAF, "Multi-Core Xeon 7400"),
    (0xB0, "Pentium III Xeon"),
    (0xB1, "Pentium III Speedstep"),
    (0xB2, "Pentium 4"),
    (0xB3, "Xeon"),
    (0xB4, "AS400"),
    (0xB5, "Xeon MP"),
    (0xB6, "Athlon XP"),
    (0xB7, "Athlon MP"),
    (0xB8, "Itanium 2"),
    (0xB9, "Pentium M"),
    (0xBA, "Celeron D"),
    (0xBB, "Pentium D"),
    (0xBC, "Pentium EE"),
    (0xBD, "Core Solo"),
    (0xBF, "Core 2 Duo"),
    (0xC0, "Core 2 Solo"),
    (0xC1, "Core 2 Extreme"),
    (0xC2, "Core 2 Quad"),
    (0xC3, "Core 2 Extreme Mobile"),
    (0xC4, "Core 2 Duo Mobile"),
    (0xC5, "Core 2 Solo Mobile"),
    (0xC6, "Core i7"),
    (0xC7, "Dual-Core Celeron"),
    (0xC8, "IBM390"),
    (0xC9, "G4"),
    (0xCA, "G5"),
    (0xCB, "ESA/390 G6"),
    (0xCC, "z/Architecture"),
    (0xCD, "Core i5"),
    (0xCE, "Core i3"),
    (0xCF, "Core i9"),
    (0xD2, "C7-M"),
    (0xD3, "C7-D"),
    (0xD4, "C7"),
    (0xD5, "Eden"),
    (0xD6, "Multi-Core Xeon"),
    (0xD7, "Dual-Core Xeon 3xxx"),
    (0xD8, "Quad-Core Xeon 3xxx"),
    (0xD9, "Nano"),
    (0xDA, "Dual-Core Xeon 5xxx"),
    (0xDB, "Quad-Core Xeon 5xxx"),
    (0xDD, "Dual-Core Xeon 7xxx"),
    (0xDE, "Quad-Core Xeon 7xxx"),
    (0xDF, "Multi-Core Xeon 7xxx"),
    (0xE0, "Multi-Core Xeon 3400"),
    (0xE4, "Opteron 3000"),
    (0xE5, "Sempron II"),
    (0xE6, "Embedded Opteron Quad-Core"),
    (0xE7, "Phenom Triple-Core"),
    (0xE8, "Turion Ultra Dual-Core Mobile"),
    (0xE9, "Turion Dual-Core Mobile"),
    (0xEA, "Athlon Dual-Core"),
    (0xEB, "Sempron SI"),
    (0xEC, "Phenom II"),
    (0xED, "Athlon II"),
    (0xEE, "Six-Core Opteron"),
    (0xEF, "Sempron M"),
    (0xFA, "i860"),
    (0xFB, "i960"),
    (0x100, "ARMv7"),
    (0x101, "ARMv8"),
    (0x102, "ARMv9"),
    (0x103, "ARM"),
    (0x104, "SH-3"),
    (0x105, "SH-4"),
    (0x118, "ARM"),
    (0x119, "StrongARM"),
    (0x12C, "6x86"),
    (0x12D, "MediaGX"),
    (0x12E, "MII"),
    (0x140, "WinChip"),
    (0x15E, "DSP"),
    (0x1F4, "Video Processor"),
    (0x200, "RV32"),
    (0x201, "RV64"),
    (0x202, "RV128"),
    (0x258, "LoongArch"),
    (0x259, "Loongson 1"),
    (0x25A, "Loongson 2"),
    (0x25B, "Loongson 3"),
    (0x25C, "Loongson 2K"),
    (0x25D, "Loongson 3A"),
    (0x25E, "Loongson 3B"),
    (0x25F, "Loongson 3C"),
    (0x260, "Loongson 3D"),
    (0x261, "Loongson 3E"),
    (0x262, "Dual-Core Loongson 2K 2xxx"),
    (0x26C, "Quad-Core Loongson 3A 5xxx"),
    (0x26D, "Multi-Core Loongson 3A 5xxx"),
    (0x26E, "Quad-Core Loongson 3B 5xxx"),
    (0x26F, "Multi-Core Loongson 3B 5xxx"),
    (0x270, "Multi-Core Loongson 3C 5xxx"),
    (0x271, "Multi-Core Loongson 3D 5xxx"),
];

const PROCESSOR_UPGRADES: [&str; 80] = [
    "Other",
    "Unknown",
    "Daughter Board",
    "ZIF Socket",
    "Replaceable Piggy Back",
    "None",
    "LIF Socket",
    "Slot 1",
    "Slot 2",
    "370-pin Socket",
    "Slot A",
    "Slot M",
    "Socket 423",
    "Socket A (Socket 462)",
    "Socket 478",
    "Socket 754",
    "Socket 940",
    "Socket 939",
    "Socket mPGA604",
    "Socket LGA771",
    "Socket LGA775",
    "Socket S1",
    "Socket AM2",
    "Socket F (1207)",
    "Socket LGA1366",
    "Socket G34",
    "Socket AM3",
    "Socket C32",
    "Socket LGA1156",
    "Socket LGA1567",
    "Socket PGA988A",
    "Socket BGA1288",
    "Socket rPGA988B",
    "Socket BGA1023",
    "Socket BGA1224",
    "Socket BGA1155",
    "Socket LGA1356",
    "Socket LGA2011",
    "Socket FS1",
    "Socket FS2",
    "Socket FM1",
    "Socket FM2",
    "Socket LGA2011-3",
    "Socket LGA1356-3",
    "Socket LGA1150",
    "Socket BGA1168",
    "Socket BGA1234",
    "Socket BGA1364",
    "Socket AM4",
    "Socket LGA1151",
    "Socket BGA1356",
    "Socket BGA1440",
    "Socket BGA1515",
    "Socket LGA3647-1",
    "Socket SP3",
    "Socket SP3r2",
    "Socket LGA2066",
    "Socket BGA1392",
    "Socket BGA1510",
    "Socket BGA1528",
    "Socket LGA4189",
    "Socket LGA1200",
    "Socket LGA4677",
    "Socket LGA1700",
    "Socket BGA1744",
    "Socket BGA1781",
    "Socket BGA1211",
    "Socket BGA2422",
    "Socket LGA1211",
    "Socket LGA2422",
    "Socket LGA5773",
    "Socket BGA5773",
    "Socket AM5",
    "Socket SP5",
    "Socket SP6",
    "Socket BGA883",
    "Socket BGA1190",
    "Socket BGA4129",
    "Socket LGA4710",
    "Socket LGA7529",
];

/// CPUID EDX feature flags as dmidecode names them (bits 10, 20 and 30 are reserved).
const CPUID_FLAGS: [Option<&str>; 32] = [
    Some("FPU (Floating-point unit on-chip)"),
    Some("VME (Virtual mode extension)"),
    Some("DE (Debugging extension)"),
    Some("PSE (Page size extension)"),
    Some("TSC (Time stamp counter)"),
    Some("MSR (Model specific registers)"),
    Some("PAE (Physical address extension)"),
    Some("MCE (Machine check exception)"),
    Some("CX8 (CMPXCHG8 instruction supported)"),
    Some("APIC (On-chip APIC hardware supported)"),
    None,
    Some("SEP (Fast system call)"),
    Some("MTRR (Memory type range registers)"),
    Some("PGE (Page global enable)"),
    Some("MCA (Machine check architecture)"),
    Some("CMOV (Conditional move instruction supported)"),
    Some("PAT (Page attribute table)"),
    Some("PSE-36 (36-bit page size extension)"),
    Some("PSN (Processor serial number present and enabled)"),
    Some("CLFSH (CLFLUSH instruction supported)"),
    None,
    Some("DS (Debug store)"),
    Some("ACPI (ACPI supported)"),
    Some("MMX (MMX technology supported)"),
    Some("FXSR (FXSAVE and FXSTOR instructions supported)"),
    Some("SSE (Streaming SIMD extensions)"),
    Some("SSE2 (Streaming SIMD extensions 2)"),
    Some("SS (Self-snoop)"),
    Some("HTT (Multi-threading)"),
    Some("TM (Thermal monitor supported)"),
    None,
    Some("PBE (Pending break enabled)"),
];

const PROCESSOR_CHARACTERISTICS: [&str; 8] = [
    "64-bit capable",
    "Multi-Core",
    "Hardware Thread",
    "Execute Protection",
    "Enhanced Virtualization",
    "Power/Performance Control",
    "128-bit Capable",
    "Arm64 SoC ID",
];

fn family_code(s: &Structure<'_>) -> Option<u16> {
    let f = s.byte(0x06)?;
    Some(if f == 0xfe && s.len() >= 0x2a {
        s.word(0x28)?
    } else {
        u16::from(f)
    })
}

fn processor_family(s: &Structure<'_>, ver: u16) -> Option<String> {
    let manufacturer = s.string_at(0x07).unwrap_or_default();
    let is = |name: &str| {
        manufacturer.contains(name)
            || manufacturer
                .to_ascii_lowercase()
                .starts_with(&name.to_ascii_lowercase())
    };
    if ver == 0x0200 && s.byte(0x06)? == 0x30 && is("Intel") {
        return Some("Pentium Pro".into());
    }
    let code = family_code(s)?;
    if code == 0xbe {
        return Some(
            if is("Intel") {
                "Core 2"
            } else if is("AMD") {
                "K7"
            } else {
                "Core 2 or K7"
            }
            .into(),
        );
    }
    Some(
        PROCESSOR_FAMILIES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(OUT_OF_SPEC, |(_, n)| n)
            .to_string(),
    )
}

#[derive(PartialEq)]
enum Cpuid {
    None,
    I80386,
    I80486,
    ArmLegacy,
    ArmSocId,
    Intel,
    Amd,
    LoongArch,
}

fn cpuid_type(s: &Structure<'_>) -> Option<Cpuid> {
    let t = family_code(s)?;
    let in_any = |ranges: &[(u16, u16)]| ranges.iter().any(|(a, b)| (*a..=*b).contains(&t));
    Some(if t == 0x05 {
        Cpuid::I80386
    } else if t == 0x06 {
        let dx = s.word(0x08)?;
        if dx & 0x0f00 == 0x0400
            && (dx & 0x00f0 == 0x0040 || dx & 0x00f0 >= 0x0070)
            && dx & 0x000f >= 0x0003
        {
            Cpuid::Intel
        } else {
            Cpuid::I80486
        }
    } else if in_any(&[(0x100, 0x102), (0x118, 0x119)]) {
        if s.len() >= 0x28 && s.word(0x26)? & (1 << 9) != 0 {
            Cpuid::ArmSocId
        } else {
            Cpuid::ArmLegacy
        }
    } else if in_any(&[
        (0x0b, 0x15),
        (0x28, 0x2f),
        (0xa1, 0xb3),
        (0xb5, 0xb5),
        (0xb9, 0xc7),
        (0xcd, 0xcf),
        (0xd2, 0xdb),
        (0xdd, 0xe0),
    ]) {
        Cpuid::Intel
    } else if in_any(&[
        (0x18, 0x1d),
        (0x1f, 0x1f),
        (0x38, 0x3f),
        (0x46, 0x4f),
        (0x66, 0x6b),
        (0x83, 0x8f),
        (0xb6, 0xb7),
        (0xe4, 0xef),
    ]) {
        Cpuid::Amd
    } else if in_any(&[(0x258, 0x262), (0x26c, 0x271)]) {
        Cpuid::LoongArch
    } else {
        Cpuid::None
    })
}

fn processor_id(s: &Structure<'_>, b: &mut Block) -> Option<()> {
    let id = s.data.get(0x08..0x10)?;
    b.attr(
        "ID",
        id.iter()
            .map(|x| format!("{x:02X}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let sig = cpuid_type(s)?;
    let eax = s.dword(0x08)?;
    let dx = s.word(0x08)?;
    match sig {
        Cpuid::I80386 => b.attr(
            "Signature",
            format!(
                "Type {}, Family {}, Major Stepping {}, Minor Stepping {}",
                dx >> 12,
                (dx >> 8) & 0xf,
                (dx >> 4) & 0xf,
                dx & 0xf
            ),
        ),
        Cpuid::I80486 => b.attr(
            "Signature",
            format!(
                "Type {}, Family {}, Model {}, Stepping {}",
                (dx >> 12) & 0x3,
                (dx >> 8) & 0xf,
                (dx >> 4) & 0xf,
                dx & 0xf
            ),
        ),
        Cpuid::ArmLegacy => {
            if eax != 0 {
                b.attr(
                    "Signature",
                    format!(
                        "Implementor 0x{:02x}, Variant 0x{:x}, Architecture {}, Part 0x{:03x}, Revision {}",
                        eax >> 24,
                        (eax >> 20) & 0xf,
                        (eax >> 16) & 0xf,
                        (eax >> 4) & 0xfff,
                        eax & 0xf
                    ),
                );
            }
        }
        Cpuid::ArmSocId => {
            let rev = s.dword(0x0c)?;
            b.attr(
                "Signature",
                format!(
                    "JEP-106 Bank 0x{:02x} Manufacturer 0x{:02x}, SoC ID 0x{:04x}, SoC Revision 0x{rev:08x}",
                    (eax >> 24) & 0x7f,
                    (eax >> 16) & 0x7f,
                    eax & 0xffff
                ),
            );
        }
        Cpuid::Intel => b.attr(
            "Signature",
            format!(
                "Type {}, Family {}, Model {}, Stepping {}",
                (eax >> 12) & 0x3,
                ((eax >> 20) & 0xff) + ((eax >> 8) & 0x0f),
                ((eax >> 12) & 0xf0) + ((eax >> 4) & 0x0f),
                eax & 0xf
            ),
        ),
        Cpuid::Amd => {
            let base = (eax >> 8) & 0xf;
            let ext = base == 0xf;
            b.attr(
                "Signature",
                format!(
                    "Family {}, Model {}, Stepping {}",
                    base + if ext { (eax >> 20) & 0xff } else { 0 },
                    ((eax >> 4) & 0xf) | if ext { (eax >> 12) & 0xf0 } else { 0 },
                    eax & 0xf
                ),
            );
        }
        Cpuid::LoongArch => b.attr("Signature", format!("Processor Identity 0x{eax:08x}\n")),
        Cpuid::None => {}
    }
    if sig != Cpuid::Intel && sig != Cpuid::Amd {
        return Some(());
    }
    let edx = s.dword(0x0c)?;
    if edx & 0xbfef_fbff == 0 {
        b.attr("Flags", "None");
    } else {
        let items: Vec<&str> = CPUID_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| edx & (1 << i) != 0)
            .filter_map(|(_, f)| *f)
            .collect();
        b.list("Flags", &items);
    }
    Some(())
}

fn processor_voltage(code: u8) -> Option<String> {
    if code & 0x80 != 0 {
        return Some(format!("{:.1} V", f32::from(code & 0x7f) / 10.0));
    }
    if code & 0x07 == 0 {
        return Some("Unknown".into());
    }
    let names = ["5.0 V", "3.3 V", "2.9 V"];
    let v: Vec<&str> = (0..3)
        .filter(|i| code & (1 << i) != 0)
        .map(|i| names[i])
        .collect();
    Some(v.join(" "))
}

fn frequency(code: u16) -> String {
    if code == 0 {
        "Unknown".into()
    } else {
        format!("{code} MHz")
    }
}

fn processor(s: &Structure<'_>, ver: u16) -> Option<String> {
    let mut b = Block::new(s, "Processor Information");
    if s.len() < 0x1a {
        return Some(b.text);
    }
    b.attr("Socket Designation", s.string_at(0x04)?);
    let kind = s.byte(0x05)?;
    b.attr(
        "Type",
        table_name(
            &[
                "Other",
                "Unknown",
                "Central Processor",
                "Math Processor",
                "DSP Processor",
                "Video Processor",
            ],
            1,
            u16::from(kind),
        ),
    );
    b.attr("Family", processor_family(s, ver)?);
    b.attr("Manufacturer", s.string_at(0x07)?);
    processor_id(s, &mut b)?;
    b.attr("Version", s.string_at(0x10)?);
    b.attr("Voltage", processor_voltage(s.byte(0x11)?)?);
    b.attr("External Clock", frequency(s.word(0x12)?));
    b.attr("Max Speed", frequency(s.word(0x14)?));
    b.attr("Current Speed", frequency(s.word(0x16)?));
    let status = s.byte(0x18)?;
    if status & (1 << 6) != 0 {
        let names = [
            "Unknown",
            "Enabled",
            "Disabled By User",
            "Disabled By BIOS",
            "Idle",
            OUT_OF_SPEC,
            OUT_OF_SPEC,
            "Other",
        ];
        b.attr(
            "Status",
            format!("Populated, {}", names[usize::from(status & 0x07)]),
        );
    } else {
        b.attr("Status", "Unpopulated");
    }
    b.attr(
        "Upgrade",
        table_name(&PROCESSOR_UPGRADES, 1, u16::from(s.byte(0x19)?)),
    );
    if s.len() < 0x20 {
        return Some(b.text);
    }
    for (off, key, level) in [
        (0x1a, "L1 Cache Handle", "L1"),
        (0x1c, "L2 Cache Handle", "L2"),
        (0x1e, "L3 Cache Handle", "L3"),
    ] {
        let h = s.word(off)?;
        let v = match (h, ver >= 0x0203) {
            (0xffff, true) => "Not Provided".to_string(),
            (0xffff, false) => format!("No {level} Cache"),
            _ => format!("0x{h:04X}"),
        };
        b.attr(key, v);
    }
    if s.len() < 0x23 {
        return Some(b.text);
    }
    b.attr("Serial Number", s.string_at(0x20)?);
    b.attr("Asset Tag", s.string_at(0x21)?);
    b.attr("Part Number", s.string_at(0x22)?);
    if s.len() < 0x28 {
        return Some(b.text);
    }
    let counts = [
        (0x23, 0x2c, 0x2a, "Core Count"),
        (0x24, 0x2e, 0x2c, "Core Enabled"),
        (0x25, 0x30, 0x2e, "Thread Count"),
    ];
    for (off, min_len, wide, key) in counts {
        let n = s.byte(off)?;
        if n != 0 {
            let v = if s.len() >= min_len && n == 0xff {
                s.word(wide)?
            } else {
                u16::from(n)
            };
            b.attr(key, v.to_string());
        }
    }
    if s.len() >= 0x32 {
        let enabled = s.word(0x30)?;
        if enabled != 0 {
            b.attr("Thread Enabled", enabled.to_string());
        }
    }
    let chars = s.word(0x26)?;
    if chars & 0x00fc == 0 {
        b.attr("Characteristics", "None");
    } else {
        b.list(
            "Characteristics",
            &flags_list(u64::from(chars), 2, &PROCESSOR_CHARACTERISTICS),
        );
    }
    Some(b.text)
}

// ---------------------------------------------------------------- types 16 and 17

fn error_handle(code: u16) -> String {
    match code {
        0xfffe => "Not Provided".into(),
        0xffff => "No Error".into(),
        _ => format!("0x{code:04X}"),
    }
}

fn memory_array(s: &Structure<'_>) -> Option<String> {
    let mut b = Block::new(s, "Physical Memory Array");
    if s.len() < 0x0f {
        return Some(b.text);
    }
    let loc = u16::from(s.byte(0x04)?);
    let location = if (0xa0..=0xa4).contains(&loc) {
        table_name(
            &[
                "PC-98/C20 Add-on Card",
                "PC-98/C24 Add-on Card",
                "PC-98/E Add-on Card",
                "PC-98/Local Bus Add-on Card",
                "CXL Add-on Card",
            ],
            0xa0,
            loc,
        )
    } else {
        table_name(
            &[
                "Other",
                "Unknown",
                "System Board Or Motherboard",
                "ISA Add-on Card",
                "EISA Add-on Card",
                "PCI Add-on Card",
                "MCA Add-on Card",
                "PCMCIA Add-on Card",
                "Proprietary Add-on Card",
                "NuBus",
            ],
            1,
            loc,
        )
    };
    b.attr("Location", location);
    b.attr(
        "Use",
        table_name(
            &[
                "Other",
                "Unknown",
                "System Memory",
                "Video Memory",
                "Flash Memory",
                "Non-volatile RAM",
                "Cache Memory",
            ],
            1,
            u16::from(s.byte(0x05)?),
        ),
    );
    b.attr(
        "Error Correction Type",
        table_name(
            &[
                "Other",
                "Unknown",
                "None",
                "Parity",
                "Single-bit ECC",
                "Multi-bit ECC",
                "CRC",
            ],
            1,
            u16::from(s.byte(0x06)?),
        ),
    );
    let capacity = s.dword(0x07)?;
    if capacity == 0x8000_0000 {
        if s.len() < 0x17 {
            b.attr("Maximum Capacity", "Unknown");
        } else {
            b.attr("Maximum Capacity", memory_size(s.qword(0x0f)?, 0));
        }
    } else {
        b.attr("Maximum Capacity", memory_size(u64::from(capacity), 1));
    }
    b.attr("Error Information Handle", error_handle(s.word(0x0b)?));
    b.attr("Number Of Devices", s.word(0x0d)?.to_string());
    Some(b.text)
}

const MEMORY_FORM_FACTORS: [&str; 16] = [
    "Other",
    "Unknown",
    "SIMM",
    "SIP",
    "Chip",
    "DIP",
    "ZIP",
    "Proprietary Card",
    "DIMM",
    "TSOP",
    "Row Of Chips",
    "RIMM",
    "SODIMM",
    "SRIMM",
    "FB-DIMM",
    "Die",
];
const MEMORY_TYPES: [&str; 36] = [
    "Other",
    "Unknown",
    "DRAM",
    "EDRAM",
    "VRAM",
    "SRAM",
    "RAM",
    "ROM",
    "Flash",
    "EEPROM",
    "FEPROM",
    "EPROM",
    "CDRAM",
    "3DRAM",
    "SDRAM",
    "SGRAM",
    "RDRAM",
    "DDR",
    "DDR2",
    "DDR2 FB-DIMM",
    "Reserved",
    "Reserved",
    "Reserved",
    "DDR3",
    "FBD2",
    "DDR4",
    "LPDDR",
    "LPDDR2",
    "LPDDR3",
    "LPDDR4",
    "Logical non-volatile device",
    "HBM",
    "HBM2",
    "DDR5",
    "LPDDR5",
    "HBM3",
];
const MEMORY_TYPE_DETAILS: [&str; 15] = [
    "Other",
    "Unknown",
    "Fast-paged",
    "Static Column",
    "Pseudo-static",
    "RAMBus",
    "Synchronous",
    "CMOS",
    "EDO",
    "Window DRAM",
    "Cache DRAM",
    "Non-Volatile",
    "Registered (Buffered)",
    "Unbuffered (Unregistered)",
    "LRDIMM",
];
const MEMORY_TECHNOLOGIES: [&str; 7] = [
    "Other",
    "Unknown",
    "DRAM",
    "NVDIMM-N",
    "NVDIMM-F",
    "NVDIMM-P",
    "Intel Optane DC persistent memory",
];
const MEMORY_MODES: [&str; 5] = [
    "Other",
    "Unknown",
    "Volatile memory",
    "Byte-accessible persistent memory",
    "Block-accessible persistent memory",
];

fn width(code: u16) -> String {
    if code == 0xffff || code == 0 {
        "Unknown".into()
    } else {
        format!("{code} bits")
    }
}

fn device_size(s: &Structure<'_>) -> Option<String> {
    let code = s.word(0x0c)?;
    if s.len() >= 0x20 && code == 0x7fff {
        let ext = s.dword(0x1c)? & 0x7fff_ffff;
        return Some(if ext & 0x3ff != 0 {
            format!("{ext} MB")
        } else if ext & 0xffc00 != 0 {
            format!("{} GB", ext >> 10)
        } else {
            format!("{} TB", ext >> 20)
        });
    }
    Some(match code {
        0 => "No Module Installed".into(),
        0xffff => "Unknown".into(),
        _ => {
            let v = u64::from(code & 0x7fff);
            memory_size(if code & 0x8000 != 0 { v } else { v << 10 }, 1)
        }
    })
}

fn speed(code1: u16, code2: u32) -> String {
    match (code1, code2) {
        (0xffff, 0) | (0, _) => "Unknown".into(),
        (0xffff, c) => format!("{c} MT/s"),
        (c, _) => format!("{c} MT/s"),
    }
}

fn voltage(code: u16) -> String {
    if code == 0 {
        return "Unknown".into();
    }
    let v = f32::from(code) / 1000.0;
    if code % 100 != 0 {
        format!("{v} V")
    } else {
        format!("{v:.1} V")
    }
}

fn manufacturer_id(code: u16) -> String {
    if code == 0 {
        "Unknown".into()
    } else {
        format!("Bank {}, Hex 0x{:02X}", (code & 0x7f) + 1, code >> 8)
    }
}

fn product_id(code: u16) -> String {
    if code == 0 {
        "Unknown".into()
    } else {
        format!("0x{code:04X}")
    }
}

fn nv_size(code: u64) -> String {
    match code {
        u64::MAX => "Unknown".into(),
        0 => "None".into(),
        _ => memory_size(code, 0),
    }
}

fn word_list(code: u16, names: &[&str]) -> String {
    if code & 0xfffe == 0 {
        return "None".into();
    }
    (1..=names.len())
        .filter(|i| code & (1 << i) != 0)
        .map(|i| names[i - 1])
        .collect::<Vec<_>>()
        .join(" ")
}

fn revision(b: &mut Block, prefix: &str, code: u16, mem_type: u8) {
    if code == 0xff00 {
        b.attr(&format!("{prefix} Revision Number"), "Unknown");
    } else if mem_type == 0x22 || mem_type == 0x23 {
        if code & 0x8000 != 0 {
            let rev = code & 0xff;
            b.attr(
                &format!("{prefix} Device Type"),
                ((code >> 8) & 0x0f).to_string(),
            );
            b.attr(
                &format!("{prefix} Device Revision"),
                format!("{}.{}", rev >> 4, rev & 0x0f),
            );
        } else {
            b.attr(&format!("{prefix} Device Type"), "Not Installed");
        }
    } else {
        b.attr(
            &format!("{prefix} Revision Number"),
            format!("0x{code:04x}"),
        );
    }
}

fn memory_device(s: &Structure<'_>) -> Option<String> {
    let mut b = Block::new(s, "Memory Device");
    let len = s.len();
    if len < 0x15 {
        return Some(b.text);
    }
    b.attr("Array Handle", format!("0x{:04X}", s.word(0x04)?));
    b.attr("Error Information Handle", error_handle(s.word(0x06)?));
    b.attr("Total Width", width(s.word(0x08)?));
    b.attr("Data Width", width(s.word(0x0a)?));
    b.attr("Size", device_size(s)?);
    b.attr(
        "Form Factor",
        table_name(&MEMORY_FORM_FACTORS, 1, u16::from(s.byte(0x0e)?)),
    );
    b.attr(
        "Set",
        match s.byte(0x0f)? {
            0 => "None".to_string(),
            0xff => "Unknown".to_string(),
            n => n.to_string(),
        },
    );
    b.attr("Locator", s.string_at(0x10)?);
    b.attr("Bank Locator", s.string_at(0x11)?);
    let mem_type = s.byte(0x12)?;
    b.attr("Type", table_name(&MEMORY_TYPES, 1, u16::from(mem_type)));
    b.attr(
        "Type Detail",
        word_list(s.word(0x13)?, &MEMORY_TYPE_DETAILS),
    );
    // An empty slot says no more than this.
    if len < 0x17 || s.word(0x0c)? == 0 {
        return Some(b.text);
    }
    let ext = |off: usize| if len >= 0x5c { s.dword(off) } else { Some(0) };
    b.attr("Speed", speed(s.word(0x15)?, ext(0x54)?));
    if len < 0x1b {
        return Some(b.text);
    }
    b.attr("Manufacturer", s.string_at(0x17)?);
    b.attr("Serial Number", s.string_at(0x18)?);
    b.attr("Asset Tag", s.string_at(0x19)?);
    b.attr("Part Number", s.string_at(0x1a)?);
    if len < 0x1c {
        return Some(b.text);
    }
    let rank = s.byte(0x1b)? & 0x0f;
    b.attr(
        "Rank",
        if rank == 0 {
            "Unknown".to_string()
        } else {
            rank.to_string()
        },
    );
    if len < 0x22 {
        return Some(b.text);
    }
    b.attr("Configured Memory Speed", speed(s.word(0x20)?, ext(0x58)?));
    if len < 0x28 {
        return Some(b.text);
    }
    b.attr("Minimum Voltage", voltage(s.word(0x22)?));
    b.attr("Maximum Voltage", voltage(s.word(0x24)?));
    b.attr("Configured Voltage", voltage(s.word(0x26)?));
    if len < 0x34 {
        return Some(b.text);
    }
    b.attr(
        "Memory Technology",
        table_name(&MEMORY_TECHNOLOGIES, 1, u16::from(s.byte(0x28)?)),
    );
    b.attr(
        "Memory Operating Mode Capability",
        word_list(s.word(0x29)?, &MEMORY_MODES),
    );
    b.attr("Firmware Version", s.string_at(0x2b)?);
    b.attr("Module Manufacturer ID", manufacturer_id(s.word(0x2c)?));
    b.attr("Module Product ID", product_id(s.word(0x2e)?));
    b.attr(
        "Memory Subsystem Controller Manufacturer ID",
        manufacturer_id(s.word(0x30)?),
    );
    b.attr(
        "Memory Subsystem Controller Product ID",
        product_id(s.word(0x32)?),
    );
    for (min_len, off, key) in [
        (0x3c, 0x34, "Non-Volatile Size"),
        (0x44, 0x3c, "Volatile Size"),
        (0x4c, 0x44, "Cache Size"),
        (0x54, 0x4c, "Logical Size"),
    ] {
        if len < min_len {
            return Some(b.text);
        }
        b.attr(key, nv_size(s.qword(off)?));
    }
    if len < 0x64 {
        return Some(b.text);
    }
    b.attr("PMIC0 Manufacturer ID", manufacturer_id(s.word(0x5c)?));
    revision(&mut b, "PMIC0", s.word(0x5e)?, mem_type);
    b.attr("RCD Manufacturer ID", manufacturer_id(s.word(0x60)?));
    revision(&mut b, "RCD", s.word(0x62)?, mem_type);
    Some(b.text)
}

// ---------------------------------------------------------------- text and IPA's parsing

/// dmidecode's text for the structures IPA keeps, blocks separated by blank lines.
pub fn render(table: &[u8], version: Option<Version>) -> String {
    let ver = version.map_or(0x0300, |v| (u16::from(v.major) << 8) | u16::from(v.minor));
    let mut blocks = Vec::new();
    for s in smbios::parse_table(table) {
        let block = match s.kind {
            0 => bios(&s),
            4 => processor(&s, ver),
            16 => memory_array(&s),
            17 => memory_device(&s),
            _ => continue,
        };
        // A structure too short for the fields its header promises is reported as far as it goes.
        blocks.push(block.unwrap_or_else(|| Block::new(&s, "<TRUNCATED>").text));
    }
    blocks.join("\n")
}

/// IPA's `_parse_handle_block`: `Key: value` lines, list values for keys without a value.
fn parse_block(block: &str) -> Map<String, Value> {
    let mut rows = Map::new();
    let mut list_key: Option<String> = None;
    for line in block.lines() {
        let line = line.trim();
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim());
            if v.is_empty() {
                rows.insert(k.clone(), Value::Array(Vec::new()));
                list_key = Some(k);
            } else {
                rows.insert(k, Value::String(v.to_string()));
                list_key = None;
            }
        } else if line.contains("Handle 0x") {
            rows.insert("Handle".into(), Value::String(line.to_string()));
        } else if let Some(k) = &list_key {
            if let Some(Value::Array(items)) = rows.get_mut(k) {
                items.push(Value::String(line.to_string()));
            }
        }
    }
    rows
}

/// IPA's `parse_dmi` over dmidecode text.
pub fn parse_dmi(text: &str) -> Value {
    let mut bios = Map::new();
    let mut cpus = Vec::new();
    let mut arrays: Vec<Map<String, Value>> = Vec::new();
    let mut devices = Vec::new();
    for block in text.split("\n\n").filter(|b| b.starts_with("Handle 0x")) {
        let Some(kind) = block
            .split(',')
            .nth(1)
            .and_then(|t| t.trim().strip_prefix("DMI type"))
            .and_then(|n| n.trim().parse::<u32>().ok())
        else {
            continue;
        };
        match kind {
            0 => bios = parse_block(block),
            4 => cpus.push(Value::Object(parse_block(block))),
            16 => arrays.push(parse_block(block)),
            17 => devices.push(Value::Object(parse_block(block))),
            _ => {}
        }
    }
    let mut memory = Map::new();
    if let Some(first) = arrays.first() {
        let count: u64 = arrays
            .iter()
            .filter_map(|a| {
                a.get("Number Of Devices")
                    .and_then(Value::as_str)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum();
        memory = first.clone();
        memory.insert("Number Of Devices".into(), json!(count));
        memory.remove("Handle");
    }
    memory.insert("devices".into(), Value::Array(devices));
    json!({"bios": bios, "cpu": cpus, "memory": memory})
}

/// The `dmi` value of the `dmi-decode` collector.
pub fn dmi_decode(host: &HostRoot) -> Result<Value, DmiError> {
    let dump = smbios::read_dump(host).map_err(|source| DmiError {
        path: host
            .path("/sys/firmware/dmi/tables/DMI")
            .display()
            .to_string(),
        source,
    })?;
    Ok(parse_dmi(&render(&dump.table, dump.version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_dmidecode() {
        assert_eq!(memory_size(2 << 20, 1), "2 GB");
        assert_eq!(memory_size(64, 1), "64 kB");
        assert_eq!(memory_size(1536, 1), "1536 kB");
        assert_eq!(memory_size(16 << 30, 0), "16 GB");
        assert_eq!(memory_size(0, 0), "0 bytes");
    }

    #[test]
    fn voltages() {
        assert_eq!(voltage(1200), "1.2 V");
        assert_eq!(voltage(1250), "1.25 V");
        assert_eq!(voltage(0), "Unknown");
        assert_eq!(processor_voltage(0x80 | 18).as_deref(), Some("1.8 V"));
        assert_eq!(processor_voltage(0x03).as_deref(), Some("5.0 V 3.3 V"));
    }

    #[test]
    fn hostile_tables_never_panic() {
        let real = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hardware/synthetic-smbios/DMI"
        ))
        .unwrap();
        // Every truncation of a real table, and the same table with bytes flipped.
        for cut in 0..real.len() {
            let _ = parse_dmi(&render(&real[..cut], None));
        }
        let mut x: u32 = 0x1234_5678;
        for round in 0..2000 {
            let mut t = real.clone();
            for _ in 0..(round % 7 + 1) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = (x as usize) % t.len();
                t[i] = (x >> 8) as u8;
            }
            let _ = parse_dmi(&render(&t, None));
        }
    }
}
