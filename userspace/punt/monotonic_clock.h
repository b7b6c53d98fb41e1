// CLOCK_MONOTONIC in nanoseconds: the clock the data plane stamps punts and reads the daemon's heartbeat by.
#pragma once

#include <cstdint>
#include <ctime>

namespace portcullis::punt {

inline uint64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace portcullis::punt
