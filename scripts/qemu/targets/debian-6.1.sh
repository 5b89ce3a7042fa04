# Debian 12's 6.1 kernel, x86_64 (4-level paging, KASLR on). No lazy vmalloc
# faults here (eager sync since 5.8); the target is real NMIs: flight-recorder
# captures around hung-task all-CPU-backtrace NMIs, pingpong per CPU.
ARCH=x86_64
KERNEL_KIND=debian
DEB_PKG_PATTERN='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$'   # newest match is used
MODULES="loop,crc32c_generic,ext4,virtio_blk,virtio_pci"  # =m in Debian's config; dependencies are added (ext4 needs crc32c)
MODE=capture
TRIGGER=hungtask
EVENTS=$CAPTURE_EVENTS
COUNT=25 BUFFER_KB=1024 AFTER_MS=3
KPROBES=kprobes/debian-6.1-x86_64.kprobes   # vmalloc allocations (kretprobe)
