#include "ring_reader.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <chrono>

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
  *out = r;
  return 0;
}

RingReader::~RingReader() {
  Stop();
  ring_buffer__free(rb_);
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
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    // A timer, not epoll: the BPF side submits with BPF_RB_NO_WAKEUP.
    cv_.wait_for(lock, std::chrono::milliseconds(poll_interval_ms), [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    int n = ConsumeIntoBatch();
    if (n < 0) last_error_ = n;
    if (n > 0) notify();
    lock.lock();
  }
}

void RingReader::Start(unsigned poll_interval_ms, std::function<void()> notify) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread(&RingReader::Run, this, poll_interval_ms, std::move(notify));
}

void RingReader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int RingReader::Drain() {
  if (thread_.joinable()) return -EBUSY;
  return ConsumeIntoBatch();
}

}  // namespace flamewire
