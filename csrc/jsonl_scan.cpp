// pybind11 face of the JSONL block scanner (jsonl_scan_core.h), reached from Python only through
// megacpt/data/columns.py. The GIL is released while a block is scanned.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "jsonl_scan_core.h"

namespace py = pybind11;

namespace {

// A NumPy array over memory it now owns (freed with the array), without a copy.
template <typename T>
py::array_t<T> owned(T* data, size_t size, py::capsule owner) {
  return py::array_t<T>({static_cast<py::ssize_t>(size)}, {sizeof(T)}, data, std::move(owner));
}

py::tuple column(megacpt::Column&& c) {
  uint8_t* data = c.data.release();
  auto* offsets = new std::vector<int64_t>(std::move(c.offsets));
  py::capsule data_owner(data, [](void* p) { delete[] static_cast<uint8_t*>(p); });
  py::capsule offsets_owner(offsets, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  return py::make_tuple(owned(offsets->data(), offsets->size(), offsets_owner),
                        owned(data, c.size, data_owner), c.characters);
}

// Returns ([(offsets, data, characters) per key], {reason: count}, undecided as an (n, 3) int64 array).
py::tuple scan(const py::buffer& block, const std::vector<std::string>& keys, size_t max_bytes) {
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (keys[i] == keys[j]) throw std::invalid_argument("keys must be distinct");
    }
  }
  const py::buffer_info info = block.request();
  if (info.ndim != 1 || info.itemsize != 1) throw std::invalid_argument("block must be bytes");
  megacpt::ScanResult r;
  {
    py::gil_scoped_release release;
    r = megacpt::scan_jsonl(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), keys,
                            max_bytes);
  }
  py::list columns;
  for (auto& c : r.columns) columns.append(column(std::move(c)));
  py::dict skipped;
  skipped["blank_line"] = r.blank_line;
  skipped["missing_key"] = r.missing_key;
  skipped["not_a_string"] = r.not_a_string;
  skipped["empty"] = r.empty;
  skipped["too_long"] = r.too_long;
  auto* undecided = new std::vector<int64_t>(std::move(r.undecided));
  py::capsule owner(undecided, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  py::array_t<int64_t> lines(
      {static_cast<py::ssize_t>(undecided->size() / 3), py::ssize_t{3}},
      {3 * sizeof(int64_t), sizeof(int64_t)}, undecided->data(), owner);
  return py::make_tuple(columns, skipped, lines);
}

}  // namespace

PYBIND11_MODULE(_jsonl_scan, m) {
  m.doc() = "One-pass JSONL block scanner: requested string fields as Arrow-style columns (use megacpt.data.columns).";
  m.def("scan", &scan, py::arg("block"), py::arg("keys"), py::arg("max_bytes"));
}
