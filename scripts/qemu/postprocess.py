#!/usr/bin/env python3
"""Host-side processing of one run.sh output directory.

usage: postprocess.py OUTDIR [--target NAME]
For every OUTDIR/capture-NNN/ and OUTDIR/record/ holding trace.txt (+ trace.dat):
  report.txt   trace-cmd report of trace.dat (host trace-cmd; report.txt.zst when over 50 MiB)
  nmt.json     nmitrace's analysis JSON: $NMITRACE analyze TRACE --format json, or
               /work/eval/nmt TRACE when that exists
and for the whole run:
  truth.json   /work/shared/tools/label-real-nmis.py OUTDIR (captures only)
  summary.json event counts per name, kernel-mode page faults on vmalloc
               addresses (vmalloc range from the boot log on x86_32, from
               /proc/vmallocinfo on x86_64), NMIs seen, nmitrace findings
  PROVENANCE.md
"""
import collections, glob, json, os, re, shutil, subprocess, sys

LINE = re.compile(r'^\s*(?P<comm>.+)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?P<flags>\S{4,5})\s+'
                  r'(?P<ts>\d+\.\d+):\s+(?P<name>\w+):\s?(?P<payload>.*)$')
NMT = '/work/eval/nmt'
LABEL = '/work/shared/tools/label-real-nmis.py'


def read(path, default=''):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return default


def vmalloc_range(out):
    """(start, end, how) of the vmalloc area, or None."""
    for ln in read(os.path.join(out, 'dmesg.txt')).splitlines():   # x86_32 mem_init layout
        m = re.search(r'vmalloc\s*:\s*0x([0-9a-f]+)\s*-\s*0x([0-9a-f]+)', ln)
        if m:
            return int(m[1], 16), int(m[2], 16), 'boot log (virtual kernel memory layout)'
    starts = []
    for ln in read(os.path.join(out, 'vmallocinfo.txt')).splitlines():
        m = re.match(r'0x([0-9a-f]+)-0x([0-9a-f]+)', ln)
        if m:
            starts.append(int(m[1], 16))
    if starts and min(starts) >= 1 << 63:                            # x86_64: vmalloc_base is 1 GiB aligned
        base = min(starts) & ~((1 << 30) - 1)
        tb = 12800 if '5LEVEL=y' in read(os.path.join(out, 'config')) and 'la57' in read(os.path.join(out, 'cpuinfo.txt')) else 32
        return base, base + (tb << 40) - 1, 'vmallocinfo (lowest area, 1 GiB aligned, + %d TiB)' % tb
    if starts:
        return min(starts), max(int(l.split('-')[1].split()[0], 16) for l in
                                read(os.path.join(out, 'vmallocinfo.txt')).splitlines() if l.startswith('0x')), 'vmallocinfo span'
    return None


def count(trace, vr):
    by_name, nmi_ctx = collections.Counter(), 0
    pfk = {'total': 0, 'vmalloc': 0, 'vmalloc_in_nmi': 0, 'symbolic_address': 0, 'vmalloc_by_comm': collections.Counter(),
           'vmalloc_pdes': set()}
    lost = 0
    with open(trace, errors='replace') as f:
        for ln in f:
            if 'LOST' in ln and 'EVENTS' in ln:
                m = re.search(r'LOST (\d+) EVENTS', ln)
                lost += int(m[1]) if m else 0
            m = LINE.match(ln)
            if not m:
                continue
            by_name[m['name']] += 1
            inz = 'Z' in m['flags'] or 'z' in m['flags']
            nmi_ctx += inz
            if m['name'] == 'page_fault_kernel':
                pfk['total'] += 1
                a = re.search(r'address=(\S+)', m['payload'])
                if a and re.fullmatch(r'0x[0-9a-fA-F]+', a[1]):
                    addr = int(a[1], 16)
                    if vr and vr[0] <= addr <= vr[1]:
                        pfk['vmalloc'] += 1
                        pfk['vmalloc_in_nmi'] += inz
                        pfk['vmalloc_by_comm'][m['comm'].strip()] += 1
                        pfk['vmalloc_pdes'].add(hex(addr >> 22 << 22) if addr < 1 << 32 else hex(addr >> 39 << 39))
                elif a:
                    pfk['symbolic_address'] += 1
    pfk['vmalloc_by_comm'] = dict(pfk['vmalloc_by_comm'].most_common(20))
    pfk['vmalloc_pdes'] = sorted(pfk['vmalloc_pdes'])
    return {'events': sum(by_name.values()), 'by_name': dict(sorted(by_name.items())),
            'events_in_nmi_context': nmi_ctx, 'lost_events': lost, 'page_fault_kernel': pfk}


