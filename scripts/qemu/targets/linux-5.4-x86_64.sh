# Linux 5.4.59 (vanilla), x86_64, 4-level paging, KASLR off, PTI built in,
# built from source with the host gcc. Before 5.8 a vmalloc PGD entry (512 GiB)
# reaches other mms lazily; bottom-up vmalloc growth stays in the first entry,
# but per-cpu chunks are carved top-down at VMALLOC_END (another PGD entry):
# test_vmalloc's pcpu_alloc_test opens it while older processes run.
ARCH=x86_64
KERNEL_KIND=source
SRC_REPO=BoKyoungHan/linux-5.4.59-vanilla            # GitHub mirror: bring it with the fetch tool
SRC_GIT=/work/.mirror/BoKyoungHan+linux-5.4.59-vanilla/repo
SRC_REV=HEAD:linux-5.4.59
SRC_NAME=linux-5.4.59
KARCH=x86_64
BASE_CONFIG=tinyconfig                                # + configs/linux-5.4-x86_64.config
PATCH_DIR=patches/linux-5.4                          # objtool: gcc 12 (libsubcmd xrealloc), binutils 2.40 (empty .o without .symtab)
MODULES=""
MODE=record
TRIGGER=sysrq
SYSRQ_PERIOD=2
EVENTS=$RECORD_EVENTS
BUFFER_KB=65536
MEM=1536
KPROBES=kprobes/linux-5.4-x86_64.kprobes
WORKLOAD=workloads/vmalloc-growth.sh
TIMEOUT=7200
