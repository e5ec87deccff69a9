"""The version of ocp_resnet (one place; written to every run's config.json)."""

__version__ = "0.1.0"
