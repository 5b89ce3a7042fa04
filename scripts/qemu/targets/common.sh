# Defaults shared by every target (sourced by run.sh before the target file).
# The events of /work/shared/tools/capture-real-nmis.py:
CAPTURE_EVENTS="sched/sched_switch sched/sched_wakeup sched/sched_process_fork sched/sched_process_exec
 sched/sched_process_exit sched/sched_process_free task/task_newtask exceptions nmi tlb percpu vmalloc
 printk/console irq_vectors/local_timer_entry irq_vectors/local_timer_exit irq_vectors/reschedule_entry
 irq_vectors/reschedule_exit irq_vectors/call_function_single_entry irq_vectors/call_function_single_exit
 irq_vectors/irq_work_entry irq_vectors/irq_work_exit"
# Long recordings: the same plus wakeup_new, every irq_vectors event and module load/free.
RECORD_EVENTS="sched/sched_switch sched/sched_wakeup sched/sched_wakeup_new sched/sched_process_fork
 sched/sched_process_exec sched/sched_process_exit sched/sched_process_free task/task_newtask exceptions nmi
 tlb percpu vmalloc printk/console irq_vectors module/module_load module/module_free"
# TCG: thread=single runs all vCPUs round-robin in one host thread (slower, but
# MTTCG hung in text_poke_bp's IPI wait on the 6.1 guest: see README)
ACCEL="tcg,thread=single"
SMP=2                 # -smp: the all-CPU backtrace NMI IPI needs a second CPU
MEM=2048              # MiB
TIMEOUT=3600          # host-side limit for one QEMU run, seconds
APPEND_EXTRA=""
KPROBES=""            # file of kprobe_events lines (record mode)
WORKLOAD=""           # guest shell script run in record mode
COUNT=25 BUFFER_KB=1024 AFTER_MS=3 NMI_TIMEOUT=30 SYSRQ_PERIOD=1
