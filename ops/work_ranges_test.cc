#include "ops/work_ranges.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace ballast::ops {
namespace {

// Which thread took each unit (-1: none), with `delay(t)` spent per unit.
template <typename Delay>
std::vector<int> TakeAll(int threads, int64_t units, Delay delay) {
  WorkRanges work;
  work.Reset(threads, units);
  std::vector<int> owner(static_cast<size_t>(units), -1);
  std::vector<int> taken(static_cast<size_t>(units), 0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    int64_t u = 0;
    while (work.Next(t, &u)) {
#pragma omp atomic
      ++taken[static_cast<size_t>(u)];
      owner[static_cast<size_t>(u)] = t;
      delay(t);
    }
  }
  for (int64_t u = 0; u < units; ++u) {
    EXPECT_EQ(taken[static_cast<size_t>(u)], 1) << "unit " << u;
  }
  return owner;
}

TEST(WorkRangesTest, EveryUnitIsTakenExactlyOnceOnAnyThreadCount) {
  for (int threads = 1; threads <= 6; ++threads) {
    for (int64_t units : {0, 1, 2, 5, 64, 131}) {
      SCOPED_TRACE(testing::Message()
                   << threads << " threads, " << units << " units");
      TakeAll(threads, units, [](int) {});
    }
  }
}

TEST(WorkRangesTest, ReusedAfterAResetForMoreThreads) {
  WorkRanges work;
  work.Reset(2, 10);
  int64_t u = 0;
  while (work.Next(0, &u)) {
  }
  work.Reset(5, 7);
  std::vector<int> seen(7, 0);
  for (int t = 4; t >= 0; --t) {
    while (work.Next(t, &u)) ++seen[static_cast<size_t>(u)];
  }
  EXPECT_EQ(seen, std::vector<int>(7, 1));
}

// Alone, each thread runs its home range: thread 0 from the bottom up,
// thread 1 from the top down, so that a thread that runs out continues next
// to where it was.
TEST(WorkRangesTest, AThreadAloneRunsItsHomeRangeThenStealsNextToIt) {
  WorkRanges work;
  work.Reset(2, 10);
  std::vector<int64_t> order;
  int64_t u = 0;
  while (work.Next(1, &u)) order.push_back(u);
  EXPECT_EQ(order, (std::vector<int64_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  work.Reset(2, 10);
  order.clear();
  while (work.Next(0, &u)) order.push_back(u);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// Two threads of unequal speed: the fast one takes over the slow one's
// units, and each still holds one contiguous run of units (the boundary
// between them moves; their columns stay together).
TEST(WorkRangesTest, TheFasterOfTwoThreadsTakesMoreInOneContiguousRun) {
  const int64_t units = 40;
  const std::vector<int> owner = TakeAll(2, units, [](int t) {
    if (t == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  });
  const auto boundary = std::find(owner.begin(), owner.end(), 1);
  EXPECT_TRUE(
      std::all_of(owner.begin(), boundary, [](int t) { return t == 0; }));
  EXPECT_TRUE(std::all_of(boundary, owner.end(), [](int t) { return t == 1; }));
  // A static split would give thread 0 twenty.
  EXPECT_LT(boundary - owner.begin(), units / 4)
      << "the slow thread took " << (boundary - owner.begin()) << " units";
}

}  // namespace
}  // namespace ballast::ops
