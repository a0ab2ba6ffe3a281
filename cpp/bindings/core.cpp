// nanobind glue: numpy arrays in, arrays and bytes out, GIL released inside the core,
// nnr::Error mapped onto the nnr.errors hierarchy.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

#include "nnr/errors.h"
#include "nnr/quant.h"
#include "nnr/tensor_coder.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using I32Array = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using U8Array = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using F32Array = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// rows, cols, scan_order, dq, has_qp, qp_bits, profile, parent_node_id_present, num_gtx,
// codebook_size, codebook_zero_offset, legacy_v03, tca_base, hdsp_hist, init_estimate_limit,
// entry point deltas [(delta, offset, dq_state)], threads, init_estimate_on_multipliers
using EpTuple = std::tuple<int64_t, uint32_t, uint32_t>;  // signed: a hostile delta can be < 0
using ParamTuple = std::tuple<uint32_t, uint32_t, int, bool, bool, int, int, bool, uint32_t, uint32_t, uint32_t, bool,
                              std::optional<I32Array>, std::optional<U8Array>, uint64_t, std::vector<EpTuple>, int,
                              bool>;

nnr::TensorParams to_params(const ParamTuple& t) {
  nnr::TensorParams p;
  p.rows = std::get<0>(t);
  p.cols = std::get<1>(t);
  p.scan_order = std::get<2>(t);
  p.dq = std::get<3>(t);
  p.has_qp = std::get<4>(t);
  p.qp_bits = std::get<5>(t);
  p.profile = std::get<6>(t);
  p.parent_node_id_present = std::get<7>(t);
  p.num_gtx = std::get<8>(t);
  p.codebook_size = std::get<9>(t);
  p.codebook_zero_offset = std::get<10>(t);
  p.legacy_v03 = std::get<11>(t);
  p.init_estimate_limit = std::get<14>(t);
  for (const auto& e : std::get<15>(t)) {
    if (std::get<0>(e) < 0)
      throw nnr::Error(nnr::ErrorKind::NonConforming, "an entry point lies before the previous one");
    p.entry_point_deltas.push_back({uint64_t(std::get<0>(e)), std::get<1>(e), std::get<2>(e)});
  }
  p.threads = std::max(1, std::get<16>(t));
  p.init_estimate_on_multipliers = std::get<17>(t);
  const auto& base = std::get<12>(t);
  const auto& hist = std::get<13>(t);
  if (base) {
    if (base->shape(0) != p.size()) throw nnr::Error(nnr::ErrorKind::Config, "TCA base size differs from the tensor");
    p.tca_base = base->data();
  }
  if (hist) {
    if (hist->shape(0) != p.size()) throw nnr::Error(nnr::ErrorKind::Config, "HDSP history size differs from the tensor");
    p.hdsp_hist = hist->data();
  }
  return p;
}

nb::bytes to_bytes(const std::vector<uint8_t>& v) { return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size()); }

// Output arrays are allocated without initialization (their pages are first touched by the
// native code that fills them, with the GIL released) and handed to numpy with their owner.
template <class T>
struct Owned {
  std::unique_ptr<T[]> data;
  size_t size;
  explicit Owned(size_t n) : data(new T[n]), size(n) {}
  nb::ndarray<nb::numpy, T, nb::ndim<1>> release() {
    T* p = data.release();
    nb::capsule owner(p, [](void* q) noexcept { delete[] static_cast<T*>(q); });
    return nb::ndarray<nb::numpy, T, nb::ndim<1>>(p, {size}, owner);
  }
};

nb::tuple side_to_python(const nnr::TensorSide& s) {
  nb::list eps;
  for (const auto& e : s.entry_points) eps.append(nb::make_tuple(e.bit_position, e.cabac_offset, e.dq_state));
  return nb::make_tuple(s.qp, s.hdsp, s.row_skip_enabled, to_bytes(s.row_skip), to_bytes(s.init_sets),
                        s.level_start_bit, eps);
}

nb::tuple decode_payload(U8Array data, const std::vector<ParamTuple>& tuples) {
  std::vector<nnr::TensorParams> params;
  for (const auto& t : tuples) params.push_back(to_params(t));
  std::vector<Owned<int32_t>> bufs;  // every position is written by the decoder
  std::vector<int32_t*> outs;
  bufs.reserve(params.size());
  for (const auto& p : params) {
    bufs.emplace_back(p.size());
    outs.push_back(bufs.back().data.get());
  }
  std::vector<nnr::TensorSide> side;
  size_t consumed = 0;
  {
    nb::gil_scoped_release release;
    consumed = nnr::decode_payload(data.data(), data.shape(0), params, outs, side);
  }
  nb::list levels, sides;
  for (size_t i = 0; i < bufs.size(); ++i) {
    levels.append(bufs[i].release());
    sides.append(side_to_python(side[i]));
  }
  return nb::make_tuple(levels, sides, consumed);
}

