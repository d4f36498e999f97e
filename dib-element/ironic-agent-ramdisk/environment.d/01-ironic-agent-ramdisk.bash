# Defaults of the ironic-agent-ramdisk element (sourced by disk-image-create, outside and inside
# the chroot). Every one can be overridden from the environment. Named 01- to be sourced before
# debian-minimal's 10-debian-minimal.bash, which fixes the apt components from
# DIB_DEBIAN_COMPONENTS.

# The static agent binary to install (cargo build --release). Required: checked by
# extra-data.d/50-ironic-agent-binary, which copies it into the build.
export DIB_IRONIC_AGENT_BINARY=${DIB_IRONIC_AGENT_BINARY:-}

# Debian's non-free firmware (NICs such as bnx2x, qede, ice's DDP package) is what operators
# build DIB ramdisks for; Debian 12 keeps it in its own component.
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main,non-free-firmware}
# Firmware packages installed into the ramdisk (empty: none). The default covers server NICs and
# storage controllers; firmware for wireless, sound and GPUs is pruned afterwards anyway.
export DIB_IRONIC_AGENT_FIRMWARE=${DIB_IRONIC_AGENT_FIRMWARE-firmware-linux-free firmware-bnx2 firmware-bnx2x firmware-qlogic firmware-misc-nonfree}

# systemd-networkd configures every NIC (static/etc/systemd/network): the debootstrap element's
# ifupdown stanzas for eth0/eth1 would only duplicate it.
export DIB_APT_MINIMAL_CREATE_INTERFACES=${DIB_APT_MINIMAL_CREATE_INTERFACES:-0}

# Compressor of the initramfs: zstd unpacks several times faster than gzip at boot (the kernel
# decompresses it before anything runs); gzip for kernels built without zstd support.
export DIB_IRONIC_AGENT_COMPRESS=${DIB_IRONIC_AGENT_COMPRESS:-zstd}

# Kernel module directories (under kernel/) left out of the ramdisk: hardware and protocols a
# deploy ramdisk never drives. Space separated; empty keeps every module Debian ships.
export DIB_IRONIC_AGENT_PRUNE_MODULES=${DIB_IRONIC_AGENT_PRUNE_MODULES-sound drivers/media \
drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/i915 drivers/gpu/drm/radeon \
drivers/net/wireless drivers/net/can drivers/net/hamradio drivers/bluetooth drivers/staging \
drivers/comedi drivers/iio drivers/isdn drivers/atm drivers/nfc drivers/input/touchscreen \
drivers/input/joystick drivers/usb/gadget drivers/usb/serial drivers/target \
net/bluetooth net/wireless net/mac80211 net/can net/nfc net/ax25 net/netrom net/rose \
fs/ocfs2 fs/gfs2 fs/ubifs fs/afs fs/ceph net/ceph lib/test_bpf.ko}

# Firmware (under /lib/firmware) left out: GPUs, wireless and Bluetooth chips that come with the
# firmware packages above. Space separated; empty keeps all.
export DIB_IRONIC_AGENT_PRUNE_FIRMWARE=${DIB_IRONIC_AGENT_PRUNE_FIRMWARE-i915 nvidia amdgpu radeon \
mediatek mrvl ath3k ath6k ath10k ath11k iwlwifi rtlwifi rtw88 rtw89 rtl_bt brcm \
ti-connectivity intel/ibt-* ueagle-atm wfx v4l-cx23418-cpu.fw v4l-cx23418-apu.fw go7007}

# Kernel modules are stored compressed (kmod decompresses them as it loads them): the unpacked
# ramdisk, which occupies the machine's RAM, shrinks by about 180 MiB. zstd (-9) compresses all
# of them in ~15 s on 2 cores; xz saves another ~9 MiB of RAM for ~100 s of build time; "none"
# keeps them as Debian ships them.
export DIB_IRONIC_AGENT_COMPRESS_MODULES=${DIB_IRONIC_AGENT_COMPRESS_MODULES:-zstd}
