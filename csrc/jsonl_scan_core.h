// One pass over a block of JSONL lines: the requested string fields of each line, decoded to UTF-8
// and laid out as Arrow string columns (one byte buffer and int64 offsets per key), with no Python
// dependency.
//
// Why: Python's json costs a dict and a str per line, and pyarrow's JSON reader needs separate
// passes (control bytes, UTF-8, blank lines, emptiness) before its columns mean what megacpt's
// reference reader (megacpt/data/readers.py, Python's json) means. This scanner does all of it in
// one pass, and decides a line only where its answer is certainly the reference's:
//   - the line parses as strict JSON (RFC 8259 plus Python's NaN/Infinity), is valid UTF-8 with
//     no encoded surrogates, escapes decode to Unicode scalar values, nesting is at most kMaxDepth;
//   - its top-level value is an object whose requested keys (each decoded) occur at most once.
// Any other line (malformed, a BOM, a lone surrogate, a duplicate requested key, ...) is handed
// back as "undecided": the reference reader reads it. The reference's order of checks is kept: too long, blank, JSON, missing key,
// then each key in order (null: missing key; not a string: not a string), then empty.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace megacpt {

inline constexpr int kMaxDepth = 64;
inline constexpr long kMaxIntDigits = 4000;  // Python's int() refuses over 4,300

// One key's column: UTF-8 bytes of the kept documents, their offsets (starting with 0), and how
// many characters (code points) they hold.
struct Column {
  std::unique_ptr<uint8_t[]> data;
  size_t size = 0;
  std::vector<int64_t> offsets{0};
  int64_t characters = 0;
};

struct ScanResult {
  std::vector<Column> columns;
  int64_t blank_line = 0, missing_key = 0, not_a_string = 0, empty = 0, too_long = 0;
  // Undecided lines, as (first byte, end including its newline, kept documents before it).
  std::vector<int64_t> undecided;
};

