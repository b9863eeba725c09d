"""The element networks (hdnnp.network), under the name the trainers have used."""
from ..network import ElementNetwork, activation, initialise  # noqa: F401
