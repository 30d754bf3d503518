// Streaming writer for Megatron-core's indexed dataset (.bin/.idx), with no Python dependency.
//
// Why: Megatron's Python IndexedDatasetBuilder keeps every sequence length and document index in
// Python lists until finalize(), so memory grows with the corpus. This writer appends tokens to
// the .bin and spills the index columns (int32 lengths, int64 document indices) to side files;
// finalize() streams them into the .idx, computing the byte pointers on the fly. Peak memory is
// a few fixed buffers whatever the corpus size.
//
// Every file is written under a ".partial" name and renamed only when complete (.bin first,
// then .idx: an existing .idx marks a finished dataset). A writer destroyed without finalize()
// removes its partial files.
//
// The .idx layout (Megatron-core 0.16 _IndexWriter, no sequence modes):
//   "MMIDIDX\0\0" | u64 version=1 | u8 dtype code | u64 sequence count | u64 document count |
//   i32 lengths[sequence count] | i64 byte pointers[sequence count] | i64 document indices[document count]
// Document indices start with 0 and record the sequence count after each document.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace megacpt {

inline constexpr char kIndexHeader[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint8_t kCodeInt32 = 4;
inline constexpr uint8_t kCodeUInt16 = 8;
inline constexpr uint64_t kIndexPrelude = 9 + 8 + 1 + 8 + 8;
inline constexpr size_t kChunk = size_t{1} << 20;  // elements per streamed chunk

inline size_t itemsize_of(uint8_t code) {
  if (code == kCodeUInt16) return 2;
  if (code == kCodeInt32) return 4;
  throw std::invalid_argument("unsupported token dtype code " + std::to_string(code) +
                              " (expected 8 = uint16 or 4 = int32)");
}

// A FILE* with a large buffer that throws on every I/O error.
class File {
 public:
  File() = default;
  File(const std::string& path, const char* mode) : path_(path) {
    f_ = std::fopen(path.c_str(), mode);
    if (f_ == nullptr) fail("cannot open");
    std::setvbuf(f_, nullptr, _IOFBF, size_t{4} << 20);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  File(File&& o) noexcept : f_(std::exchange(o.f_, nullptr)), path_(std::move(o.path_)) {}
  File& operator=(File&& o) noexcept {
    discard();
    f_ = std::exchange(o.f_, nullptr);
    path_ = std::move(o.path_);
    return *this;
  }
  ~File() { discard(); }

  bool is_open() const { return f_ != nullptr; }
  void write(const void* data, size_t bytes) {
    if (bytes != 0 && std::fwrite(data, 1, bytes, f_) != bytes) fail("cannot write");
  }
  // Reads up to `bytes`; returns how many were read.
  size_t read_some(void* data, size_t bytes) {
    size_t got = std::fread(data, 1, bytes, f_);
    if (got != bytes && std::ferror(f_)) fail("cannot read");
    return got;
  }
  void read_exact(void* data, size_t bytes) {
    if (read_some(data, bytes) != bytes) fail("unexpected end of file in");
  }
  void seek(uint64_t offset) {
    if (fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) fail("cannot seek");
  }
  uint64_t size() {
    off_t here = ftello(f_);
    if (fseeko(f_, 0, SEEK_END) != 0) fail("cannot seek");
    off_t end = ftello(f_);
    if (here < 0 || end < 0 || fseeko(f_, here, SEEK_SET) != 0) fail("cannot seek");
    return static_cast<uint64_t>(end);
  }
  // Flushes, optionally fsyncs, and closes, throwing on any failure.
  void close(bool sync) {
    if (f_ == nullptr) return;
    bool ok = std::fflush(f_) == 0 && (!sync || ::fsync(fileno(f_)) == 0);
    ok = (std::fclose(f_) == 0) && ok;
    f_ = nullptr;
    if (!ok) fail("cannot flush");
  }
  void discard() noexcept {
    if (f_ != nullptr) std::fclose(f_);
    f_ = nullptr;
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw std::runtime_error(std::string(what) + " " + path_ + ": " + std::strerror(errno));
  }
  std::FILE* f_ = nullptr;
  std::string path_;
};

class IndexedWriter {
 public:
  IndexedWriter(std::string prefix, uint8_t dtype_code)
      : prefix_(std::move(prefix)), code_(dtype_code), itemsize_(itemsize_of(dtype_code)) {
    bin_ = File(partial(".bin"), "wb");
    lengths_ = File(partial(".lengths"), "wb");
    docs_ = File(partial(".docs"), "wb");
    const int64_t zero = 0;
    docs_.write(&zero, sizeof zero);
  }
  IndexedWriter(const IndexedWriter&) = delete;
  IndexedWriter& operator=(const IndexedWriter&) = delete;
  ~IndexedWriter() { abort(); }

  uint8_t dtype_code() const { return code_; }
  uint64_t sequences() const { return sequences_; }
  uint64_t documents() const { return documents_; }
  uint64_t tokens() const { return tokens_; }
  bool finished() const { return state_ != State::kOpen; }

  // Appends one document made of one sequence: tokens[0..n) then, if eod >= 0, the eod token.
  template <typename T>
  void add_document(const T* tokens, size_t n, int64_t eod = -1) {
    check_open();
    size_t total = n + (eod >= 0 ? 1 : 0);
    if (total > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      throw std::invalid_argument("document of " + std::to_string(total) +
                                  " tokens exceeds the int32 sequence length of the .idx format");
    }
    if (eod >= 0) check_token(eod);
    for (size_t start = 0; start < n; start += kChunk) {
      size_t count = std::min(kChunk, n - start);
      write_tokens(tokens + start, count);
    }
    if (eod >= 0) write_tokens(&eod, 1);
    const int32_t length = static_cast<int32_t>(total);
    lengths_.write(&length, sizeof length);
    ++sequences_;
    const int64_t end = static_cast<int64_t>(sequences_);
    docs_.write(&end, sizeof end);
    ++documents_;
    tokens_ += total;
  }

  // Appends every document of a finished dataset (Megatron's IndexedDatasetBuilder.add_index):
  // .bin bytes copied, lengths copied, document indices rebased by the sequences already written.
  void append_dataset(const std::string& other) {
    check_open();
    File idx(other + ".idx", "rb");
    char header[9];
    idx.read_exact(header, sizeof header);
    uint64_t version = 0, n_seq = 0, n_doc = 0;
    uint8_t code = 0;
    idx.read_exact(&version, 8);
    idx.read_exact(&code, 1);
    idx.read_exact(&n_seq, 8);
    idx.read_exact(&n_doc, 8);
    if (std::memcmp(header, kIndexHeader, 9) != 0 || version != 1) {
      throw std::invalid_argument(other + ".idx is not a Megatron indexed dataset (bad header)");
    }
    if (code != code_) {
      throw std::invalid_argument(other + ".idx has dtype code " + std::to_string(code) +
                                  ", the dataset being written has " + std::to_string(code_));
    }
    if (n_doc == 0 || idx.size() != kIndexPrelude + n_seq * 12 + n_doc * 8) {
      throw std::invalid_argument(other + ".idx is truncated or has sequence modes (size mismatch)");
    }
    std::vector<int32_t> lengths;
    uint64_t other_tokens = 0;
    for (uint64_t done = 0; done < n_seq;) {
      size_t count = static_cast<size_t>(std::min<uint64_t>(kChunk, n_seq - done));
      lengths.resize(count);
      idx.read_exact(lengths.data(), count * 4);
      for (int32_t len : lengths) {
        if (len < 0) throw std::invalid_argument(other + ".idx has a negative sequence length");
        other_tokens += static_cast<uint64_t>(len);
      }
      lengths_.write(lengths.data(), count * 4);
      done += count;
    }
    idx.seek(kIndexPrelude + n_seq * 12);
    std::vector<int64_t> docs;
    const int64_t offset = static_cast<int64_t>(sequences_);
    for (uint64_t done = 0; done < n_doc;) {
      size_t count = static_cast<size_t>(std::min<uint64_t>(kChunk, n_doc - done));
      docs.resize(count);
      idx.read_exact(docs.data(), count * 8);
      size_t first = 0;
      if (done == 0) {
        if (docs[0] != 0) throw std::invalid_argument(other + ".idx document indices do not start at 0");
        first = 1;
      }
      for (size_t i = first; i < count; ++i) docs[i] += offset;
      docs_.write(docs.data() + first, (count - first) * 8);
      done += count;
    }
    File bin(other + ".bin", "rb");
    if (bin.size() != other_tokens * itemsize_) {
      throw std::invalid_argument(other + ".bin size does not match its .idx");
    }
    std::vector<char> buffer(size_t{8} << 20);
    for (size_t got; (got = bin.read_some(buffer.data(), buffer.size())) > 0;) bin_.write(buffer.data(), got);
    sequences_ += n_seq;
    documents_ += n_doc - 1;
    tokens_ += other_tokens;
  }

  // Writes the .idx from the spilled columns and renames both files into place.
  void finalize() {
    check_open();
    bin_.close(true);
    lengths_.close(false);
    docs_.close(false);
    {
      File idx(partial(".idx"), "wb");
      idx.write(kIndexHeader, sizeof kIndexHeader);
      const uint64_t version = 1, n_doc = documents_ + 1;
      idx.write(&version, 8);
      idx.write(&code_, 1);
      idx.write(&sequences_, 8);
      idx.write(&n_doc, 8);
      copy_all(partial(".lengths"), idx);
      File lengths(partial(".lengths"), "rb");
      std::vector<int32_t> chunk(kChunk);
      std::vector<int64_t> pointers(kChunk);
      int64_t pointer = 0;
      for (size_t got; (got = lengths.read_some(chunk.data(), kChunk * 4) / 4) > 0;) {
        for (size_t i = 0; i < got; ++i) {
          pointers[i] = pointer;
          pointer += static_cast<int64_t>(chunk[i]) * static_cast<int64_t>(itemsize_);
        }
        idx.write(pointers.data(), got * 8);
      }
      copy_all(partial(".docs"), idx);
      idx.close(true);
    }
    rename_into_place(".bin");
    rename_into_place(".idx");
    std::remove(partial(".lengths").c_str());
    std::remove(partial(".docs").c_str());
    state_ = State::kFinalized;
  }

  // Discards everything written; no file is left behind. Safe to call more than once.
  void abort() noexcept {
    if (state_ != State::kOpen) return;
    state_ = State::kAborted;
    bin_.discard();
    lengths_.discard();
    docs_.discard();
    for (const char* ext : {".bin", ".lengths", ".docs", ".idx"}) std::remove(partial(ext).c_str());
  }

  std::string partial(const char* ext) const { return prefix_ + ext + ".partial"; }

 private:
  enum class State { kOpen, kFinalized, kAborted };

  void check_open() const {
    if (state_ != State::kOpen) throw std::runtime_error("the writer for " + prefix_ + " is already closed");
  }
  void check_token(int64_t token) const {
    const int64_t hi = code_ == kCodeUInt16 ? int64_t{65535} : int64_t{std::numeric_limits<int32_t>::max()};
    if (token < 0 || token > hi) {
      throw std::invalid_argument("token id " + std::to_string(token) + " does not fit the dataset's " +
                                  (code_ == kCodeUInt16 ? "uint16" : "int32") + " tokens");
    }
  }
  template <typename T>
  void write_tokens(const T* tokens, size_t n) {
    if (code_ == kCodeUInt16) {
      convert<uint16_t>(tokens, n, u16_);
      bin_.write(u16_.data(), n * 2);
    } else {
      convert<int32_t>(tokens, n, i32_);
      bin_.write(i32_.data(), n * 4);
    }
  }
  template <typename Out, typename T>
  void convert(const T* tokens, size_t n, std::vector<Out>& out) {
    out.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = static_cast<int64_t>(tokens[i]);
      if (t < 0 || t > static_cast<int64_t>(std::numeric_limits<Out>::max())) check_token(t);
      out[i] = static_cast<Out>(t);
    }
  }
  static void copy_all(const std::string& path, File& to) {
    File from(path, "rb");
    std::vector<char> buffer(size_t{4} << 20);
    for (size_t got; (got = from.read_some(buffer.data(), buffer.size())) > 0;) to.write(buffer.data(), got);
  }
  void rename_into_place(const char* ext) const {
    const std::string to = prefix_ + ext;
    if (std::rename(partial(ext).c_str(), to.c_str()) != 0) {
      throw std::runtime_error("cannot rename " + partial(ext) + " to " + to + ": " + std::strerror(errno));
    }
  }

  std::string prefix_;
  uint8_t code_;
  size_t itemsize_;
  File bin_, lengths_, docs_;
  uint64_t sequences_ = 0, documents_ = 0, tokens_ = 0;
  State state_ = State::kOpen;
  std::vector<uint16_t> u16_;
  std::vector<int32_t> i32_;
};

}  // namespace megacpt
