#!/usr/bin/env python3
"""Build the guest initramfs (a gzip'd newc cpio) for one QEMU target.

usage: mkinitramfs.py --arch x86_64|i386 --sysroot DIR --conf FILE [--modroot DIR --modules m1,m2]
                      [--workload FILE] [--kprobes FILE] -o OUT.cpio.gz

--sysroot  where busybox and trace-cmd and their shared libraries come from:
           / for x86_64 (this Debian host), or a dir with Debian's i386 debs
           extracted into it (dpkg-deb -x) for i386.
--modroot  a tree holding lib/modules/VERSION/ with modules.dep (depmod -b);
           --modules names modules (without .ko) to load at boot: their
           dependencies are added and the load order is written to
           /etc/nmt/modules (`name.ko args` lines; args with ':' -> '=' e.g.
           brd:rd_size=1024). .ko.xz/.ko.zst are decompressed on the host.
Static helpers (guest/pingpong.c, guest/nmiwait.c) are built here with
gcc -static (-m32 for i386).
"""
import argparse, gzip, io, lzma, os, shutil, stat, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIRS = {'x86_64': ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64', 'lib'],
           'i386': ['lib/i386-linux-gnu', 'usr/lib/i386-linux-gnu', 'lib']}


def needed(path):
    out = subprocess.run(['readelf', '-d', path], stdout=subprocess.PIPE, text=True).stdout
    return [l.split('[')[1].split(']')[0] for l in out.splitlines() if '(NEEDED)' in l]


def interp(path):
    out = subprocess.run(['readelf', '-l', path], stdout=subprocess.PIPE, text=True).stdout
    for l in out.splitlines():
        if 'program interpreter' in l:
            return l.split(':', 1)[1].strip(' ]')
    return None


def find_lib(sysroot, arch, name):
    for d in LIBDIRS[arch]:
        p = os.path.join(sysroot, d, name)
        if os.path.exists(p):
            return p, os.path.join(d, name)
    raise SystemExit('mkinitramfs: %s not found under %s' % (name, sysroot))


def copy(src, root, rel, mode=None):
    dst = os.path.join(root, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(os.path.realpath(src), dst)
    os.chmod(dst, mode if mode is not None else (os.stat(os.path.realpath(src)).st_mode & 0o777))


def add_elf(sysroot, arch, root, src, rel):
    """Copy an ELF program and (recursively) its shared libraries and interpreter."""
    copy(src, root, rel, 0o755)
    todo, seen = [src], set()
    while todo:
        p = todo.pop()
        for lib in needed(p):
            if lib in seen:
                continue
            seen.add(lib)
            full, lrel = find_lib(sysroot, arch, lib)
            copy(full, root, lrel, 0o755)
            todo.append(full)
    ip = interp(src)
    if ip:
        copy(os.path.join(sysroot, ip.lstrip('/')), root, ip.lstrip('/'), 0o755)
    return sorted(seen)


def modules(modroot, names):
    vers = os.listdir(os.path.join(modroot, 'lib/modules'))
    base = os.path.join(modroot, 'lib/modules', vers[0])
    dep = {}
    with open(os.path.join(base, 'modules.dep')) as f:
        for l in f:
            k, v = l.split(':', 1)
            dep[os.path.basename(k).split('.ko')[0].replace('-', '_')] = (k, v.split())
    order = []

    def visit(n):
        n = n.replace('-', '_')
        if n not in dep:
            raise SystemExit('mkinitramfs: module %s not in %s/modules.dep' % (n, base))
        for d in dep[n][1]:
            visit(os.path.basename(d).split('.ko')[0])
        if n not in order:
            order.append(n)
    for n in names:
        visit(n.split(':')[0])
    args = {n.split(':')[0].replace('-', '_'): n.split(':', 1)[1] if ':' in n else '' for n in names}
    return base, [(n, dep[n][0], args.get(n, '')) for n in order]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', required=True, choices=['x86_64', 'i386'])
    ap.add_argument('--sysroot', default='/')
    ap.add_argument('--conf', required=True)
    ap.add_argument('--modroot')
    ap.add_argument('--modules', default='')
    ap.add_argument('--workload')
    ap.add_argument('--kprobes')
    ap.add_argument('-o', required=True)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix='nmt-initramfs-')
    try:
        for d in ('bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'tmp', 'mnt', 'etc/nmt', 'lib/modules',
                  'sys/kernel/tracing', 'root'):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        bb = os.path.join(a.sysroot, 'bin/busybox')
        copy(bb, root, 'bin/busybox', 0o755)
        # the applet list of the host's busybox-static (same Debian version and config as the i386 one)
        applets = subprocess.run(['busybox', '--list'], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
        for ap_ in applets:
            if ap_ != 'busybox':
                os.symlink('busybox', os.path.join(root, 'bin', ap_))
        libs = add_elf(a.sysroot, a.arch, root, os.path.join(a.sysroot, 'usr/bin/trace-cmd'), 'usr/bin/trace-cmd')
        m32 = ['-m32'] if a.arch == 'i386' else []
        for prog in ('pingpong', 'nmiwait'):
            subprocess.run(['gcc', *m32, '-O2', '-static', '-o', os.path.join(root, 'bin', prog),
                            os.path.join(HERE, 'guest', prog + '.c')], check=True)
        copy(os.path.join(HERE, 'guest/init'), root, 'init', 0o755)
        copy(a.conf, root, 'etc/nmt/nmt.conf', 0o644)
        if a.workload:
            copy(a.workload, root, 'etc/nmt/workload.sh', 0o755)
        if a.kprobes:
            copy(a.kprobes, root, 'etc/nmt/kprobes', 0o644)
        mods = []
        if a.modroot and a.modules:
            base, mods = modules(a.modroot, [m for m in a.modules.split(',') if m])
            for n, rel, args in mods:
                src, dst = os.path.join(base, rel), os.path.join(root, 'lib/modules', n + '.ko')
                data = open(src, 'rb').read()
                if rel.endswith('.xz'):
                    data = lzma.decompress(data)
                elif rel.endswith('.zst'):
                    data = subprocess.run(['zstd', '-dc', src], stdout=subprocess.PIPE, check=True).stdout
                open(dst, 'wb').write(data)
        with open(os.path.join(root, 'etc/nmt/modules'), 'w') as f:
            f.write(''.join('%s.ko %s\n' % (n, args.replace(':', ' ')) for n, _, args in mods))
        # extra .ko files shipped for the workload (loaded by workload.sh)
        if a.modroot:
            for dp, _, fs in os.walk(os.path.join(a.modroot, 'lib/modules')):
                for fn in fs:
                    if fn.startswith(('test_', 'test-')) and fn.endswith('.ko'):
                        shutil.copyfile(os.path.join(dp, fn), os.path.join(root, 'lib/modules', fn))
        cpio = subprocess.run('cd %s && find . | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet' % root,
                              shell=True, stdout=subprocess.PIPE, check=True).stdout
        with gzip.open(a.o, 'wb', compresslevel=6) as f:
            f.write(cpio)
        print('mkinitramfs: %s (%d KiB): busybox, trace-cmd + %s, modules %s' % (
            a.o, os.path.getsize(a.o) // 1024, ' '.join(libs), ' '.join(n for n, _, _ in mods) or '-'), file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
