// hdnnp._core: thin pybind11 facade over libhdnnp. Arrays are taken without copies
// (noconvert + c_style: a wrong dtype or layout raises instead of copying) and the
// GIL is released while the C++ core works.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <type_traits>

#include "hdnnp/electrostatics.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/ewald_parameters.hpp"
#include "hdnnp/fourth_generation.hpp"
#include "hdnnp/kalman.hpp"
#include "hdnnp/third_generation.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/network.hpp"
#include "hdnnp/qeq.hpp"
#include "hdnnp/neighbor.hpp"
#include "hdnnp/structure_io.hpp"
#include "hdnnp/units.hpp"

namespace py = pybind11;
using namespace hdnnp;

namespace {

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, heap->data(), owner);
}

using CArrD = py::array_t<double, py::array::c_style>;
using CArrI32 = py::array_t<int32_t, py::array::c_style>;
using CArrI64 = py::array_t<int64_t, py::array::c_style>;

py::dict structure_to_dict(Structure&& s) {
    py::dict d;
    const auto n = static_cast<py::ssize_t>(s.n_atoms());
    d["comment"] = s.comment;
    d["set"] = s.set;
    d["periodic"] = s.periodic;
    d["lattice"] = to_numpy(std::vector<double>(s.lattice, s.lattice + 9), {3, 3});
    d["positions"] = to_numpy(std::move(s.positions), {n, 3});
    d["symbols"] = s.symbols;
    d["charges"] = to_numpy(std::move(s.charges), {n});
    d["forces"] = to_numpy(std::move(s.forces), {n, 3});
    d["energy"] = s.has_energy ? py::object(py::float_(s.energy)) : py::object(py::none());
    d["charge"] = s.has_charge ? py::object(py::float_(s.charge)) : py::object(py::none());
    d["line"] = s.line;
    return d;
}

Structure dict_to_structure(const py::dict& d) {
    Structure s;
    s.comment = d.contains("comment") ? py::cast<std::string>(d["comment"]) : "";
    s.set = d.contains("set") ? py::cast<std::string>(d["set"]) : "";
    s.periodic = d.contains("periodic") && py::cast<bool>(d["periodic"]);
    if (s.periodic) {
        auto lat = py::cast<py::array_t<double, py::array::c_style | py::array::forcecast>>(d["lattice"]);
        if (lat.size() != 9) throw std::invalid_argument("lattice must be 3x3");
        std::copy(lat.data(), lat.data() + 9, s.lattice);
    }
    s.symbols = py::cast<std::vector<std::string>>(d["symbols"]);
    const size_t n = s.symbols.size();
    auto get = [&](const char* key, size_t len) {
        std::vector<double> v(len, 0.0);
        if (d.contains(key) && !d[key].is_none()) {
            auto a = py::cast<py::array_t<double, py::array::c_style | py::array::forcecast>>(d[key]);
            if (static_cast<size_t>(a.size()) != len)
                throw std::invalid_argument(std::string(key) + " has the wrong size");
            std::copy(a.data(), a.data() + len, v.begin());
        }
        return v;
    };
    s.positions = get("positions", 3 * n);
    s.charges = get("charges", n);
    s.extra.assign(n, 0.0);
    s.forces = get("forces", 3 * n);
    if (d.contains("energy") && !d["energy"].is_none()) { s.energy = py::cast<double>(d["energy"]); s.has_energy = true; }
    if (d.contains("charge") && !d["charge"].is_none()) { s.charge = py::cast<double>(d["charge"]); s.has_charge = true; }
    return s;
}

py::dict extrapolation_dict(const std::vector<Extrapolation>& x) {
    const auto ne = static_cast<py::ssize_t>(x.size());
    std::vector<int64_t> xa(ne); std::vector<int32_t> xs(ne); std::vector<double> xv(ne), xmin(ne), xmax(ne);
    for (py::ssize_t k = 0; k < ne; ++k) {
        xa[k] = x[k].atom; xs[k] = x[k].sf; xv[k] = x[k].value; xmin[k] = x[k].min; xmax[k] = x[k].max;
    }
    py::dict ex;
    ex["atom"] = to_numpy(std::move(xa), {ne});
    ex["sf"] = to_numpy(std::move(xs), {ne});
    ex["value"] = to_numpy(std::move(xv), {ne});
    ex["min"] = to_numpy(std::move(xmin), {ne});
    ex["max"] = to_numpy(std::move(xmax), {ne});
    return ex;
}

const Model& first_model(const Model& m) { return m; }
const Model& first_model(const Committee& c) { return c.first(); }

