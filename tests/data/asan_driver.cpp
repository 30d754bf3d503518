// Drives the indexed-dataset writer core under AddressSanitizer (built by test_indexed_builder.py).
// usage: asan_driver TOKENS LENGTHS PREFIX CODE
//   TOKENS: flat int64 token ids; LENGTHS: int64 length of each document.
// Writes PREFIX (every document, one batch), PREFIX_a + PREFIX_b (two halves, a document at a
// time) merged into PREFIX_merged, the same halves written one after the other into PREFIX_one.bin
// (the second writer first given an offset with stale bytes after it) and merged by index, and checks that an out-of-range token throws (keeping the
// documents before its own) and that an abandoned writer leaves no file.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "indexed_builder_core.h"

static std::vector<int64_t> read_int64(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int64_t> out(bytes.size() / 8);
  std::memcpy(out.data(), bytes.data(), out.size() * 8);
  return out;
}

static uint64_t write_range(const std::string& prefix, uint8_t code, const std::vector<int64_t>& tokens,
                            const std::vector<int64_t>& lengths, size_t first, size_t last,
                            const std::string& tokens_file = "", uint64_t tokens_at = 0) {
  megacpt::IndexedWriter writer(prefix, code, tokens_file, tokens_at);
  size_t offset = 0;
  for (size_t i = 0; i < first; ++i) offset += static_cast<size_t>(lengths[i]);
  for (size_t i = first; i < last; ++i) {
    writer.add_document(tokens.data() + offset, static_cast<size_t>(lengths[i]));
    offset += static_cast<size_t>(lengths[i]);
  }
  writer.finalize();
  return writer.tokens();
}

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  const auto tokens = read_int64(argv[1]);
  const auto lengths = read_int64(argv[2]);
  const std::string prefix = argv[3];
  const auto code = static_cast<uint8_t>(std::stoi(argv[4]));
  const size_t half = lengths.size() / 2;

  {  // every document in one batch
    megacpt::IndexedWriter writer(prefix, code);
    writer.add_documents(tokens.data(), tokens.size(), lengths.data(), lengths.size(), -1);
    writer.finalize();
  }
  write_range(prefix + "_a", code, tokens, lengths, 0, half);
  write_range(prefix + "_b", code, tokens, lengths, half, lengths.size());
  {
    megacpt::IndexedWriter merged(prefix + "_merged", code);
    merged.append_dataset(prefix + "_a");
    merged.append_dataset(prefix + "_b");
    merged.finalize();
  }
  {
    const std::string one = prefix + "_one";
    const uint64_t itemsize = megacpt::itemsize_of(code);
    const uint64_t first = write_range(one + "_a", code, tokens, lengths, 0, half, one + ".bin", 0) * itemsize;
    {
      megacpt::IndexedWriter killed(one + "_b", code, one + ".bin", first);
      const int64_t three = 3;
      killed.add_documents(tokens.data(), 3, &three, 1, -1);
      killed.finalize();  // stale bytes after `first`, as a killed run would leave them
    }
    write_range(one + "_b", code, tokens, lengths, half, lengths.size(), one + ".bin", first);
    megacpt::IndexedWriter merged(one, code, one + ".bin", tokens.size() * itemsize);
    merged.append_dataset(one + "_a", true);
    merged.append_dataset(one + "_b", true);
    merged.finalize();
  }
  {
    megacpt::IndexedWriter bad(prefix + "_bad", code);
    const int64_t too_big = code == megacpt::kCodeUInt16 ? 65536 : int64_t{1} << 40;
    const int64_t batch[3] = {1, too_big, 2};
    const int64_t batch_lengths[2] = {1, 2};
    bool threw = false;
    try {
      bad.add_documents(batch, 3, batch_lengths, 2, 0);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    if (!threw || bad.documents() != 1 || bad.tokens() != 2) return 3;
  }  // destroyed unfinished: must remove its partial files
  for (const char* ext : {".bin.partial", ".idx.partial", ".lengths.partial", ".docs.partial", ".bin", ".idx"}) {
    if (std::FILE* f = std::fopen((prefix + "_bad" + ext).c_str(), "rb")) {
      std::fclose(f);
      return 4;
    }
  }
  std::puts("ok");
  return 0;
}
