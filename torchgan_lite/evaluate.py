"""``python -m torchgan_lite.evaluate``: the command ``torchgan-lite-evaluate`` (:mod:`torchgan_lite.cli.evaluate`)."""

from torchgan_lite.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
