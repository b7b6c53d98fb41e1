// For the e2e tests: a TLS client that sends its ClientHello split in unusual ways over a real TCP socket, to prove
// the firewall reassembles the name wherever the split falls. OpenSSL runs on memory BIOs and this program does the
// socket writes: the ClientHello message is re-framed into records of at most R bytes (with the record version
// OpenSSL used), and the records are written in chunks of at most S bytes with TCP_NODELAY and a pause of D ms
// between them, so each chunk leaves as a segment of its own. With --tfo the first chunk goes in the SYN. The rest
// of the handshake (and a second ClientHello, after a HelloRetryRequest) goes as OpenSSL frames it.
//
// Usage:
//   portcullis_tls_split_client --connect ADDR --port N (--sni NAME | --no-sni) [--record-size R]
//       [--segment-size S] [--delay-ms D] [--tfo] [--alpn h2,http/1.1] [--expect-close] [--timeout-ms T]
//   portcullis_tls_split_client --connect ADDR --port N --send-raw HEX|@FILE [--segment-size S] [--delay-ms D]
//       [--tfo] [--expect-close] [--timeout-ms T]
// R and S count payload bytes; 0 (the default) keeps OpenSSL's single record and writes everything at once. T
// (default 3000) bounds the connect and the wait for the peer after the ClientHello. ADDR is an address literal.
// Certificates are not verified (the test servers' are self-signed).
//
// Prints one line on stdout:
//   TLS: "ok VERSION CIPHER [alpn PROTOCOL]" (then it writes "ping\n" and reads any answer for 200 ms), or
//        "fail closed", "fail reset", "fail timeout", "fail tls REASON", "fail connect REASON", ...
//   raw: "data N" (the peer answered), "timeout" (the connection stayed open), "closed", "reset", "fail ...".
// Exit status: 0 when the handshake completed (raw: data or timeout), or, with --expect-close, when the peer closed
// or reset the connection first; 1 otherwise; 2 on usage and local errors. With --tfo, a refused connect counts
// as a reset: the SYN carried the ClientHello.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint8_t kHandshakeRecord = 22;
constexpr size_t kRecordHeaderSize = 5;
constexpr milliseconds kReplyWait{200};

struct Options {
  std::string address;
  uint16_t port = 0;
  std::string sni;
  bool no_sni = false;
  size_t record_size = 0;
  size_t segment_size = 0;
  int delay_ms = 0;
  bool tfo = false;
  std::string alpn;
  std::string send_raw;
  bool expect_close = false;
  int timeout_ms = 3000;
};

// Something went wrong that is neither the peer closing nor resetting the connection: printed as "fail WHY".
struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_with_errno(const std::string& what) {
  throw Failed(what + ' ' + std::strerror(errno));
}

// How the run ended, and the line that says so.
enum class Ending { passed, refused, failed };
struct Outcome {
  Ending ending = Ending::failed;
  std::string line;
};

enum class Received { data, closed, reset, timeout };

// A TCP connection whose writes each leave as a segment of their own (TCP_NODELAY). With --tfo it connects with its
// first write, in the SYN.
class Connection {
 public:
  explicit Connection(const Options& options) : fast_open_(options.tfo) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (::getaddrinfo(options.address.c_str(), std::to_string(options.port).c_str(), &hints, &found) != 0) {
      throw std::invalid_argument("--connect needs an address literal: " + options.address);
    }
    std::memcpy(&peer_, found->ai_addr, found->ai_addrlen);
    peer_length_ = found->ai_addrlen;
    ::freeaddrinfo(found);

