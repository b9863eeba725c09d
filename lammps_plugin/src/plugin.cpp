#include "lammps.h"
#include "pair_bpnn.h"
#include "plugin_abi.h"

using namespace LAMMPS_NS;

static Pair* bpnn_creator(LAMMPS* lmp) { return new PairBPNN(lmp); }

extern "C" void lammpsplugin_init(void* lmp, void* handle, void* regfunc) {
    hdnnp_lmp_plugin_t plugin;
    auto register_plugin = reinterpret_cast<hdnnp_lmp_regfunc>(regfunc);
    plugin.version = HDNNP_LAMMPS_VERSION;
    plugin.style = "pair";
    plugin.name = "bpnn";
    plugin.info = "hdnnp: Behler-Parrinello neural network potentials (n2p2/RuNNer 2G files)";
    plugin.author = "hdnnp developers";
    plugin.creator.v1 = reinterpret_cast<hdnnp_lmp_factory1*>(&bpnn_creator);
    plugin.handle = handle;
    (*register_plugin)(&plugin, lmp);
}
