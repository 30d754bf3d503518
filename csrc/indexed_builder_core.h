// Streaming writer for Megatron-core's indexed dataset (.bin/.idx), with no Python dependency.
//
// Why: Megatron's Python IndexedDatasetBuilder keeps every sequence length and document index in
// Python lists until finalize(), so memory grows with the corpus. This writer appends tokens to
// the .bin and spills the index columns (int32 lengths, int64 document indices) to side files;
// finalize() streams them into the .idx, computing the byte pointers on the fly. Peak memory is
// a few fixed buffers whatever the corpus size.
//
// Speed: tokens are converted straight into a 4 MiB buffer that goes to the file with write(2);
// documents come in batches (one flat token array plus lengths), so there is no per-document
// call overhead; on Linux the kernel is asked to start writing each 32 MiB to disk as soon as it
// is written (sync_file_range), so the fsync at the end has less left to wait for. Merging copies
// a finished dataset's .bin inside the kernel (copy_file_range) where the filesystem allows it.
//
// Every file is written under a ".partial" name and renamed only when complete and fsynced (.bin
// first, then .idx: an existing .idx marks a finished dataset). A writer may instead put its tokens
// into an existing file from a given byte offset (a run whose datasets follow one another in one
// token file): that file is truncated to the offset first, fsynced by finalize() and never renamed;
// merging such datasets appends their indices only. A writer destroyed without
// finalize() removes its partial files. A batch with a bad token or length writes the documents
// before the bad one and none after it, so the dataset stays consistent.
//
// The .idx layout (Megatron-core 0.16 _IndexWriter, no sequence modes):
//   "MMIDIDX\0\0" | u64 version=1 | u8 dtype code | u64 sequence count | u64 document count |
//   i32 lengths[sequence count] | i64 byte pointers[sequence count] | i64 document indices[document count]
// Document indices start with 0 and record the sequence count after each document.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace megacpt {

