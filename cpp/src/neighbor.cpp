#include "hdnnp/neighbor.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

#include "hdnnp/errors.hpp"

namespace hdnnp {
namespace {

bool invert3(const double* H, double* inv) {
    const double a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7], i = H[8];
    const double det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    const double scale = std::fabs(a) + std::fabs(b) + std::fabs(c) + std::fabs(d) + std::fabs(e) +
                         std::fabs(f) + std::fabs(g) + std::fabs(h) + std::fabs(i);
    if (!(std::fabs(det) > 1e-12 * scale * scale * scale)) return false;
    const double id = 1.0 / det;
    inv[0] = (e * i - f * h) * id; inv[1] = (c * h - b * i) * id; inv[2] = (b * f - c * e) * id;
    inv[3] = (f * g - d * i) * id; inv[4] = (a * i - c * g) * id; inv[5] = (c * d - a * f) * id;
    inv[6] = (d * h - e * g) * id; inv[7] = (b * g - a * h) * id; inv[8] = (a * e - b * d) * id;
    return true;
}

inline int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

NeighborList build_neighbor_list(const double* x, int64_t n, const double* cell_in, const bool pbc[3],
                                 double cutoff, double min_distance, bool spatial_order, bool half) {
    if (half && spatial_order) throw std::invalid_argument("neighbour list: half lists keep the input order");
    for (int64_t a = 0; a < n; ++a)
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(x[3 * a + c])) {
                std::ostringstream os;
                os << "atom " << a << " has a non-finite coordinate (" << x[3 * a] << ", "
                   << x[3 * a + 1] << ", " << x[3 * a + 2] << ")";
                throw InputError(os.str());
            }
    if (!(cutoff > 0.0)) throw InputError("neighbour cutoff must be positive");
    const bool any_pbc = pbc[0] || pbc[1] || pbc[2];
    double H[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    if (cell_in) std::copy(cell_in, cell_in + 9, H);
    if (!cell_in || !any_pbc) {
        if (any_pbc) throw InputError("a periodic structure needs a cell");
        if (!cell_in) {
            // Free molecule: an orthogonal bounding box (never wrapped).
            for (int c = 0; c < 3; ++c) {
                double lo = 0, hi = 0;
                for (int64_t a = 0; a < n; ++a) {
                    lo = a ? std::min(lo, x[3 * a + c]) : x[3 * a + c];
                    hi = a ? std::max(hi, x[3 * a + c]) : x[3 * a + c];
                }
                for (int k = 0; k < 3; ++k) H[3 * c + k] = 0.0;
                H[3 * c + c] = std::max(hi - lo, 1.0);
            }
        }
    }
    for (int c = 0; c < 9; ++c)
        if (!std::isfinite(H[c])) throw InputError("cell contains non-finite values");
    double Hi[9];
    if (!invert3(H, Hi)) throw InputError("cell is singular (lattice vectors are linearly dependent)");

    // Fractional coordinates s = x H^-1 (x = s H, lattice vectors are rows of H).
    std::vector<double> s(3 * n);
    std::vector<int32_t> n0(3 * n, 0);  // image of the original atom: x = x_w + n0 H
    for (int64_t a = 0; a < n; ++a)
        for (int k = 0; k < 3; ++k) {
            double v = x[3 * a] * Hi[k] + x[3 * a + 1] * Hi[3 + k] + x[3 * a + 2] * Hi[6 + k];
            if (pbc[k]) {
                const double f = std::floor(v);
                v -= f;
                if (v >= 1.0) { v -= 1.0; }  // guard against rounding to exactly 1
                n0[3 * a + k] = static_cast<int32_t>(f);
            }
            s[3 * a + k] = v;
        }
    // Wrapped cartesian positions.
    std::vector<double> xw(3 * n);
    for (int64_t a = 0; a < n; ++a)
        for (int c = 0; c < 3; ++c)
            xw[3 * a + c] = s[3 * a] * H[c] + s[3 * a + 1] * H[3 + c] + s[3 * a + 2] * H[6 + c];

    // Bins along each lattice direction: plane spacing d_k = 1/|column k of H^-1|.
    int64_t nb[3];
    int64_t reach[3];
    double lo[3], span[3];
    for (int k = 0; k < 3; ++k) {
        const double d = 1.0 / std::sqrt(Hi[k] * Hi[k] + Hi[3 + k] * Hi[3 + k] + Hi[6 + k] * Hi[6 + k]);
        if (pbc[k]) {
            lo[k] = 0.0; span[k] = 1.0;
        } else {
            double mn = 0, mx = 0;
            for (int64_t a = 0; a < n; ++a) {
                mn = a ? std::min(mn, s[3 * a + k]) : s[3 * a + k];
                mx = a ? std::max(mx, s[3 * a + k]) : s[3 * a + k];
            }
            lo[k] = mn; span[k] = std::max(mx - mn, 1e-12);
        }
        const double thickness = span[k] * d;
        nb[k] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(thickness / cutoff)));
        nb[k] = std::min<int64_t>(nb[k], std::max<int64_t>(1, static_cast<int64_t>(std::cbrt(static_cast<double>(n)) * 2 + 1)));
        const double bin_thickness = thickness / nb[k];
        reach[k] = static_cast<int64_t>(std::ceil(cutoff / bin_thickness));
        if (!pbc[k]) reach[k] = std::min(reach[k], nb[k] - 1);
    }
    const int64_t nbins = nb[0] * nb[1] * nb[2];
    std::vector<int64_t> bin_of(n);
    std::vector<int64_t> bin_start(nbins + 1, 0);
    for (int64_t a = 0; a < n; ++a) {
        int64_t b[3];
        for (int k = 0; k < 3; ++k) {
            b[k] = static_cast<int64_t>(std::floor((s[3 * a + k] - lo[k]) / span[k] * nb[k]));
            b[k] = std::min(std::max<int64_t>(b[k], 0), nb[k] - 1);
        }
        bin_of[a] = (b[0] * nb[1] + b[1]) * nb[2] + b[2];
        ++bin_start[bin_of[a] + 1];
    }
    for (int64_t b = 0; b < nbins; ++b) bin_start[b + 1] += bin_start[b];
    std::vector<int64_t> bin_atoms(n);
    {
        std::vector<int64_t> fill(bin_start.begin(), bin_start.end() - 1);
        for (int64_t a = 0; a < n; ++a) bin_atoms[fill[bin_of[a]]++] = a;
    }

    const double rc2 = cutoff * cutoff;
    const double min2 = min_distance * min_distance;
    NeighborList out;
    // Spatial order: centres (and neighbour indices) numbered in bin order; new index of
    // atom a is rank[a], and order[rank[a]] = a.
    std::vector<int64_t> rank;
    if (spatial_order) {
        out.order = bin_atoms;
        rank.resize(n);
        for (int64_t t = 0; t < n; ++t) rank[bin_atoms[t]] = t;
    }
    out.offsets.assign(n + 1, 0);
    std::map<std::tuple<int, int, int>, int32_t> shift_ids;
    std::vector<std::vector<std::pair<int32_t, std::tuple<int, int, int>>>> per_atom;

    // One visit of all candidate pairs of atom a; calls f(j, image, d2).
    auto visit = [&](int64_t a, auto&& f) {
        const int64_t ba = bin_of[a];
        const int64_t b0 = ba / (nb[1] * nb[2]), b1 = (ba / nb[2]) % nb[1], b2 = ba % nb[2];
        for (int64_t o0 = -reach[0]; o0 <= reach[0]; ++o0) {
            int64_t c0 = b0 + o0, i0 = 0;
            if (pbc[0]) { i0 = floor_div(c0, nb[0]); c0 -= i0 * nb[0]; }
            else if (c0 < 0 || c0 >= nb[0]) continue;
            for (int64_t o1 = -reach[1]; o1 <= reach[1]; ++o1) {
                int64_t c1 = b1 + o1, i1 = 0;
                if (pbc[1]) { i1 = floor_div(c1, nb[1]); c1 -= i1 * nb[1]; }
                else if (c1 < 0 || c1 >= nb[1]) continue;
                for (int64_t o2 = -reach[2]; o2 <= reach[2]; ++o2) {
                    int64_t c2 = b2 + o2, i2 = 0;
                    if (pbc[2]) { i2 = floor_div(c2, nb[2]); c2 -= i2 * nb[2]; }
                    else if (c2 < 0 || c2 >= nb[2]) continue;
                    const int64_t cb = (c0 * nb[1] + c1) * nb[2] + c2;
                    const double sx = i0 * H[0] + i1 * H[3] + i2 * H[6];
                    const double sy = i0 * H[1] + i1 * H[4] + i2 * H[7];
                    const double sz = i0 * H[2] + i1 * H[5] + i2 * H[8];
                    for (int64_t t = bin_start[cb]; t < bin_start[cb + 1]; ++t) {
                        const int64_t j = bin_atoms[t];
                        if (j == a && i0 == 0 && i1 == 0 && i2 == 0) continue;
                        const double dx = xw[3 * j] + sx - xw[3 * a];
                        const double dy = xw[3 * j + 1] + sy - xw[3 * a + 1];
                        const double dz = xw[3 * j + 2] + sz - xw[3 * a + 2];
                        const double d2 = dx * dx + dy * dy + dz * dz;
                        if (d2 < rc2) f(j, i0, i1, i2, d2);
                    }
                }
            }
        }
    };

    // Count pass (parallel), then fill pass (parallel) into CSR.
    std::vector<int64_t> bad(2, -1);
    double bad_d = 0.0;
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t c = 0; c < n; ++c) {
        const int64_t a = spatial_order ? bin_atoms[c] : c;
        int64_t cnt = 0;
        visit(a, [&](int64_t j, int64_t, int64_t, int64_t, double d2) {
            if (half && j < a) return;
            ++cnt;
            if (d2 < min2) {
#pragma omp critical(hdnnp_nl_bad)
                if (bad[0] < 0 || a < bad[0]) { bad[0] = a; bad[1] = j; bad_d = std::sqrt(d2); }
            }
        });
        out.offsets[c + 1] = cnt;
    }
    if (bad[0] >= 0) {
        std::ostringstream os;
        os << "atoms " << bad[0] << " and " << bad[1] << " overlap (distance " << bad_d
           << ", minimum allowed " << min_distance << ")";
        throw InputError(os.str());
    }
    for (int64_t a = 0; a < n; ++a) out.offsets[a + 1] += out.offsets[a];
    const int64_t npairs = out.offsets[n];
    out.index.resize(npairs);
    out.shift_id.resize(npairs);
    // The image of each pair, packed into its shift_id slot while filling (10 bits per
    // direction, offset 512), then numbered: no 12-byte-per-pair buffer. Images beyond the
    // packing range (atoms far outside the cell) fall back to a buffer.
    bool packed = true;
    auto fill = [&](int32_t* img) {
#pragma omp parallel for schedule(dynamic, 64)
        for (int64_t c = 0; c < n; ++c) {
            const int64_t a = spatial_order ? bin_atoms[c] : c;
            int64_t p = out.offsets[c];
            visit(a, [&](int64_t j, int64_t i0, int64_t i1, int64_t i2, double) {
                if (half && j < a) return;
                out.index[p] = static_cast<int32_t>(spatial_order ? rank[j] : j);
                // Shift for the original (unwrapped) coordinates: n - n0_j + n0_i.
                const int64_t m[3] = {i0 - n0[3 * j] + n0[3 * a], i1 - n0[3 * j + 1] + n0[3 * a + 1],
                                      i2 - n0[3 * j + 2] + n0[3 * a + 2]};
                if (img) {
                    for (int d = 0; d < 3; ++d) img[3 * p + d] = static_cast<int32_t>(m[d]);
                } else if (std::abs(m[0]) < 512 && std::abs(m[1]) < 512 && std::abs(m[2]) < 512) {
                    out.shift_id[p] = static_cast<int32_t>(((m[0] + 512) << 20) | ((m[1] + 512) << 10) | (m[2] + 512));
                } else {
#pragma omp atomic write
                    packed = false;
                }
                ++p;
            });
        }
    };
    std::vector<int32_t> img;
    fill(nullptr);
    if (!packed) {
        img.resize(3 * npairs);
        fill(img.data());
    }
    for (int64_t p = 0; p < npairs; ++p) {
        const int32_t code = out.shift_id[p];
        const auto key = packed ? std::make_tuple((code >> 20) - 512, ((code >> 10) & 1023) - 512, (code & 1023) - 512)
                                : std::make_tuple(img[3 * p], img[3 * p + 1], img[3 * p + 2]);
        auto it = shift_ids.find(key);
        if (it == shift_ids.end()) {
            const int32_t id = static_cast<int32_t>(shift_ids.size());
            it = shift_ids.emplace(key, id).first;
            const int m0 = std::get<0>(key), m1 = std::get<1>(key), m2 = std::get<2>(key);
            for (int c = 0; c < 3; ++c) out.shifts.push_back(m0 * H[c] + m1 * H[3 + c] + m2 * H[6 + c]);
            out.images.push_back(m0); out.images.push_back(m1); out.images.push_back(m2);
        }
        out.shift_id[p] = it->second;
    }
    return out;
}

