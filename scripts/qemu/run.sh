#!/bin/bash
# Record real traces on another kernel in QEMU (TCG). One command per kernel:
#   scripts/qemu/run.sh TARGET OUTDIR [options]
# TARGET is a file in scripts/qemu/targets/ (debian-6.1, linux-5.4-i386, ...).
# Steps: get or build the kernel -> build the initramfs -> boot QEMU (nice -n 19,
# -accel tcg) -> unpack the guest's tar from the output disk into OUTDIR ->
# postprocess.py (trace-cmd report, event counts, nmitrace JSON, truth.json for
# captures, PROVENANCE.md).
# options (override the target file):
#   --count N --buffer-kb KB --after-ms MS --mode capture|record
#   --trigger hungtask|sysrq|both|none --mem MiB --smp N --timeout S
#   --accel tcg,thread=single|multi  --append 'KERNEL ARGS' (added to the target's)
#   --work DIR    kernels, builds, images (default /work/qemu-work)
#   --build-only  stop after the kernel and initramfs
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
[ $# -ge 2 ] || usage
TARGET=$1; OUT=$(realpath -m "$2"); shift 2
WORK=/work/qemu-work BUILD_ONLY=0
. "$HERE/targets/common.sh"
[ -e "$HERE/targets/$TARGET.sh" ] || { echo "run.sh: no target $TARGET (see $HERE/targets)" >&2; exit 2; }
. "$HERE/targets/$TARGET.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=$2; shift ;; --buffer-kb) BUFFER_KB=$2; shift ;; --after-ms) AFTER_MS=$2; shift ;;
        --mode) MODE=$2; shift ;; --trigger) TRIGGER=$2; shift ;; --mem) MEM=$2; shift ;;
        --smp) SMP=$2; shift ;; --accel) ACCEL=$2; shift ;; --append) APPEND_EXTRA="$APPEND_EXTRA $2"; shift ;; --timeout) TIMEOUT=$2; shift ;; --work) WORK=$(realpath -m "$2"); shift ;;
        --build-only) BUILD_ONLY=1 ;; *) usage ;;
    esac; shift
done
KDIR=$WORK/kernels/$TARGET
mkdir -p "$KDIR" "$OUT"

# 1. the kernel: bzImage, config, System.map, modroot/ in $KDIR
case "$KERNEL_KIND" in
debian)
    "$HERE/get-debian-kernel.sh" "$DEB_PKG_PATTERN" "$KDIR" ;;
source)
    SRC=$WORK/src/$SRC_NAME
    if [ ! -e "$SRC/Makefile" ]; then
        [ -d "$SRC_GIT" ] || { echo "run.sh: no $SRC_GIT: fetch the GitHub mirror $SRC_REPO first (see README)" >&2; exit 1; }
        "$HERE/git-export.py" "$SRC_GIT" "$SRC_REV" "$SRC"
    fi
    B=$WORK/build/$TARGET
    if [ ! -e "$B/arch/x86/boot/bzImage" ] || [ "$HERE/configs/$TARGET.config" -nt "$B/arch/x86/boot/bzImage" ]; then
        "$HERE/build-kernel.sh" "$SRC" "$B" "$KARCH" "$BASE_CONFIG" "$HERE/configs/$TARGET.config" \
            ${PATCH_DIR:+"$HERE/$PATCH_DIR"}
    fi
    cp "$B/arch/x86/boot/bzImage" "$B/System.map" "$KDIR/"; cp "$B/.config" "$KDIR/config"
    rm -rf "$KDIR/modroot"; cp -a "$B/modroot" "$KDIR/modroot"
    { echo "source: $SRC_REPO $SRC_REV (snapshot commit $(git -C "$SRC_GIT" rev-parse "${SRC_REV%%:*}"))"
      echo "kernel release: $(cat "$B/include/config/kernel.release")"
      echo "built: $KARCH $BASE_CONFIG + configs/$TARGET.config${PATCH_DIR:+, patches in $PATCH_DIR/}"
      echo "compiler: $(gcc --version | head -1); $(ld --version | head -1)"; } > "$KDIR/package.txt" ;;
