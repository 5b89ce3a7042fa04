#!/bin/sh
# Record-mode workload (runs in the guest with tracing on; $NMT_OUT = output dir).
# Long-lived user processes start first; then the vmalloc area grows into new
# page-directory entries while they keep running, so lazy vmalloc syncs
# (kernel-mode faults on vmalloc addresses) happen in their older mms:
#  - test_vmalloc.ko's kthreads run on whatever mm the CPU last had loaded
#    (lazy TLB) and write into fresh vmalloc memory (arrays of pointers,
#    per-cpu chunks memset by pcpu_alloc);
#  - insmod copies each module image into vmalloc'd memory in its own mm, and
#    modules live in the vmalloc area on x86_32.
M=/lib/modules
log() { echo "$(cut -d' ' -f1 /proc/uptime) $*"; }
ncpu=$(grep -c ^processor /proc/cpuinfo)
log "start: long-lived processes"
for i in 1 2; do sh -c 'while :; do sleep 1; done' & done
i=0; while [ $i -lt "$ncpu" ]; do taskset -c $i /bin/pingpong & i=$((i + 1)); done
sleep 3
cat /proc/vmallocinfo > $NMT_OUT/vmallocinfo-before.txt
grep -E '^(VmallocUsed|VmallocTotal)' /proc/meminfo
# small allocations, per-cpu chunks, aligned allocations (ids 1,8,16,32,64,128)
log "test_vmalloc round 1"
insmod $M/test_vmalloc.ko test_loop_count=300 run_test_mask=249
# long_busy_list_alloc_test: 15000 one-page areas (~120 MiB with guard pages)
# held at once, i.e. ~30 new page-directory entries
log "test_vmalloc round 2 (long busy list)"
insmod $M/test_vmalloc.ko test_loop_count=200 run_test_mask=4 single_cpu_test=1
log "other modules"
for m in test_printf test_bitmap test_sort test-string_helpers; do   # test-string_helpers fails its init on purpose (EINVAL)
    insmod $M/$m.ko && rmmod $m
done
log "loop device + ext2"
dd if=/dev/zero of=/tmp/l.img bs=1M count=8 2>/dev/null
L=$(losetup -f); losetup $L /tmp/l.img && mke2fs -q $L && mkdir -p /mnt/l && mount -t ext2 $L /mnt/l \
    && cp /bin/busybox /mnt/l/ && sync && umount /mnt/l; losetup -d $L
log "test_vmalloc round 3 (everything but full_fit)"
insmod $M/test_vmalloc.ko test_loop_count=100 run_test_mask=253
sleep 3
cat /proc/vmallocinfo > $NMT_OUT/vmallocinfo-after.txt
grep -E '^(VmallocUsed|VmallocTotal)' /proc/meminfo
log "done"
