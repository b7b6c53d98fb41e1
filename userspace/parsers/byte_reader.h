// Bounded cursor over a byte span, the one reading primitive of every parser in this folder.
// Each read checks the span bound in one place and either consumes exactly what it returns or
// nothing at all, so a failed read leaves the cursor where the caller can still report it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace portcullis::parsers {

class ByteReader {
 public:
  explicit constexpr ByteReader(std::span<const uint8_t> data) noexcept : data_(data) {}

  [[nodiscard]] constexpr size_t remaining() const noexcept { return data_.size() - offset_; }
  [[nodiscard]] constexpr size_t consumed() const noexcept { return offset_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return remaining() == 0; }

  [[nodiscard]] constexpr std::optional<uint8_t> u8() noexcept { return unsigned_be<uint8_t, 1>(); }
  [[nodiscard]] constexpr std::optional<uint16_t> u16() noexcept { return unsigned_be<uint16_t, 2>(); }
  [[nodiscard]] constexpr std::optional<uint32_t> u24() noexcept { return unsigned_be<uint32_t, 3>(); }
  [[nodiscard]] constexpr std::optional<uint32_t> u32() noexcept { return unsigned_be<uint32_t, 4>(); }

  // QUIC variable-length integer (RFC 9000 section 16): the two top bits of the first byte give
  // the encoded length (1, 2, 4 or 8 bytes), the remaining bits are the big-endian value.
  [[nodiscard]] constexpr std::optional<uint64_t> varint() noexcept {
    if (empty()) {
      return std::nullopt;
    }
    const uint8_t first = data_[offset_];
    const size_t length = size_t{1} << (first >> 6);
    if (length > remaining()) {
      return std::nullopt;
    }
    uint64_t value = first & 0x3fu;
    for (size_t i = 1; i < length; ++i) {
      value = (value << 8) | data_[offset_ + i];
    }
    offset_ += length;
    return value;
  }

  [[nodiscard]] constexpr std::optional<std::span<const uint8_t>> bytes(size_t count) noexcept {
    if (count > remaining()) {
      return std::nullopt;
    }
    const auto view = data_.subspan(offset_, count);
    offset_ += count;
    return view;
  }

  // Reads a length-prefixed vector (the TLS `opaque x<a..b>` shape): a big-endian length of
  // `length_bytes` bytes followed by that many bytes, returned as a reader of its own.
  [[nodiscard]] constexpr std::optional<ByteReader> prefixed(size_t length_bytes) noexcept {
    if (length_bytes > remaining()) {
      return std::nullopt;
    }
    size_t length = 0;
    for (size_t i = 0; i < length_bytes; ++i) {
      length = (length << 8) | data_[offset_ + i];
    }
    if (length > remaining() - length_bytes) {
      return std::nullopt;
    }
    const ByteReader body(data_.subspan(offset_ + length_bytes, length));
    offset_ += length_bytes + length;
    return body;
  }

  [[nodiscard]] constexpr bool skip(size_t count) noexcept { return bytes(count).has_value(); }

  [[nodiscard]] constexpr std::span<const uint8_t> rest() const noexcept { return data_.subspan(offset_); }

 private:
  // The width is a template argument so each fixed-size read compiles to straight-line code.
  template <typename T, size_t Length>
  [[nodiscard]] constexpr std::optional<T> unsigned_be() noexcept {
    if (Length > remaining()) {
      return std::nullopt;
    }
    T value = 0;
    for (size_t i = 0; i < Length; ++i) {
      value = static_cast<T>((value << 8) | data_[offset_ + i]);
    }
    offset_ += Length;
    return value;
  }

  std::span<const uint8_t> data_;
  size_t offset_ = 0;
};

}  // namespace portcullis::parsers