esac

# 2. the initramfs
CONF=$KDIR/nmt.conf
{ echo "NMT_MODE=$MODE"; echo "NMT_COUNT=$COUNT"; echo "NMT_BUFFER_KB=$BUFFER_KB"
  echo "NMT_AFTER_MS=$AFTER_MS"; echo "NMT_TIMEOUT=$NMI_TIMEOUT"; echo "NMT_TRIGGER=$TRIGGER"
  echo "NMT_SYSRQ_PERIOD=$SYSRQ_PERIOD"; echo "NMT_EVENTS='$(echo $EVENTS)'"; } > "$CONF"
SYSROOT=/
if [ "$ARCH" = i386 ]; then
    SYSROOT=$WORK/sysroot-i386
    if [ ! -x "$SYSROOT/usr/bin/trace-cmd" ]; then
        mkdir -p "$WORK/dl/i386" "$SYSROOT"
        dpkg --print-foreign-architectures | grep -qx i386 || { dpkg --add-architecture i386; apt-get update -q; }
        (cd "$WORK/dl/i386" && apt-get download busybox-static:i386 trace-cmd:i386 libtraceevent1:i386 \
            libtracefs1:i386 libzstd1:i386 libc6:i386 2>&1 | grep -v unsandboxed || true)
        for d in "$WORK"/dl/i386/*.deb; do dpkg-deb -x "$d" "$SYSROOT"; done
    fi
fi
"$HERE/mkinitramfs.py" --arch "$ARCH" --sysroot "$SYSROOT" --conf "$CONF" --modroot "$KDIR/modroot" \
    --modules "$MODULES" ${WORKLOAD:+--workload "$HERE/$WORKLOAD"} ${KPROBES:+--kprobes "$HERE/$KPROBES"} \
    -o "$KDIR/initramfs.cpio.gz"
[ "$BUILD_ONLY" = 1 ] && exit 0

# 3. boot: the guest writes a tar of its /tmp/out to the raw disk and powers off
IMG=$KDIR/out.img
rm -f "$IMG"; truncate -s 4G "$IMG"
QEMU=qemu-system-x86_64; [ "$ARCH" = i386 ] && QEMU=qemu-system-i386
date -u +%Y-%m-%dT%H:%M:%SZ > "$OUT/.started"
echo "run.sh: booting $TARGET (console log: $OUT/console.log)"
set +e
nice -n 19 timeout "$TIMEOUT" $QEMU -accel "$ACCEL" -smp "$SMP" -m "$MEM" ${QEMU_CPU:+-cpu $QEMU_CPU} \
    -kernel "$KDIR/bzImage" -initrd "$KDIR/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=-1 loglevel=7 $APPEND_EXTRA" \
    -drive file="$IMG",format=raw,if=virtio -nographic -no-reboot -monitor none -serial stdio \
    < /dev/null > "$OUT/console.log" 2>&1
rc=$?
set -e
[ $rc = 0 ] || echo "run.sh: QEMU exited with $rc (124 = timeout)" >&2

# 4. results
tar -xf "$IMG" -C "$OUT" || { echo "run.sh: no results on the output disk" >&2; exit 1; }
rm -f "$IMG"
cp "$KDIR/config" "$OUT/config"; cp "$KDIR/System.map" "$OUT/System.map"; cp "$KDIR/package.txt" "$OUT/kernel-package.txt"
cp "$CONF" "$OUT/nmt.conf"
[ -n "$WORKLOAD" ] && cp "$HERE/$WORKLOAD" "$OUT/workload.sh"
[ -n "$KPROBES" ] && cp "$HERE/$KPROBES" "$OUT/kprobes.txt"
"$HERE/postprocess.py" "$OUT" --target "$TARGET"
echo "run.sh: results in $OUT"
