#include "ops/roof/round_trip.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

namespace ballast::ops {

double MeasureRoundTripNs() {
  if (omp_get_num_procs() < 2 || omp_in_parallel()) return 0.0;
  constexpr int kBatches = 16;
  constexpr int64_t kTrips = 1000;
  constexpr double kMaxBatchNs = 50e6;
  // The counter alone on its line: odd values are the first thread's
  // serves, even ones the second's returns; -1 stops the second.
  struct alignas(64) Line {
    std::atomic<int64_t> v{0};
  };
  Line ball;
  std::vector<double> batch_ns;
  bool gave_up = false;
#pragma omp parallel num_threads(2)
  {
    if (omp_get_num_threads() == 2 && omp_get_thread_num() == 1) {
      // Waits reading (a failing exchange would take the line from the
      // first thread on every try), then returns the serve only if it is
      // still there: a plain store could overwrite the -1 the first thread
      // left on giving up, and this loop would then wait forever.
      for (int64_t expect = 1;; expect += 2) {
        int64_t v;
        while ((v = ball.v.load(std::memory_order_acquire)) != expect &&
               v >= 0) {
        }
        if (v < 0 || !ball.v.compare_exchange_strong(
                         v, expect + 1, std::memory_order_acq_rel)) {
          break;
        }
      }
    } else if (omp_get_thread_num() == 0) {
      const bool two = omp_get_num_threads() == 2;
      int64_t served = 0;
      for (int b = 0; two && b < kBatches && !gave_up; ++b) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < kTrips && !gave_up; ++i) {
          ball.v.store(2 * served + 1, std::memory_order_release);
          while (ball.v.load(std::memory_order_acquire) != 2 * served + 2) {
            // A second thread that cannot run (one processor for both)
            // would keep this waiting for scheduler quanta.
            if ((i & 63) == 0 && std::chrono::duration<double, std::nano>(
                                     std::chrono::steady_clock::now() - t0)
                                         .count() > kMaxBatchNs) {
              gave_up = true;
              break;
            }
          }
          ++served;
        }
        batch_ns.push_back(std::chrono::duration<double, std::nano>(
                               std::chrono::steady_clock::now() - t0)
                               .count() /
                           double(kTrips));
      }
      ball.v.store(-1, std::memory_order_release);
    }
  }
  if (gave_up || batch_ns.empty()) return 0.0;
  std::nth_element(batch_ns.begin(), batch_ns.begin() + batch_ns.size() / 2,
                   batch_ns.end());
  return batch_ns[batch_ns.size() / 2];
}

}  // namespace ballast::ops
