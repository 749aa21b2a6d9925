// Opening cpu-clock perf events on the online CPUs.
#ifndef FLAMEWIRE_PERF_EVENTS_H
#define FLAMEWIRE_PERF_EVENTS_H

#include <vector>

namespace flamewire {

// Parses a kernel CPU list such as "0-3,8,10-11" (as in /sys/devices/system/cpu/online).
// Returns 0 or -EINVAL.
int ParseCpuList(const char *text, std::vector<int> *cpus);

// Reads /sys/devices/system/cpu/online. Returns 0 or a negative errno.
int OnlineCpus(std::vector<int> *cpus);

// Opens a PERF_COUNT_SW_CPU_CLOCK sampling event at `frequency` Hz on `cpu` for every task.
// Returns the file descriptor or a negative errno.
int OpenCpuClockEvent(int cpu, unsigned frequency);

}  // namespace flamewire

#endif
