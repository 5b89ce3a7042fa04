# Linux 5.4.59 (vanilla), x86_32 PAE (3-level paging, HIGHMEM64G, PTI built in), built
# from source with the host gcc. Run it twice: with `--append nopti` the kernel
# PMD is shared by all pgds and no lazy vmalloc sync should appear; with PTI
# on (default on QEMU CPUs, which report Meltdown) each pgd has its own
# kernel PMDs and vmalloc faults come back (2 MiB PMD entries).
ARCH=i386
KERNEL_KIND=source
SRC_REPO=BoKyoungHan/linux-5.4.59-vanilla            # GitHub mirror: bring it with the fetch tool
SRC_GIT=/work/.mirror/BoKyoungHan+linux-5.4.59-vanilla/repo
SRC_REV=HEAD:linux-5.4.59                             # the tree is in a subdirectory
SRC_NAME=linux-5.4.59
KARCH=i386
BASE_CONFIG=tinyconfig                                # + configs/linux-5.4-i386-pae.config
PATCH_DIR=""                                          # none expected (no objtool on x86_32, as non-PAE); not built yet
MODULES=""                                            # all built in; test_*.ko are loaded by the workload
MODE=record
TRIGGER=sysrq        # no kernel.hung_task_all_cpu_backtrace before 5.8; sysrq-l sends the same NMI IPI
SYSRQ_PERIOD=2
EVENTS=$RECORD_EVENTS
BUFFER_KB=65536      # per CPU, overwrite off (48 MiB was 99.8% full on one CPU)
MEM=1536             # tmpfs holds the ~450 MB trace.txt
APPEND_EXTRA="vmalloc=512M"   # 512 MiB vmalloc area (256 PMD entries of 2 MiB): lowmem ~490 MiB, the rest highmem
KPROBES=kprobes/linux-5.4-x86_32-pae.kprobes
WORKLOAD=workloads/vmalloc-growth.sh
TIMEOUT=7200
