"""Training of HDNNPs (2G): data, scaling, networks, optimisers."""
