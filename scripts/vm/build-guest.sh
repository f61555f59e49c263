#!/bin/sh
# build-guest.sh: build corral's tiny VM guest from Debian packages: the
# cloud kernel (linux-image-cloud-amd64 or -arm64), an initramfs with
# busybox-static, the kernel modules the guest needs (virtio, fw_cfg,
# dm-crypt) and corral's guest init (scripts/vm/init), plus an empty
# ext4 base disk. The runner program is not in the guest: the qemu
# provider hands it in per instance (a read-only disk) with the bootstrap
# (fw_cfg), see docs/vm.md.
#
#   scripts/vm/build-guest.sh [amd64|arm64]   # build if missing; last stdout line: the guest dir
#   VM_BUILD_FORCE=1 scripts/vm/build-guest.sh   # rebuild
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/corral/vm-<arch>-<kernel>-bb<busybox>-<init hash>/
#   vmlinuz  initrd.img  base.qcow2  guest.json
# amd64 uses the installed linux-image-cloud-amd64, busybox-static and
# dmsetup (with its libraries, for dm-crypt). arm64 fetches
# linux-image-cloud-arm64 and busybox-static:arm64 with `apt-get download`
# (after `dpkg --add-architecture arm64`); its guest has no dmsetup, so
# arm64 guests offer workspace tmpfs and none, not encrypted.
set -eu

ARCH=${1:-amd64}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/corral
start=$(date +%s)

case "$ARCH" in
amd64) QARCH=x64 ;;
arm64) QARCH=arm64 ;;
*) echo "build-guest.sh: arch $ARCH: want amd64 or arm64" >&2; exit 2 ;;
esac

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-guest.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need qemu-img qemu-utils
need mkfs.ext4 e2fsprogs
need cpio cpio
need dpkg-deb dpkg

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-vm-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

if [ "$ARCH" = amd64 ]; then
	kpkg=$(dpkg-query -W -f '${Depends}' linux-image-cloud-amd64 2>/dev/null | sed 's/[ ,(].*//') || true
	[ -n "$kpkg" ] || { echo "build-guest.sh: linux-image-cloud-amd64 is not installed (apt-get install linux-image-cloud-amd64)" >&2; exit 1; }
	kver=${kpkg#linux-image-}
	kroot=
	bbver=$(dpkg-query -W -f '${Version}' busybox-static)
	bbroot=
else
	# Foreign packages: fetched, never installed.
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
		apt-get update -qq
	fi
	kpkg=$(apt-cache depends linux-image-cloud-arm64:arm64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' | sed 's/:arm64$//')
	[ -n "$kpkg" ] || { apt-get update -qq; kpkg=$(apt-cache depends linux-image-cloud-arm64:arm64 | awk '/Depends: linux-image-/{print $2; exit}' | sed 's/:arm64$//'); }
	kver=${kpkg#linux-image-}
	bbver=$(apt-cache policy busybox-static:arm64 | awk '/Candidate:/{print $2}')
	kroot=
	bbroot=
fi

hash=$( (cat "$0" "$HERE/init") | sha256sum | cut -c1-12)
OUT=$CACHE_ROOT/vm-$ARCH-$kver-bb$(echo "$bbver" | tr ':+~' '___')-$hash
if [ -z "${VM_BUILD_FORCE:-}" ] && [ -f "$OUT/guest.json" ]; then
	echo "build-guest.sh: cached, nothing to do (0 s)" >&2
	echo "$OUT"
	exit 0
fi

if [ "$ARCH" = arm64 ]; then
	mkdir -p "$work/debs" "$work/kroot" "$work/bbroot"
	(cd "$work/debs" && apt-get download -q "$kpkg:arm64" "busybox-static:arm64" >&2)
	dpkg-deb -x "$work"/debs/linux-image-*.deb "$work/kroot"
	dpkg-deb -x "$work"/debs/busybox-static_*.deb "$work/bbroot"
	kroot=$work/kroot
	bbroot=$work/bbroot
	depmod -b "$kroot" "$kver" 2>/dev/null || depmod -b "$kroot/usr" "$kver"
fi

# The kernel image and its modules directory.
kimg=$kroot/boot/vmlinuz-$kver
moddir=$kroot/lib/modules/$kver
[ -d "$moddir" ] || moddir=$kroot/usr/lib/modules/$kver
[ -f "$kimg" ] || { echo "build-guest.sh: kernel image $kimg not found" >&2; exit 1; }

rd=$work/rd
mkdir -p "$rd/bin" "$rd/sbin" "$rd/lib/modules" "$rd/etc/corral" "$rd/proc" "$rd/sys" "$rd/dev" "$rd/tmp" "$rd/run" "$rd/work" "$rd/opt/corral" "$rd/root"
cp "$bbroot/bin/busybox" "$rd/bin/busybox"
cp "$HERE/init" "$rd/init"
chmod 0755 "$rd/init"

# Modules in load order (dependencies first), uncompressed.
mods="virtio_mmio virtio_pci virtio_blk virtio_net qemu_fw_cfg dm_crypt xts"
: >"$rd/etc/corral/modules"
for m in $mods; do
	if [ -n "$kroot" ]; then
		dep=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null || modprobe -d "$kroot/usr" -S "$kver" --show-depends "$m" 2>/dev/null || true)
	else
		dep=$(modprobe -S "$kver" --show-depends "$m" 2>/dev/null || true)
	fi
	echo "$dep" | awk '$1=="insmod"{print $2}' | while read -r f; do
		b=$(basename "$f")
		b=${b%.xz}
		b=${b%.zst}
		grep -qx "$b" "$rd/etc/corral/modules" && continue
		src=$kroot$f
		[ -f "$src" ] || src=$f
		case "$src" in
		*.xz) xz -dc "$src" >"$rd/lib/modules/$b" ;;
		*.zst) zstd -qdc "$src" >"$rd/lib/modules/$b" ;;
		*) cp "$src" "$rd/lib/modules/$b" ;;
		esac
		echo "$b" >>"$rd/etc/corral/modules"
	done
