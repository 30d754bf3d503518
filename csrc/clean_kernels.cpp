// The per-document arithmetic of `megacpt clean` in C++ (megacpt/clean/_kernels.pyi is its typed face):
// py3langid's naive-Bayes scores, character-class counts, repeated character n-grams and MinHash
// signatures. Each gives what the Python it replaced gave (tests/clean/test_kernels.py checks them
// against numpy and py3langid references); strings are read in place, in CPython's own layout.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
// Scores sum float32 products, with FMA where the CPU has it: the last bits of a probability may
// differ between CPUs of different kinds (never between runs on one).

namespace py = pybind11;

namespace {

// sums[l] += weight * row[l] for the float16 bit patterns of row: 8 at a time with the F16C
// conversion where the CPU has it (checked at run time), else through the table of all halves.
#if defined(__x86_64__)
__attribute__((target("avx2,f16c,fma"))) void add_halves_f16c(const uint16_t* row, float weight, float* sums,
                                                               py::ssize_t n) {
  const __m256 w = _mm256_set1_ps(weight);
  py::ssize_t l = 0;
  for (; l + 8 <= n; l += 8) {
    const __m256 values = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + l)));
    _mm256_storeu_ps(sums + l, _mm256_fmadd_ps(w, values, _mm256_loadu_ps(sums + l)));
  }
  for (; l < n; ++l) sums[l] += weight * _cvtsh_ss(row[l]);
}

const bool kHasF16c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
#else
const bool kHasF16c = false;
#endif

void add_halves(const uint16_t* row, float weight, float* sums, py::ssize_t n, const float* halves) {
#if defined(__x86_64__)
  if (kHasF16c) return add_halves_f16c(row, weight, sums, n);
#endif
  for (py::ssize_t l = 0; l < n; ++l) sums[l] += weight * halves[row[l]];
}

using Array8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using Array32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using Array64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using ArrayU16 = py::array_t<uint16_t, py::array::c_style | py::array::forcecast>;
using ArrayU64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using ArrayF32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

// A str's code points as CPython stores them: 1, 2 or 4 bytes each.
struct Text {
  const char* data;
  Py_ssize_t length;
  int width;

  explicit Text(const py::str& text) {
    PyObject* object = text.ptr();
    if (PyUnicode_READY(object) != 0) throw py::error_already_set();
    data = static_cast<const char*>(PyUnicode_DATA(object));
    length = PyUnicode_GET_LENGTH(object);
    width = PyUnicode_KIND(object);
  }

  uint32_t operator[](Py_ssize_t i) const {
    switch (width) {
      case 1: return reinterpret_cast<const uint8_t*>(data)[i];
      case 2: return reinterpret_cast<const uint16_t*>(data)[i];
      default: return reinterpret_cast<const uint32_t*>(data)[i];
    }
  }
};

// py3langid's model: a byte automaton whose states emit features, and per feature a log-probability
// per language.
class LangScorer {
 public:
  // nextmove[rowbase[state] + byte] is the next state; output[state] >= 0 is the feature it emits;
  // halves[table[feature, language]] and prior[language] are the naive-Bayes log-probabilities (the
  // table holds float16 bit patterns, as py3langid stores it; halves maps each to its float).
  LangScorer(Array32 nextmove, Array64 rowbase, Array32 output, ArrayU16 table, ArrayF32 halves, ArrayF32 prior)
      : nextmove_(std::move(nextmove)), rowbase_(std::move(rowbase)), output_(std::move(output)),
        table_(std::move(table)), halves_(std::move(halves)), prior_(std::move(prior)) {
    if (halves_.size() != 0x10000) throw std::invalid_argument("halves must have 65536 entries");
    if (rowbase_.size() != output_.size()) throw std::invalid_argument("rowbase and output differ in length");
    if (table_.ndim() != 2 || prior_.ndim() != 1 || table_.shape(1) != prior_.shape(0))
      throw std::invalid_argument("table must be (features, languages) and prior (languages,)");
    // every move stays inside the tables, so the walk needs no checks
    for (py::ssize_t i = 0; i < rowbase_.size(); ++i)
      if (rowbase_.data()[i] < 0 || rowbase_.data()[i] + 255 >= nextmove_.size())
        throw std::invalid_argument("a state's row of moves lies outside the table");
    for (py::ssize_t i = 0; i < nextmove_.size(); ++i)
      if (nextmove_.data()[i] < 0 || nextmove_.data()[i] >= output_.size())
        throw std::invalid_argument("a move leads to no state");
    int32_t most = -1;
    for (py::ssize_t i = 0; i < output_.size(); ++i) most = std::max(most, output_.data()[i]);
    if (most >= table_.shape(0)) throw std::invalid_argument("the automaton emits features the table lacks");
    features_ = static_cast<size_t>(most + 1);
  }

