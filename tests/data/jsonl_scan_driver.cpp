// Drives the JSONL block scanner core under AddressSanitizer (built by test_columns.py).
// usage: jsonl_scan_driver BLOCKS KEY...
//   BLOCKS: blocks, each a uint32 length and that many bytes. Each is scanned from a heap copy of
//   exactly its size (so a read past its end is caught), with lines of up to 1 MiB; one line
//   per block is printed: kept documents, decoded bytes and characters per key, then the skip
//   counts and the undecided lines.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "jsonl_scan_core.h"

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  std::ifstream in(argv[1], std::ios::binary);
  std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> keys(argv + 2, argv + argc);
  for (size_t at = 0; at + 4 <= all.size();) {
    uint32_t n;
    std::memcpy(&n, all.data() + at, 4);
    std::unique_ptr<uint8_t[]> block(new uint8_t[n]);
    std::memcpy(block.get(), all.data() + at + 4, n);
    at += 4 + n;
    const megacpt::ScanResult r = megacpt::scan_jsonl(block.get(), n, keys, 1 << 20);
    std::printf("%zu", r.columns[0].offsets.size() - 1);
    for (const auto& c : r.columns) std::printf(" %zu %lld", c.size, static_cast<long long>(c.characters));
    std::printf(" %lld %lld %lld %lld %lld %zu\n", static_cast<long long>(r.blank_line),
                static_cast<long long>(r.missing_key), static_cast<long long>(r.not_a_string),
                static_cast<long long>(r.empty), static_cast<long long>(r.too_long), r.undecided.size() / 3);
  }
  return 0;
}