def nmt(trace, d):
    # $NMITRACE: an nmitrace binary (`nmitrace analyze TRACE --format json`);
    # otherwise /work/eval/nmt (this VM's wrapper around bench_analyze --json).
    binary = os.environ.get('NMITRACE')
    if binary:
        cmd = [binary, 'analyze', trace, '--format', 'json']
    elif os.access(NMT, os.X_OK):
        cmd = [NMT, trace]
    else:
        return None
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1) or not r.stdout.strip():
        return {'error': r.stderr.strip()[-500:]}
    open(os.path.join(d, 'nmt.json'), 'w').write(r.stdout)
    try:
        j = json.loads(r.stdout)
        j = j[0] if isinstance(j, list) else j
        return {'summary': j.get('summary'), 'nmis': j.get('nmis', {}).get('instances'),
                'model': j.get('input', {}).get('model'), 'unparsed_lines': j.get('parse', {}).get('unparsed_lines')}
    except ValueError as e:
        return {'error': str(e)}


def main():
    out = os.path.abspath(sys.argv[1])
    target = sys.argv[sys.argv.index('--target') + 1] if '--target' in sys.argv else os.path.basename(out)
    vr = vmalloc_range(out)
    dirs = sorted(glob.glob(os.path.join(out, 'capture-*'))) + ([os.path.join(out, 'record')] if os.path.isdir(os.path.join(out, 'record')) else [])
    summ = {'target': target, 'vmalloc_range': [hex(vr[0]), hex(vr[1]), vr[2]] if vr else None, 'traces': {}}
    tot = collections.Counter()
    for d in dirs:
        t = os.path.join(d, 'trace.txt')
        if not os.path.exists(t):
            continue
        s = {'trace.txt_bytes': os.path.getsize(t)}
        dat = os.path.join(d, 'trace.dat')
        if os.path.exists(dat) and os.path.getsize(dat) > 0:
            s['trace.dat_bytes'] = os.path.getsize(dat)
            with open(os.path.join(d, 'report.txt'), 'w') as f:
                r = subprocess.run(['trace-cmd', 'report', '-i', dat], stdout=f, stderr=subprocess.PIPE, text=True)
            s['report_rc'] = r.returncode
            if r.returncode:
                s['report_error'] = r.stderr.strip()[-300:]
            rep = os.path.join(d, 'report.txt')
            if os.path.getsize(rep) > 50 << 20 and shutil.which('zstd'):   # derived and big: keep it compressed
                subprocess.run(['nice', '-n', '19', 'zstd', '-q', '-f', '--rm', rep, '-o', rep + '.zst'])
        s.update(count(t, vr))
        s['nmitrace'] = nmt(dat if os.path.exists(dat) and os.path.getsize(dat) else t, d)
        tot.update(s['by_name'])
        summ['traces'][os.path.basename(d)] = s
    summ['total_by_name'] = dict(sorted(tot.items()))
    caps = [d for d in dirs if os.path.basename(d).startswith('capture-')]
    if caps and os.path.exists(LABEL):
        r = subprocess.run([sys.executable, LABEL, out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            open(os.path.join(out, 'truth.json'), 'w').write(r.stdout)
            truth = json.loads(r.stdout)
            allv = [n for ns in truth.values() for n in ns]
            summ['truth'] = {'captures': len(truth), 'nmis': len(allv),
                             'captures_with_nmi': sum(1 for ns in truth.values() if ns),
                             'in_window': dict(collections.Counter(str(n['in_window']) for n in allv)),
                             'with_pid': sum(1 for n in allv if n['pid'] is not None),
                             'with_cr3': sum(1 for n in allv if n['cr3'] is not None),
                             'faults_in_nmi': sum(len(n['faults_in_nmi']) for n in allv),
                             'too_long': sum(1 for n in allv if n['too_long'])}
            # label-real-nmis.py matches "CPU: N UID: U PID: P Comm: C" (Linux >= 6.10); older kernels print
            # "CPU: N PID: P Comm: C", so pid/comm stay null and the CR3 vote cannot run. Label again with
            # the UID field optional (a patched temporary copy; the shared tool is not changed).
            if allv and all(n['pid'] is None for n in allv):
                src = open(LABEL).read()
                fixed = src.replace(r"r'CPU: \d+ UID: \d+ PID: (\d+) Comm: (\S+)'", r"r'CPU: \d+ (?:UID: \d+ )?PID: (\d+) Comm: (\S+)'")
                if fixed != src:
                    tmp = os.path.join(out, '.label-uid-optional.py')
                    open(tmp, 'w').write(fixed)
                    r2 = subprocess.run([sys.executable, tmp, out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    os.unlink(tmp)
                    if r2.returncode == 0:
                        open(os.path.join(out, 'truth-uid-optional.json'), 'w').write(r2.stdout)
                        t2 = [n for ns in json.loads(r2.stdout).values() for n in ns]
                        summ['truth_uid_optional'] = {
                            'note': 'label-real-nmis.py with "UID: N " optional in the CPU: line (pre-6.10 format)',
                            'nmis': len(t2), 'with_pid': sum(1 for n in t2 if n['pid'] is not None),
                            'in_window': dict(collections.Counter(str(n['in_window']) for n in t2))}
        else:
            summ['truth'] = {'error': r.stderr.strip()[-500:]}
    counts = read(os.path.join(out, 'nmi-counts.json'))
    if counts:
        try:
            summ['nmi_counts_proc_interrupts'] = json.loads(counts)
        except ValueError:
            pass
    json.dump(summ, open(os.path.join(out, 'summary.json'), 'w'), indent=1)
    provenance(out, target, summ)
    short = {k: v for k, v in summ.items() if k != 'traces'}
    short['traces'] = {k: {'events': v['events'], 'nmi_handler': v['by_name'].get('nmi_handler', 0),
                           'pf_kernel_vmalloc': v['page_fault_kernel']['vmalloc']} for k, v in summ['traces'].items()}
    print(json.dumps(short, indent=1))


def provenance(out, target, summ):
    conf = read(os.path.join(out, 'nmt.conf'))
    pkg = read(os.path.join(out, 'kernel-package.txt')).strip()
    started = read(os.path.join(out, '.started')).strip()
    mode = re.search(r'NMT_MODE=(\S+)', conf)
    lines = ['# Provenance: %s' % target, '',
             '- recorded: %s (UTC, QEMU start) on host `%s`' % (started, os.uname().nodename),
             '- guest kernel: `%s`' % read(os.path.join(out, 'uname.txt')).strip(),
             '- kernel origin:', ''] + ['      ' + l for l in pkg.splitlines()] + [
             '', '- kernel config: `config` (as built/packaged); `config-proc.txt` is /proc/config.gz when the kernel has it',
             '- System.map: `System.map`; the running kernel\'s symbols (KASLR): `kallsyms.txt`',
             '- QEMU: `%s`, TCG, see `cmdline.txt` for the kernel command line' %
             subprocess.run(['qemu-system-x86_64', '--version'], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0],
             '- harness: /work/main/scripts/qemu (run.sh %s), guest settings `nmt.conf`:' % target, '', '```', conf.strip(), '```', '']
    if mode and mode[1] == 'capture':
        lines += ['- workload: pingpong (guest/pingpong.c, gcc -static) pinned on each CPU; NMIs from the trigger in nmt.conf '
                  '(hungtask = a writer in D state on a frozen loop-mounted ext4, kernel.hung_task_all_cpu_backtrace=1, '
                  'hung_task_timeout_secs=1, check interval 1 s; sysrq = `echo l > /proc/sysrq-trigger` every NMT_SYSRQ_PERIOD s)',
                  '- each capture-NNN: overwrite ring buffer of NMT_BUFFER_KB per CPU, tracing stopped NMT_AFTER_MS after '
                  '/proc/interrupts showed a new NMI (guest/nmiwait.c); trace.txt = tracefs `trace`, trace.dat = `trace-cmd extract` '
                  'in the guest, report.txt = host `trace-cmd report`', '- truth.json: /work/shared/tools/label-real-nmis.py']
    else:
        lines += ['- workload: `workload.sh` (run in the guest with tracing on); kprobe events: `kprobes.txt` (also '
                  '`kprobe_events.txt` as the guest accepted them)',
                  '- record/: one recording, NMT_BUFFER_KB per CPU, overwrite off (the ring buffer stops when full: '
                  'see buffer-stats.txt for overruns/dropped)']
    lines += ['- other files: dmesg.txt (end of run), dmesg-boot.txt, console.log (serial), interrupts*.txt, uname.txt, '
              'vmallocinfo.txt, meminfo.txt, cpuinfo.txt, guest.log, summary.json (event counts etc.), nmt.json per trace '
              '(/work/eval/nmt)', '']
    if summ.get('vmalloc_range'):
        lines += ['- vmalloc range used for counting faults: %s - %s (%s)' % tuple(summ['vmalloc_range']), '']
    open(os.path.join(out, 'PROVENANCE.md'), 'w').write('\n'.join(lines))


if __name__ == '__main__':
    main()
