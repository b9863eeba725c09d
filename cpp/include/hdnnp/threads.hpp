// OpenMP thread count shared by the kernels: the requested number, or all (0), or 1 without OpenMP.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hdnnp {

inline int thread_count(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

}  // namespace hdnnp
