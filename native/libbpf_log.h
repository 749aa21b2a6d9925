// libbpf's messages (verifier logs, attach failures) collected for the TypeScript logger.
#ifndef FLAMEWIRE_LIBBPF_LOG_H
#define FLAMEWIRE_LIBBPF_LOG_H

#include <string>
#include <vector>

namespace flamewire {

struct LogLine {
  const char *level;  // "warn", "info" or "debug"
  std::string message;
};

// Routes libbpf_set_print into a bounded process-wide buffer (libbpf's printer is global).
void InstallLibbpfLog();
// Removes and returns the buffered lines, oldest first.
std::vector<LogLine> TakeLibbpfLog();

}  // namespace flamewire

#endif
