// How far apart two threads' cores are: the time a cache line takes to go
// from one to the other and back. Two vCPUs of a shared VM are not always
// two cores of one chip; where the round trip is long, every value one
// thread writes and the other reads costs that much, and a two-thread
// step's exchanges between its passes with it.
#ifndef BALLAST_OPS_ROOF_ROUND_TRIP_H_
#define BALLAST_OPS_ROOF_ROUND_TRIP_H_

namespace ballast::ops {

// Median nanoseconds per round trip of a counter handed back and forth
// between two OpenMP threads through one cache line (16 batches of 1000).
// 0 when fewer than two processors are available, or when a batch takes
// over 50 ms (the two threads share one processor).
double MeasureRoundTripNs();

}  // namespace ballast::ops

#endif  // BALLAST_OPS_ROOF_ROUND_TRIP_H_
