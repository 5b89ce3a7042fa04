/* The context-switch workload of /work/shared/tools/capture-real-nmis.py:
 * two processes, two pipes: each hop is a switch between two mms.
 * Built with `gcc -static` on the host (mkinitramfs.sh); run one per CPU. */
#include <stdlib.h>
#include <unistd.h>
int main(void) {
  int a[2], b[2]; char c = 0;
  if (pipe(a) || pipe(b)) return 1;
  if (fork() == 0) {         /* the child ends when the parent does: it holds no write end of a */
    close(a[1]); close(b[0]);
    for (;;) { if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1) _exit(0); }
  }
  close(a[0]); close(b[1]);
  for (;;) { if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1) return 0; }
}
