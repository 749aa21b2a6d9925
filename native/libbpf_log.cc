#include "libbpf_log.h"

#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>

#include <deque>
#include <mutex>

namespace flamewire {
namespace {

// Verifier logs can be long; keep the newest lines and say how many were dropped.
constexpr size_t kMaxLines = 2000;

std::mutex g_mu;
std::deque<LogLine> g_lines;
size_t g_dropped = 0;

void Append(const char *level, std::string line) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_lines.size() >= kMaxLines) {
    g_lines.pop_front();
    ++g_dropped;
  }
  g_lines.push_back(LogLine{level, std::move(line)});
}

int Print(enum libbpf_print_level level, const char *format, va_list args) {
  // A verifier log arrives as one message of many lines: format it whole, store it per line.
  char stack_buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(stack_buf, sizeof(stack_buf), format, args);
  std::string text;
  if (n >= static_cast<int>(sizeof(stack_buf))) {
    text.resize(static_cast<size_t>(n) + 1);
    vsnprintf(&text[0], text.size(), format, copy);
    text.resize(static_cast<size_t>(n));
  } else if (n >= 0) {
    text.assign(stack_buf, static_cast<size_t>(n));
  }
  va_end(copy);
  if (n < 0) return n;
  const char *name = level == LIBBPF_WARN ? "warn" : level == LIBBPF_INFO ? "info" : "debug";
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) Append(name, text.substr(start, end - start));
    start = end + 1;
  }
  return n;
}

}  // namespace

void InstallLibbpfLog() { libbpf_set_print(Print); }

std::vector<LogLine> TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<LogLine> out;
  if (g_dropped) {
    out.push_back(LogLine{"warn", std::to_string(g_dropped) + " older libbpf log lines dropped"});
    g_dropped = 0;
  }
  out.insert(out.end(), std::make_move_iterator(g_lines.begin()),
             std::make_move_iterator(g_lines.end()));
  g_lines.clear();
  return out;
}

}  // namespace flamewire
