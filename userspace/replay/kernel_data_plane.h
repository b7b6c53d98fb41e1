// `replay --kernel` (root): the BPF programs themselves, loaded under a pin directory of their own and fed
// every packet with BPF_PROG_TEST_RUN; the punt ring read after each packet. Runs in a network namespace of its
// own, so that the rejects the programs send (clones redirected to the test run's device) leave no trace.
#pragma once

#include <memory>

#include "replay/replay_data_plane.h"

namespace portcullis::replay {

// Throws std::runtime_error when the programs cannot be loaded (not root, no BPF).
std::unique_ptr<ReplayDataPlane> make_kernel_data_plane(dataplane::PolicyTables tables);

}  // namespace portcullis::replay
