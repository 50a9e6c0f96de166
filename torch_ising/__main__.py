"""``python -m torch_ising``: the ``torch-ising`` experiment command (see :mod:`torch_ising.experiment.cli`)."""

from torch_ising.experiment.cli import main

if __name__ == "__main__":
    main()
