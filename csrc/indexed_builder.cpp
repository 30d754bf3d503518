// pybind11 face of the streaming indexed-dataset writer (indexed_builder_core.h).
// Reached from Python only through megacpt/data/indexed.py.
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

// Appends a batch of documents given as one flat token array and the length of each document.
void add_documents(IndexedWriter& w, py::array_t<int64_t, py::array::c_style | py::array::forcecast> tokens,
                   py::array_t<int64_t, py::array::c_style | py::array::forcecast> lengths, int64_t eod) {
  if (tokens.ndim() != 1 || lengths.ndim() != 1) throw std::invalid_argument("tokens and lengths must be 1-D");
  const int64_t* t = tokens.data();
  const int64_t* n = lengths.data();
  int64_t total = 0;
  for (py::ssize_t i = 0; i < lengths.shape(0); ++i) {
    if (n[i] < 0) throw std::invalid_argument("negative document length");
    total += n[i];
  }
  if (total != tokens.shape(0)) throw std::invalid_argument("document lengths do not sum to the token count");
  py::gil_scoped_release release;
  for (py::ssize_t i = 0; i < lengths.shape(0); ++i) {
    w.add_document(t, static_cast<size_t>(n[i]), eod);
    t += n[i];
  }
}

// Appends a batch of documents given as Python lists of ints, as tokenizers return them:
// reading the lists here avoids building a NumPy array per document.
void add_lists(IndexedWriter& w, const py::list& docs, int64_t eod) {
  std::vector<int64_t> buffer;
  for (py::handle doc : docs) {
    if (!PyList_Check(doc.ptr())) throw std::invalid_argument("each document must be a list of token ids");
    const Py_ssize_t n = PyList_GET_SIZE(doc.ptr());
    buffer.resize(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      const long long v = PyLong_AsLongLong(PyList_GET_ITEM(doc.ptr(), i));
      if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
      buffer[static_cast<size_t>(i)] = v;
    }
    w.add_document(buffer.data(), buffer.size(), eod);
  }
}

}  // namespace

PYBIND11_MODULE(_indexed_builder, m) {
  m.doc() = "Streaming writer for Megatron-core .bin/.idx indexed datasets (use megacpt.data.indexed).";
  m.attr("CODE_UINT16") = megacpt::kCodeUInt16;
  m.attr("CODE_INT32") = megacpt::kCodeInt32;
  py::class_<IndexedWriter>(m, "IndexedWriter")
      .def(py::init<std::string, uint8_t>(), py::arg("prefix"), py::arg("dtype_code"))
      .def("add_documents", &add_documents, py::arg("tokens"), py::arg("lengths"), py::arg("eod") = -1)
      .def("add_lists", &add_lists, py::arg("docs"), py::arg("eod") = -1)
      .def("append_dataset", &IndexedWriter::append_dataset, py::arg("prefix"),
           py::call_guard<py::gil_scoped_release>())
      .def("finalize", &IndexedWriter::finalize, py::call_guard<py::gil_scoped_release>())
      .def("abort", &IndexedWriter::abort)
      .def_property_readonly("dtype_code", &IndexedWriter::dtype_code)
      .def_property_readonly("sequences", &IndexedWriter::sequences)
      .def_property_readonly("documents", &IndexedWriter::documents)
      .def_property_readonly("tokens", &IndexedWriter::tokens)
      .def_property_readonly("finished", &IndexedWriter::finished);
}