inline constexpr char kIndexHeader[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint8_t kCodeInt32 = 4;
inline constexpr uint8_t kCodeUInt16 = 8;
inline constexpr uint64_t kIndexPrelude = 9 + 8 + 1 + 8 + 8;
inline constexpr size_t kChunk = size_t{1} << 20;           // elements per streamed chunk when reading
inline constexpr size_t kBuffer = size_t{4} << 20;          // bytes per write(2)
inline constexpr uint64_t kWritebackEvery = uint64_t{32} << 20;  // bytes between writeback requests

inline size_t itemsize_of(uint8_t code) {
  if (code == kCodeUInt16) return 2;
  if (code == kCodeInt32) return 4;
  throw std::invalid_argument("unsupported token dtype code " + std::to_string(code) +
                              " (expected 8 = uint16 or 4 = int32)");
}

[[noreturn]] inline void fail_io(const char* what, const std::string& path) {
  throw std::runtime_error(std::string(what) + " " + path + ": " + std::strerror(errno));
}

// A file being read through a FILE*, throwing on every I/O error.
class Source {
 public:
  explicit Source(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (f_ == nullptr) fail_io("cannot open", path_);
  }
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;
  ~Source() { std::fclose(f_); }

  // Reads up to `bytes`; returns how many were read.
  size_t read_some(void* data, size_t bytes) {
    size_t got = std::fread(data, 1, bytes, f_);
    if (got != bytes && std::ferror(f_)) fail_io("cannot read", path_);
    return got;
  }
  void read_exact(void* data, size_t bytes) {
    if (read_some(data, bytes) != bytes) fail_io("unexpected end of file in", path_);
  }
  void seek(uint64_t offset) {
    if (fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) fail_io("cannot seek", path_);
  }
  uint64_t size() {
    off_t here = ftello(f_);
    if (fseeko(f_, 0, SEEK_END) != 0) fail_io("cannot seek", path_);
    off_t end = ftello(f_);
    if (here < 0 || end < 0 || fseeko(f_, here, SEEK_SET) != 0) fail_io("cannot seek", path_);
    return static_cast<uint64_t>(end);
  }

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

// A new file written through one buffer and write(2), throwing on every I/O error.
class Sink {
 public:
  Sink() = default;
  explicit Sink(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) fail_io("cannot open", path_);
    buffer_.reset(new char[kBuffer]);
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  Sink(Sink&& o) noexcept { *this = std::move(o); }
  Sink& operator=(Sink&& o) noexcept {
    discard();
    fd_ = std::exchange(o.fd_, -1);
    used_ = std::exchange(o.used_, 0);
    written_ = std::exchange(o.written_, 0);
    queued_ = std::exchange(o.queued_, 0);
    buffer_ = std::move(o.buffer_);
    path_ = std::move(o.path_);
    return *this;
  }
  ~Sink() { discard(); }

  // Writes the existing (or new) file at `path` from byte `at` on, dropping what follows `at`; a
  // file shorter than `at` is refused (its bytes before `at` are someone's finished tokens).
  static Sink at(std::string path, uint64_t at) {
    Sink sink;
    sink.path_ = std::move(path);
    sink.fd_ = ::open(sink.path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (sink.fd_ < 0) fail_io("cannot open", sink.path_);
    const off_t end = ::lseek(sink.fd_, 0, SEEK_END);
    if (end < 0) fail_io("cannot seek", sink.path_);
    if (static_cast<uint64_t>(end) < at) {
      throw std::runtime_error(sink.path_ + " holds " + std::to_string(end) + " bytes, fewer than the " +
                               std::to_string(at) + " its finished datasets need (truncated or replaced)");
    }
    if (::ftruncate(sink.fd_, static_cast<off_t>(at)) != 0) fail_io("cannot truncate", sink.path_);
    if (::lseek(sink.fd_, static_cast<off_t>(at), SEEK_SET) < 0) fail_io("cannot seek", sink.path_);
    sink.written_ = sink.queued_ = at;
    sink.buffer_.reset(new char[kBuffer]);
    return sink;
  }

  // Space for `count` items of T at the end of the buffer (count * sizeof(T) <= kBuffer); they
  // become part of the file only when commit()ed.
  template <typename T>
  T* room(size_t count) {
    if (used_ % sizeof(T) != 0 || used_ + count * sizeof(T) > kBuffer) flush();
    return reinterpret_cast<T*>(buffer_.get() + used_);
  }
  template <typename T>
  void commit(size_t count) {
    used_ += count * sizeof(T);
  }
  void write(const void* data, size_t bytes) {
    if (used_ + bytes > kBuffer) {
      flush();
      if (bytes >= kBuffer) {
        write_fd(static_cast<const char*>(data), bytes);
        return;
      }
    }
    std::memcpy(buffer_.get() + used_, data, bytes);
    used_ += bytes;
  }
  void flush() {
    write_fd(buffer_.get(), used_);
    used_ = 0;
  }
  // Flushes, optionally fsyncs, and closes, throwing on any failure.
  void close(bool sync) {
    if (fd_ < 0) return;
    flush();
    if (sync && ::fsync(fd_) != 0) fail_io("cannot sync", path_);
    if (::close(std::exchange(fd_, -1)) != 0) fail_io("cannot close", path_);
  }
  // Asks the kernel to start writing what was written so far to disk, without waiting for it.
  // Advisory (Linux only): the fsync in close() reports any error.
  void start_writeback() {
#ifdef __linux__
    ::sync_file_range(fd_, static_cast<off_t>(queued_), static_cast<off_t>(written_ - queued_),
                      SYNC_FILE_RANGE_WRITE);
#endif
    queued_ = written_;
  }
  // Appends the whole file at `path`: copied inside the kernel where it can be (copy_file_range,
  // Linux), else read through the buffer.
  void append_file(const std::string& path) {
    flush();
    const int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) fail_io("cannot open", path);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{in};
#ifdef __linux__
    for (;;) {
      const ssize_t n = ::copy_file_range(in, nullptr, fd_, nullptr, size_t{1} << 30, 0);
      if (n > 0) {
        written_ += static_cast<uint64_t>(n);
        if (written_ - queued_ >= kWritebackEvery) start_writeback();
        continue;
      }
      if (n == 0) return;
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) fail_io("cannot copy", path);
      break;  // not supported here: the offsets are unchanged, so copy the rest by hand
    }
#endif
    for (;;) {
      const ssize_t n = ::read(in, buffer_.get(), kBuffer);
      if (n == 0) return;
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_io("cannot read", path);
      }
      write_fd(buffer_.get(), static_cast<size_t>(n));
    }
  }
  void discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    used_ = 0;
  }

 private:
  void write_fd(const char* data, size_t bytes) {
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, data, std::min(bytes, size_t{1} << 30));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_io("cannot write", path_);
      }
      data += n;
      bytes -= static_cast<size_t>(n);
      written_ += static_cast<uint64_t>(n);
    }
    if (written_ - queued_ >= kWritebackEvery) start_writeback();
  }

  int fd_ = -1;
  size_t used_ = 0;
  uint64_t written_ = 0, queued_ = 0;
  std::unique_ptr<char[]> buffer_;
  std::string path_;
};

