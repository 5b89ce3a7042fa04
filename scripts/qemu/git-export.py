#!/usr/bin/env python3
"""Export a tree from a bare git dir, skipping blobs the snapshot lacks.

The `fetch` snapshots omit files of 4 MiB and more (in the kernel: a few
generated AMD GPU register headers), so `git archive` aborts on them.
usage: git-export.py GIT_DIR REV[:SUBDIR] DEST
Writes the tree to DEST (keeping modes and symlinks) and lists the skipped
paths on stderr and in DEST/.git-export-missing.
"""
import os, subprocess, sys

gitdir, rev, dest = sys.argv[1:4]
tree = subprocess.run(['git', '-C', gitdir, 'ls-tree', '-r', '-z', rev], check=True,
                      stdout=subprocess.PIPE).stdout.split(b'\0')
entries = []
for e in tree:
    if not e:
        continue
    meta, path = e.split(b'\t', 1)
    mode, typ, sha = meta.split()
    if typ == b'blob':
        entries.append((mode.decode(), sha.decode(), os.fsdecode(path)))
cat = subprocess.Popen(['git', '-C', gitdir, 'cat-file', '--batch'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
missing = []
for mode, sha, path in entries:
    cat.stdin.write(sha.encode() + b'\n')
    cat.stdin.flush()
    head = cat.stdout.readline().split()
    if head[1] == b'missing':
        missing.append(path)
        continue
    data = cat.stdout.read(int(head[2]))
    cat.stdout.read(1)
    out = os.path.join(dest, path)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if mode == '120000':
        if os.path.lexists(out):
            os.unlink(out)
        os.symlink(os.fsdecode(data), out)
        continue
    with open(out, 'wb') as f:
        f.write(data)
    os.chmod(out, 0o755 if mode == '100755' else 0o644)
cat.stdin.close()
cat.wait()
with open(os.path.join(dest, '.git-export-missing'), 'w') as f:
    f.write(''.join(p + '\n' for p in missing))
print('%d files, %d missing from the snapshot: %s' % (len(entries), len(missing), ' '.join(missing)), file=sys.stderr)
