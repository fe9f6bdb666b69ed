// Dynamic sharing of a fixed list of work units among the tasks of one
// ParallelRun (ops/tasks.h; target-independent).
//
// Each thread owns a contiguous home range of the units and takes them one at
// a time; a thread whose range is empty takes units from the others' ranges.
// Which thread runs a unit changes with timing, what a unit computes does not,
// so the results stay bitwise deterministic. Cores of unequal speed (a busy
// sibling hyperthread, a noisy neighbour on a shared host, big and little
// cores) then finish together instead of the fast one waiting at the barrier.
//
// Even threads walk their range upwards and odd threads downwards, and a
// thread steals first from its partner (t ^ 1) at the end next to its own
// range: with two threads the boundary between them just moves, and each
// keeps working on the columns it worked on before (its half of the weights
// stays in its own cache).
#ifndef BALLAST_OPS_WORK_RANGES_H_
#define BALLAST_OPS_WORK_RANGES_H_

#include <atomic>
#include <cstdint>
#include <memory>

namespace ballast::ops {

class WorkRanges {
 public:
  // Splits units [0, units) into `threads` home ranges. Not thread-safe: call
  // before the ParallelRun (whose start publishes it to the tasks).
  void Reset(int threads, int64_t units) {
    if (threads > capacity_) {
      slots_.reset(new Slot[size_t(threads)]);
      capacity_ = threads;
    }
    threads_ = threads;
    for (int t = 0; t < threads; ++t) {
      const uint64_t lo = uint64_t(units * t / threads);
      const uint64_t hi = uint64_t(units * (t + 1) / threads);
      slots_[size_t(t)].range.store(Pack(lo, hi), std::memory_order_relaxed);
    }
  }

  // The next unit for thread t, or false when every range is empty.
  bool Next(int t, int64_t* unit) {
    if (Take(t, /*from_low=*/t % 2 == 0, unit)) return true;
    // Steal at the victim's free end: the one its owner does not walk from.
    for (int i = 1; i < threads_; ++i) {
      const int v = (t ^ 1) < threads_ && i == 1 ? (t ^ 1) : Victim(t, i);
      if (Take(v, /*from_low=*/v % 2 == 1, unit)) return true;
    }
    return false;
  }

 private:
  struct alignas(64) Slot {  // one cache line per range: no false sharing
    std::atomic<uint64_t> range{0};
  };
  static uint64_t Pack(uint64_t lo, uint64_t hi) { return lo | hi << 32; }

  // The i-th victim of thread t after its partner: the others in order,
  // skipping the partner.
  int Victim(int t, int i) const {
    const int partner = (t ^ 1) < threads_ ? (t ^ 1) : -1;
    for (int k = 1, seen = partner >= 0 ? 1 : 0; k < threads_; ++k) {
      const int v = (t + k) % threads_;
      if (v == partner) continue;
      if (++seen == i) return v;
    }
    return t;  // unreachable for 1 <= i < threads_
  }

  bool Take(int owner, bool from_low, int64_t* unit) {
    std::atomic<uint64_t>& r = slots_[size_t(owner)].range;
    uint64_t cur = r.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t lo = cur & 0xffffffffu, hi = cur >> 32;
      if (lo >= hi) return false;
      const uint64_t next = from_low ? Pack(lo + 1, hi) : Pack(lo, hi - 1);
      if (r.compare_exchange_weak(cur, next, std::memory_order_relaxed)) {
        *unit = int64_t(from_low ? lo : hi - 1);
        return true;
      }
    }
  }

  std::unique_ptr<Slot[]> slots_;
  int capacity_ = 0, threads_ = 0;
};

}  // namespace ballast::ops

#endif  // BALLAST_OPS_WORK_RANGES_H_
