// The reader thread: polls the BPF ring buffer on a timer (or early, when the BPF side asks
// for it) and queues whole batches for JS.
#ifndef FLAMEWIRE_RING_READER_H
#define FLAMEWIRE_RING_READER_H

#include <stdint.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct ring_buffer;

namespace flamewire {

using Batch = std::vector<uint8_t>;

// Batches waiting for the JS thread. Shared by the reader thread, the sampler object and the
// ThreadSafeFunction (which may outlive the sampler), hence reference counted.
class BatchQueue {
 public:
  void Push(std::unique_ptr<Batch> batch);
  std::unique_ptr<Batch> Pop();  // nullptr when empty

 private:
  std::mutex mu_;
  std::deque<std::unique_ptr<Batch>> batches_;
};

class RingReader {
 public:
  // Wraps the ring buffer map `map_fd`. Returns 0 or a negative errno.
  static int Create(int map_fd, std::shared_ptr<BatchQueue> queue, RingReader **out);
  ~RingReader();  // stops the thread if it still runs

  // Starts the thread: every poll_interval_ms it consumes the ring buffer into one batch,
  // queues it and calls notify() (from the reader thread) when the batch is non-empty. A record
  // submitted with a wakeup (the BPF side does for the few that user space must act on at
  // once) starts that early.
  void Start(unsigned poll_interval_ms, std::function<void()> notify);
  // Stops and joins the thread. Records still in the ring buffer stay there: call Drain().
  void Stop();
  // Consumes everything in the ring buffer into one queued batch on the calling thread.
  // Only while the thread is stopped. Returns the number of records or a negative errno.
  int Drain();

  uint64_t records() const { return records_; }

 private:
  RingReader() = default;
  static int OnRecord(void *ctx, void *data, size_t size);
  int ConsumeIntoBatch();
  void Run(unsigned poll_interval_ms, std::function<void()> notify);

  struct ring_buffer *rb_ = nullptr;
  std::shared_ptr<BatchQueue> queue_;
  std::unique_ptr<Batch> current_;
  std::thread thread_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: Stop() wakes the thread through it
  uint64_t records_ = 0;
  int last_error_ = 0;
};

}  // namespace flamewire

#endif
