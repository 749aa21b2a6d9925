#include "perf_events.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flamewire {

int ParseCpuList(const char *text, std::vector<int> *cpus) {
  const char *p = text;
  cpus->clear();
  while (*p && *p != '\n') {
    char *end;
    errno = 0;
    long first = strtol(p, &end, 10);
    if (end == p || errno || first < 0) return -EINVAL;
    long last = first;
    p = end;
    if (*p == '-') {
      ++p;
      last = strtol(p, &end, 10);
      if (end == p || errno || last < first) return -EINVAL;
      p = end;
    }
    for (long cpu = first; cpu <= last; ++cpu) cpus->push_back(static_cast<int>(cpu));
    if (*p == ',') {
      ++p;
    } else if (*p && *p != '\n') {
      return -EINVAL;
    }
  }
  return cpus->empty() ? -EINVAL : 0;
}

int OnlineCpus(std::vector<int> *cpus) {
  char buf[4096];
  int fd = open("/sys/devices/system/cpu/online", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  int err = n < 0 ? -errno : 0;
  close(fd);
  if (err) return err;
  buf[n] = '\0';
  return ParseCpuList(buf, cpus);
}

int OpenCpuClockEvent(int cpu, unsigned frequency) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  attr.freq = 1;
  attr.sample_freq = frequency;
  int fd = static_cast<int>(
      syscall(__NR_perf_event_open, &attr, -1 /* every task */, cpu, -1, PERF_FLAG_FD_CLOEXEC));
  return fd < 0 ? -errno : fd;
}

}  // namespace flamewire