namespace jsonl_detail {

enum Value : uint8_t { kAbsent, kNull, kString, kOther };

// Python's str.isspace(): what str.strip() removes, so a text of only these is empty. The set is
// Unicode's White_Space minus U+180E, as in every Python since 3.6 (a test checks it against the
// running Python's).
inline bool str_space(uint32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
// Python's bytes.strip() whitespace: what makes a line blank.
inline bool bytes_space(uint8_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0d); }
inline bool json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Length of the strict UTF-8 sequence at p (2-4 bytes, no surrogates, no overlongs), or 0.
inline size_t utf8_sequence(const uint8_t* p, const uint8_t* end) {
  const uint8_t c = p[0];
  auto cont = [&](size_t i, uint8_t lo = 0x80, uint8_t hi = 0xBF) {
    return p + i < end && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c >= 0xE1 && c <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// The code point of the valid UTF-8 sequence of n bytes at p.
inline uint32_t code_point(const uint8_t* p, size_t n) {
  if (n == 2) return (uint32_t{p[0]} & 0x1F) << 6 | (p[1] & 0x3F);
  if (n == 3) return (uint32_t{p[0]} & 0x0F) << 12 | (uint32_t{p[1]} & 0x3F) << 6 | (p[2] & 0x3F);
  return (uint32_t{p[0]} & 0x07) << 18 | (uint32_t{p[1]} & 0x3F) << 12 | (uint32_t{p[2]} & 0x3F) << 6 |
         (p[3] & 0x3F);
}

inline int hex4(const uint8_t* p, const uint8_t* end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const uint8_t c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

inline uint8_t* put_utf8(uint8_t* d, uint32_t cp) {
  if (cp < 0x80) {
    *d++ = static_cast<uint8_t>(cp);
  } else if (cp < 0x800) {
    *d++ = static_cast<uint8_t>(0xC0 | (cp >> 6));
    *d++ = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *d++ = static_cast<uint8_t>(0xE0 | (cp >> 12));
    *d++ = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    *d++ = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else {
    *d++ = static_cast<uint8_t>(0xF0 | (cp >> 18));
    *d++ = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
    *d++ = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    *d++ = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  }
  return d;
}

// A strict parser over one line [p, end). Every method returns false where the line is not
// certainly read as Python's json reads it; the caller then leaves the line undecided.
class LineParser {
 public:
  LineParser(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}

  // Parses the string at p_ (at its opening quote). With `out`, writes the decoded UTF-8 there
  // (room for the string's raw length is enough) and sets *size, and *visible to whether the text
  // holds a character that is not whitespace.
  bool string(uint8_t* out, size_t* size, bool* visible_out, int64_t* characters = nullptr) {
    ++p_;
    uint8_t* d = out;
    bool visible = false;
    int64_t multibyte = 0;  // bytes beyond the first of each multi-byte character
    for (;;) {
      // A run of characters that stand for themselves (printable ASCII other than the quote and
      // the backslash, valid UTF-8), checked character by character and copied in one go.
      const uint8_t* run = p_;
      while (p_ < end_) {
        const uint8_t c = *p_;
        if (c < 0x80) {
          if (c < 0x20 || c == '"' || c == '\\') break;
          visible |= !str_space(c);
          ++p_;
        } else {
          const size_t n = utf8_sequence(p_, end_);
          if (n == 0) return false;
          if (!visible) visible = !str_space(code_point(p_, n));
          multibyte += static_cast<int64_t>(n) - 1;
          p_ += n;
        }
      }
      if (out) {
        std::memcpy(d, run, static_cast<size_t>(p_ - run));
        d += p_ - run;
      }
      if (p_ >= end_) return false;
      const uint8_t c = *p_;
      if (c == '"') {
        ++p_;
        break;
      }
      if (c != '\\') return false;  // a raw control character: json's strict mode refuses it
      uint32_t cp;
      if (!escape(&cp)) return false;
      visible |= !str_space(cp);
      if (out) {
        uint8_t* start = d;
        d = put_utf8(d, cp);
        multibyte += (d - start) - 1;
      }
    }
    if (out) {
      *size = static_cast<size_t>(d - out);
      *visible_out = visible;
      if (characters) *characters = static_cast<int64_t>(*size) - multibyte;
    }
    return true;
  }

  // Skips any JSON value (Python's json: NaN, Infinity and -Infinity included).
  bool value(int depth) {
    if (p_ >= end_) return false;
    switch (*p_) {
      case '"':
        return string(nullptr, nullptr, nullptr);
      case '{':
      case '[':
        return depth < kMaxDepth && container(depth + 1);
      case 't':
        return word("true");
      case 'f':
        return word("false");
      case 'n':
        return word("null");
      case 'N':
        return word("NaN");
      case 'I':
        return word("Infinity");
      default:
        return number();
    }
  }

  void spaces() {
    while (p_ < end_ && json_space(*p_)) ++p_;
  }
  bool take(uint8_t c) {
    if (p_ >= end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  bool at(uint8_t c) const { return p_ < end_ && *p_ == c; }
  bool done() const { return p_ == end_; }
  bool word(const char* w) {
    const size_t n = std::strlen(w);
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, w, n) != 0) return false;
    p_ += n;
    return true;
  }
  const uint8_t* position() const { return p_; }

 private:
  bool escape(uint32_t* cp) {
    if (end_ - p_ < 2) return false;
    const uint8_t e = p_[1];
    p_ += 2;
    switch (e) {
      case '"': *cp = '"'; return true;
      case '\\': *cp = '\\'; return true;
      case '/': *cp = '/'; return true;
      case 'b': *cp = '\b'; return true;
      case 'f': *cp = '\f'; return true;
      case 'n': *cp = '\n'; return true;
      case 'r': *cp = '\r'; return true;
      case 't': *cp = '\t'; return true;
      case 'u': break;
      default: return false;
    }
    const int hi = hex4(p_, end_);
    if (hi < 0) return false;
    p_ += 4;
    if (hi < 0xD800 || hi > 0xDFFF) {
      *cp = static_cast<uint32_t>(hi);
      return true;
    }
    if (hi > 0xDBFF || end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;  // lone surrogate
    const int lo = hex4(p_ + 2, end_);
    if (lo < 0xDC00 || lo > 0xDFFF) return false;
    p_ += 6;
    *cp = 0x10000 + ((static_cast<uint32_t>(hi) - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
    return true;
  }

  bool container(int depth) {
    const bool object = *p_ == '{';
    const uint8_t close = object ? '}' : ']';
    ++p_;
    spaces();
    if (take(close)) return true;
    for (;;) {
      if (object) {
        if (!at('"') || !string(nullptr, nullptr, nullptr)) return false;
        spaces();
        if (!take(':')) return false;
        spaces();
      }
      if (!value(depth)) return false;
      spaces();
      if (take(close)) return true;
      if (!take(',')) return false;
      spaces();
    }
  }

  // Python's json number: -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?, or -Infinity. An integer of
  // more than kMaxIntDigits digits stays undecided: Python refuses to convert it (a ValueError).
  bool number() {
    if (take('-') && at('I')) return word("Infinity");
    auto digits = [&] {
      const uint8_t* start = p_;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      return p_ - start;
    };
    const auto integer = take('0') ? 1 : digits();
    if (integer == 0 || integer > kMaxIntDigits) return false;
    if (take('.') && digits() == 0) return false;
    if (at('e') || at('E')) {
      ++p_;
      if (!take('+')) take('-');
      if (digits() == 0) return false;
    }
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace jsonl_detail

// Scans the whole lines of [block, block + n); `keys` must be distinct.
inline ScanResult scan_jsonl(const uint8_t* block, size_t n, const std::vector<std::string>& keys,
                             size_t max_bytes) {
  using namespace jsonl_detail;
  const size_t k = keys.size();
  ScanResult r;
  r.columns.resize(k);
  for (auto& c : r.columns) c.data.reset(new uint8_t[n + 1]);  // decoded text is never longer
  std::vector<Value> value(k);
  std::vector<uint8_t> visible(k);  // per key: the text holds a non-whitespace character
  std::vector<int64_t> chars(k);
  std::vector<size_t> mark(k);
  std::string key;
  int64_t kept = 0;
  const uint8_t* end = block + n;
  for (const uint8_t* s = block; s < end;) {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(s, '\n', static_cast<size_t>(end - s)));
    const uint8_t* e = nl ? nl : end;
    const uint8_t* next = nl ? nl + 1 : end;
    const uint8_t* line = s;
    s = next;
    if (static_cast<size_t>(e - line) > max_bytes) {
      ++r.too_long;
      continue;
    }
    const uint8_t* q = line;
    while (q < e && bytes_space(*q)) ++q;
    if (q == e) {
      ++r.blank_line;
      continue;
    }
    for (size_t i = 0; i < k; ++i) {
      value[i] = kAbsent;
      mark[i] = r.columns[i].size;
    }
    LineParser parser(line, e);
    bool certain = [&] {
      parser.spaces();
      if (!parser.take('{')) return false;
      parser.spaces();
      if (parser.take('}')) return true;
      for (;;) {
        if (!parser.at('"')) return false;
        const uint8_t* key_at = parser.position();
        if (!parser.string(nullptr, nullptr, nullptr)) return false;
        const size_t raw = static_cast<size_t>(parser.position() - key_at) - 2;
        const uint8_t* name = key_at + 1;
        size_t size = raw;
        if (std::memchr(name, '\\', raw) != nullptr) {  // an escaped key: compared decoded
          key.resize(raw);
          bool ignored;
          LineParser again(key_at, parser.position());
          again.string(reinterpret_cast<uint8_t*>(key.data()), &size, &ignored);
          name = reinterpret_cast<const uint8_t*>(key.data());
        }
        size_t match = k;
        for (size_t i = 0; i < k && match == k; ++i) {
          if (keys[i].size() == size && std::memcmp(keys[i].data(), name, size) == 0) match = i;
        }
        parser.spaces();
        if (!parser.take(':')) return false;
        parser.spaces();
        if (match < k) {
          if (value[match] != kAbsent) return false;  // json keeps the last of duplicate keys
          if (parser.at('"')) {
            Column& c = r.columns[match];
            size_t written;
            bool shows;
            if (!parser.string(c.data.get() + c.size, &written, &shows, &chars[match])) return false;
            visible[match] = shows;
            c.size += written;
            value[match] = kString;
          } else {
            value[match] = parser.at('n') ? kNull : kOther;
            if (!parser.value(1)) return false;
          }
        } else if (!parser.value(1)) {
          return false;
        }
        parser.spaces();
        if (parser.take('}')) return true;
        if (!parser.take(',')) return false;
        parser.spaces();
      }
    }();
    if (certain) {
      parser.spaces();
      certain = parser.done();
    }
    enum { kKeep, kMissing, kNotString, kEmpty, kUndecided } verdict = kUndecided;
    if (certain) {
      verdict = kKeep;
      for (size_t i = 0; i < k; ++i) {
        if (value[i] == kAbsent) verdict = kMissing;
      }
      for (size_t i = 0; i < k && verdict == kKeep; ++i) {
        if (value[i] == kNull) verdict = kMissing;
        if (value[i] == kOther) verdict = kNotString;
      }
      bool shows = false;
      for (size_t i = 0; i < k; ++i) shows |= visible[i] != 0;
      if (verdict == kKeep && !shows) verdict = kEmpty;
    }
    if (verdict == kKeep) {
      for (size_t i = 0; i < k; ++i) {
        r.columns[i].offsets.push_back(static_cast<int64_t>(r.columns[i].size));
        r.columns[i].characters += chars[i];
      }
      ++kept;
      continue;
    }
    for (size_t i = 0; i < k; ++i) r.columns[i].size = mark[i];
    if (verdict == kMissing) ++r.missing_key;
    if (verdict == kNotString) ++r.not_a_string;
    if (verdict == kEmpty) ++r.empty;
    if (verdict == kUndecided) {
      r.undecided.push_back(line - block);
      r.undecided.push_back(next - block);
      r.undecided.push_back(kept);
    }
  }
  return r;
}

}  // namespace megacpt
