"""Print the path of the standalone C++ benchmark executable installed with the package."""
import os
import sys


def bench_executable() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "bin", "hdnnp-bench")
    if not os.path.exists(path):  # editable install: the executable stays in the build folder
        import glob

        found = sorted(glob.glob(os.path.join(here, "..", "..", "build", "*", "hdnnp-bench")))
        if found:
            path = os.path.abspath(found[0])
    return path


if __name__ == "__main__":
    path = bench_executable()
    if not os.path.exists(path):
        print(f"hdnnp-bench not found at {path}", file=sys.stderr)
        sys.exit(1)
    print(path)