template <class Potential>
py::dict compute_py(const Potential& mo, py::array_t<double, py::array::c_style> pos,
                    py::array_t<int32_t, py::array::c_style> species, int64_t n_local,
                    CArrI64 offsets, CArrI32 index, std::optional<CArrI32> shift_id,
                    std::optional<CArrD> shifts, bool forces, bool virial, bool descriptors,
                    bool scaled, int threads, double min_distance, bool member_forces,
                    std::optional<CArrD> dEdG, bool baseline) {
    if (pos.ndim() != 2 || pos.shape(1) != 3) throw std::invalid_argument("positions must be (n, 3)");
    const int64_t na = pos.shape(0);
    if (species.ndim() != 1 || species.shape(0) != na) throw std::invalid_argument("species must be (n,)");
    if (offsets.ndim() != 1 || offsets.shape(0) != n_local + 1)
        throw std::invalid_argument("offsets must have n_local + 1 entries");
    const int64_t np = offsets.at(n_local);
    if (index.ndim() != 1 || index.shape(0) != np) throw std::invalid_argument("index must have offsets[-1] entries");
    for (int64_t p = 0; p < np; ++p)
        if (index.data()[p] < 0 || index.data()[p] >= na) throw std::invalid_argument("neighbour index out of range");
    AtomsView A;
    A.n_local = n_local; A.n_all = na;
    A.positions = pos.data(); A.species = species.data();
    A.neighbors.n_centers = n_local;
    A.neighbors.offsets = offsets.data();
    A.neighbors.index = index.data();
    if (shift_id) {
        if (!shifts) throw std::invalid_argument("shift_id needs shifts");
        if (shift_id->shape(0) != np) throw std::invalid_argument("shift_id must have offsets[-1] entries");
        const int64_t ns = shifts->size() / 3;
        for (int64_t p = 0; p < np; ++p)
            if (shift_id->data()[p] < 0 || shift_id->data()[p] >= ns) throw std::invalid_argument("shift id out of range");
        A.neighbors.shift_id = shift_id->data();
        A.neighbors.shifts = shifts->data();
    }
    ComputeOptions opt;
    opt.forces = forces; opt.virial = virial; opt.descriptors = descriptors;
    opt.scaled_descriptors = scaled; opt.threads = threads; opt.min_distance = min_distance;
    opt.member_forces = member_forces;
    opt.baseline = baseline;
    if constexpr (std::is_same_v<Potential, PairBaseline>) {
        if (dEdG || descriptors) throw std::invalid_argument("a pair baseline has no descriptors");
    } else if (dEdG) {
        int64_t need = 0;
        const auto& first = first_model(mo);
        for (int64_t i = 0; i < n_local; ++i) {
            const int32_t e = species.data()[i];
            if (e >= first.n_elements()) throw std::invalid_argument("species index out of range");
            if (e >= 0) need += first.elements()[e].descriptor.size();
        }
        if (dEdG->size() != need)
            throw std::invalid_argument("dEdG must hold " + std::to_string(need) + " values (K per centre)");
        opt.dEdG = dEdG->data();
    }
    ComputeResult r;
    {
        py::gil_scoped_release release;
        mo.compute(A, opt, r);
    }
    py::dict d;
    d["energy"] = r.energy;
    d["atom_energies"] = to_numpy(std::move(r.atom_energies), {n_local});
    if (forces || virial) d["forces"] = to_numpy(std::move(r.forces), {na, 3});
    d["virial"] = to_numpy(std::vector<double>(r.virial, r.virial + 9), {3, 3});
    d["extrapolations"] = extrapolation_dict(r.extrapolations);
    d["extrapolating_atoms"] = to_numpy(std::move(r.extrapolating_atoms), {n_local});
    if (descriptors) {
        const auto nd = static_cast<py::ssize_t>(r.descriptors.size());
        d["descriptors"] = to_numpy(std::move(r.descriptors), {nd});
        d["descriptor_offsets"] = to_numpy(std::move(r.descriptor_offsets), {n_local + 1});
    }
    d["member_energies"] = to_numpy(std::move(r.member_energies), {static_cast<py::ssize_t>(r.member_energies.size())});
    if (!r.member_forces.empty()) {
        const auto nm = static_cast<py::ssize_t>(r.member_forces.size() / (3 * na));
        d["member_forces"] = to_numpy(std::move(r.member_forces), {nm, na, 3});
    }
    return d;
}

/// The AtomsView of one whole structure (every atom a centre) from numpy arrays, checked.
AtomsView whole_structure(const py::array_t<double, py::array::c_style>& pos,
                          const py::array_t<int32_t, py::array::c_style>& species, const CArrI64& offsets,
                          const CArrI32& index, const std::optional<CArrI32>& shift_id,
                          const std::optional<CArrD>& shifts) {
    const int64_t na = pos.shape(0);
    if (pos.ndim() != 2 || pos.shape(1) != 3) throw std::invalid_argument("positions must be (n, 3)");
    if (species.shape(0) != na || offsets.shape(0) != na + 1) throw std::invalid_argument("size mismatch");
    const int64_t np = offsets.at(na);
    for (int64_t p = 0; p < np; ++p)
        if (index.data()[p] < 0 || index.data()[p] >= na) throw std::invalid_argument("neighbour index out of range");
    AtomsView A;
    A.n_local = na; A.n_all = na; A.positions = pos.data(); A.species = species.data();
    A.neighbors.n_centers = na; A.neighbors.offsets = offsets.data(); A.neighbors.index = index.data();
    if (shift_id && shifts) { A.neighbors.shift_id = shift_id->data(); A.neighbors.shifts = shifts->data(); }
    return A;
}