    fd_ = ::socket(peer_.ss_family, SOCK_STREAM, 0);
    if (fd_ < 0) fail_with_errno("socket");
    const int on = 1;
    // The send timeout bounds connect() and a connecting sendto().
    const timeval timeout{options.timeout_ms / 1000, static_cast<suseconds_t>(options.timeout_ms % 1000) * 1000};
    if (::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 ||
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0) {
      fail_with_errno("setsockopt");
    }
    if (!fast_open_ && ::connect(fd_, reinterpret_cast<const sockaddr*>(&peer_), peer_length_) != 0) {
      fail_connect();
    }
  }
  ~Connection() { ::close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Writes the bytes in chunks of at most `segment_size` (0: all at once), `delay` apart. False if the peer reset
  // the connection.
  bool send_split(std::span<const uint8_t> bytes, size_t segment_size, milliseconds delay) {
    const size_t step = segment_size == 0 ? bytes.size() : segment_size;
    for (size_t at = 0; at < bytes.size(); at += step) {
      if (at > 0) std::this_thread::sleep_for(delay);
      if (!send(bytes.subspan(at, std::min(step, bytes.size() - at)))) return false;
    }
    return true;
  }

  // False if the peer reset the connection.
  bool send(std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
      ssize_t sent = 0;
      if (fast_open_) {
        sent = ::sendto(fd_, bytes.data(), bytes.size(), MSG_FASTOPEN | MSG_NOSIGNAL,
                        reinterpret_cast<const sockaddr*>(&peer_), peer_length_);
        if (sent < 0 && errno == ECONNREFUSED) return false;
        if (sent < 0) fail_connect();
        fast_open_ = false;
        report_fast_open();
      } else {
        sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent < 0 && (errno == ECONNRESET || errno == EPIPE)) return false;
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0) fail_with_errno("send");
      }
      bytes = bytes.subspan(static_cast<size_t>(sent));
    }
    return true;
  }

  // Waits until `deadline` for bytes from the peer and appends them to `into`.
  Received receive(Clock::time_point deadline, Bytes& into) {
    for (;;) {
      const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Received::timeout;
      pollfd readable{fd_, POLLIN, 0};
      const int ready = ::poll(&readable, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) fail_with_errno("poll");
      if (ready == 0) return Received::timeout;
      uint8_t buffer[16384];
      const ssize_t length = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (length > 0) {
        into.insert(into.end(), buffer, buffer + length);
        return Received::data;
      }
      if (length == 0) return Received::closed;
      if (errno == ECONNRESET) return Received::reset;
      if (errno != EINTR) fail_with_errno("recv");
    }
  }

 private:
  [[noreturn]] static void fail_connect() {
    if (errno == EINPROGRESS || errno == EAGAIN) throw Failed("connect timed out");
    fail_with_errno("connect");
  }

  // Whether the data really went in the SYN depends on the kernel having a cookie for the peer (or on
  // net.ipv4.tcp_fastopen allowing data without one) and on the server: say what happened.
  void report_fast_open() const {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return;
    std::cerr << ((info.tcpi_options & TCPI_OPT_SYN_DATA) != 0
                      ? "tfo: the SYN-ACK acknowledged the data in the SYN\n"
                      : "tfo: the SYN-ACK acknowledged no data (no cookie yet, or no TFO at the server): the first "
                        "chunk went after the handshake\n");
  }

  bool fast_open_;
  int fd_ = -1;
  sockaddr_storage peer_{};
  socklen_t peer_length_ = 0;
};

// "h2,http/1.1" in the wire format of the ALPN extension: each name after its length.
Bytes alpn_wire_format(const std::string& list) {
  Bytes wire;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    if (end == start || end - start > 255) throw std::invalid_argument("--alpn: bad protocol list " + list);
    wire.push_back(static_cast<uint8_t>(end - start));
    wire.insert(wire.end(), list.begin() + static_cast<std::ptrdiff_t>(start),
                list.begin() + static_cast<std::ptrdiff_t>(end));
    start = end + 1;
  }
  return wire;
}

// An OpenSSL client that never touches the socket: the peer's bytes go in with feed(), its own come out of
// take_output().
class TlsClient {
 public:
  explicit TlsClient(const Options& options) {
    if (!context_) throw std::runtime_error("SSL_CTX_new failed");
    ::SSL_CTX_set_verify(context_.get(), SSL_VERIFY_NONE, nullptr);
    ssl_.reset(::SSL_new(context_.get()));
    BIO* in = ::BIO_new(::BIO_s_mem());
    BIO* out = ::BIO_new(::BIO_s_mem());
    if (!ssl_ || in == nullptr || out == nullptr) throw std::runtime_error("SSL_new failed");
    // An empty input asks OpenSSL to retry later instead of reporting the end of the stream.
    BIO_set_mem_eof_return(in, -1);
    ::SSL_set_bio(ssl_.get(), in, out);
    in_ = in;
    out_ = out;
    ::SSL_set_connect_state(ssl_.get());
    if (!options.no_sni && SSL_set_tlsext_host_name(ssl_.get(), options.sni.c_str()) != 1) {
      throw std::invalid_argument("--sni: OpenSSL refused " + options.sni);
    }
    if (!options.alpn.empty()) {
      const Bytes wire = alpn_wire_format(options.alpn);
      if (::SSL_set_alpn_protos(ssl_.get(), wire.data(), static_cast<unsigned>(wire.size())) != 0) {
        throw std::runtime_error("SSL_set_alpn_protos failed");
      }
    }
  }

