// py3langid's byte-DFA walk in C++ (megacpt/clean/langid.py uses it in place of py3langid's
// Python loop, the largest single cost of cleaning): the same feature counts, in the same order.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace py = pybind11;

namespace {

using Array32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using Array64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

class Walker {
 public:
  // nextmove[rowbase[state] + byte] is the next state; output[state] >= 0 is the feature it emits.
  Walker(Array32 nextmove, Array64 rowbase, Array32 output)
      : nextmove_(std::move(nextmove)), rowbase_(std::move(rowbase)), output_(std::move(output)) {
    if (rowbase_.size() != output_.size()) throw std::invalid_argument("rowbase and output differ in length");
    int32_t most = -1;
    for (py::ssize_t i = 0; i < output_.size(); ++i) most = std::max(most, output_.data()[i]);
    features_ = static_cast<size_t>(most + 1);
  }

  // {feature: count} in the order features first appear (py3langid's Counter), or None if none.
  py::object visit(const py::bytes& text) const {
    std::string_view bytes = text;
    std::vector<int32_t> counts(features_, 0);
    std::vector<int32_t> order;
    {
      py::gil_scoped_release release;
      const int32_t* next = nextmove_.data();
      const int64_t* rows = rowbase_.data();
      const int32_t* out = output_.data();
      const py::ssize_t moves = nextmove_.size();
      int64_t state = 0;
      for (unsigned char byte : bytes) {
        const int64_t at = rows[state] + byte;
        if (at >= moves) throw std::out_of_range("DFA move outside the table");
        state = next[at];
        const int32_t feature = out[state];
        if (feature >= 0 && counts[feature]++ == 0) order.push_back(feature);
      }
    }
    if (order.empty()) return py::none();
    py::dict visits;
    for (int32_t feature : order) visits[py::int_(feature)] = py::int_(counts[feature]);
    return std::move(visits);
  }

 private:
  Array32 nextmove_;
  Array64 rowbase_;
  Array32 output_;
  size_t features_ = 0;
};

}  // namespace

PYBIND11_MODULE(_langid_walk, m) {
  m.doc() = "py3langid's byte-DFA feature counts in C++";
  py::class_<Walker>(m, "Walker")
      .def(py::init<Array32, Array64, Array32>(), py::arg("nextmove"), py::arg("rowbase"), py::arg("output"))
      .def("visit", &Walker::visit, py::arg("text"));
}
