#!/bin/bash
# Build a kernel from source for a QEMU target.
# usage: build-kernel.sh SRC_DIR BUILD_DIR ARCH BASE_CONFIG FRAGMENT [PATCH_DIR]
#   SRC_DIR      kernel tree (left untouched except for the patches in PATCH_DIR)
#   BUILD_DIR    O= output dir; gets arch/x86/boot/bzImage, System.map, .config,
#                modules installed under BUILD_DIR/modroot/lib/modules/VERSION
#   ARCH         i386 or x86_64
#   BASE_CONFIG  a make target (tinyconfig, defconfig, ...)
#   FRAGMENT     config fragment merged over it (configs/*.config)
#   PATCH_DIR    *.patch applied once (with -p1, in order) to SRC_DIR: build fixes
# Every kernel build runs under `nice -n 19` with -j$(nproc). Run one at a time.
set -euo pipefail
SRC=$(realpath "$1"); OUT=$(realpath -m "$2"); ARCH=$3; BASE=$4; FRAG=$(realpath "$5"); PATCHES=${6:-}
mkdir -p "$OUT"
if [ -n "$PATCHES" ] && [ -d "$PATCHES" ]; then
    for p in "$PATCHES"/*.patch; do
        [ -e "$p" ] || continue
        stamp="$SRC/.applied-$(basename "$p")"
        [ -e "$stamp" ] && continue
        echo "build-kernel: applying $(basename "$p")"
        patch -d "$SRC" -p1 --forward < "$p"
        touch "$stamp"
    done
fi
MK=(nice -n 19 make -C "$SRC" O="$OUT" ARCH="$ARCH" -j"$(nproc)")
if [ ! -e "$OUT/.config" ] || [ "$FRAG" -nt "$OUT/.config" ]; then
    "${MK[@]}" "$BASE"
    (cd "$OUT" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "$FRAG")
    "${MK[@]}" olddefconfig
    # report fragment settings that Kconfig did not keep (unmet dependencies)
    bad=0
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*) want=$line ;;
            "# CONFIG_"*" is not set") want=$line ;;
            *) continue ;;
        esac
        sym=$(echo "$want" | grep -o 'CONFIG_[A-Za-z0-9_]*')
        have=$(grep -E "^($sym=|# $sym is not set)" "$OUT/.config" || true)
        if [ "$have" != "$want" ] && ! { [ -z "$have" ] && [[ "$want" == "# "* ]]; }; then
            echo "build-kernel: WARNING: wanted '$want', got '${have:-<absent>}'" >&2; bad=1
        fi
    done < "$FRAG"
    [ $bad = 0 ] || echo "build-kernel: some fragment settings were not kept (see above)" >&2
fi
"${MK[@]}" bzImage modules 2>&1 | tee "$OUT/build.log" | grep -E "error|Error|warning: (unused|implicit)" | head -50 || true
[ "${PIPESTATUS[0]}" = 0 ] || { echo "build-kernel: make failed, see $OUT/build.log" >&2; exit 1; }
rm -rf "$OUT/modroot"
"${MK[@]}" modules_install INSTALL_MOD_PATH="$OUT/modroot" INSTALL_MOD_STRIP=1 >/dev/null
echo "build-kernel: $(cat "$OUT/include/config/kernel.release") built in $OUT"