  // Runs the handshake as far as the input allows: true once it is complete.
  bool advance() {
    const int result = ::SSL_connect(ssl_.get());
    if (result == 1) return true;
    if (::SSL_get_error(ssl_.get(), result) == SSL_ERROR_WANT_READ) return false;
    const char* reason = ::ERR_reason_error_string(::ERR_get_error());
    throw Failed(std::string("tls ") + (reason != nullptr ? reason : "handshake failed"));
  }

  void feed(std::span<const uint8_t> bytes) {
    if (::BIO_write(in_, bytes.data(), static_cast<int>(bytes.size())) != static_cast<int>(bytes.size())) {
      throw std::runtime_error("BIO_write failed");
    }
  }

  Bytes take_output() {
    Bytes bytes(static_cast<size_t>(BIO_pending(out_)));
    if (!bytes.empty() &&
        ::BIO_read(out_, bytes.data(), static_cast<int>(bytes.size())) != static_cast<int>(bytes.size())) {
      throw std::runtime_error("BIO_read failed");
    }
    return bytes;
  }

  void write(const std::string& text) { ::SSL_write(ssl_.get(), text.data(), static_cast<int>(text.size())); }

  // Reads the application data the input holds; the count of bytes read.
  size_t read_available() {
    size_t total = 0;
    char buffer[4096];
    int length = 0;
    while ((length = ::SSL_read(ssl_.get(), buffer, sizeof(buffer))) > 0) total += static_cast<size_t>(length);
    return total;
  }

  // "TLSv1.3 TLS_AES_256_GCM_SHA384", and " alpn h2" when the server chose a protocol.
  std::string describe() const {
    std::string text = std::string(::SSL_get_version(ssl_.get())) + ' ' + ::SSL_get_cipher_name(ssl_.get());
    const unsigned char* alpn = nullptr;
    unsigned alpn_length = 0;
    ::SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_length);
    if (alpn_length > 0) text += " alpn " + std::string(reinterpret_cast<const char*>(alpn), alpn_length);
    return text;
  }

 private:
  std::unique_ptr<SSL_CTX, decltype(&::SSL_CTX_free)> context_{::SSL_CTX_new(::TLS_client_method()), ::SSL_CTX_free};
  std::unique_ptr<SSL, decltype(&::SSL_free)> ssl_{nullptr, ::SSL_free};
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
};

// OpenSSL's first flight is the ClientHello in handshake records. The message re-framed into records of at most
// `record_size` bytes each, with the record version OpenSSL used (0: the flight as it is).
Bytes reframe_client_hello(std::span<const uint8_t> flight, size_t record_size) {
  constexpr const char* kNotHandshake = "OpenSSL's first flight is not whole handshake records";
  if (record_size == 0) return {flight.begin(), flight.end()};
  Bytes message;
  for (size_t at = 0; at < flight.size();) {
    const size_t left = flight.size() - at;
    if (left < kRecordHeaderSize || flight[at] != kHandshakeRecord) throw std::runtime_error(kNotHandshake);
    const size_t length = static_cast<size_t>(flight[at + 3] << 8 | flight[at + 4]);
    if (left < kRecordHeaderSize + length) throw std::runtime_error(kNotHandshake);
    message.insert(message.end(), flight.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeaderSize),
                   flight.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeaderSize + length));
    at += kRecordHeaderSize + length;
  }
  if (message.empty()) throw std::runtime_error("OpenSSL wrote no ClientHello");
  Bytes records;
  for (size_t at = 0; at < message.size(); at += record_size) {
    const size_t length = std::min(record_size, message.size() - at);
    records.insert(records.end(), {kHandshakeRecord, flight[1], flight[2], static_cast<uint8_t>(length >> 8),
                                   static_cast<uint8_t>(length & 0xff)});
    records.insert(records.end(), message.begin() + static_cast<std::ptrdiff_t>(at),
                   message.begin() + static_cast<std::ptrdiff_t>(at + length));
  }
  return records;
}

Outcome ended_before_handshake(Received received) {
  switch (received) {
    case Received::closed:
      return {Ending::refused, "fail closed"};
    case Received::reset:
      return {Ending::refused, "fail reset"};
    case Received::timeout:
    case Received::data:
      break;
  }
  return {Ending::failed, "fail timeout"};
}