done

# dmsetup and its libraries (amd64): the encrypted workspace.
if [ "$ARCH" = amd64 ]; then
	dms=$(command -v dmsetup || echo /sbin/dmsetup)
	[ -x "$dms" ] || { echo "build-guest.sh: dmsetup is missing (apt-get install dmsetup)" >&2; exit 1; }
	cp "$dms" "$rd/sbin/dmsetup"
	ldd "$dms" | awk '/=>/{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
		[ -f "$lib" ] || continue
		mkdir -p "$rd$(dirname "$lib")"
		cp -L "$lib" "$rd$lib"
	done
fi

cat >"$rd/etc/passwd" <<PW
root:x:0:0:root:/root:/bin/sh
runner:x:1000:1000:runner:/work:/bin/sh
PW
cat >"$rd/etc/group" <<GR
root:x:0:
runner:x:1000:
GR

(cd "$rd" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"

# The base disk: an empty ext4 file system that every instance's qcow2
# overlay starts from (the workspace of `workspace: none`).
truncate -s 2G "$work/base.raw"
mkfs.ext4 -q -F -L corral-base -E lazy_itable_init=1,lazy_journal_init=1 "$work/base.raw"
qemu-img convert -q -O qcow2 "$work/base.raw" "$work/base.qcow2"

mkdir -p "$OUT.tmp"
cp "$kimg" "$OUT.tmp/vmlinuz"
cp "$work/initrd.img" "$work/base.qcow2" "$OUT.tmp/"
chmod 0444 "$OUT.tmp/base.qcow2"
encrypted=true
[ "$ARCH" = amd64 ] || encrypted=false
cat >"$OUT.tmp/guest.json" <<JS
{"arch": "$QARCH", "kernel_version": "$kver", "busybox_version": "$bbver", "init": "$hash", "encrypted": $encrypted}
JS
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "build-guest.sh: built $OUT in $(( $(date +%s) - start )) s" >&2
echo "$OUT"
