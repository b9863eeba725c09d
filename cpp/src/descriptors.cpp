#include "hdnnp/descriptors.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>
#include <tuple>

#include "hdnnp/errors.hpp"
#include "hdnnp/settings.hpp"

namespace hdnnp {

bool SymFuncDef::angular() const {
    return type == 3 || type == 9 || type == 13 || type == 21 || type == 22 || type == 24 ||
           type == 25 || type == 90;
}
bool SymFuncDef::weighted() const { return type == 12 || type == 13 || (type >= 23 && type <= 25); }
bool SymFuncDef::compact() const { return type >= 20 && type <= 25; }
bool SymFuncDef::narrow() const { return type == 3 || type == 13 || type == 21 || type == 24; }

namespace {

int element_index(const std::string& sym, const std::vector<std::string>& elements,
                  const std::string& where) {
    for (size_t i = 0; i < elements.size(); ++i)
        if (elements[i] == sym) return static_cast<int>(i);
    throw ConfigError(where + ": symmetry function uses element '" + sym +
                      "', which is not in the 'elements' list");
}

void parse_subtype(const std::string& s, CoreType& core, bool& asym, const std::string& where) {
    asym = false;
    if (s == "e") { core = CoreType::Exp; return; }
    if ((s.size() == 2 || s.size() == 3) && s[0] == 'p' && s[1] >= '1' && s[1] <= '4') {
        core = static_cast<CoreType>(s[1] - '1');
        if (s.size() == 3) {
            if (s[2] != 'a') throw ConfigError(where + ": invalid compact subtype '" + s + "'");
            asym = true;
        }
        return;
    }
    throw ConfigError(where + ": invalid compact subtype '" + s + "' (expected p1..p4, p1a..p4a or e)");
}

void check_angles(const SymFuncDef& d, const std::string& where) {
    if (d.angle_left >= d.angle_right)
        throw ConfigError(where + ": left angle boundary must be smaller than the right one");
    const double c = 0.5 * (d.angle_left + d.angle_right);
    if ((d.angle_left < 0.0 && c != 0.0) || (d.angle_right > 180.0 && c != 180.0))
        throw ConfigError(where + ": angle window outside [0,180] must be centred at 0 or 180");
    if (d.angle_right - d.angle_left > 360.0)
        throw ConfigError(where + ": angle window wider than 360 degrees");
}

}  // namespace

SymFuncDef parse_symfunction(const std::vector<std::string>& tok,
                             const std::vector<std::string>& elements, const std::string& where) {
    if (tok.size() < 2) throw ConfigError(where + ": symfunction line needs at least <element> <type>");
    SymFuncDef d;
    d.ec = element_index(tok[0], elements, where);
    d.type = static_cast<int>(parse_int(tok[1], where));
    auto need = [&](size_t lo, size_t hi) {
        if (tok.size() < lo || tok.size() > hi)
            throw ConfigError(where + ": symmetry function type " + tok[1] + " expects " +
                              std::to_string(lo - 2) +
                              (hi != lo ? "-" + std::to_string(hi - 2) : std::string()) +
                              " parameters after the type, found " + std::to_string(tok.size() - 2));
    };
    auto num = [&](size_t i) { return parse_double(tok[i], where); };
    switch (d.type) {
        case 2:
            need(6, 6);
            d.e1 = element_index(tok[2], elements, where);
            d.eta = num(3); d.rs = num(4); d.rc = num(5);
            break;
        case 3: case 9:
            need(8, 9);
            d.e1 = element_index(tok[2], elements, where);
            d.e2 = element_index(tok[3], elements, where);
            d.eta = num(4); d.lambda = num(5); d.zeta = num(6); d.rc = num(7);
            if (tok.size() == 9) d.rs = num(8);
            break;
        case 12:
            need(5, 5);
            d.eta = num(2); d.rs = num(3); d.rc = num(4);
            break;
        case 13:
            need(7, 7);
            d.eta = num(2); d.rs = num(3); d.lambda = num(4); d.zeta = num(5); d.rc = num(6);
            break;
        case 20:
            need(6, 6);
            d.e1 = element_index(tok[2], elements, where);
            d.rl = num(3); d.rc = num(4); d.subtype = tok[5];
            break;
        case 21: case 22:
            need(9, 9);
            d.e1 = element_index(tok[2], elements, where);
            d.e2 = element_index(tok[3], elements, where);
            d.rl = num(4); d.rc = num(5); d.angle_left = num(6); d.angle_right = num(7);
            d.subtype = tok[8];
            break;
        case 23:
            need(5, 5);
            d.rl = num(2); d.rc = num(3); d.subtype = tok[4];
            break;
        case 24: case 25:
            need(7, 7);
            d.rl = num(2); d.rc = num(3); d.angle_left = num(4); d.angle_right = num(5);
            d.subtype = tok[6];
            break;
        case 90:
            need(9, 9);
            d.e1 = element_index(tok[2], elements, where);
            d.e2 = element_index(tok[3], elements, where);
            d.eta = num(4); d.rs = num(5); d.zeta = num(6); d.theta_s = num(7); d.rc = num(8);
            break;
        default:
            throw ConfigError(where + ": unknown symmetry function type " + tok[1] +
                              " (known: 2, 3, 9, 12, 13, 20-25, 90)");
    }
    if (d.e1 > d.e2 && d.e2 >= 0) std::swap(d.e1, d.e2);
    if (!(d.rc > 0.0)) throw ConfigError(where + ": cutoff radius must be positive");
    if (d.eta < 0.0) throw ConfigError(where + ": eta must not be negative");
    // zeta < 1 is accepted as n2p2 does (its shipped AlAuMgO potential has zeta = -1, -2); the
    // loader warns, since (1 + lambda cos)^zeta is then singular or not smooth at cos = -lambda.
    if ((d.type == 3 || d.type == 9 || d.type == 13 || d.type == 90) && !(d.zeta == d.zeta && std::isfinite(d.zeta)))
        throw ConfigError(where + ": zeta must be a finite number");
    if (d.compact()) {
        CoreType c; bool a;
        parse_subtype(d.subtype, c, a, where);
        if (d.rl >= d.rc) throw ConfigError(where + ": lower radial boundary must be below rc");
        if (d.angular()) check_angles(d, where);
    }
    return d;
}

bool symfunction_less(const SymFuncDef& a, const SymFuncDef& b) {
    // Keys as in n2p2's SymFnc*::operator< (cutoff type and alpha are global here).
    if (a.ec != b.ec) return a.ec < b.ec;
    if (a.type != b.type) return a.type < b.type;
    if (a.compact()) {
        return std::tie(a.subtype, a.e1, a.e2, a.rc, a.rl, a.angle_left, a.angle_right) <
               std::tie(b.subtype, b.e1, b.e2, b.rc, b.rl, b.angle_left, b.angle_right);
    }
    return std::tie(a.rc, a.eta, a.rs, a.zeta, a.lambda, a.theta_s, a.e1, a.e2) <
           std::tie(b.rc, b.eta, b.rs, b.zeta, b.lambda, b.theta_s, b.e1, b.e2);
}

ElementDescriptor::ElementDescriptor(std::vector<SymFuncDef> defs, CutoffType cutoff, double alpha,
                                     double L, const std::vector<int>& /*atomic_numbers*/,
                                     int /*n_elements*/)
    : defs_(std::move(defs)), n_sf_(static_cast<int>(defs_.size())) {
    // Group key: kind, weighted, e1, e2, rc (internal units).
    std::map<std::tuple<int, bool, int, int, double>, int> index;
    for (int m = 0; m < n_sf_; ++m) {
        const SymFuncDef& d = defs_[m];
        Kind kind;
        switch (d.type) {
            case 2: case 12: kind = Kind::ExpRad; break;
            case 20: case 23: kind = Kind::CompRad; break;
            case 3: case 13: kind = Kind::ExpAngN; break;
            case 9: kind = Kind::ExpAngW; break;
            case 21: case 24: kind = Kind::CompAngN; break;
            case 22: case 25: kind = Kind::CompAngW; break;
            default: kind = Kind::AniAng; break;
        }
        const double rc = d.rc * L;
        rc_max_ = std::max(rc_max_, rc);
        const auto key = std::make_tuple(static_cast<int>(kind), d.weighted(), d.e1, d.e2, rc);
        auto it = index.find(key);
        if (it == index.end()) {
            Group g;
            g.kind = kind; g.weighted = d.weighted(); g.e1 = d.e1; g.e2 = d.e2; g.rc = rc;
            g.fc = CutoffFunction(cutoff, rc, alpha);
            it = index.emplace(key, static_cast<int>(groups_.size())).first;
            groups_.push_back(g);
        }
        Group& g = groups_[it->second];
        Member mem;
        mem.idx = m;
        CoreType core = CoreType::Poly2; bool asym = false;
        if (d.compact()) parse_subtype(d.subtype, core, asym, "");
        if (!d.angular()) {
            if (kind == Kind::ExpRad) { mem.eta = d.eta / (L * L); mem.rs = d.rs * L; }
            else mem.cf = CompactFunction(core, asym, d.rl * L, rc);
            g.members.push_back(mem);
            continue;
        }
        // Angular: find or create the sub-group with the same radial shape.
        Sub* sub = nullptr;
        for (Sub& s : g.subs) {
            const bool same = d.compact()
                ? (s.cr.core == core && s.cr.asym == asym && s.cr.left == d.rl * L)
                : (s.eta == d.eta / (L * L) && s.rs == d.rs * L);
            if (same) { sub = &s; break; }
        }
        if (!sub) {
            Sub s;
            if (d.compact()) s.cr = CompactFunction(core, asym, d.rl * L, rc);
            else { s.eta = d.eta / (L * L); s.rs = d.rs * L; }
            g.subs.push_back(s);
            sub = &g.subs.back();
        }
        if (d.compact()) {
            // Angular window in radians; the angular core is never asymmetric (n2p2).
            mem.cf = CompactFunction(core, false, d.angle_left * M_PI / 180.0,
                                     d.angle_right * M_PI / 180.0);
        } else {
            mem.lambda = d.lambda;
            mem.zeta = d.zeta;
            mem.pnorm = std::pow(2.0, 1.0 - d.zeta);
            mem.zint = (std::floor(d.zeta) == d.zeta && d.zeta < 64) ? static_cast<int>(d.zeta) : -1;
            mem.cos_s = std::cos(d.theta_s * M_PI / 180.0);
            mem.sin_s = std::sin(d.theta_s * M_PI / 180.0);
        }
        sub->members.push_back(mem);
    }
}

namespace {

inline double ipow(double x, int n) {
    double r = 1.0;
    while (n > 0) {
        if (n & 1) r *= x;
        x *= x;
        n >>= 1;
    }
    return r;
}

using Kind = ElementDescriptor::Kind;
using Group = ElementDescriptor::Group;

// Compact radial groups (types 20, 23): sum over neighbours of one element (or all,
// Z-weighted). The exponential radial kinds use radial_exp() below.
template <bool GRAD>
void radial(const Group& g, const NeighborScratch& nb, const double* w, double* G, double* grad) {
    int b0 = 0, b1 = nb.n;
    if (!g.weighted) { b0 = nb.bucket[g.e1]; b1 = nb.bucket[g.e1 + 1]; }
    for (int s = b0; s < b1; ++s) {
        const double r = nb.r[s];
        if (r >= g.rc) continue;
        const double z = g.weighted ? nb.zw[s] : 1.0;
        double sum = 0.0;  // sum_m w_m dG_m/dr
        for (const auto& m : g.members) {
            double v, dv;
            m.cf.fdf(r, v, dv);
            if (GRAD) sum += w[m.idx] * dv;
            else G[m.idx] += z * v;
        }
        if (GRAD) {
            const double f = z * sum / r;
            grad[3 * s] += f * nb.dx[s];
            grad[3 * s + 1] += f * nb.dy[s];
            grad[3 * s + 2] += f * nb.dz[s];
        }
    }
}

// Neighbour sub-list of an angular group: within rc and of a matching element. Returns
// `split`: L[0..split) are of element e1, L[split..) of element e2 (when e1 != e2).
int select_neighbors(const Group& g, const NeighborScratch& nb, std::vector<int>& L) {
    L.clear();
    if (g.weighted) {
        for (int s = 0; s < nb.n; ++s) if (nb.r[s] < g.rc) L.push_back(s);
        return 0;
    }
    for (int s = nb.bucket[g.e1]; s < nb.bucket[g.e1 + 1]; ++s) if (nb.r[s] < g.rc) L.push_back(s);
    const int split = static_cast<int>(L.size());
    if (g.e2 != g.e1)
        for (int s = nb.bucket[g.e2]; s < nb.bucket[g.e2 + 1]; ++s) if (nb.r[s] < g.rc) L.push_back(s);
    return split;
}

// Compact and ANI angular groups (scalar; the exponential kinds use angular_exp() below).
// For the triplet (i; j, k) with u = R_j - R_i, v = R_k - R_i,
// t = R_k - R_j and a term T(r_ij, r_ik, r_jk, cos), the gradient is assembled once per
// triplet from the member-summed partial derivatives A = dT/dr_ij, B = dT/dr_ik,
// C = dT/dr_jk, D = dT/dcos:
//   dT/du = (A/r_ij - D cos/r_ij^2) u + D/(r_ij r_ik) v - (C/r_jk) t
//   dT/dv = (B/r_ik - D cos/r_ik^2) v + D/(r_ij r_ik) u + (C/r_jk) t
template <Kind K, bool GRAD>
void angular(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws, std::vector<double>& cache,
             const double* w, double* G, double* grad) {
    static_assert(K == Kind::CompAngN || K == Kind::CompAngW || K == Kind::AniAng);
    constexpr bool narrow = K == Kind::CompAngN;
    constexpr bool compact = K == Kind::CompAngN || K == Kind::CompAngW;
    const int nsub = static_cast<int>(g.subs.size());
    auto& L = ws.list;
    const int split = select_neighbors(g, nb, L);
    const int nl = static_cast<int>(L.size());
    if (nl < 2) return;
    ws.fc.resize(nl); ws.dfc.resize(nl);
    ws.a.resize(static_cast<size_t>(nl) * nsub); ws.da.resize(static_cast<size_t>(nl) * nsub);
    // Per-neighbour radial factors a = radial(r) [* f_c(r)] and da/dr, per sub-group.
    for (int l = 0; l < nl; ++l) {
        const double r = nb.r[L[l]];
        double fc = 1.0, dfc = 0.0;
        if (!compact) g.fc.fdf(r, fc, dfc);
        ws.fc[l] = fc; ws.dfc[l] = dfc;
        for (int s = 0; s < nsub; ++s) {
            const auto& sb = g.subs[s];
            double a, da;
            if (compact) {
                sb.cr.fdf(r, a, da);
            } else {
                a = fc; da = dfc;  // ANI: the radial factor depends on (r_ij + r_ik)/2
            }
            ws.a[l * nsub + s] = a;
            ws.da[l * nsub + s] = da;
        }
    }
    const bool same = g.weighted || g.e1 == g.e2;
    const double rc2 = g.rc * g.rc;
    if (!GRAD) cache.clear();
    const double* cached = cache.data();
    for (int p = 0; p < (same ? nl - 1 : split); ++p) {
        const int j = L[p];
        const double ux = nb.dx[j], uy = nb.dy[j], uz = nb.dz[j], rij = nb.r[j];
        const double* aj = &ws.a[p * nsub];
        const double* daj = &ws.da[p * nsub];
        for (int q = same ? p + 1 : split; q < nl; ++q) {
            const int k = L[q];
            const double vx = nb.dx[k], vy = nb.dy[k], vz = nb.dz[k], rik = nb.r[k];
            const double tx = vx - ux, ty = vy - uy, tz = vz - uz;
            double rjk = 0.0;
            const double* jk = nullptr;  // cached r_jk factors of this triplet (gradient pass)
            if (narrow) {
                const double rjk2 = tx * tx + ty * ty + tz * tz;
                if (rjk2 >= rc2) continue;
                if (compact && rjk2 <= 0.0) continue;
                if (GRAD) {
                    jk = cached;
                    cached += 1 + 2 * nsub;
                    rjk = jk[0];
                } else {
                    rjk = std::sqrt(rjk2);
                    cache.push_back(rjk);
                }
            }
            const double inv_ijik = 1.0 / (rij * rik);
            const double c = (ux * vx + uy * vy + uz * vz) * inv_ijik;
            const double z = g.weighted ? nb.zw[j] * nb.zw[k] : 1.0;
            const double* ak = &ws.a[q * nsub];
            const double* dak = &ws.da[q * nsub];
            double A = 0.0, B = 0.0, C = 0.0, D = 0.0;
            if constexpr (compact) {
                // r_jk factors first, so that the cache layout does not depend on the angle test.
                if (narrow && !GRAD)
                    for (int s = 0; s < nsub; ++s) {
                        double ajk, dajk;
                        g.subs[s].cr.fdf(rjk, ajk, dajk);
                        cache.push_back(ajk);
                        cache.push_back(dajk);
                    }
                if (c <= -1.0 || c >= 1.0) continue;
                const double theta = std::acos(c);
                const double dtheta = -1.0 / std::sqrt(1.0 - c * c);
                const double* jkc = GRAD ? jk : cache.data() + cache.size() - (narrow ? 1 + 2 * nsub : 0);
                for (int s = 0; s < nsub; ++s) {
                    const auto& sb = g.subs[s];
                    double ajk = 1.0, dajk = 0.0;
                    if (narrow) { ajk = jkc[1 + 2 * s]; dajk = jkc[2 + 2 * s]; }
                    const double R = aj[s] * ak[s] * ajk;
                    if (R == 0.0 && (!GRAD || (daj[s] == 0.0 && dak[s] == 0.0 && dajk == 0.0))) continue;
                    double sang = 0.0, sdang = 0.0;
                    for (const auto& m : sb.members) {
                        if (theta < m.cf.left || theta > m.cf.right) continue;
                        double ang, dang;
                        m.cf.fdf(theta, ang, dang);
                        if (GRAD) {
                            sang += w[m.idx] * ang;
                            sdang += w[m.idx] * dang * dtheta;
                        } else {
                            G[m.idx] += z * R * ang;
                        }
                    }
                    if (GRAD) {
                        A += sang * daj[s] * ak[s] * ajk;
                        B += sang * aj[s] * dak[s] * ajk;
                        C += sang * aj[s] * ak[s] * dajk;
                        D += sdang * R;
                    }
                }
            } else {  // ANI
                const double cs = 0.95 * c;
                const double theta = std::acos(cs);
                const double st = std::sin(theta);
                const double dtheta = -0.95 / st;
                const double rm = 0.5 * (rij + rik);
                const double fcc = ws.fc[p] * ws.fc[q];
                for (int s = 0; s < nsub; ++s) {
                    const auto& sb = g.subs[s];
                    const double x = rm - sb.rs;
                    const double e = std::exp(-sb.eta * x * x);
                    const double de = -2.0 * sb.eta * x * e;  // d e / d rm
                    double sang = 0.0, sdang = 0.0;
                    for (const auto& m : sb.members) {
                        // 1 + cos(theta - theta_s) = 1 + cos theta cos_s + sin theta sin_s
                        const double P = 1.0 + cs * m.cos_s + st * m.sin_s;
                        const double pz1 = m.zint > 0 ? ipow(P, m.zint - 1) : std::pow(P, m.zeta - 1.0);
                        if (GRAD) {
                            const double wm = w[m.idx] * m.pnorm;
                            sang += wm * pz1 * P;
                            // dP/dtheta = -sin theta cos_s + cos theta sin_s
                            sdang += wm * m.zeta * pz1 * (-st * m.cos_s + cs * m.sin_s) * dtheta;
                        } else {
                            G[m.idx] += m.pnorm * z * pz1 * P * e * fcc;
                        }
                    }
                    if (GRAD) {
                        A += sang * (0.5 * de * fcc + e * ws.dfc[p] * ws.fc[q]);
                        B += sang * (0.5 * de * fcc + e * ws.fc[p] * ws.dfc[q]);
                        D += sdang * e * fcc;
                    }
                }
            }
            if (GRAD) {
                A *= z; B *= z; C *= z; D *= z;
                const double dij = D * inv_ijik;
                const double cu = A / rij - D * c / (rij * rij);
                const double cv = B / rik - D * c / (rik * rik);
                const double ct = narrow ? C / rjk : 0.0;
                grad[3 * j] += cu * ux + dij * vx - ct * tx;
                grad[3 * j + 1] += cu * uy + dij * vy - ct * ty;
                grad[3 * j + 2] += cu * uz + dij * vz - ct * tz;
                grad[3 * k] += cv * vx + dij * ux + ct * tx;
                grad[3 * k + 1] += cv * vy + dij * uy + ct * ty;
                grad[3 * k + 2] += cv * vz + dij * uz + ct * tz;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Vectorised kernels of the exponential kinds.

template <int Z>
inline double ipow_t(double x) {
    if constexpr (Z == 0) return 1.0;
    else if constexpr (Z % 2 == 1) return x * ipow_t<Z - 1>(x);
    else { const double h = ipow_t<Z / 2>(x); return h * h; }
}

// Calls f(std::integral_constant<int, Z>) for the common integer zetas; Z = 0 means
// "other" (the caller then uses std::pow in a scalar loop).
template <class F>
inline void with_zeta(int zint, F&& f) {
    switch (zint) {
        case 1: f(std::integral_constant<int, 1>{}); break;
        case 2: f(std::integral_constant<int, 2>{}); break;
        case 3: f(std::integral_constant<int, 3>{}); break;
        case 4: f(std::integral_constant<int, 4>{}); break;
        case 5: f(std::integral_constant<int, 5>{}); break;
        case 6: f(std::integral_constant<int, 6>{}); break;
        case 8: f(std::integral_constant<int, 8>{}); break;
        case 16: f(std::integral_constant<int, 16>{}); break;
        case 32: f(std::integral_constant<int, 32>{}); break;
        default: f(std::integral_constant<int, 0>{}); break;
    }
}

template <bool GRAD>
void radial_exp(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws,
                const double* w, double* G, double* grad) {
    int b0 = 0, b1 = nb.n;
    if (!g.weighted) { b0 = nb.bucket[g.e1]; b1 = nb.bucket[g.e1 + 1]; }
    const int n = b1 - b0;
    if (n <= 0) return;
    const int st = (n + 7) & ~7;
    if (ws.buf.size() < static_cast<size_t>(4 * st)) ws.buf.resize(4 * st);
    double* __restrict fc = ws.buf.data();
    double* __restrict dfc = fc + st;
    double* __restrict zr = fc + 2 * st;   // Z_j (weighted) or 1
    double* __restrict S = fc + 3 * st;    // gradient: sum_m w_m dG_m/dr
    const double* __restrict r = nb.r.data() + b0;
    g.fc.fdf_batch(r, fc, dfc, n);
    for (int i = 0; i < n; ++i) zr[i] = g.weighted ? nb.zw[b0 + i] : 1.0;
    if (GRAD) for (int i = 0; i < n; ++i) S[i] = 0.0;
    for (const auto& m : g.members) {
        const double eta = m.eta, rs = m.rs;
        if (GRAD) {
            const double wm = w[m.idx];
#pragma omp simd
            for (int i = 0; i < n; ++i) {
                const double x = r[i] - rs;
                const double e = vexp(-eta * x * x);
                S[i] += wm * e * (dfc[i] - 2.0 * eta * x * fc[i]);
            }
        } else {
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < n; ++i) {
                const double x = r[i] - rs;
                sum += vexp(-eta * x * x) * fc[i] * zr[i];
            }
            G[m.idx] += sum;
        }
    }
    if (GRAD)
        for (int i = 0; i < n; ++i) {
            const int s = b0 + i;
            const double f = zr[i] * S[i] / nb.r[s];
            grad[3 * s] += f * nb.dx[s];
            grad[3 * s + 1] += f * nb.dy[s];
            grad[3 * s + 2] += f * nb.dz[s];
        }
}

// Types 3/13 (NARROW) and 9. Same chain rule as angular() below. For a fixed first
// neighbour j (list position p), the loops over the second neighbour k (position q) run
// in blocks of W lanes over [q0 rounded down to W, nl rounded up to W): the lanes below
// q0 (k <= j, or k of the wrong element) and the padding are masked with a zero factor,
// so there are no remainder loops.
constexpr int W = 8;

// An exponential angular group's neighbour list (select_neighbors, into ws.list) and `arrays`
// lane arrays of st doubles each (nl rounded up to W lanes) in ws.buf: arr(i) is the i-th.
struct Lanes {
    int split = 0, nl = 0, st = 0;
    double* base = nullptr;
    Lanes(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws, int arrays) {
        split = select_neighbors(g, nb, ws.list);
        nl = static_cast<int>(ws.list.size());
        st = (nl + W - 1) / W * W;
        const size_t need = static_cast<size_t>(arrays) * st;
        if (ws.buf.size() < need) ws.buf.resize(need);
        base = ws.buf.data();
    }
    double* operator()(int i) const { return base + static_cast<size_t>(i) * st; }
};

// The lane arrays of an angular group's neighbour list L, padded to st lanes with neighbours far
// away (outside every cutoff) and of zero weight: coordinates, r, 1/r, Z (weighted) or 1.
void load_lanes(const Group& g, const NeighborScratch& nb, const std::vector<int>& L, int st, double* x, double* y,
                double* z, double* r, double* ir, double* zk) {
    const int nl = static_cast<int>(L.size());
    for (int l = 0; l < nl; ++l) {
        const int s = L[l];
        x[l] = nb.dx[s]; y[l] = nb.dy[s]; z[l] = nb.dz[s]; r[l] = nb.r[s];
        ir[l] = 1.0 / r[l];
        zk[l] = g.weighted ? nb.zw[s] : 1.0;
    }
    for (int l = nl; l < st; ++l) {
        x[l] = y[l] = z[l] = r[l] = 1e6;
        ir[l] = 0.0; zk[l] = 0.0;
    }
}

// Per sub-group s of an exponential angular group, the radial factor a = exp(-eta (r - r_s)^2) f_c(r)
// of each lane and its r-derivative (a[s * st + l], da likewise); fc/dfc get f_c and f_c'.
void radial_lanes(const Group& g, int st, const double* r, double* fc, double* dfc, double* a, double* da) {
    g.fc.fdf_batch(r, fc, dfc, st);
    for (size_t s = 0; s < g.subs.size(); ++s) {
        const double eta = g.subs[s].eta, rs = g.subs[s].rs;
        double* __restrict as = a + s * st;
        double* __restrict das = da + s * st;
#pragma omp simd
        for (int l = 0; l < st; ++l) {
            const double xx = r[l] - rs;
            const double e = vexp(-eta * xx * xx);
            as[l] = e * fc[l];
            das[l] = e * (dfc[l] - 2.0 * eta * xx * fc[l]);
        }
    }
}

// NARROW: the value pass records the r_jk factors e and (de/dr_jk) / r_jk of every lane in
// `cache`; the gradient pass of the same atom replays them instead of recomputing the
// square roots, cutoffs and exponentials.
// `fresh` (gradient pass only): no value pass ran before for this atom, so the r_jk factors are
// computed here instead of replayed from the cache.
template <bool NARROW, bool GRAD>
void angular_exp(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws,
                 std::vector<double>& cache, const double* w, double* G, double* grad, bool fresh = false) {
    const bool replay = NARROW && GRAD && !fresh;
    const int nsub = static_cast<int>(g.subs.size());
    const Lanes arr(g, nb, ws, 26 + 2 * nsub);
    if (arr.nl < 2) return;
    const auto& L = ws.list;
    const int split = arr.split, nl = arr.nl, st = arr.st;
    double* __restrict x = arr(0); double* __restrict y = arr(1); double* __restrict z = arr(2);
    double* __restrict r = arr(3); double* __restrict ir = arr(4); double* __restrict zk = arr(5);
    double* __restrict fc = arr(6); double* __restrict dfc = arr(7); double* __restrict c = arr(8);
    double* __restrict rjk = arr(9); double* __restrict fjk = arr(10); double* __restrict dfjk = arr(11);
    double* __restrict R = arr(12); double* __restrict sang = arr(13); double* __restrict sdang = arr(14);
    double* __restrict A = arr(15); double* __restrict B = arr(16); double* __restrict C = arr(17);
    double* __restrict D = arr(18); double* __restrict gx = arr(19); double* __restrict gy = arr(20);
    double* __restrict gz = arr(21); double* __restrict irjk = arr(22); double* __restrict ajk = arr(23);
    double* __restrict dajk = arr(24);
    double* const a = arr(26);          // a[s * st + l]: radial factor of sub-group s
    double* const da = arr(26 + nsub);
    load_lanes(g, nb, L, st, x, y, z, r, ir, zk);
    radial_lanes(g, st, r, fc, dfc, a, da);
    if (GRAD) for (int l = 0; l < st; ++l) { gx[l] = 0.0; gy[l] = 0.0; gz[l] = 0.0; }
    const bool same = g.weighted || g.e1 == g.e2;
    const int pend = same ? nl - 1 : split;
    if (NARROW && !GRAD) {
        size_t lanes = 0;
        for (int p = 0; p < pend; ++p) lanes += st - (same ? p + 1 : split) / W * W;
        const size_t size = lanes * 2 * nsub;
        if (cache.size() < size) cache.resize(size);
    }
    double* cp = cache.data();
    for (int p = 0; p < pend; ++p) {
        const int q0 = same ? p + 1 : split;
        const int qa = q0 / W * W;
        const int nq = st - qa;
        const double ux = x[p], uy = y[p], uz = z[p], irj = ir[p], zj = zk[p];
        if (replay) {
            // c only; the r_jk factors come from the cache
#pragma omp simd
            for (int q = qa; q < st; ++q) c[q] = (ux * x[q] + uy * y[q] + uz * z[q]) * irj * ir[q];
        } else for (int b = qa; b < st; b += W) {
#pragma omp simd
            for (int v = 0; v < W; ++v) {
                const int q = b + v;
                const bool valid = q >= q0;
                c[q] = (ux * x[q] + uy * y[q] + uz * z[q]) * irj * ir[q];
                if (NARROW) {
                    const double tx = x[q] - ux, ty = y[q] - uy, tz = z[q] - uz;
                    // masked lanes: r_jk = 1e6 is outside the cutoff, so f_c(r_jk) = 0
                    const double d = valid ? std::sqrt(tx * tx + ty * ty + tz * tz) : 1e6;
                    rjk[q] = d;
                    irjk[q] = 1.0 / d;
                } else {
                    fjk[q] = valid ? 1.0 : 0.0;
                    dfjk[q] = 0.0;
                }
            }
        }
        if (NARROW && !replay) {
            g.fc.fdf_batch(rjk + qa, fjk + qa, dfjk + qa, nq);
        }
        if (GRAD)
            for (int q = qa; q < st; ++q) { A[q] = 0.0; B[q] = 0.0; C[q] = 0.0; D[q] = 0.0; }
        for (int s = 0; s < nsub; ++s) {
            const auto& sb = g.subs[s];
            const double eta = sb.eta, rs = sb.rs;
            const double* __restrict as = a + static_cast<size_t>(s) * st;
            const double* __restrict das = da + static_cast<size_t>(s) * st;
            const double aj = as[p], daj = das[p];
            // r_jk factors of the lanes: the gradient pass reads the value pass's cache in place.
            const double* __restrict ek = ajk;
            const double* __restrict dek = dajk;
            if (replay) {
                ek = cp - qa;
                dek = cp + nq - qa;
#pragma omp simd
                for (int q = qa; q < st; ++q) {
                    R[q] = aj * as[q] * ek[q];
                    sang[q] = 0.0; sdang[q] = 0.0;
                }
                cp += 2 * nq;
            } else for (int b = qa; b < st; b += W) {
#pragma omp simd
                for (int v = 0; v < W; ++v) {
                    const int q = b + v;
                    double e = fjk[q], de = 0.0;   // wide: e is the lane mask
                    if (NARROW) {
                        const double xx = rjk[q] - rs;
                        const double ee = vexp(-eta * xx * xx);
                        e = ee * fjk[q];
                        de = ee * (dfjk[q] - 2.0 * eta * xx * fjk[q]);
                    }
                    if (GRAD) {
                        R[q] = aj * as[q] * e;
                        // (narrow: C takes (de/dr_jk) / r_jk, as the cache holds it)
                        ajk[q] = e; dajk[q] = NARROW ? de * irjk[q] : de;
                        sang[q] = 0.0; sdang[q] = 0.0;
                    } else {
                        R[q] = aj * as[q] * e * zk[q];
                        // the gradient needs (de/dr_jk) / r_jk
                        if (NARROW) { cp[q - qa] = e; cp[nq + q - qa] = de * irjk[q]; }
                    }
                }
            }
            if (NARROW && !GRAD) cp += 2 * nq;
            for (const auto& m : sb.members) {
                const double lam = m.lambda;
                with_zeta(m.zint, [&](auto Zc) {
                    constexpr int Z = decltype(Zc)::value;
                    if (GRAD) {
                        // sang = sum_m w_m P^zeta, sdang = sum_m w_m zeta lambda P^(zeta-1)
                        const double wm = w[m.idx] * m.pnorm, wd = wm * m.zeta * lam;
                        if constexpr (Z > 0) {
                            for (int b = qa; b < st; b += W) {
#pragma omp simd
                                for (int v = 0; v < W; ++v) {
                                    const int q = b + v;
                                    const double P = 1.0 + lam * c[q];
                                    const double pz1 = P > 0.0 ? ipow_t<Z - 1>(P) : 0.0;
                                    sang[q] += wm * pz1 * P;
                                    sdang[q] += wd * pz1;
                                }
                            }
                        } else {
                            for (int q = qa; q < st; ++q) {
                                const double P = 1.0 + lam * c[q];
                                if (P <= 0.0) continue;
                                const double pz1 = std::pow(P, m.zeta - 1.0);
                                sang[q] += wm * pz1 * P;
                                sdang[q] += wd * pz1;
                            }
                        }
                    } else {
                        double acc[W] = {};
                        if constexpr (Z > 0) {
                            for (int b = qa; b < st; b += W) {
#pragma omp simd
                                for (int v = 0; v < W; ++v) {
                                    const double P = 1.0 + lam * c[b + v];
                                    acc[v] += (P > 0.0 ? ipow_t<Z>(P) : 0.0) * R[b + v];
                                }
                            }
                        } else {
                            for (int q = qa; q < st; ++q) {
                                const double P = 1.0 + lam * c[q];
                                if (P > 0.0) acc[0] += std::pow(P, m.zeta) * R[q];
                            }
                        }
                        double sum = 0.0;
                        for (int v = 0; v < W; ++v) sum += acc[v];
                        G[m.idx] += m.pnorm * zj * sum;
                    }
                });
            }
            if (GRAD) {
                for (int b = qa; b < st; b += W) {
#pragma omp simd
                    for (int v = 0; v < W; ++v) {
                        const int q = b + v;
                        A[q] += sang[q] * daj * as[q] * ek[q];
                        B[q] += sang[q] * aj * das[q] * ek[q];
                        C[q] += sang[q] * aj * as[q] * dek[q];
                        D[q] += sdang[q] * R[q];
                    }
                }
            }
        }
        if (GRAD) {
            double fx[W] = {}, fy[W] = {}, fz[W] = {};
            for (int b = qa; b < st; b += W) {
#pragma omp simd
                for (int v = 0; v < W; ++v) {
                    const int q = b + v;
                    const double zz = zj * zk[q];
                    const double Aq = A[q] * zz, Bq = B[q] * zz, Dq = D[q] * zz;
                    const double irk = ir[q];
                    const double dij = Dq * irj * irk;
                    const double cu = Aq * irj - Dq * c[q] * irj * irj;
                    const double cv = Bq * irk - Dq * c[q] * irk * irk;
                    const double ct = NARROW ? C[q] * zz : 0.0;  // C holds (de/dr_jk) / r_jk
                    const double tx = x[q] - ux, ty = y[q] - uy, tz = z[q] - uz;
                    fx[v] += cu * ux + dij * x[q] - ct * tx;
                    fy[v] += cu * uy + dij * y[q] - ct * ty;
                    fz[v] += cu * uz + dij * z[q] - ct * tz;
                    gx[q] += cv * x[q] + dij * ux + ct * tx;
                    gy[q] += cv * y[q] + dij * uy + ct * ty;
                    gz[q] += cv * z[q] + dij * uz + ct * tz;
                }
            }
            double sx = 0.0, sy = 0.0, sz = 0.0;
            for (int v = 0; v < W; ++v) { sx += fx[v]; sy += fy[v]; sz += fz[v]; }
            gx[p] += sx; gy[p] += sy; gz[p] += sz;
        }
    }
    if (GRAD)
        for (int l = 0; l < nl; ++l) {
            const int s = L[l];
            grad[3 * s] += gx[l];
            grad[3 * s + 1] += gy[l];
            grad[3 * s + 2] += gz[l];
        }
}

// `fresh` (GRAD): no value pass ran for this atom; the kinds that replay the value pass's cache
// run their value pass here first (into the workspace's scratch, not G), type 3/13 computes its
// r_jk factors itself.
template <bool GRAD>
void run_groups(const std::vector<Group>& groups, const NeighborScratch& nb,
                DescriptorWorkspace& ws, const double* w, double* G, double* grad, int only = -1,
                bool fresh = false) {
    if (ws.jk.size() < groups.size()) ws.jk.resize(groups.size());
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        if (only >= 0 && static_cast<int>(gi) != only) continue;
        const Group& g = groups[gi];
        auto& c = ws.jk[gi];
        switch (g.kind) {
            case Kind::ExpRad: radial_exp<GRAD>(g, nb, ws, w, G, grad); break;
            case Kind::CompRad: radial<GRAD>(g, nb, w, G, grad); break;
            case Kind::ExpAngN: angular_exp<true, GRAD>(g, nb, ws, c, w, G, grad, fresh); break;
            case Kind::ExpAngW: angular_exp<false, GRAD>(g, nb, ws, c, w, G, grad); break;
            case Kind::CompAngN:
                if (GRAD && fresh) angular<Kind::CompAngN, false>(g, nb, ws, c, nullptr, ws.g_scratch.data(), nullptr);
                angular<Kind::CompAngN, GRAD>(g, nb, ws, c, w, G, grad);
                break;
            case Kind::CompAngW:
                if (GRAD && fresh) angular<Kind::CompAngW, false>(g, nb, ws, c, nullptr, ws.g_scratch.data(), nullptr);
                angular<Kind::CompAngW, GRAD>(g, nb, ws, c, w, G, grad);
                break;
            case Kind::AniAng:
                if (GRAD && fresh) angular<Kind::AniAng, false>(g, nb, ws, c, nullptr, ws.g_scratch.data(), nullptr);
                angular<Kind::AniAng, GRAD>(g, nb, ws, c, w, G, grad);
                break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Directional derivatives (jvp): V_m += sum_s dG_m/d(r_s - r_i) . u_s. Same terms as the
// value passes, each differentiated along u: for a neighbour s, dr_s = r^_s . u_s; for a
// triplet, dr_jk = t^ . (u_k - u_j) and
//   dcos = (u_j . v + u . u_k) / (r_ij r_ik) - cos (dr_ij / r_ij + dr_ik / r_ik).
// Scalar loops: their cost is that of one value pass when every u_s is set, and O(n) per
// centre when only one neighbour moves (a Kalman force observation).

void radial_jvp(const Group& g, const NeighborScratch& nb, const double* u, const unsigned char* act, double* V) {
    int b0 = 0, b1 = nb.n;
    if (!g.weighted) { b0 = nb.bucket[g.e1]; b1 = nb.bucket[g.e1 + 1]; }
    for (int s = b0; s < b1; ++s) {
        if (act && !act[s]) continue;
        const double r = nb.r[s];
        if (r >= g.rc) continue;
        const double dr = (nb.dx[s] * u[3 * s] + nb.dy[s] * u[3 * s + 1] + nb.dz[s] * u[3 * s + 2]) / r;
        if (dr == 0.0) continue;
        const double zd = (g.weighted ? nb.zw[s] : 1.0) * dr;
        if (g.kind == Kind::ExpRad) {
            double fc, dfc;
            g.fc.fdf(r, fc, dfc);
            for (const auto& m : g.members) {
                const double x = r - m.rs;
                V[m.idx] += zd * vexp(-m.eta * x * x) * (dfc - 2.0 * m.eta * x * fc);
            }
        } else {
            for (const auto& m : g.members) {
                double v, dv;
                m.cf.fdf(r, v, dv);
                V[m.idx] += zd * dv;
            }
        }
    }
}

void angular_jvp(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws, const double* u,
                 const unsigned char* act, double* V) {
    const Kind K = g.kind;
    const bool narrow = K == Kind::ExpAngN || K == Kind::CompAngN;
    const bool compact = K == Kind::CompAngN || K == Kind::CompAngW;
    const bool ani = K == Kind::AniAng;
    const int nsub = static_cast<int>(g.subs.size());
    auto& L = ws.list;
    const int split = select_neighbors(g, nb, L);
    const int nl = static_cast<int>(L.size());
    if (nl < 2) return;
    ws.fc.resize(nl); ws.dfc.resize(nl); ws.dr.resize(nl); ws.on.resize(nl);
    ws.a.resize(static_cast<size_t>(nl) * nsub); ws.da.resize(static_cast<size_t>(nl) * nsub);
    ws.active.clear();
    for (int l = 0; l < nl; ++l) {
        const int s = L[l];
        const double r = nb.r[s];
        double fc = 1.0, dfc = 0.0;
        if (!compact) g.fc.fdf(r, fc, dfc);
        ws.fc[l] = fc; ws.dfc[l] = dfc;
        ws.on[l] = act ? act[s] : 1;
        if (ws.on[l]) ws.active.push_back(l);
        ws.dr[l] = (nb.dx[s] * u[3 * s] + nb.dy[s] * u[3 * s + 1] + nb.dz[s] * u[3 * s + 2]) / r;
        for (int b = 0; b < nsub; ++b) {
            const auto& sb = g.subs[b];
            double a = fc, da = dfc;   // ANI: the radial factor depends on (r_ij + r_ik)/2
            if (compact) {
                sb.cr.fdf(r, a, da);
            } else if (!ani) {
                const double x = r - sb.rs;
                const double e = vexp(-sb.eta * x * x);
                a = e * fc;
                da = e * (dfc - 2.0 * sb.eta * x * fc);
            }
            ws.a[l * nsub + b] = a;
            ws.da[l * nsub + b] = da;
        }
    }
    if (ws.active.empty()) return;
    const double rc2 = g.rc * g.rc;
    auto triplet = [&](int p, int q) {
        const int j = L[p], k = L[q];
        const double ux = nb.dx[j], uy = nb.dy[j], uz = nb.dz[j], rij = nb.r[j];
        const double vx = nb.dx[k], vy = nb.dy[k], vz = nb.dz[k], rik = nb.r[k];
        const double* uj = &u[3 * j];
        const double* uk = &u[3 * k];
        double rjk = 0.0, djk = 0.0;
        if (narrow) {
            const double tx = vx - ux, ty = vy - uy, tz = vz - uz;
            const double rjk2 = tx * tx + ty * ty + tz * tz;
            if (rjk2 >= rc2 || (compact && rjk2 <= 0.0)) return;
            rjk = std::sqrt(rjk2);
            djk = (tx * (uk[0] - uj[0]) + ty * (uk[1] - uj[1]) + tz * (uk[2] - uj[2])) / rjk;
        }
        const double dij = ws.dr[p], dik = ws.dr[q];
        const double inv = 1.0 / (rij * rik);
        const double c = (ux * vx + uy * vy + uz * vz) * inv;
        const double dc = (uj[0] * vx + uj[1] * vy + uj[2] * vz + ux * uk[0] + uy * uk[1] + uz * uk[2]) * inv -
                          c * (dij / rij + dik / rik);
        const double z = g.weighted ? nb.zw[j] * nb.zw[k] : 1.0;
        const double* aj = &ws.a[p * nsub];
        const double* daj = &ws.da[p * nsub];
        const double* ak = &ws.a[q * nsub];
        const double* dak = &ws.da[q * nsub];
        if (compact) {
            if (c <= -1.0 || c >= 1.0) return;
            const double theta = std::acos(c);
            const double dtheta = -1.0 / std::sqrt(1.0 - c * c);
            for (int b = 0; b < nsub; ++b) {
                const auto& sb = g.subs[b];
                double ajk = 1.0, dajk = 0.0;
                if (narrow) sb.cr.fdf(rjk, ajk, dajk);
                const double R = aj[b] * ak[b] * ajk;
                const double dR = daj[b] * ak[b] * ajk * dij + aj[b] * dak[b] * ajk * dik + aj[b] * ak[b] * dajk * djk;
                for (const auto& m : sb.members) {
                    if (theta < m.cf.left || theta > m.cf.right) continue;
                    double ang, dang;
                    m.cf.fdf(theta, ang, dang);
                    V[m.idx] += z * (ang * dR + dang * dtheta * dc * R);
                }
            }
        } else if (ani) {
            const double cs = 0.95 * c;
            const double theta = std::acos(cs);
            const double st = std::sin(theta);
            const double dtheta = -0.95 / st;
            const double rm = 0.5 * (rij + rik);
            const double fcc = ws.fc[p] * ws.fc[q];
            for (const auto& sb : g.subs) {
                const double x = rm - sb.rs;
                const double e = vexp(-sb.eta * x * x);
                const double de = -2.0 * sb.eta * x * e;
                const double R = e * fcc;
                const double dR = (0.5 * de * fcc + e * ws.dfc[p] * ws.fc[q]) * dij +
                                  (0.5 * de * fcc + e * ws.fc[p] * ws.dfc[q]) * dik;
                for (const auto& m : sb.members) {
                    const double P = 1.0 + cs * m.cos_s + st * m.sin_s;
                    const double pz1 = m.zint > 0 ? ipow(P, m.zint - 1) : std::pow(P, m.zeta - 1.0);
                    V[m.idx] += m.pnorm * z *
                                (pz1 * P * dR + m.zeta * pz1 * (-st * m.cos_s + cs * m.sin_s) * dtheta * R * dc);
                }
            }
        } else {  // types 3, 13 (narrow), 9
            double fjk = 1.0, dfjk = 0.0;
            if (narrow) g.fc.fdf(rjk, fjk, dfjk);
            for (int b = 0; b < nsub; ++b) {
                const auto& sb = g.subs[b];
                double ajk = 1.0, dajk = 0.0;
                if (narrow) {
                    const double x = rjk - sb.rs;
                    const double e = vexp(-sb.eta * x * x);
                    ajk = e * fjk;
                    dajk = e * (dfjk - 2.0 * sb.eta * x * fjk);
                }
                const double R = aj[b] * ak[b] * ajk;
                const double dR = daj[b] * ak[b] * ajk * dij + aj[b] * dak[b] * ajk * dik + aj[b] * ak[b] * dajk * djk;
                for (const auto& m : sb.members) {
                    const double P = 1.0 + m.lambda * c;
                    if (P <= 0.0) continue;
                    const double pz1 = m.zint > 0 ? ipow(P, m.zint - 1) : std::pow(P, m.zeta - 1.0);
                    V[m.idx] += m.pnorm * z * pz1 * (P * dR + m.zeta * m.lambda * R * dc);
                }
            }
        }
    };
    const bool same = g.weighted || g.e1 == g.e2;
    const int n_on = static_cast<int>(ws.active.size());
    if (2 * n_on >= nl) {
        for (int p = 0; p < (same ? nl - 1 : split); ++p)
            for (int q = same ? p + 1 : split; q < nl; ++q)
                if (ws.on[p] || ws.on[q]) triplet(p, q);
        return;
    }
    // Few moving neighbours: only the triplets that contain one (once each).
    for (const int a : ws.active) {
        const int b0 = same ? 0 : (a < split ? split : 0), b1 = same ? nl : (a < split ? nl : split);
        for (int b = b0; b < b1; ++b) {
            if (b == a || (ws.on[b] && b < a)) continue;
            triplet(std::min(a, b), std::max(a, b));
        }
    }
}

// Vectorised jvp of the exponential kinds (every neighbour moving: the Adam/batch case),
// in the lane layout of radial_exp / angular_exp above. Masked and padding lanes have zero
// radial factors, so they add nothing.
void radial_exp_jvp(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws, const double* u, double* V) {
    int b0 = 0, b1 = nb.n;
    if (!g.weighted) { b0 = nb.bucket[g.e1]; b1 = nb.bucket[g.e1 + 1]; }
    const int n = b1 - b0;
    if (n <= 0) return;
    const int st = (n + 7) & ~7;
    if (ws.buf.size() < static_cast<size_t>(3 * st)) ws.buf.resize(3 * st);
    double* __restrict fc = ws.buf.data();
    double* __restrict dfc = fc + st;
    double* __restrict zd = fc + 2 * st;   // Z_j (weighted) or 1, times dr_j
    const double* __restrict r = nb.r.data() + b0;
    g.fc.fdf_batch(r, fc, dfc, n);
    for (int i = 0; i < n; ++i) {
        const int s = b0 + i;
        zd[i] = (g.weighted ? nb.zw[s] : 1.0) * (nb.dx[s] * u[3 * s] + nb.dy[s] * u[3 * s + 1] + nb.dz[s] * u[3 * s + 2]) / r[i];
    }
    for (const auto& m : g.members) {
        const double eta = m.eta, rs = m.rs;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < n; ++i) {
            const double x = r[i] - rs;
            sum += zd[i] * vexp(-eta * x * x) * (dfc[i] - 2.0 * eta * x * fc[i]);
        }
        V[m.idx] += sum;
    }
}

template <bool NARROW>
void angular_exp_jvp(const Group& g, const NeighborScratch& nb, DescriptorWorkspace& ws, const double* u, double* V) {
    const int nsub = static_cast<int>(g.subs.size());
    const Lanes arr(g, nb, ws, 24 + 2 * nsub);
    if (arr.nl < 2) return;
    const auto& L = ws.list;
    const int split = arr.split, nl = arr.nl, st = arr.st;
    double* __restrict x = arr(0); double* __restrict y = arr(1); double* __restrict z = arr(2);
    double* __restrict r = arr(3); double* __restrict ir = arr(4); double* __restrict zk = arr(5);
    double* __restrict fc = arr(6); double* __restrict dfc = arr(7); double* __restrict c = arr(8);
    double* __restrict dc = arr(9); double* __restrict rjk = arr(10); double* __restrict fjk = arr(11);
    double* __restrict dfjk = arr(12); double* __restrict djk = arr(13); double* __restrict wx = arr(14);
    double* __restrict wy = arr(15); double* __restrict wz = arr(16); double* __restrict dr = arr(17);
    double* __restrict R = arr(18); double* __restrict dR = arr(19);
    double* const a = arr(24);          // a[s * st + l]: radial factor of sub-group s
    double* const da = arr(24 + nsub);
    load_lanes(g, nb, L, st, x, y, z, r, ir, zk);
    for (int l = 0; l < st; ++l) {   // the lanes' directions and dr = r^ . u (0 on padding)
        const bool in = l < nl;
        const int s = in ? L[l] : 0;
        wx[l] = in ? u[3 * s] : 0.0; wy[l] = in ? u[3 * s + 1] : 0.0; wz[l] = in ? u[3 * s + 2] : 0.0;
        dr[l] = (x[l] * wx[l] + y[l] * wy[l] + z[l] * wz[l]) * ir[l];
    }
    radial_lanes(g, st, r, fc, dfc, a, da);
    const bool same = g.weighted || g.e1 == g.e2;
    const int pend = same ? nl - 1 : split;
    for (int p = 0; p < pend; ++p) {
        const int q0 = same ? p + 1 : split;
        const int qa = q0 / W * W;
        const int nq = st - qa;
        const double ux = x[p], uy = y[p], uz = z[p], irj = ir[p], zj = zk[p];
        const double px = wx[p], py = wy[p], pz = wz[p], drj = dr[p];
        for (int b = qa; b < st; b += W) {
#pragma omp simd
            for (int v = 0; v < W; ++v) {
                const int q = b + v;
                const bool valid = q >= q0;
                const double cq = (ux * x[q] + uy * y[q] + uz * z[q]) * irj * ir[q];
                c[q] = cq;
                dc[q] = (px * x[q] + py * y[q] + pz * z[q] + ux * wx[q] + uy * wy[q] + uz * wz[q]) * irj * ir[q] -
                        cq * (drj * irj + dr[q] * ir[q]);
                if (NARROW) {
                    const double tx = x[q] - ux, ty = y[q] - uy, tz = z[q] - uz;
                    const double d = valid ? std::sqrt(tx * tx + ty * ty + tz * tz) : 1e6;
                    rjk[q] = d;
                    djk[q] = (tx * (wx[q] - px) + ty * (wy[q] - py) + tz * (wz[q] - pz)) / d;
                } else {
                    fjk[q] = valid ? 1.0 : 0.0;
                    dfjk[q] = 0.0;
                }
            }
        }
        if (NARROW) g.fc.fdf_batch(rjk + qa, fjk + qa, dfjk + qa, nq);
        for (int s = 0; s < nsub; ++s) {
            const auto& sb = g.subs[s];
            const double eta = sb.eta, rs = sb.rs;
            const double* __restrict as = a + static_cast<size_t>(s) * st;
            const double* __restrict das = da + static_cast<size_t>(s) * st;
            const double aj = as[p], daj = das[p];
            for (int b = qa; b < st; b += W) {
#pragma omp simd
                for (int v = 0; v < W; ++v) {
                    const int q = b + v;
                    double e = fjk[q], de = 0.0;   // wide: e is the lane mask
                    if (NARROW) {
                        const double xx = rjk[q] - rs;
                        const double ee = vexp(-eta * xx * xx);
                        e = ee * fjk[q];
                        de = ee * (dfjk[q] - 2.0 * eta * xx * fjk[q]);
                    }
                    R[q] = aj * as[q] * e * zk[q];
                    dR[q] = (daj * as[q] * e * drj + aj * das[q] * e * dr[q] + aj * as[q] * de * djk[q]) * zk[q];
                }
            }
            for (const auto& m : sb.members) {
                const double lam = m.lambda, zl = m.zeta * lam;
                double acc[W] = {};
                with_zeta(m.zint, [&](auto Zc) {
                    constexpr int Z = decltype(Zc)::value;
                    if constexpr (Z > 0) {
                        for (int b = qa; b < st; b += W) {
#pragma omp simd
                            for (int v = 0; v < W; ++v) {
                                const int q = b + v;
                                const double P = 1.0 + lam * c[q];
                                const double pz1 = P > 0.0 ? ipow_t<Z - 1>(P) : 0.0;
                                acc[v] += pz1 * (P * dR[q] + zl * R[q] * dc[q]);
                            }
                        }
                    } else {
                        for (int q = qa; q < st; ++q) {
                            const double P = 1.0 + lam * c[q];
                            if (P <= 0.0) continue;
                            acc[0] += std::pow(P, m.zeta - 1.0) * (P * dR[q] + zl * R[q] * dc[q]);
                        }
                    }
                });
                double sum = 0.0;
                for (int v = 0; v < W; ++v) sum += acc[v];
                V[m.idx] += m.pnorm * zj * sum;
            }
        }
    }
}

}  // namespace

void ElementDescriptor::values(const NeighborScratch& nb, DescriptorWorkspace& ws, double* G) const {
    std::fill(G, G + n_sf_, 0.0);
    run_groups<false>(groups_, nb, ws, nullptr, G, nullptr);
}

void ElementDescriptor::gradient(const NeighborScratch& nb, DescriptorWorkspace& ws,
                                 const double* w, double* grad) const {
    run_groups<true>(groups_, nb, ws, w, nullptr, grad);
}

void ElementDescriptor::gradient_fresh(const NeighborScratch& nb, DescriptorWorkspace& ws,
                                       const double* w, double* grad) const {
    ws.g_scratch.assign(n_sf_, 0.0);
    run_groups<true>(groups_, nb, ws, w, nullptr, grad, -1, true);
}

void ElementDescriptor::gradient_group(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* w,
                                       double* grad, int group) const {
    run_groups<true>(groups_, nb, ws, w, nullptr, grad, group);
}

void ElementDescriptor::jvp(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* u,
                            const unsigned char* active, double* V) const {
    // Most neighbours moving: the vectorised kernels of the exponential kinds (which do not skip
    // still triplets; they add exact zeros).
    int n_on = nb.n;
    if (active) n_on = static_cast<int>(std::count(active, active + nb.n, static_cast<unsigned char>(1)));
    const bool dense = 2 * n_on >= nb.n;
    for (const Group& g : groups_) {
        switch (g.kind) {
            case Kind::ExpRad: radial_exp_jvp(g, nb, ws, u, V); break;
            case Kind::CompRad: radial_jvp(g, nb, u, active, V); break;
            case Kind::ExpAngN:
                if (dense) angular_exp_jvp<true>(g, nb, ws, u, V);
                else angular_jvp(g, nb, ws, u, active, V);
                break;
            case Kind::ExpAngW:
                if (dense) angular_exp_jvp<false>(g, nb, ws, u, V);
                else angular_jvp(g, nb, ws, u, active, V);
                break;
            default: angular_jvp(g, nb, ws, u, active, V); break;
        }
    }
}

std::vector<std::vector<int>> ElementDescriptor::group_members() const {
    std::vector<std::vector<int>> out;
    for (const Group& g : groups_) {
        std::vector<int> idx;
        for (const Member& m : g.members) idx.push_back(m.idx);
        for (const Sub& sb : g.subs)
            for (const Member& m : sb.members) idx.push_back(m.idx);
        out.push_back(std::move(idx));
    }
    return out;
}

}  // namespace hdnnp
