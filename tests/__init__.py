"""The ocp_resnet test suite: a package, so its shared helpers are imported normally
(``from .helpers import run_cli``, ``from .problems import tiny_spirals``)."""
