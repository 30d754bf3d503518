// pybind11 face of the streaming indexed-dataset writer (indexed_builder_core.h).
// Reached from Python only through megacpt/data/indexed.py. A writer is not thread-safe: the
// GIL is released while it writes, so give each writer to one thread only.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "indexed_builder_core.h"

namespace py = pybind11;
using megacpt::IndexedWriter;

namespace {

using Lengths = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
template <typename T>
using Exact = py::array_t<T, py::array::c_style>;

constexpr size_t kStage = size_t{1} << 20;  // tokens read from lists before they are written

// `array` is a C-contiguous array of T, or one that converts to it (then copied).
template <typename T>
void add_flat(IndexedWriter& w, const py::array& array, const Lengths& lengths, int64_t eod) {
  if (lengths.ndim() != 1) throw std::invalid_argument("tokens and lengths must be 1-D");
  const auto tokens = Exact<T>::ensure(array);
  if (!tokens) throw std::invalid_argument("tokens cannot be read as a flat integer array");
  const T* t = tokens.data();
  const int64_t* n = lengths.data();
  const auto n_tokens = static_cast<size_t>(tokens.shape(0));
  const auto n_docs = static_cast<size_t>(lengths.shape(0));
  py::gil_scoped_release release;
  w.add_documents(t, n_tokens, n, n_docs, eod);
}

// Appends a batch of documents given as one flat integer array and the length of each document.
// uint16, int32, uint32 and int64 arrays are read in place; any other integer array is copied.
void add_documents(IndexedWriter& w, const py::array& tokens, const Lengths& lengths, int64_t eod) {
  if (tokens.ndim() != 1) throw std::invalid_argument("tokens and lengths must be 1-D");
  const char kind = tokens.dtype().kind();
  if (kind != 'i' && kind != 'u') throw std::invalid_argument("tokens must be an integer array");
  if (py::isinstance<Exact<uint16_t>>(tokens)) return add_flat<uint16_t>(w, tokens, lengths, eod);
  if (py::isinstance<Exact<int32_t>>(tokens)) return add_flat<int32_t>(w, tokens, lengths, eod);
  if (py::isinstance<Exact<uint32_t>>(tokens)) return add_flat<uint32_t>(w, tokens, lengths, eod);
  using Converted = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
  add_flat<int64_t>(w, Converted::ensure(tokens), lengths, eod);
}

// The value of a token id taken from a list. CPython 3.11 keeps ints below 2**30 in one digit,
// read here without a call; anything else goes through PyLong_AsLongLong.
inline int64_t token_of(PyObject* o) {
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
  if (PyLong_CheckExact(o)) {
    const Py_ssize_t size = Py_SIZE(o);
    if (size == 0) return 0;
    if (size == 1) return static_cast<int64_t>(reinterpret_cast<PyLongObject*>(o)->ob_digit[0]);
  }
#endif
  const long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// Appends a batch of documents given as Python lists of ints, as tokenizers return them: the ids
// are gathered (GIL held) into a flat staging array, written with the GIL released every kStage
// tokens, so the staging memory is bounded whatever the batch.
void add_lists(IndexedWriter& w, const py::list& docs, int64_t eod) {
  thread_local std::vector<int64_t> tokens, lengths;
  tokens.clear();
  lengths.clear();
  auto write = [&] {
    {
      py::gil_scoped_release release;
      w.add_documents(tokens.data(), tokens.size(), lengths.data(), lengths.size(), eod);
    }
    tokens.clear();
    lengths.clear();
  };
  for (py::handle doc : docs) {
    PyObject* list = doc.ptr();
    if (!PyList_Check(list)) throw std::invalid_argument("each document must be a list of token ids");
    const Py_ssize_t n = PyList_GET_SIZE(list);
    const size_t at = tokens.size();
    tokens.resize(at + static_cast<size_t>(n));
    int64_t* out = tokens.data() + at;
    for (Py_ssize_t i = 0; i < n; ++i) out[i] = token_of(PyList_GET_ITEM(list, i));
    lengths.push_back(n);
    if (tokens.size() >= kStage) write();
  }
  if (!lengths.empty()) write();
}

}  // namespace

PYBIND11_MODULE(_indexed_builder, m) {
  m.doc() = "Streaming writer for Megatron-core .bin/.idx indexed datasets (use megacpt.data.indexed).";
  m.attr("CODE_UINT16") = megacpt::kCodeUInt16;
  m.attr("CODE_INT32") = megacpt::kCodeInt32;
  py::class_<IndexedWriter>(m, "IndexedWriter")
      .def(py::init<std::string, uint8_t, std::string, uint64_t>(), py::arg("prefix"), py::arg("dtype_code"),
           py::arg("tokens_file") = "", py::arg("tokens_at") = 0)
      .def("add_documents", &add_documents, py::arg("tokens"), py::arg("lengths"), py::arg("eod") = -1)
      .def("add_lists", &add_lists, py::arg("docs"), py::arg("eod") = -1)
      .def("append_dataset", &IndexedWriter::append_dataset, py::arg("prefix"), py::arg("tokens_in_place") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("finalize", &IndexedWriter::finalize, py::call_guard<py::gil_scoped_release>())
      .def("abort", &IndexedWriter::abort)
      .def_property_readonly("dtype_code", &IndexedWriter::dtype_code)
      .def_property_readonly("sequences", &IndexedWriter::sequences)
      .def_property_readonly("documents", &IndexedWriter::documents)
      .def_property_readonly("tokens", &IndexedWriter::tokens)
      .def_property_readonly("finished", &IndexedWriter::finished);
}
