#include "ops/tasks.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ballast::ops {
namespace {

// Runs `runs` ParallelRuns of T tasks and checks that each task ran exactly
// once with the right T; returns how many tasks ran off the calling thread.
int CheckRuns(int T, int runs) {
  const std::thread::id caller = std::this_thread::get_id();
  int elsewhere = 0;
  std::vector<std::atomic<int>> count(static_cast<size_t>(T));
  std::vector<std::thread::id> ran_on(static_cast<size_t>(T));
  for (int r = 0; r < runs; ++r) {
    for (auto& c : count) c.store(0);
    ParallelRun(T, [&](int t, int tasks) {
      EXPECT_EQ(tasks, T);
      count[static_cast<size_t>(t)].fetch_add(1);
      ran_on[static_cast<size_t>(t)] = std::this_thread::get_id();
    });
    for (int t = 0; t < T; ++t) {
      EXPECT_EQ(count[static_cast<size_t>(t)].load(), 1)
          << "task " << t << " of " << T << ", run " << r;
      elsewhere += ran_on[static_cast<size_t>(t)] != caller;
    }
  }
  return elsewhere;
}

TEST(TasksTest, EveryTaskRunsOnceOutsideATeam) {
  for (int T = 1; T <= 6; ++T) CheckRuns(T, 20);
}

TEST(TasksTest, EveryTaskRunsOnceOnATeamOfAnySize) {
  for (int threads = 1; threads <= 5; ++threads) {
    WithTeam(threads, [&] {
      for (int T = 1; T <= 6; ++T) CheckRuns(T, 200);
    });
  }
}

TEST(TasksTest, MoreTasksThanAClaimCountsRunOnTheCaller) {
  WithTeam(2, [&] { EXPECT_EQ(CheckRuns(70000, 1), 0); });
}

TEST(TasksTest, HelpersTakeTasks) {
  // Tasks of 20 µs each, until a helper has taken one (or 10 s have gone).
  int elsewhere = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  WithTeam(2, [&] {
    while (elsewhere == 0 && std::chrono::steady_clock::now() < deadline) {
      const std::thread::id caller = std::this_thread::get_id();
      std::atomic<int> off_caller{0};
      ParallelRun(2, [&](int, int) {
        const auto end =
            std::chrono::steady_clock::now() + std::chrono::microseconds(20);
        while (std::chrono::steady_clock::now() < end) {
        }
        off_caller += std::this_thread::get_id() != caller;
      });
      elsewhere += off_caller.load();
    }
  });
  EXPECT_GT(elsewhere, 0);
}

TEST(TasksTest, RunsDoNotWaitForHelpersThatTookNothing) {
  // Helpers held away (as a host's descheduling would): each run finishes
  // with every task on the calling thread instead of waiting for them.
  WithTeam(2, [&] {
    HoldHelpersForTesting(true);
    const int elsewhere = CheckRuns(3, 500);
    HoldHelpersForTesting(false);
    EXPECT_EQ(elsewhere, 0);
    CheckRuns(2, 200);  // and the team still works once they are back
  });
}

TEST(TasksTest, ATaskRunsNestedTasksItself) {
  WithTeam(2, [&] {
    std::vector<std::atomic<int>> inner(6);
    ParallelRun(2, [&](int t, int) {
      EXPECT_TRUE(InParallel());
      const std::thread::id self = std::this_thread::get_id();
      ParallelRun(3, [&](int u, int n) {
        EXPECT_EQ(n, 3);
        EXPECT_EQ(std::this_thread::get_id(), self);
        inner[static_cast<size_t>(t * 3 + u)].fetch_add(1);
      });
    });
    for (auto& c : inner) EXPECT_EQ(c.load(), 1);
  });
}

TEST(TasksTest, InParallelSaysWhereAPassMustKeepToItsThread) {
  EXPECT_FALSE(InParallel());
  WithTeam(2, [&] {
    EXPECT_FALSE(InParallel());  // the step's own thread hands out tasks
    ParallelRun(2, [&](int, int) { EXPECT_TRUE(InParallel()); });
    // but not from inside a region the step opens itself.
    bool in_region = false;
#pragma omp parallel num_threads(2)
    {
#pragma omp master
      in_region = InParallel();
    }
    EXPECT_TRUE(in_region);
  });
  // In a region of the caller's own, a pass keeps to each thread.
  bool inside = false, active = false, same_thread = true;
#pragma omp parallel num_threads(2)
  {
#pragma omp master
    {
      inside = InParallel();
      active = omp_in_parallel();
      const std::thread::id self = std::this_thread::get_id();
      ParallelRun(2, [&](int, int) {
        same_thread = same_thread && std::this_thread::get_id() == self;
      });
    }
  }
  EXPECT_EQ(inside, active);
  EXPECT_TRUE(same_thread);
}

TEST(TasksTest, ParallelForCoversTheRangeOnce) {
  for (int64_t n : {0, 1, 7, 128, 1000}) {
    for (int T : {1, 2, 3, 8}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      WithTeam(2, [&] {
        ParallelFor(n, T, [&](int64_t i) { ++hits[static_cast<size_t>(i)]; });
      });
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[static_cast<size_t>(i)], 1) << "n " << n << " T " << T;
      }
    }
  }
}

TEST(TasksTest, MoreThreadsThanCores) {
  const int threads = omp_get_num_procs() * 3 + 1;
  WithTeam(threads, [&] { CheckRuns(threads, 300); });
}

