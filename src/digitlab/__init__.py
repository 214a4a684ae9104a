"""digitlab: train, evaluate, explain and serve handwritten-digit recognisers."""

from digitlab.errors import DigitlabError

__version__ = "0.1.0"

__all__ = ["DigitlabError", "__version__"]
