"""``python -m torchgan_lite.train``: the command ``torchgan-lite-train`` (:mod:`torchgan_lite.cli.train`)."""

from torchgan_lite.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