Outcome run_tls(const Options& options) {
  TlsClient tls(options);
  tls.advance();
  const Bytes hello = reframe_client_hello(tls.take_output(), options.record_size);
  Connection connection(options);
  if (!connection.send_split(hello, options.segment_size, milliseconds(options.delay_ms))) {
    return ended_before_handshake(Received::reset);
  }
  const auto deadline = Clock::now() + milliseconds(options.timeout_ms);
  for (bool done = false; !done;) {
    Bytes incoming;
    const Received received = connection.receive(deadline, incoming);
    if (received != Received::data) return ended_before_handshake(received);
    tls.feed(incoming);
    done = tls.advance();
    if (!connection.send(tls.take_output())) return ended_before_handshake(Received::reset);
  }
  Outcome completed{Ending::passed, "ok " + tls.describe()};

  tls.write("ping\n");
  if (!connection.send(tls.take_output())) return completed;
  size_t reply = 0;
  const auto reply_deadline = Clock::now() + kReplyWait;
  for (Bytes incoming; connection.receive(reply_deadline, incoming) == Received::data; incoming.clear()) {
    tls.feed(incoming);
    reply += tls.read_available();
  }
  std::cerr << "read " << reply << " bytes after ping\n";
  return completed;
}

// The bytes of --send-raw: a hex string (whitespace allowed) or @FILE.
Bytes raw_bytes(const std::string& spec) {
  if (spec.starts_with('@')) {
    std::ifstream file(spec.substr(1), std::ios::binary);
    if (!file) throw std::invalid_argument("--send-raw: cannot read " + spec.substr(1));
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  }
  std::string digits;
  std::copy_if(spec.begin(), spec.end(), std::back_inserter(digits),
               [](char c) { return std::isspace(static_cast<unsigned char>(c)) == 0; });
  Bytes bytes;
  for (size_t at = 0; at + 1 < digits.size(); at += 2) {
    uint8_t value = 0;
    const char* end = digits.data() + at + 2;
    if (std::from_chars(digits.data() + at, end, value, 16).ptr != end) break;
    bytes.push_back(value);
  }
  if (digits.empty() || bytes.size() * 2 != digits.size()) throw std::invalid_argument("--send-raw: not hex: " + spec);
  return bytes;
}

Outcome run_raw(const Options& options) {
  const Bytes bytes = raw_bytes(options.send_raw);
  if (bytes.empty()) throw std::invalid_argument("--send-raw: no bytes");
  Connection connection(options);
  if (!connection.send_split(bytes, options.segment_size, milliseconds(options.delay_ms))) {
    return {Ending::refused, "reset"};
  }
  Bytes incoming;
  switch (connection.receive(Clock::now() + milliseconds(options.timeout_ms), incoming)) {
    case Received::data:
      return {Ending::passed, "data " + std::to_string(incoming.size())};
    case Received::timeout:
      return {Ending::passed, "timeout"};
    case Received::closed:
      return {Ending::refused, "closed"};
    case Received::reset:
      break;
  }
  return {Ending::refused, "reset"};
}

Outcome run(const Options& options) {
  try {
    return options.send_raw.empty() ? run_tls(options) : run_raw(options);
  } catch (const Failed& e) {
    return {Ending::failed, std::string("fail ") + e.what()};
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options options;
    CLI::App app{"Sends a TLS ClientHello (or raw bytes) split into small records and segments; see the source."};
    app.add_option("--connect", options.address, "server address literal")->required();
    app.add_option("--port", options.port, "server port")->required();
    CLI::Option_group* payload = app.add_option_group("payload", "what to send");
    payload->add_option("--sni", options.sni, "server name in the ClientHello");
    payload->add_flag("--no-sni", options.no_sni, "a ClientHello without a server name");
    CLI::Option* raw = payload->add_option("--send-raw", options.send_raw, "raw bytes instead of TLS: HEX or @FILE");
    payload->require_option(1);
    raw->excludes(
        app.add_option("--record-size", options.record_size, "bytes of handshake per record (0: OpenSSL's record)")
            ->check(CLI::Range(0, 16384)));
    app.add_option("--segment-size", options.segment_size, "bytes per write (0: one write)");
    app.add_option("--delay-ms", options.delay_ms, "pause between writes")->check(CLI::NonNegativeNumber);
    app.add_flag("--tfo", options.tfo, "send the first write in the SYN (TCP Fast Open)");
    raw->excludes(app.add_option("--alpn", options.alpn, "comma-separated ALPN protocols"));
    app.add_flag("--expect-close", options.expect_close, "succeed when the peer closes or resets first");
    app.add_option("--timeout-ms", options.timeout_ms, "bound on the connect and the wait for the peer")
        ->check(CLI::PositiveNumber);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    const Outcome outcome = run(options);
    std::cout << outcome.line << std::endl;
    return outcome.ending == (options.expect_close ? Ending::refused : Ending::passed) ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 2;
  }
}