// A task that throws: the others still run, and the run rethrows once all
// have finished.
void CheckThrowingTask() {
  for (int thrower = 0; thrower < 4; ++thrower) {
    std::vector<std::atomic<int>> count(4);
    EXPECT_THROW(ParallelRun(4,
                             [&](int t, int) {
                               count[static_cast<size_t>(t)].fetch_add(1);
                               if (t == thrower) {
                                 throw std::runtime_error("task failed");
                               }
                             }),
                 std::runtime_error);
    for (auto& c : count) EXPECT_EQ(c.load(), 1);
  }
  CheckRuns(4, 10);  // and the next runs are clean
}

TEST(TasksTest, AnErrorInATaskReachesTheCaller) {
  CheckThrowingTask();
  WithTeam(2, [&] { CheckThrowingTask(); });
  // Nested: the tasks run in order on one thread, all of them still.
  WithTeam(2, [&] {
    ParallelRun(2, [&](int t, int) {
      if (t == 0) CheckThrowingTask();
    });
  });
}

TEST(TasksTest, AnErrorInTheStepLeavesTheTeam) {
  EXPECT_THROW(WithTeam(2,
                        [&] {
                          CheckRuns(2, 10);
                          throw std::runtime_error("step failed");
                        }),
               std::runtime_error);
  // The next team starts afresh.
  WithTeam(2, [&] { CheckRuns(2, 10); });
}

// Side work that counts each chunk's runs and the threads they ran on.
struct SideCount {
  explicit SideCount(int64_t chunks) : count(static_cast<size_t>(chunks)) {}
  std::vector<std::atomic<int>> count;
  std::atomic<int> elsewhere{0};
  std::atomic<int> not_in_parallel{0};
  std::thread::id caller = std::this_thread::get_id();
  SideWork Work() {
    return {[](void* ctx, int64_t i) {
              auto* self = static_cast<SideCount*>(ctx);
              // A pass inside a chunk runs on the chunk's thread.
              self->not_in_parallel += !InParallel();
              self->count[static_cast<size_t>(i)].fetch_add(1);
              self->elsewhere += std::this_thread::get_id() != self->caller;
            },
            this, int64_t(count.size())};
  }
  void ExpectEachOnce() {
    for (size_t i = 0; i < count.size(); ++i) {
      EXPECT_EQ(count[i].load(), 1) << "chunk " << i;
    }
    EXPECT_EQ(not_in_parallel.load(), 0);
  }
};

TEST(TasksTest, SideWorkRunsOnceOnATeamOfAnySize) {
  const int oversubscribed = omp_get_num_procs() * 3 + 1;
  for (int threads : {1, 2, 3, 5, oversubscribed}) {
    for (int64_t chunks : {0, 1, 7, 300}) {
      SideCount side(chunks);
      WithTeam(
          threads, [&] { CheckRuns(threads, 50); }, side.Work());
      side.ExpectEachOnce();
    }
  }
}

TEST(TasksTest, SideWorkLeftAtTheEndStillRuns) {
  // Helpers held away take no chunk: the calling thread runs them all.
  SideCount side(50);
  HoldHelpersForTesting(true);
  WithTeam(
      2, [&] { CheckRuns(2, 10); }, side.Work());
  HoldHelpersForTesting(false);
  side.ExpectEachOnce();
  EXPECT_EQ(side.elsewhere.load(), 0);
}

TEST(TasksTest, HelpersTakeSideWorkWhileTheStepRunsAlone) {
  // A step of serial work (no runs) until a helper has taken a chunk, or
  // 10 s have gone.
  SideCount side(1000);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  WithTeam(
      2,
      [&] {
        while (side.elsewhere.load() == 0 &&
               std::chrono::steady_clock::now() < deadline) {
          std::this_thread::yield();
        }
      },
      side.Work());
  EXPECT_GT(side.elsewhere.load(), 0);
  side.ExpectEachOnce();
}

TEST(TasksTest, AnErrorInSideWorkReachesTheCallerAfterTheStep) {
  std::atomic<int> chunks_run{0};
  bool step_done = false;
  auto fn = [](void* ctx, int64_t i) {
    static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
    if (i == 3) throw std::runtime_error("side work failed");
  };
  for (int threads : {1, 2}) {
    chunks_run = 0;
    step_done = false;
    EXPECT_THROW(WithTeam(
                     threads,
                     [&] {
                       CheckRuns(2, 10);
                       step_done = true;
                     },
                     SideWork{fn, &chunks_run, 20}),
                 std::runtime_error);
    EXPECT_TRUE(step_done);
    EXPECT_EQ(chunks_run.load(), 20);  // the others still ran
  }
}

TEST(TasksTest, SideWorkRunsWhenTheStepThrowsOrIsNested) {
  for (int threads : {1, 2}) {
    SideCount side(100);
    EXPECT_THROW(WithTeam(
                     threads,
                     [&] {
                       CheckRuns(2, 5);
                       throw std::runtime_error("step failed");
                     },
                     side.Work()),
                 std::runtime_error);
    side.ExpectEachOnce();
  }
  // A team opened inside a step: its step, then its side work, on the
  // outer step's thread.
  SideCount inner(30);
  WithTeam(2, [&] {
    const std::thread::id self = std::this_thread::get_id();
    inner.caller = self;
    WithTeam(
        2, [&] { CheckRuns(2, 5); }, inner.Work());
    EXPECT_EQ(std::this_thread::get_id(), self);
  });
  inner.ExpectEachOnce();
  EXPECT_EQ(inner.elsewhere.load(), 0);
}

}  // namespace
}  // namespace ballast::ops