// side tuple in: (qp, hdsp, row_skip or None)
using SideIn = std::tuple<int32_t, bool, std::optional<U8Array>>;

nb::tuple encode_payload(const std::vector<ParamTuple>& tuples, const std::vector<I32Array>& levels,
                         const std::vector<SideIn>& sides_in, bool param_opt) {
  std::vector<nnr::TensorParams> params;
  for (const auto& t : tuples) params.push_back(to_params(t));
  if (levels.size() != params.size() || sides_in.size() != params.size())
    throw nnr::Error(nnr::ErrorKind::Config, "one level array and side tuple per tensor needed");
  std::vector<const int32_t*> ptrs;
  std::vector<nnr::TensorSide> side(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (levels[i].shape(0) != params[i].size()) throw nnr::Error(nnr::ErrorKind::Config, "level array size differs from the tensor");
    ptrs.push_back(levels[i].data());
    side[i].qp = std::get<0>(sides_in[i]);
    side[i].hdsp = std::get<1>(sides_in[i]);
    const auto& rs = std::get<2>(sides_in[i]);
    if (rs) {
      side[i].row_skip_enabled = true;
      side[i].row_skip.assign(rs->data(), rs->data() + rs->shape(0));
    }
  }
  std::vector<uint8_t> out;
  {
    nb::gil_scoped_release release;
    out = nnr::encode_payload(params, ptrs, side, param_opt);
  }
  nb::list sides;
  for (const auto& s : side) sides.append(side_to_python(s));
  return nb::make_tuple(to_bytes(out), sides);
}

nb::ndarray<nb::numpy, int32_t, nb::ndim<1>> quantize(F32Array w, uint32_t rows, uint32_t cols, int scan_order, bool dq,
                                                      float step, double lambda_scale, uint32_t num_gtx) {
  nnr::TensorParams shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.scan_order = scan_order;
  shape.num_gtx = num_gtx;
  if (w.shape(0) != shape.size()) throw nnr::Error(nnr::ErrorKind::Config, "weight array size differs from rows*cols");
  Owned<int32_t> k(shape.size());
  bool ok;
  {
    nb::gil_scoped_release release;
    std::fill(k.data.get(), k.data.get() + k.size, 0);
    ok = dq ? nnr::quantize_dependent_rd(w.data(), k.data.get(), shape, step, lambda_scale)
            : nnr::quantize_uniform_rd(w.data(), k.data.get(), shape, step, lambda_scale);
  }
  if (!ok) throw nnr::Error(nnr::ErrorKind::Config, "quantization levels overflow 32 bits at this step size");
  return k.release();
}

nb::ndarray<nb::numpy, float, nb::ndim<1>> dequantize(I32Array k, float step) {
  Owned<float> w(k.shape(0));
  {
    nb::gil_scoped_release release;
    nnr::dequantize(k.data(), w.data.get(), w.size, step);
  }
  return w.release();
}

const char* error_class(nnr::ErrorKind kind) {
  switch (kind) {
    case nnr::ErrorKind::Truncated: return "TruncatedBitstreamError";
    case nnr::ErrorKind::NonConforming: return "NonConformingBitstreamError";
    case nnr::ErrorKind::Config: return "ConfigError";
    case nnr::ErrorKind::Unsupported: return "UnsupportedFeatureError";
    case nnr::ErrorKind::ResourceLimit: return "ResourceLimitError";
  }
  return "NnrError";
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "nnr native core: DeepCABAC payload coding and quantization";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const nnr::Error& e) {
      nb::object cls = nb::module_::import_("nnr.errors").attr(error_class(e.kind()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def("decode_payload", &decode_payload, "data"_a, "params"_a);
  m.def("encode_payload", &encode_payload, "params"_a, "levels"_a, "sides"_a, "param_opt"_a);
  m.def("quantize", &quantize, "w"_a, "rows"_a, "cols"_a, "scan_order"_a, "dq"_a, "step"_a,
        "lambda_scale"_a = 0.0, "num_gtx"_a = 11);
  m.def("dequantize", &dequantize, "k"_a, "step"_a);
  m.def("step_size", &nnr::step_size, "qp"_a, "qp_density"_a);
}