class IndexedWriter {
 public:
  // With `tokens_file`, the tokens go into that file from byte `tokens_at` on (see the top).
  IndexedWriter(std::string prefix, uint8_t dtype_code, const std::string& tokens_file = "", uint64_t tokens_at = 0)
      : prefix_(std::move(prefix)), code_(dtype_code), itemsize_(itemsize_of(dtype_code)),
        tokens_file_(tokens_file), tokens_at_(tokens_at) {
    bin_ = tokens_file_.empty() ? Sink(partial(".bin")) : Sink::at(tokens_file_, tokens_at_);
    lengths_ = Sink(partial(".lengths"));
    docs_ = Sink(partial(".docs"));
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
    const int64_t length = static_cast<int64_t>(n);
    add_documents(tokens, n, &length, 1, eod);
  }

  // Appends n_docs documents, each one sequence: document i is the next lengths[i] of the
  // n_tokens tokens, then the eod token if eod >= 0. The lengths and eod are checked before
  // anything is written; a token that does not fit the dtype stops the batch at its document.
  template <typename T>
  void add_documents(const T* tokens, size_t n_tokens, const int64_t* lengths, size_t n_docs, int64_t eod) {
    check_open();
    if (eod >= 0) check_token(eod);
    const size_t extra = eod >= 0 ? 1 : 0;
    uint64_t total = 0;
    constexpr auto kMaxLength = static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
    for (size_t i = 0; i < n_docs; ++i) {
      if (lengths[i] < 0) throw std::invalid_argument("negative document length");
      const uint64_t length = static_cast<uint64_t>(lengths[i]) + extra;
      if (length > kMaxLength) {
        throw std::invalid_argument("document of " + std::to_string(length) +
                                    " tokens exceeds the int32 sequence length of the .idx format");
      }
      total += static_cast<uint64_t>(lengths[i]);
    }
    if (total != n_tokens) throw std::invalid_argument("document lengths do not sum to the token count");
    if (code_ == kCodeUInt16) {
      write_documents<uint16_t>(tokens, lengths, n_docs, eod);
    } else {
      write_documents<int32_t>(tokens, lengths, n_docs, eod);
    }
  }

  // Appends every document of a finished dataset (Megatron's IndexedDatasetBuilder.add_index):
  // .bin bytes copied, lengths copied, document indices rebased by the sequences already written.
  // With `tokens_in_place` the dataset's tokens already sit in this writer's token file, where it
  // would put them (written there by a writer given that file): only its index is appended.
  void append_dataset(const std::string& other, bool tokens_in_place = false) {
    check_open();
    Source idx(other + ".idx");
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
    // Checked whole before anything is appended, so a bad input leaves this dataset as it was.
    std::vector<int32_t> lengths;
    auto each_lengths_chunk = [&](auto&& use) {
      idx.seek(kIndexPrelude);
      for (uint64_t done = 0; done < n_seq;) {
        lengths.resize(static_cast<size_t>(std::min<uint64_t>(kChunk, n_seq - done)));
        idx.read_exact(lengths.data(), lengths.size() * 4);
        use();
        done += lengths.size();
      }
    };
    uint64_t other_tokens = 0;
    each_lengths_chunk([&] {
      for (int32_t len : lengths) {
        if (len < 0) throw std::invalid_argument(other + ".idx has a negative sequence length");
        other_tokens += static_cast<uint64_t>(len);
      }
    });
    if (tokens_in_place && tokens_file_.empty()) {
      throw std::invalid_argument("appending " + other + " in place needs a writer given its token file");
    }
    if (!tokens_in_place && Source(other + ".bin").size() != other_tokens * itemsize_) {
      throw std::invalid_argument(other + ".bin size does not match its .idx");
    }
    int64_t first_doc = -1;
    idx.seek(kIndexPrelude + n_seq * 12);
    idx.read_exact(&first_doc, 8);
    if (first_doc != 0) throw std::invalid_argument(other + ".idx document indices do not start at 0");

    each_lengths_chunk([&] { lengths_.write(lengths.data(), lengths.size() * 4); });
    idx.seek(kIndexPrelude + n_seq * 12 + 8);
    std::vector<int64_t> docs;
    const int64_t offset = static_cast<int64_t>(sequences_);
    for (uint64_t done = 1; done < n_doc;) {
      docs.resize(static_cast<size_t>(std::min<uint64_t>(kChunk, n_doc - done)));
      idx.read_exact(docs.data(), docs.size() * 8);
      for (int64_t& d : docs) d += offset;
      docs_.write(docs.data(), docs.size() * 8);
      done += docs.size();
    }
    if (!tokens_in_place) bin_.append_file(other + ".bin");
    sequences_ += n_seq;
    documents_ += n_doc - 1;
    tokens_ += other_tokens;
  }