NeighborList full_from_half(const NeighborList& half, const double* x, double cutoff) {
    NeighborList out;
    const int64_t n = static_cast<int64_t>(half.offsets.size()) - 1;
    const double c2 = cutoff * cutoff;
    // shift ids of the negated images (added where the half list has none)
    out.shifts = half.shifts;
    out.images = half.images;
    const int64_t ns = static_cast<int64_t>(half.shifts.size() / 3);
    std::vector<int32_t> neg(ns, -1);
    {
        std::map<std::array<int32_t, 3>, int32_t> id;
        for (int64_t s = 0; s < ns; ++s) id[{half.images[3 * s], half.images[3 * s + 1], half.images[3 * s + 2]}] = s;
        for (int64_t s = 0; s < ns; ++s) {
            const std::array<int32_t, 3> m{-half.images[3 * s], -half.images[3 * s + 1], -half.images[3 * s + 2]};
            auto it = id.find(m);
            if (it == id.end()) {
                const int32_t k = static_cast<int32_t>(out.shifts.size() / 3);
                for (int c = 0; c < 3; ++c) {
                    out.shifts.push_back(-half.shifts[3 * s + c]);
                    out.images.push_back(m[c]);
                }
                it = id.emplace(m, k).first;
            }
            neg[s] = it->second;
        }
    }
    auto within = [&](int64_t i, int64_t p) {
        const int32_t j = half.index[p];
        const double* sh = &half.shifts[3 * half.shift_id[p]];
        const double dx = x[3 * j] + sh[0] - x[3 * i], dy = x[3 * j + 1] + sh[1] - x[3 * i + 1],
                     dz = x[3 * j + 2] + sh[2] - x[3 * i + 2];
        return dx * dx + dy * dy + dz * dz < c2;
    };
    std::vector<int64_t> count(n + 1, 0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t p = half.offsets[i]; p < half.offsets[i + 1]; ++p)
            if (within(i, p)) {
                ++count[i];
                if (half.index[p] != i) ++count[half.index[p]];   // (self-images: T and -T both listed)
            }
    out.offsets.assign(n + 1, 0);
    for (int64_t i = 0; i < n; ++i) out.offsets[i + 1] = out.offsets[i] + count[i];
    out.index.resize(out.offsets[n]);
    out.shift_id.resize(out.offsets[n]);
    std::vector<int64_t> fill(out.offsets.begin(), out.offsets.end() - 1);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t p = half.offsets[i]; p < half.offsets[i + 1]; ++p) {
            if (!within(i, p)) continue;
            const int32_t j = half.index[p];
            out.index[fill[i]] = j;
            out.shift_id[fill[i]++] = half.shift_id[p];
            if (j != i) {
                out.index[fill[j]] = static_cast<int32_t>(i);
                out.shift_id[fill[j]++] = neg[half.shift_id[p]];
            }
        }
    return out;
}

}  // namespace hdnnp