  // prior + sum over features of log1p(count) * table[feature]: py3langid's raw scores of the UTF-8
  // bytes `text`, or None when the text has no feature.
  py::object scores(const py::bytes& text) const {
    std::string_view bytes = text;
    const py::ssize_t languages = prior_.shape(0);
    std::vector<float> sums(static_cast<size_t>(languages), 0.0f);
    bool any = false;
    {
      py::gil_scoped_release release;
      // zero between calls (only the features seen are reset); room for every feature, so that
      // nothing below can throw with counts half-way
      thread_local std::vector<int32_t> counts;
      thread_local std::vector<int32_t> seen;
      if (counts.size() < features_) counts.assign(features_, 0);
      if (seen.capacity() < features_) seen.reserve(features_);
      seen.clear();
      const int32_t* next = nextmove_.data();
      const int64_t* rows = rowbase_.data();
      const int32_t* out = output_.data();
      int64_t state = 0;
      for (unsigned char byte : bytes) {
        state = next[rows[state] + byte];
        const int32_t feature = out[state];
        if (feature >= 0 && counts[feature]++ == 0) seen.push_back(feature);
      }
      any = !seen.empty();
      const uint16_t* table = table_.data();
      const float* halves = halves_.data();
      for (int32_t feature : seen) {
        const float weight = static_cast<float>(std::log1p(static_cast<double>(counts[feature])));
        add_halves(table + static_cast<py::ssize_t>(feature) * languages, weight, sums.data(), languages, halves);
        counts[feature] = 0;
      }
    }
    if (!any) return py::none();
    py::array_t<float> result(languages);
    float* dst = result.mutable_data();
    for (py::ssize_t l = 0; l < languages; ++l) dst[l] = sums[l] + prior_.data()[l];
    return std::move(result);
  }

 private:
  Array32 nextmove_;
  Array64 rowbase_;
  Array32 output_;
  ArrayU16 table_;
  ArrayF32 halves_;
  ArrayF32 prior_;
  size_t features_ = 0;
};

// How many characters of `text` have each of the 8 bits of table[code point] set (code points of
// the Basic Multilingual Plane), and how many lie beyond it.
py::tuple class_counts(const py::str& text, const Array8& table) {
  if (table.size() != 0x10000) throw std::invalid_argument("the class table must have 65536 entries");
  const Text chars(text);
  const uint8_t* classes = table.data();
  int64_t bits[8] = {0};
  int64_t beyond = 0;
  {
    py::gil_scoped_release release;
    int64_t values[256] = {0};
    for (Py_ssize_t i = 0; i < chars.length; ++i) {
      const uint32_t point = chars[i];
      if (point < 0x10000) ++values[classes[point]];
      else ++beyond;
    }
    for (int value = 1; value < 256; ++value)
      for (int bit = 0; bit < 8; ++bit)
        if (value >> bit & 1) bits[bit] += values[value];
  }
  py::list counts;
  for (int64_t c : bits) counts.append(c);
  return py::make_tuple(py::tuple(counts), beyond);
}

constexpr uint64_t kBase = 0x100000001B3ULL;

uint64_t mix(uint64_t h) {  // MurmurHash3's 64-bit finaliser
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  h ^= h >> 33;
  return h;
}

// Each n-character window's hash: mix of the polynomial of its code points in base kBase (mod 2**64),
// rolled from one window to the next.
std::vector<uint64_t> window_hashes(const Text& chars, Py_ssize_t n) {
  const Py_ssize_t windows = chars.length - n + 1;
  std::vector<uint64_t> hashes(static_cast<size_t>(std::max<Py_ssize_t>(windows, 0)));
  if (windows <= 0) return hashes;
  uint64_t power = 1;  // kBase ** (n - 1)
  for (Py_ssize_t k = 1; k < n; ++k) power *= kBase;
  uint64_t h = 0;
  for (Py_ssize_t k = 0; k < n; ++k) h = h * kBase + chars[k];
  hashes[0] = mix(h);
  for (Py_ssize_t i = 1; i < windows; ++i) {
    h = (h - power * chars[i - 1]) * kBase + chars[i + n - 1];
    hashes[static_cast<size_t>(i)] = mix(h);
  }
  return hashes;
}

