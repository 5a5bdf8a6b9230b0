"""``python -m torchgan_lite.sample``: the command ``torchgan-lite-sample`` (:mod:`torchgan_lite.cli.sample`)."""

from torchgan_lite.cli.sample import main

if __name__ == "__main__":
    raise SystemExit(main())
