# Linux 5.4.59 (vanilla), x86_32 non-PAE (2-level paging, HIGHMEM4G), built
# from source with the host gcc. Before 5.8 the vmalloc area's 4 MiB
# page-directory entries reach other mms lazily (vmalloc_fault), so kernel
# threads running on a borrowed older mm, and insmod, take real
# exceptions:page_fault_kernel faults on vmalloc addresses.
ARCH=i386
KERNEL_KIND=source
SRC_REPO=BoKyoungHan/linux-5.4.59-vanilla            # GitHub mirror: bring it with the fetch tool
SRC_GIT=/work/.mirror/BoKyoungHan+linux-5.4.59-vanilla/repo
SRC_REV=HEAD:linux-5.4.59                             # the tree is in a subdirectory
SRC_NAME=linux-5.4.59
KARCH=i386
BASE_CONFIG=tinyconfig                                # + configs/linux-5.4-i386.config
PATCH_DIR=""                                          # none needed with gcc 12.2 / binutils 2.40
MODULES=""                                            # all built in; test_*.ko are loaded by the workload
MODE=record
TRIGGER=sysrq        # no kernel.hung_task_all_cpu_backtrace before 5.8; sysrq-l sends the same NMI IPI
SYSRQ_PERIOD=2
EVENTS=$RECORD_EVENTS
BUFFER_KB=65536      # per CPU, overwrite off (48 MiB was 99.8% full on one CPU)
MEM=1536             # tmpfs holds the ~450 MB trace.txt
APPEND_EXTRA="vmalloc=512M"   # 512 MiB vmalloc area (128 PDEs of 4 MiB): lowmem ~490 MiB, the rest highmem
KPROBES=kprobes/linux-5.4-x86_32.kprobes
WORKLOAD=workloads/vmalloc-growth.sh
TIMEOUT=7200
