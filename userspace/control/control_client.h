// The client side of the control socket (stream_server.h): what `portcullis` subcommands use to ask the
// running daemon something.
#pragma once

#include <chrono>
#include <string>

namespace portcullis::control {

// Sends `request_line` (a '\n' is added when it has none) to the control socket at `path` and returns
// everything the daemon answers, up to its EOF. Throws std::runtime_error saying what failed when it cannot
// connect, or when the whole exchange takes longer than `timeout`.
std::string control_request(const std::string& path, const std::string& request_line,
                            std::chrono::milliseconds timeout);

}  // namespace portcullis::control
