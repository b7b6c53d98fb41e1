// The systemd notification protocol (sd_notify(3)) without libsystemd: newline-separated VAR=VALUE
// assignments sent as one datagram to the AF_UNIX socket systemd names in $NOTIFY_SOCKET. A path starting with
// '/' is a socket in the file system, one starting with '@' a socket in the abstract namespace.
//
// Every function returns whether the datagram was sent. Not being run by systemd (NOTIFY_SOCKET unset or
// empty) is no error: false with errno 0. Any other failure is false with errno saying why, for the daemon to
// log; none of them is fatal to it.
#pragma once

#include <string_view>

namespace portcullis::service {

// Sends `state` as it is, e.g. "READY=1\nSTATUS=enforcing generation 3".
bool notify(std::string_view state);

// "READY=1\nSTATUS=<status>": start-up (or a reload) is complete. Only READY=1 when `status` is empty.
bool notify_ready(std::string_view status);

// "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in µs>": a reload has begun. systemd 253 and later want the
// timestamp (Type=notify-reload); older ones ignore it. A READY=1 must follow once the reload is over.
bool notify_reloading();

// "STOPPING=1": shutdown has begun.
bool notify_stopping();

// "STATUS=<status>": one line for `systemctl status`.
bool notify_status(std::string_view status);

}  // namespace portcullis::service