// How many characters of `text` lie under an n-character window that occurs more than once. Windows
// are found again through an open-addressing table of their hashes and compared in full.
int64_t repeated_ngram_cover(const py::str& text, int64_t n) {
  if (n < 1) throw std::invalid_argument("n must be at least 1");
  const Text chars(text);
  if (chars.length < n) return 0;
  py::gil_scoped_release release;
  const std::vector<uint64_t> hashes = window_hashes(chars, n);
  const size_t windows = hashes.size();
  if (windows >= std::numeric_limits<uint32_t>::max()) throw std::length_error("text too long");
  const size_t span = static_cast<size_t>(n) * chars.width;
  size_t capacity = 16;
  while (capacity < 2 * windows) capacity <<= 1;
  constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
  std::vector<uint32_t> slots(capacity, kEmpty);  // the first window of each distinct text
  std::vector<uint32_t> first(windows), count(windows, 0);
  bool repeats = false;
  for (size_t i = 0; i < windows; ++i) {
    size_t slot = hashes[i] & (capacity - 1);
    for (;; slot = (slot + 1) & (capacity - 1)) {
      const uint32_t j = slots[slot];
      if (j == kEmpty) {
        slots[slot] = static_cast<uint32_t>(i);
        first[i] = static_cast<uint32_t>(i);
        break;
      }
      if (hashes[j] == hashes[i] && std::memcmp(chars.data + static_cast<size_t>(j) * chars.width, chars.data + i * chars.width, span) == 0) {
        first[i] = j;
        repeats = true;
        break;
      }
    }
    ++count[first[i]];
  }
  if (!repeats) return 0;
  int64_t covered = 0;
  size_t reach = 0;  // characters before `reach` are covered already
  for (size_t i = 0; i < windows; ++i) {
    if (count[first[i]] < 2) continue;
    const size_t start = std::max(i, reach), end = i + static_cast<size_t>(n);
    if (end > start) covered += static_cast<int64_t>(end - start);
    reach = std::max(reach, end);
  }
  return covered;
}

// Per permutation p, least[p] = min(least[p], (a[p] * x + b[p]) >> 32) over the keys x (mod 2**64);
// on x86-64 ELF systems compiled for AVX2 too, chosen at load time.
#if defined(__x86_64__) && defined(__ELF__)
#define MEGACPT_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define MEGACPT_AVX2_CLONE
#endif
MEGACPT_AVX2_CLONE void least_multiply_shift(const uint64_t* keys, size_t count,
                                                                             const uint64_t* a, const uint64_t* b,
                                                                             uint64_t* least, size_t perms) {
  for (size_t i = 0; i < count; ++i) {
    const uint64_t x = keys[i];
    for (size_t p = 0; p < perms; ++p) least[p] = std::min(least[p], (a[p] * x + b[p]) >> 32);
  }
}

// The MinHash signature of `text`'s character n-grams (one n-gram of the whole text if it is
// shorter): per permutation p the least (multipliers[p] * x + offsets[p]) >> 32 (mod 2**64) over the
// low 32 bits x of the n-grams' hashes (window_hashes), capped at 2**32 - 1.
py::array_t<uint32_t> minhash(const py::str& text, int64_t n, const ArrayU64& multipliers, const ArrayU64& offsets) {
  if (n < 1) throw std::invalid_argument("n must be at least 1");
  if (multipliers.size() != offsets.size()) throw std::invalid_argument("multipliers and offsets differ in length");
  const Text chars(text);
  const size_t perms = static_cast<size_t>(multipliers.size());
  std::vector<uint64_t> least(perms, std::numeric_limits<uint32_t>::max());
  {
    py::gil_scoped_release release;
    std::vector<uint64_t> keys = window_hashes(chars, std::max<Py_ssize_t>(std::min<Py_ssize_t>(n, chars.length), 1));
    if (keys.empty()) keys.push_back(mix(0));  // the empty text: one empty n-gram
    for (uint64_t& key : keys) key &= 0xFFFFFFFFULL;
    least_multiply_shift(keys.data(), keys.size(), multipliers.data(), offsets.data(), least.data(), perms);
  }
  py::array_t<uint32_t> signature(static_cast<py::ssize_t>(perms));
  uint32_t* dst = signature.mutable_data();
  for (size_t p = 0; p < perms; ++p) dst[p] = static_cast<uint32_t>(least[p]);
  return signature;
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "megacpt clean's per-document arithmetic in C++";
  py::class_<LangScorer>(m, "LangScorer")
      .def(py::init<Array32, Array64, Array32, ArrayU16, ArrayF32, ArrayF32>(), py::arg("nextmove"),
           py::arg("rowbase"), py::arg("output"), py::arg("table"), py::arg("halves"), py::arg("prior"))
      .def("scores", &LangScorer::scores, py::arg("text"));
  m.def("class_counts", &class_counts, py::arg("text"), py::arg("table"));
  m.def("repeated_ngram_cover", &repeated_ngram_cover, py::arg("text"), py::arg("n"));
  m.def("minhash", &minhash, py::arg("text"), py::arg("n"), py::arg("multipliers"), py::arg("offsets"));
}
