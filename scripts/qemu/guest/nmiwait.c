/* nmiwait: stop tracing a few ms after the next NMI (the guest side of the
 * flight-recorder capture of capture-real-nmis.py).
 *
 * usage: nmiwait AFTER_MS TIMEOUT_S [TRACING_ON_FILE]
 * Polls the NMI: line of /proc/interrupts every 1 ms; when its sum grows,
 * sleeps AFTER_MS and writes 0 to TRACING_ON_FILE (default
 * /sys/kernel/tracing/tracing_on). Prints "BEFORE AFTER" NMI totals (AFTER read
 * after tracing stopped). Exit 0 when an NMI came, 1 on timeout (tracing is
 * stopped either way). Built static on the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static char buf[1 << 16];

static long nmi_total(void) {
  int fd = open("/proc/interrupts", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n, len = 0;
  while (len < (ssize_t)sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) len += n;
  close(fd);
  buf[len] = 0;
  char *p = strstr(buf, "\nNMI:");
  if (!p) return -1;
  p += 5;
  long sum = 0;
  for (;;) {
    while (*p == ' ' || *p == '\t') p++;
    if (*p < '0' || *p > '9') break;
    sum += strtol(p, &p, 10);
  }
  return sum;
}

static void msleep(double ms) {
  struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (long)(ms / 1000) * 1000) * 1e6) };
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  double after = argc > 1 ? atof(argv[1]) : 3;
  double timeout = argc > 2 ? atof(argv[2]) : 30;
  const char *on = argc > 3 ? argv[3] : "/sys/kernel/tracing/tracing_on";
  long before = nmi_total(), now = before;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int got = 0;
  for (;;) {
    now = nmi_total();
    if (now != before) { got = 1; break; }
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > timeout) break;
    msleep(1);
  }
  if (got) msleep(after);
  int fd = open(on, O_WRONLY);
  if (fd >= 0) { if (write(fd, "0", 1) != 1) perror(on); close(fd); } else perror(on);
  printf("%ld %ld\n", before, nmi_total());
  return got ? 0 : 1;
}