/// The same `compute` for a Model and a Committee.
template <class Potential>
void def_compute(py::class_<Potential, std::shared_ptr<Potential>>& cls) {
    cls.def("compute", &compute_py<Potential>,
            py::arg("positions").noconvert(), py::arg("species").noconvert(), py::arg("n_local"),
            py::arg("offsets").noconvert(), py::arg("index").noconvert(), py::arg("shift_id").noconvert() = py::none(),
            py::arg("shifts").noconvert() = py::none(), py::arg("forces") = true, py::arg("virial") = true,
            py::arg("descriptors") = false, py::arg("scaled") = false, py::arg("threads") = 0,
            py::arg("min_distance") = 1e-6, py::arg("member_forces") = false, py::arg("dEdG") = py::none(),
            py::arg("baseline") = true);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "hdnnp C++ core (libhdnnp)";
    auto base = py::register_exception<Error>(m, "Error", PyExc_RuntimeError);
    py::register_exception<ConfigError>(m, "ConfigError", PyExc_ValueError);
    py::register_exception<ModelFileError>(m, "ModelFileError", PyExc_ValueError);
    py::register_exception<InputError>(m, "InputError", PyExc_ValueError);
    py::register_exception<ExtrapolationError>(m, "ExtrapolationError", base.ptr());

    py::class_<Model, std::shared_ptr<Model>> model_class(m, "Model");
    model_class
        .def_static("load", [](const std::string& dir, bool weights, const std::string& networks) {
            if (networks == "") return std::const_pointer_cast<Model>(Model::load(dir, weights));
            if (networks != "short" && networks != "charge")
                throw std::invalid_argument("networks must be 'short' or 'charge'");
            // one part of a 3G/4G/CENT potential
            LoadOptions how;
            how.weights = weights;
            how.part = true;
            how.networks = networks == "charge" ? NetworkSet::Charge : NetworkSet::Short;
            const std::string nn = dir + "/input.nn";
            return std::const_pointer_cast<Model>(Model::load(dir, Settings::read_file(nn), how));
        }, py::arg("directory"), py::arg("weights") = true, py::arg("networks") = "",
           "a 2G potential; networks='short' or 'charge': that part of a 3G/4G/CENT potential",
           py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("charge_range", [](const Model& mo) { return mo.charge_range(); })
        .def_property_readonly("has_weights", &Model::has_weights)
        .def_property_readonly("elements", &Model::element_symbols)
        .def_property_readonly("atomic_numbers", [](const Model& mo) {
            std::vector<int> z;
            for (const auto& e : mo.elements()) z.push_back(e.z);
            return z;
        })
        .def_property_readonly("cutoff", &Model::cutoff)
        .def_property_readonly("mean_energy", &Model::mean_energy)
        .def_property_readonly("conv_energy", &Model::conv_energy)
        .def_property_readonly("conv_length", &Model::conv_length)
        .def_property_readonly("scaling_mode", [](const Model& mo) { return static_cast<int>(mo.scaling_mode()); })
        .def_property_readonly("scale_min", &Model::scale_min)
        .def_property_readonly("scale_max", &Model::scale_max)
        .def_property_readonly("normalize_nodes", [](const Model& mo) {
            return !mo.elements().empty() && mo.elements().front().network.normalize();
        })
        .def_property_readonly("cutoff_type", [](const Model& mo) { return static_cast<int>(mo.cutoff_type()); })
        .def_property_readonly("cutoff_alpha", &Model::cutoff_alpha)
        .def_property_readonly("warnings", &Model::warnings)
        .def_property_readonly("directory", &Model::directory)
        .def_property_readonly("length_unit", &Model::length_unit)
        .def_property_readonly("energy_unit", &Model::energy_unit)
        .def_property_readonly("baseline", [](const Model& mo) {
            return std::const_pointer_cast<PairBaseline>(mo.baseline());
        }, "the ZBL pair baseline (PairBaseline) of the hdnnp_zbl lines, or None")
        .def_property_readonly("baseline_auto", &Model::baseline_auto)
        .def_property_readonly("baseline_pairs", [](const Model& mo) {
            std::vector<py::tuple> out;
            for (const auto& p : mo.baseline_pairs())
                out.push_back(py::make_tuple(p.a, p.b, p.r_inner, p.r_outer, p.line));
            return out;
        }, "explicit hdnnp_zbl lines: (element a, element b, r_inner, r_outer, line)")
        .def_property_readonly("atom_energies", [](const Model& mo) {
            std::vector<double> v;
            for (const auto& e : mo.elements()) v.push_back(e.atom_energy);
            return v;
        })
        .def("symmetry_functions", [](const Model& mo, int e) {
            std::vector<std::pair<int, std::string>> out;
            for (const auto& d : mo.elements().at(e).descriptor.definitions()) out.emplace_back(d.line, d.text);
            return out;
        }, py::arg("element"), "(input.nn line, text) of each SF of an element, in network input order")
        .def("scaling", [](const Model& mo, int e) {
            const auto& em = mo.elements().at(e);
            py::dict d;
            d["min"] = em.g_min; d["max"] = em.g_max; d["mean"] = em.g_mean; d["sigma"] = em.g_sigma;
            return d;
        }, py::arg("element"))
        .def("architecture", [](const Model& mo, int e) {
            const auto& nn = mo.elements().at(e).network;
            std::string acts;
            for (const auto& L : nn.layers()) acts += activation_letter(L.act);
            return py::make_tuple(nn.sizes(), acts, nn.n_weights());
        }, py::arg("element"))
        .def("descriptor_jacobian", [](const Model& mo, py::array_t<double, py::array::c_style> pos,
                                       py::array_t<int32_t, py::array::c_style> species, CArrI64 offsets,
                                       CArrI32 index, std::optional<CArrI32> shift_id, std::optional<CArrD> shifts,
                                       int threads) {
            const int64_t na = pos.shape(0);
            const AtomsView A = whole_structure(pos, species, offsets, index, shift_id, shifts);
            DescriptorJacobian J;
            {
                py::gil_scoped_release release;
                mo.descriptor_jacobian(A, J, threads);
            }
            const auto npair = static_cast<py::ssize_t>(J.pair_atom.size());
            py::dict d;
            d["G"] = to_numpy(std::move(J.G), {static_cast<py::ssize_t>(J.G.size())});
            d["g_offsets"] = to_numpy(std::move(J.g_offsets), {na + 1});
            d["pair_offsets"] = to_numpy(std::move(J.pair_offsets), {na + 1});
            d["pair_atom"] = to_numpy(std::move(J.pair_atom), {npair});
            d["pair_d"] = to_numpy(std::move(J.pair_d), {npair, 3});
            d["dG"] = to_numpy(std::move(J.dG), {static_cast<py::ssize_t>(J.dG.size())});
            d["dg_offsets"] = to_numpy(std::move(J.dg_offsets), {npair + 1});
            return d;
        }, py::arg("positions").noconvert(), py::arg("species").noconvert(), py::arg("offsets").noconvert(),
           py::arg("index").noconvert(), py::arg("shift_id").noconvert() = py::none(),
           py::arg("shifts").noconvert() = py::none(), py::arg("threads") = 0);
    model_class.def("descriptor_jvp", [](const Model& mo, py::array_t<double, py::array::c_style> pos,
                                  py::array_t<int32_t, py::array::c_style> species, CArrI64 offsets, CArrI32 index,
                                  std::optional<CArrI32> shift_id, std::optional<CArrD> shifts,
                                  py::array_t<double, py::array::c_style | py::array::forcecast> lam,
                                  std::optional<py::array_t<double, py::array::c_style | py::array::forcecast>> M,
                                  int threads) {
            const int64_t na = pos.shape(0);
            const AtomsView A = whole_structure(pos, species, offsets, index, shift_id, shifts);
            if (lam.ndim() != 2 || lam.shape(0) != na || lam.shape(1) != 3)
                throw std::invalid_argument("directions must be (n, 3) like the positions");
            if (M && M->size() != 9) throw std::invalid_argument("the strain direction M must be 3 x 3");
            std::vector<double> V;
            std::vector<int64_t> vo;
            {
                py::gil_scoped_release release;
                mo.descriptor_jvp(A, lam.data(), M ? M->data() : nullptr, V, vo, threads);
            }
            const auto nv = static_cast<py::ssize_t>(V.size());
            return py::make_tuple(to_numpy(std::move(V), {nv}), to_numpy(std::move(vo), {na + 1}));
        }, py::arg("positions").noconvert(), py::arg("species").noconvert(), py::arg("offsets").noconvert(),
           py::arg("index").noconvert(), py::arg("shift_id").noconvert() = py::none(),
           py::arg("shifts").noconvert() = py::none(), py::arg("directions"), py::arg("strain") = py::none(),
           py::arg("threads") = 0,
           "(V, offsets): per centre i (V[offsets[i]:offsets[i+1]]) sum over its pairs p = (i, j) of "
           "dG_i/dd_p . u_p, u_p = directions[i] - directions[j] - strain^T d_p (raw G per length); "
           "dG/dr is never stored");
    def_compute(model_class);

    py::class_<PairBaseline, std::shared_ptr<PairBaseline>> baseline_class(m, "PairBaseline",
        "ZBL screened nuclear repulsion per element pair, switched off between r_inner and r_outer");
    baseline_class
        .def(py::init([](const std::vector<int>& z, CArrD r_inner, CArrD r_outer, double lf, double ef) {
            const auto ne = static_cast<py::ssize_t>(z.size());
            if (r_inner.size() != ne * ne || r_outer.size() != ne * ne)
                throw std::invalid_argument("r_inner and r_outer must be (n_elements, n_elements)");
            return std::make_shared<PairBaseline>(z, std::vector<double>(r_inner.data(), r_inner.data() + ne * ne),
                                                  std::vector<double>(r_outer.data(), r_outer.data() + ne * ne), lf, ef);
        }), py::arg("atomic_numbers"), py::arg("r_inner"), py::arg("r_outer"), py::arg("angstrom_per_length"),
           py::arg("ev_per_energy"))
        .def_property_readonly("n_elements", &PairBaseline::n_elements)
        .def_property_readonly("max_outer", &PairBaseline::max_outer)
        .def_property_readonly("angstrom_per_length", &PairBaseline::angstrom_per_length)
        .def_property_readonly("ev_per_energy", &PairBaseline::ev_per_energy)
        .def("radii", [](const PairBaseline& b, int a, int c) {
            if (a < 0 || c < 0 || a >= b.n_elements() || c >= b.n_elements()) throw std::invalid_argument("element index");
            return py::make_tuple(b.r_inner(a, c), b.r_outer(a, c));
        }, py::arg("a"), py::arg("b"))
        .def("pair", [](const PairBaseline& b, int a, int c, CArrD r) {
            if (a < 0 || c < 0 || a >= b.n_elements() || c >= b.n_elements()) throw std::invalid_argument("element index");
            std::vector<double> e(r.size()), de(r.size());
            for (py::ssize_t k = 0; k < r.size(); ++k) b.pair(a, c, r.data()[k], e[k], de[k]);
            const auto n = static_cast<py::ssize_t>(r.size());
            return py::make_tuple(to_numpy(std::move(e), {n}), to_numpy(std::move(de), {n}));
        }, py::arg("a"), py::arg("b"), py::arg("r"), "pair energy e(r) and de/dr (native units) of elements a, b");
    def_compute(baseline_class);

    py::class_<Committee, std::shared_ptr<Committee>> committee_class(m, "Committee");
    committee_class
        .def_static("load", [](const std::vector<std::string>& dirs) {
            return std::const_pointer_cast<Committee>(Committee::load(dirs));
        }, py::arg("directories"), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("size", &Committee::size)
        .def("member", [](const Committee& c, int k) {
            return std::const_pointer_cast<Model>(c.member_ptr(k));
        })
        .def_property_readonly("directories", [](const Committee& c) {
            std::vector<std::string> v;
            for (int k = 0; k < c.size(); ++k) v.push_back(c.member(k).directory());
            return v;
        })
        .def_property_readonly("elements", [](const Committee& c) { return c.first().element_symbols(); })
        .def_property_readonly("cutoff", [](const Committee& c) { return c.first().cutoff(); })
        .def_property_readonly("warnings", [](const Committee& c) {
            std::vector<std::string> w;
            for (int k = 0; k < c.size(); ++k)
                for (const auto& s : c.member(k).warnings()) w.push_back(s);
            return w;
        });
    def_compute(committee_class);

    // Element networks for training (batched; exact loss gradients incl. force terms).
    py::class_<BatchCache>(m, "NetworkCache");
    py::class_<NeuralNetwork>(m, "Network")
        .def(py::init([](const std::vector<int>& sizes, const std::string& acts, bool normalize) {
            if (sizes.size() < 2 || acts.size() != sizes.size() - 1)
                throw std::invalid_argument("one activation letter per non-input layer");
            std::vector<Activation> av;
            for (char ch : acts) av.push_back(activation_from_letter(std::string(1, ch), "network"));
            return NeuralNetwork(sizes, av, normalize);
        }), py::arg("sizes"), py::arg("activations"), py::arg("normalize") = false)
        .def_property_readonly("n_parameters", &NeuralNetwork::n_weights)
        .def("set_parameters", [](NeuralNetwork& nn, CArrD p) {
            nn.set_parameters(std::vector<double>(p.data(), p.data() + p.size()));
        })
        .def("parameters", [](const NeuralNetwork& nn) {
            auto p = nn.parameters();
            const auto k = static_cast<py::ssize_t>(p.size());
            return to_numpy(std::move(p), {k});
        })
        .def("forward", [](const NeuralNetwork& nn, CArrD X, bool input_gradient) {
            if (X.ndim() != 2 || X.shape(1) != nn.n_inputs())
                throw std::invalid_argument("inputs must be (n, " + std::to_string(nn.n_inputs()) + ")");
            const auto n = static_cast<int>(X.shape(0));
            std::vector<double> E(n), g(input_gradient ? static_cast<size_t>(n) * nn.n_inputs() : 0);
            BatchCache c;
            {
                py::gil_scoped_release release;
                nn.forward_batch(X.data(), n, E.data(), input_gradient ? g.data() : nullptr, c);
            }
            py::object gp = py::none();
            if (input_gradient) gp = to_numpy(std::move(g), {n, nn.n_inputs()});
            return py::make_tuple(to_numpy(std::move(E), {n}), gp, std::move(c));
        }, py::arg("X").noconvert(), py::arg("input_gradient") = true)
        .def("loss_gradient", [](const NeuralNetwork& nn, const BatchCache& c, std::optional<CArrD> a,
                                 std::optional<CArrD> V) {
            if (a && a->size() != c.n) throw std::invalid_argument("a must have one value per input row");
            if (V && V->size() != static_cast<py::ssize_t>(c.n) * nn.n_inputs())
                throw std::invalid_argument("V must be (n, n_inputs)");
            std::vector<double> g(nn.n_weights());
            {
                py::gil_scoped_release release;
                nn.loss_gradient(c, a ? a->data() : nullptr, V ? V->data() : nullptr, g.data());
            }
            const auto k = static_cast<py::ssize_t>(g.size());
            return to_numpy(std::move(g), {k});
        }, py::arg("cache"), py::arg("a") = py::none(), py::arg("V") = py::none());

    m.def("neighbor_list", [](py::array_t<double, py::array::c_style> pos, std::optional<CArrD> cell,
                              std::array<bool, 3> pbc, double cutoff, double min_distance, bool spatial_order) {
        if (pos.ndim() != 2 || pos.shape(1) != 3) throw std::invalid_argument("positions must be (n, 3)");
        if (cell && cell->size() != 9) throw std::invalid_argument("cell must be 3x3");
        const bool p[3] = {pbc[0], pbc[1], pbc[2]};
        NeighborList nl;
        {
            py::gil_scoped_release release;
            nl = build_neighbor_list(pos.data(), pos.shape(0), cell ? cell->data() : nullptr, p, cutoff, min_distance,
                                     spatial_order);
        }
        const auto np = static_cast<py::ssize_t>(nl.index.size());
        const auto ns = static_cast<py::ssize_t>(nl.shifts.size() / 3);
        const auto no = static_cast<py::ssize_t>(nl.offsets.size());
        return py::make_tuple(to_numpy(std::move(nl.offsets), {no}), to_numpy(std::move(nl.index), {np}),
                              to_numpy(std::move(nl.shift_id), {np}), to_numpy(std::move(nl.shifts), {ns, 3}),
                              to_numpy(std::move(nl.images), {ns, 3}),
                              spatial_order ? py::object(to_numpy(std::move(nl.order), {static_cast<py::ssize_t>(nl.order.size())}))
                                            : py::object(py::none()));
    }, py::arg("positions").noconvert(), py::arg("cell").noconvert(), py::arg("pbc"), py::arg("cutoff"),
       py::arg("min_distance") = 1e-6, py::arg("spatial_order") = false);

    py::class_<Electrostatics, std::shared_ptr<Electrostatics>>(m, "Electrostatics",
        "Gaussian-charge electrostatics (THEORY B.1/B.2): the QEq matrix A0 without hardness, "
        "matrix-free or dense, the screened energy and its position derivatives.")
        .def(py::init([](CArrD pos, std::optional<CArrD> cell, CArrD sigma, double four_pi_eps, double eta,
                         double r_cut, double k_cut, double r_in, double r_out, const std::string& core, int threads,
                         bool neighbor_list, std::array<int, 3> mesh, int mesh_order, const std::string& fft) {
                 if (pos.ndim() != 2 || pos.shape(1) != 3) throw std::invalid_argument("positions must be (n, 3)");
                 if (sigma.size() != pos.shape(0)) throw std::invalid_argument("sigma must have one value per atom");
                 if (cell && cell->size() != 9) throw std::invalid_argument("cell must be 3x3");
                 if (core.empty() || core.size() > 2) throw std::invalid_argument("bad screening core '" + core + "'");
                 ElectrostaticsSetup s;
                 s.n = pos.shape(0); s.positions = pos.data(); s.cell = cell ? cell->data() : nullptr;
                 s.sigma = sigma.data(); s.four_pi_eps = four_pi_eps; s.eta = eta; s.r_cut = r_cut; s.k_cut = k_cut;
                 s.screening.r_in = r_in; s.screening.r_out = r_out;
                 s.screening.core = core.size() == 2 ? core[1] : core[0];  // "p1".."p4" -> '1'..'4'
                 s.threads = threads;
                 s.neighbor_list = neighbor_list;
                 for (int d = 0; d < 3; ++d) s.mesh[d] = mesh[d];
                 s.mesh_order = mesh_order;
                 if (fft != "eigen" && fft != "own") throw std::invalid_argument("fft must be 'eigen' or 'own'");
                 s.fft = fft == "own" ? FftEngine::Own : FftEngine::Eigen;
                 py::gil_scoped_release release;
                 return std::make_shared<Electrostatics>(s);
             }),
             py::arg("positions"), py::arg("cell"), py::arg("sigma"), py::arg("four_pi_eps") = 1.0,
             py::arg("eta") = 0.0, py::arg("r_cut") = 0.0, py::arg("k_cut") = 0.0, py::arg("r_in") = -2.0,
             py::arg("r_out") = -1.0, py::arg("core") = "c", py::arg("threads") = 0, py::arg("neighbor_list") = false,
             py::arg("mesh") = std::array<int, 3>{0, 0, 0}, py::arg("mesh_order") = 6, py::arg("fft") = "eigen")
        .def_property_readonly("size", &Electrostatics::size)
        .def_property_readonly("periodic", &Electrostatics::periodic)
        .def_property_readonly("n_kvectors", &Electrostatics::n_kvectors)
        .def_property_readonly("n_real_pairs", &Electrostatics::n_real_pairs)
        .def_property_readonly("mesh_points", &Electrostatics::mesh_points)
        .def("dense", [](const Electrostatics& e) {
            std::vector<double> A(e.size() * e.size());
            { py::gil_scoped_release release; e.dense(A.data()); }
            return to_numpy(std::move(A), {e.size(), e.size()});
        })
        .def("apply", [](const Electrostatics& e, CArrD x) {
            if (x.size() != e.size()) throw std::invalid_argument("x must have one value per atom");
            std::vector<double> y(e.size());
            { py::gil_scoped_release release; e.apply(x.data(), y.data()); }
            return to_numpy(std::move(y), {e.size()});
        })
        .def("diagonal", [](const Electrostatics& e) {
            std::vector<double> d(e.size());
            e.diagonal(d.data());
            return to_numpy(std::move(d), {e.size()});
        })
        .def("energy", [](const Electrostatics& e, CArrD Q, std::optional<CArrD> AQ) {
            if (Q.size() != e.size() || (AQ && AQ->size() != e.size()))
                throw std::invalid_argument("Q (and AQ) must have one value per atom");
            std::vector<double> g(e.size());
            double E;
            { py::gil_scoped_release release; E = e.energy(Q.data(), g.data(), AQ ? AQ->data() : nullptr); }
            return py::make_tuple(E, to_numpy(std::move(g), {e.size()}));
        }, py::arg("Q"), py::arg("AQ") = py::none(), "E_elec(Q) and dE_elec/dQ (AQ = A0 Q if known)")
        .def("derivatives", [](const Electrostatics& e, CArrD Q, CArrD lam) {
            if (Q.size() != e.size() || lam.size() != e.size()) throw std::invalid_argument("Q and lam need one value per atom");
            std::vector<double> F(3 * e.size(), 0.0), W(9, 0.0);
            { py::gil_scoped_release release; e.add_derivatives(Q.data(), lam.data(), F.data(), W.data()); }
            return py::make_tuple(to_numpy(std::move(F), {e.size(), py::ssize_t(3)}), to_numpy(std::move(W), {3, 3}));
        }, "-d/dR [E_elec(Q) + lam^T A0 Q] (forces) and the virial, at fixed Q and lam")
        .def("charge_response", [](const Electrostatics& e, CArrD Q) {
            if (Q.size() != e.size()) throw std::invalid_argument("Q needs one value per atom");
            const auto n = e.size();
            std::vector<double> R(3 * n * n);
            { py::gil_scoped_release release; e.charge_response(Q.data(), R.data()); }
            return to_numpy(std::move(R), {n, n, py::ssize_t(3)});
        }, "R[j, a, c] = d(A0 Q)_j / dR_ac at fixed Q (dense, n x n x 3)");

    m.def("solve_qeq_cg", [](const Electrostatics& e, CArrD J, CArrD b, double total, CArrD x0, double tol,
                             int max_iterations) {
        const auto n = e.size();
        if (J.size() != n || b.size() != n || x0.size() != n) throw std::invalid_argument("J, b, x0 need one value per atom");
        std::vector<double> x(x0.data(), x0.data() + n);
        QEqSolution s;
        { py::gil_scoped_release release; s = solve_qeq_cg(e, J.data(), b.data(), total, x.data(), tol, max_iterations); }
        py::dict info;
        info["iterations"] = s.iterations; info["residual"] = s.residual; info["lagrange"] = s.lagrange;
        return py::make_tuple(to_numpy(std::move(x), {n}), info);
    }, py::arg("op"), py::arg("hardness"), py::arg("b"), py::arg("total"), py::arg("x0"), py::arg("tol") = 1e-10,
       py::arg("max_iterations") = 1000);

    py::class_<QEqDense, std::shared_ptr<QEqDense>>(m, "QEqDense",
        "Charge equilibration [A0 + diag(J) 1; 1^T 0] factorised once (Eigen): charges, adjoint and response solves")
        .def(py::init([](CArrD A0, CArrD J) {
            const auto n = J.size();
            if (A0.ndim() != 2 || A0.shape(0) != n || A0.shape(1) != n) throw std::invalid_argument("A0 must be (n, n)");
            py::gil_scoped_release release;
            return std::make_shared<QEqDense>(n, A0.data(), J.data());
        }), py::arg("A0").noconvert(), py::arg("hardness"))
        .def(py::init([](const Electrostatics& op, CArrD J) {
            if (J.size() != op.size()) throw std::invalid_argument("hardness needs one value per atom");
            py::gil_scoped_release release;
            return std::make_shared<QEqDense>(op, J.data());
        }), py::arg("op"), py::arg("hardness"))
        .def_property_readonly("size", &QEqDense::size)
        .def_property_readonly("cholesky", &QEqDense::cholesky)
        .def("solve", [](const QEqDense& q, py::array_t<double, py::array::c_style | py::array::forcecast> B,
                         double total) {
            const auto n = q.size();
            if (B.ndim() < 1 || B.ndim() > 2 || B.shape(0) != n)
                throw std::invalid_argument("right-hand side must be (n,) or (n, m)");
            const int64_t m = B.ndim() == 2 ? B.shape(1) : 1;
            std::vector<double> X(static_cast<size_t>(n) * m);
            { py::gil_scoped_release release; q.solve(B.data(), m, total, X.data()); }
            if (B.ndim() == 1) return to_numpy(std::move(X), {n});
            return to_numpy(std::move(X), {n, static_cast<py::ssize_t>(m)});
        }, py::arg("rhs"), py::arg("total") = 0.0,
           "first n rows of K^-1 [rhs; total] (rhs (n,) or (n, m))");

    auto ewald_dict = [](const EwaldParameters& p) {
        py::dict d;
        d["eta"] = p.eta; d["r_cut"] = p.r_cut; d["k_cut"] = p.k_cut; d["method"] = p.method;
        d["reliable"] = p.reliable; d["mesh"] = py::make_tuple(p.mesh[0], p.mesh[1], p.mesh[2]);
        d["mesh_order"] = p.mesh_order;
        return d;
    };
    m.def("n2p2_ewald_parameters", [ewald_dict](int method, const std::vector<double>& prec, double volume, long n,
                                                double fpe, double max_sigma) {
        return ewald_dict(n2p2_ewald_parameters(method, prec, volume, n, fpe, max_sigma));
    }, py::arg("method"), py::arg("prec_args"), py::arg("volume"), py::arg("n_atoms"), py::arg("four_pi_eps") = 1.0,
       py::arg("max_sigma") = 0.0);
    m.def("accuracy_ewald_parameters", [ewald_dict](double tol, double volume, long n, double q_max, double fpe,
                                                    double r_cut, double max_sigma, bool per_particle) {
        return ewald_dict(accuracy_ewald_parameters(tol, volume, n, q_max, fpe, r_cut, max_sigma, per_particle));
    }, py::arg("energy_tolerance"), py::arg("volume"), py::arg("n_atoms"), py::arg("q_max") = 1.0,
       py::arg("four_pi_eps") = 1.0, py::arg("r_cut") = 0.0, py::arg("max_sigma") = 0.0, py::arg("per_particle") = false);
    m.def("pme_ewald_parameters", [ewald_dict](double tol, CArrD cell, long n, double q_max, double fpe,
                                               double max_sigma, double neighbours, int order) {
        if (cell.size() != 9) throw std::invalid_argument("cell must be 3 x 3");
        return ewald_dict(pme_ewald_parameters(tol, cell.data(), n, q_max, fpe, max_sigma, neighbours, order));
    }, py::arg("energy_tolerance"), py::arg("cell"), py::arg("n_atoms"), py::arg("q_max") = 1.0,
       py::arg("four_pi_eps") = 1.0, py::arg("max_sigma") = 0.0, py::arg("neighbours") = 150.0, py::arg("order") = 6);
    m.def("fft_size", &fft_size, py::arg("n"));

    // 3G / 4G / CENT: options in, one result dict out (the potential's native units)
    auto charge_options = [](double ewald_tolerance, const std::string& solver, double cg_tolerance, bool forces,
                             bool virial, int threads, bool background, const std::optional<py::dict>& ewald) {
        ChargeOptions o;
        o.ewald_tolerance = ewald_tolerance; o.solver = solver; o.cg_tolerance = cg_tolerance;
        o.forces = forces; o.virial = virial; o.threads = threads; o.background = background;
        if (ewald) {
            const py::dict& e = *ewald;
            o.fixed_ewald = true;
            o.ewald.eta = py::cast<double>(e["eta"]);
            o.ewald.r_cut = py::cast<double>(e["r_cut"]);
            o.ewald.k_cut = py::cast<double>(e["k_cut"]);
            if (e.contains("method")) o.ewald.method = py::cast<std::string>(e["method"]);
            if (e.contains("mesh")) {
                const auto m = py::cast<std::array<int, 3>>(e["mesh"]);
                for (int d = 0; d < 3; ++d) o.ewald.mesh[d] = m[d];
            }
            if (e.contains("mesh_order")) o.ewald.mesh_order = py::cast<int>(e["mesh_order"]);
        }
        return o;
    };
    auto check_structure = [](const CArrD& pos, const CArrI32& species, const std::optional<CArrD>& cell) {
        if (pos.ndim() != 2 || pos.shape(1) != 3) throw std::invalid_argument("positions must be (n, 3)");
        if (species.size() != pos.shape(0)) throw std::invalid_argument("species must be (n,)");
        if (cell && cell->size() != 9) throw std::invalid_argument("cell must be 3 x 3");
        return static_cast<int64_t>(pos.shape(0));
    };
    auto charge_result = [ewald_dict](ChargeResult& r, int64_t n, bool grads, bool periodic) {
        py::dict d;
        d["energy"] = r.energy;
        d["atom_energies"] = to_numpy(std::move(r.atom_energies), {n});
        d["electrostatic_energy"] = r.electrostatic_energy;
        d["baseline_energy"] = r.baseline_energy;
        d["charges"] = to_numpy(std::move(r.charges), {n});
        if (!r.network_charges.empty()) d["network_charges"] = to_numpy(std::move(r.network_charges), {n});
        if (!r.adjoint.empty()) d["adjoint"] = to_numpy(std::move(r.adjoint), {n});
        if (!r.electronegativities.empty())
            d["electronegativities"] = to_numpy(std::move(r.electronegativities), {n});
        if (!r.atom_energies_short.empty())
            d["atom_energies_short"] = to_numpy(std::move(r.atom_energies_short), {n});
        if (grads) {
            d["forces"] = to_numpy(std::move(r.forces), {n, 3});
            d["virial"] = to_numpy(std::vector<double>(r.virial, r.virial + 9), {3, 3});
        }
        if (periodic) {
            py::dict e = ewald_dict(r.ewald);
            e["n_kvectors"] = r.n_kvectors;
            e["mesh_points"] = r.mesh_points;
            d["ewald"] = e;
        } else {
            d["dipole"] = to_numpy(std::vector<double>(r.dipole, r.dipole + 3), {3});
        }
        d["cg_iterations"] = r.cg_iterations;
        d["extrapolating_atoms"] = to_numpy(std::move(r.extrapolating_atoms), {n});
        d["extrapolations"] = extrapolation_dict(r.extrapolations);
        if (!r.charge_extrapolations.empty() || !d.contains("electronegativities"))
            d["charge_extrapolations"] = extrapolation_dict(r.charge_extrapolations);
        return d;
    };

    py::class_<FourthGenerationPotential, std::shared_ptr<FourthGenerationPotential>>(m, "FourthGenerationPotential",
        "A 4G potential computed in the core: electronegativities, charge equilibration, short networks, forces")
        .def_static("load", [](const std::string& dir) {
            return std::const_pointer_cast<FourthGenerationPotential>(FourthGenerationPotential::load(dir));
        }, py::arg("directory"), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("elements", [](const FourthGenerationPotential& p) { return p.descriptors().element_symbols(); })
        .def_property_readonly("cutoff", [](const FourthGenerationPotential& p) { return p.descriptors().cutoff(); })
        .def_property_readonly("four_pi_epsilon", &FourthGenerationPotential::four_pi_epsilon)
        .def_property_readonly("cent", &FourthGenerationPotential::cent)
        .def_property_readonly("hardness", &FourthGenerationPotential::hardness)
        .def_property_readonly("gaussian_widths", &FourthGenerationPotential::gaussian_widths)
        .def_property_readonly("model", [](const FourthGenerationPotential& p) {
            return std::const_pointer_cast<Model>(p.descriptor_model());
        }, "the descriptor model (symmetry functions, scaling, offsets, baseline)")
        .def("compute", [charge_options, check_structure, charge_result](
                            const FourthGenerationPotential& p, CArrD pos, CArrI32 species,
                            std::optional<CArrD> cell, double total, double ewald_tolerance,
                            const std::string& solver, double cg_tolerance, bool forces, bool virial,
                            int threads, std::optional<CArrD> warm_start, std::optional<py::dict> ewald,
                            std::optional<CArrD> warm_adjoint, bool background) {
            const int64_t n = check_structure(pos, species, cell);
            const ChargeOptions o = charge_options(ewald_tolerance, solver, cg_tolerance, forces, virial, threads,
                                                   background, ewald);
            std::vector<double> warm, warm_adj;
            if (warm_start) {
                if (warm_start->size() != n) throw std::invalid_argument("warm_start needs one charge per atom");
                warm.assign(warm_start->data(), warm_start->data() + n);
            }
            if (warm_adjoint) {
                if (warm_adjoint->size() != n) throw std::invalid_argument("warm_adjoint needs one value per atom");
                warm_adj.assign(warm_adjoint->data(), warm_adjoint->data() + n);
            }
            ChargeResult r;
            {
                py::gil_scoped_release release;
                p.compute(n, pos.data(), species.data(), cell ? cell->data() : nullptr, total, o, r,
                          warm_start ? &warm : nullptr, warm_adjoint ? &warm_adj : nullptr);
            }
            return charge_result(r, n, forces || virial, static_cast<bool>(cell));
        }, py::arg("positions").noconvert(), py::arg("species").noconvert(), py::arg("cell") = py::none(),
           py::arg("total_charge") = 0.0, py::arg("ewald_tolerance") = 0.0, py::arg("solver") = "dense",
           py::arg("cg_tolerance") = 1e-10, py::arg("forces") = true, py::arg("virial") = true, py::arg("threads") = 0,
           py::arg("warm_start") = py::none(), py::arg("ewald") = py::none(), py::arg("warm_adjoint") = py::none(),
           py::arg("background") = false);

    py::class_<ThirdGenerationPotential, std::shared_ptr<ThirdGenerationPotential>>(m, "ThirdGenerationPotential",
        "A 3G potential computed in the core: charge networks, charge correction, point-charge electrostatics, "
        "short networks, forces")
        .def_static("load", [](const std::string& dir, const std::string& correction, bool short_networks) {
            return std::const_pointer_cast<ThirdGenerationPotential>(
                ThirdGenerationPotential::load(dir, correction, short_networks));
        }, py::arg("directory"), py::arg("charge_correction") = "", py::arg("short_networks") = true,
           py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("elements", [](const ThirdGenerationPotential& p) { return p.short_model().element_symbols(); })
        .def_property_readonly("cutoff", [](const ThirdGenerationPotential& p) {
            return std::max(p.short_model().cutoff(), p.charge_model().cutoff());
        })
        .def_property_readonly("four_pi_epsilon", &ThirdGenerationPotential::four_pi_epsilon)
        .def_property_readonly("short_model", [](const ThirdGenerationPotential& p) {
            return std::const_pointer_cast<Model>(p.short_model_ptr());
        })
        .def_property_readonly("charge_model", [](const ThirdGenerationPotential& p) {
            return std::const_pointer_cast<Model>(p.charge_model_ptr());
        })
        .def_property_readonly("charge_range", [](const ThirdGenerationPotential& p) {
            return p.charge_model().charge_range();
        }, "RuNNer's scalinge.data: the training charges' [min, max] per element (empty if not given)")
        .def_property_readonly("warnings", &ThirdGenerationPotential::warnings)
        .def_property_readonly("charge_correction", [](const ThirdGenerationPotential& p) {
            return std::string(p.correction() == ChargeCorrection::None ? "none"
                               : p.correction() == ChargeCorrection::Rescale ? "rescale" : "shift");
        })
        .def("compute", [charge_options, check_structure, charge_result](
                            const ThirdGenerationPotential& p, CArrD pos, CArrI32 species, std::optional<CArrD> cell,
                            double total, double ewald_tolerance, bool forces, bool virial, int threads,
                            std::optional<py::dict> ewald, bool background) {
            const int64_t n = check_structure(pos, species, cell);
            const ChargeOptions o = charge_options(ewald_tolerance, "cg", 1e-10, forces, virial, threads, background,
                                                   ewald);
            ChargeResult r;
            {
                py::gil_scoped_release release;
                p.compute(n, pos.data(), species.data(), cell ? cell->data() : nullptr, total, o, r);
            }
            return charge_result(r, n, forces || virial, static_cast<bool>(cell));
        }, py::arg("positions").noconvert(), py::arg("species").noconvert(), py::arg("cell") = py::none(),
           py::arg("total_charge") = 0.0, py::arg("ewald_tolerance") = 0.0, py::arg("forces") = true,
           py::arg("virial") = true, py::arg("threads") = 0, py::arg("ewald") = py::none(),
           py::arg("background") = false);
    m.def("correct_charges", [](CArrD q, double total, const std::string& mode, std::optional<CArrD> g) {
        const int64_t n = q.size();
        const ChargeCorrection c = mode == "none" ? ChargeCorrection::None
                                   : mode == "rescale" ? ChargeCorrection::Rescale
                                   : mode == "shift" ? ChargeCorrection::Shift
                                   : throw std::invalid_argument("charge_correction must be none, rescale or shift");
        if (g && g->size() != n) throw std::invalid_argument("g must have one value per charge");
        std::vector<double> Q(n), v(g ? n : 0);
        ThirdGenerationPotential::correct(c, n, q.data(), total, Q.data(), g ? g->data() : nullptr,
                                          g ? v.data() : nullptr);
        return py::make_tuple(to_numpy(std::move(Q), {n}), g ? py::object(to_numpy(std::move(v), {n})) : py::none());
    }, py::arg("q"), py::arg("total"), py::arg("mode"), py::arg("g") = py::none(),
       "(corrected charges, g^T dQ/dq or None): RuNNer's charge correction of a 3G potential");

    m.def("electrostatics_settings", [](const std::string& path) {
        const ElectrostaticsSettings e = ElectrostaticsSettings::read(Settings::read_file(path), path);
        py::dict d;
        d["four_pi_epsilon"] = e.four_pi_eps;
        d["r_in"] = e.screening.r_in;
        d["r_out"] = e.screening.r_out;
        const char c = e.screening.core;
        d["screen_core"] = c >= '1' && c <= '4' ? std::string("p") + c : std::string(1, c);
        d["ewald_method"] = e.ewald_method;
        d["ewald_prec"] = e.ewald_prec;
        return d;
    }, py::arg("path"), "the electrostatics keywords of a 3G/4G/CENT input.nn (4 pi eps0 from the declared units)");

    m.def("angstrom_per_length_unit", &angstrom_per_length_unit, py::arg("unit"), "0 when unknown");
    m.def("ev_per_energy_unit", &ev_per_energy_unit, py::arg("unit"), "0 when unknown");
    m.attr("LENGTH_UNITS") = detail::length_unit_names();
    m.attr("ENERGY_UNITS") = detail::energy_unit_names();

    // input.nn, read once by the core: canonical keyword -> [(line, [arguments])], the '# hdnnp:'
    // declarations and the reader's warnings
    m.def("read_settings", [](const std::string& path) {
        const Settings S = Settings::read_file(path);
        py::dict kw;
        for (const auto& k : S.keys()) {
            py::list entries;
            for (const auto& e : S.all(k)) entries.append(py::make_tuple(e.line, split_ws(e.args)));
            kw[py::str(k)] = entries;
        }
        py::dict decl;
        for (const auto& k : {"length_unit", "energy_unit"})
            if (const auto* d = S.declared(k)) decl[k] = d->args;
        return py::make_tuple(kw, decl, S.warnings());
    }, py::arg("path"));

    m.def("read_input_data", [](const std::string& path) {
        std::vector<Structure> v;
        {
            py::gil_scoped_release release;
            v = read_input_data(path);
        }
        py::list out;
        for (auto& s : v) out.append(structure_to_dict(std::move(s)));
        return out;
    }, py::arg("path"));
    m.def("parse_input_data", [](const std::string& text, const std::string& source) {
        py::list out;
        for (auto& s : parse_input_data(text, source)) out.append(structure_to_dict(std::move(s)));
        return out;
    }, py::arg("text"), py::arg("source") = "<string>");
    m.def("format_input_data", [](const py::list& structures) {
        std::vector<Structure> v;
        for (const auto& s : structures) v.push_back(dict_to_structure(py::cast<py::dict>(s)));
        return format_input_data(v);
    }, py::arg("structures"));
    m.def("write_file_atomic", &write_file_atomic, py::arg("path"), py::arg("content"));
    m.def("kalman_block_pass", [](py::array R, py::array T, std::optional<CArrD> Y, double div, double q,
                                  std::optional<CArrD> h, py::array_t<double, py::array::c_style> x) {
        // (R and T are updated in place: they must be column-major float64 arrays, not copies)
        for (const py::array* a : {&R, &T})
            if (!a->dtype().is(py::dtype::of<double>()) || !(a->flags() & py::array::f_style) || !a->writeable() ||
                a->ndim() != 2)
                throw std::invalid_argument("kalman_block_pass: R and T must be writeable column-major float64 matrices");
        const int64_t c0 = R.shape(0), w = T.shape(0);
        if (R.shape(1) != w || T.shape(1) != w) throw std::invalid_argument("kalman_block_pass: block shapes differ");
        const int SY = Y ? static_cast<int>(Y->shape(1)) : 0, S = h ? static_cast<int>(h->shape(1)) : 0;
        if ((Y && Y->shape(0) < c0 + w) || (h && (h->shape(0) < c0 + w || x.shape(0) < c0 + w || x.shape(1) != S)))
            throw std::invalid_argument("kalman_block_pass: Y, h or x too small for the block");
        kalman_block_pass(c0, w, static_cast<double*>(R.mutable_data()), static_cast<double*>(T.mutable_data()),
                          Y ? Y->data() : nullptr, SY, div, q, h ? h->data() : nullptr, x.mutable_data(), S);
    }, py::arg("R"), py::arg("T"), py::arg("Y"), py::arg("div"), py::arg("q"), py::arg("h"), py::arg("x"),
       "One pass over a covariance column block: apply the pending update, add the block's part of P h to x");
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
}
