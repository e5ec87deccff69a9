"""``python -m ocp_resnet …`` is the ``ocp-resnet`` command (also what ``torchrun -m ocp_resnet`` runs)."""
from ocp_resnet.cli import entry

if __name__ == "__main__":
    entry()