  // Writes the .idx from the spilled columns, fsyncs both files and renames them into place.
  // The .bin's last bytes start going to disk while the .idx is written, and both are fsynced
  // only then, so one journal commit usually covers both.
  void finalize() {
    check_open();
    bin_.flush();
    bin_.start_writeback();
    lengths_.close(false);
    docs_.close(false);
    {
      Sink idx(partial(".idx"));
      idx.write(kIndexHeader, sizeof kIndexHeader);
      const uint64_t version = 1, n_doc = documents_ + 1;
      idx.write(&version, 8);
      idx.write(&code_, 1);
      idx.write(&sequences_, 8);
      idx.write(&n_doc, 8);
      idx.append_file(partial(".lengths"));
      Source lengths(partial(".lengths"));  // pointers computed straight into the .idx buffer
      std::vector<int32_t> chunk(static_cast<size_t>(std::min<uint64_t>(kBuffer / 8, sequences_ + 1)));
      int64_t pointer = 0;
      for (size_t got; (got = lengths.read_some(chunk.data(), chunk.size() * 4) / 4) > 0;) {
        int64_t* pointers = idx.room<int64_t>(got);
        for (size_t i = 0; i < got; ++i) {
          pointers[i] = pointer;
          pointer += static_cast<int64_t>(chunk[i]) * static_cast<int64_t>(itemsize_);
        }
        idx.commit<int64_t>(got);
      }
      idx.append_file(partial(".docs"));
      idx.flush();
      bin_.close(true);
      idx.close(true);
    }
    if (tokens_file_.empty()) rename_into_place(".bin");
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
    // Best effort: the next writer given this offset cuts the file there too (Sink::at).
    if (!tokens_file_.empty()) (void)::truncate(tokens_file_.c_str(), static_cast<off_t>(tokens_at_));
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
  // Copies n tokens into out as Out; returns false if any does not fit Out (out is then partly
  // written). Branch-free, so the compiler vectorises it.
  template <typename Out, typename T>
  static bool convert(const T* tokens, size_t n, Out* out) {
    constexpr uint64_t hi = static_cast<uint64_t>(std::numeric_limits<Out>::max());
    bool bad = false;
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = static_cast<int64_t>(tokens[i]);
      bad |= static_cast<uint64_t>(t) > hi;
      out[i] = static_cast<Out>(t);
    }
    return !bad;
  }
  template <typename T>
  [[noreturn]] void throw_bad_token(const T* tokens, size_t n) const {
    for (size_t i = 0; i < n; ++i) check_token(static_cast<int64_t>(tokens[i]));
    throw std::logic_error("convert() reported a bad token that check_token() accepts");
  }
  // Each document's tokens go into the .bin buffer and count only once all of them fit the
  // dtype; a document longer than the buffer is checked whole before its first byte is written.
  template <typename Out, typename T>
  void write_documents(const T* tokens, const int64_t* lengths, size_t n_docs, int64_t eod) {
    for (size_t d = 0; d < n_docs; ++d) {
      const size_t n = static_cast<size_t>(lengths[d]);
      const size_t total = n + (eod >= 0 ? 1 : 0);
      if (total <= kBuffer / sizeof(Out)) {  // fits the buffer: written only once all are valid
        Out* out = bin_.room<Out>(total);
        if (!convert(tokens, n, out)) throw_bad_token(tokens, n);
        if (eod >= 0) out[n] = static_cast<Out>(eod);
        bin_.commit<Out>(total);
      } else {
        for (size_t i = 0; i < n; ++i) check_token(static_cast<int64_t>(tokens[i]));
        for (size_t start = 0; start < n;) {
          const size_t count = std::min(n - start, kBuffer / sizeof(Out));
          convert(tokens + start, count, bin_.room<Out>(count));
          bin_.commit<Out>(count);
          start += count;
        }
        if (eod >= 0) {
          *bin_.room<Out>(1) = static_cast<Out>(eod);
          bin_.commit<Out>(1);
        }
      }
      tokens += n;
      const int32_t length = static_cast<int32_t>(total);
      lengths_.write(&length, sizeof length);
      ++sequences_;
      const int64_t end = static_cast<int64_t>(sequences_);
      docs_.write(&end, sizeof end);
      ++documents_;
      tokens_ += total;
    }
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
  std::string tokens_file_;
  uint64_t tokens_at_;
  Sink bin_, lengths_, docs_;
  uint64_t sequences_ = 0, documents_ = 0, tokens_ = 0;
  State state_ = State::kOpen;
};

}  // namespace megacpt
