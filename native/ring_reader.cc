#include "ring_reader.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "oncpu.h"

namespace flamewire {

void BatchQueue::Push(std::unique_ptr<Batch> batch) {
  std::lock_guard<std::mutex> lock(mu_);
  batches_.push_back(std::move(batch));
}

std::unique_ptr<Batch> BatchQueue::Pop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (batches_.empty()) return nullptr;
  std::unique_ptr<Batch> b = std::move(batches_.front());
  batches_.pop_front();
  return b;
}

int RingReader::Create(int map_fd, std::shared_ptr<BatchQueue> queue, RingReader **out) {
  RingReader *r = new RingReader();
  r->queue_ = std::move(queue);
  r->rb_ = ring_buffer__new(map_fd, OnRecord, r, nullptr);
  if (!r->rb_) {
    int err = -errno;
    delete r;
    return err ? err : -EINVAL;
  }
  // Edge-triggered on the map itself: only a wakeup reports it, not the records that are
  // waiting (they are submitted without one and wait for the timer).
  r->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  r->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ring = {}, stop = {};
  ring.events = EPOLLIN | EPOLLET;
  ring.data.u32 = 0;
  stop.events = EPOLLIN;
  stop.data.u32 = 1;
  if (r->epoll_fd_ < 0 || r->stop_fd_ < 0 || epoll_ctl(r->epoll_fd_, EPOLL_CTL_ADD, map_fd, &ring) ||
      epoll_ctl(r->epoll_fd_, EPOLL_CTL_ADD, r->stop_fd_, &stop)) {
    int err = -errno;
    delete r;
    return err ? err : -EINVAL;
  }
  *out = r;
  return 0;
}

RingReader::~RingReader() {
  Stop();
  ring_buffer__free(rb_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

// Appends [u32 length][u32 zero][record][pad to 8] to the current batch.
int RingReader::OnRecord(void *ctx, void *data, size_t size) {
  RingReader *self = static_cast<RingReader *>(ctx);
  if (!self->current_) {
    self->current_.reset(new Batch());
    self->current_->reserve(64 * 1024);
  }
  Batch &b = *self->current_;
  size_t padded = (size + FW_BATCH_ALIGN - 1) & ~static_cast<size_t>(FW_BATCH_ALIGN - 1);
  size_t at = b.size();
  b.resize(at + FW_BATCH_PREFIX_BYTES + padded);
  uint32_t prefix[2] = {static_cast<uint32_t>(size), 0};
  memcpy(b.data() + at, prefix, sizeof(prefix));
  memcpy(b.data() + at + FW_BATCH_PREFIX_BYTES, data, size);
  if (padded != size) memset(b.data() + at + FW_BATCH_PREFIX_BYTES + size, 0, padded - size);
  ++self->records_;
  return 0;
}

int RingReader::ConsumeIntoBatch() {
  int n = ring_buffer__consume(rb_);
  if (current_ && !current_->empty()) queue_->Push(std::move(current_));
  current_.reset();
  return n;
}

void RingReader::Run(unsigned poll_interval_ms, std::function<void()> notify) {
  // Named, so that top -H and /proc/PID/task show what the reader costs.
  pthread_setname_np(pthread_self(), "flamewire-ring");
  for (;;) {
    struct epoll_event ev[2];
    int n = epoll_wait(epoll_fd_, ev, 2, static_cast<int>(poll_interval_ms));
    if (n < 0 && errno != EINTR) {
      last_error_ = -errno;
      break;
    }
    bool stop = false;
    for (int i = 0; i < n; ++i) stop = stop || ev[i].data.u32 == 1;
    if (stop) break;
    int records = ConsumeIntoBatch();
    if (records < 0) last_error_ = records;
    if (records > 0) notify();
  }
}

void RingReader::Start(unsigned poll_interval_ms, std::function<void()> notify) {
  uint64_t drain;
  while (read(stop_fd_, &drain, sizeof(drain)) > 0) {
  }
  thread_ = std::thread(&RingReader::Run, this, poll_interval_ms, std::move(notify));
}

void RingReader::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    // an eventfd write only fails on overflow: the thread is being woken already
  }
  thread_.join();
}

int RingReader::Drain() {
  if (thread_.joinable()) return -EBUSY;
  return ConsumeIntoBatch();
}

}  // namespace flamewire
