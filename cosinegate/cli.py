"""Shared pieces of the command scripts: error printing and common flags."""

import sys


def run_main(main):
    """Run main(); print a CosineGateError as one line and exit 2."""
    from cosinegate.errors import CosineGateError

    try:
        code = main()
    except CosineGateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def add_data_flags(parser):
    from cosinegate.data import SOURCES

    parser.add_argument("--data", default=None, choices=SOURCES, help="data source (default: the config's, else synthetic)")
    parser.add_argument("--data-root", default=None, help="folder of cifar10 batches or ROOT/{train,test}/<class>/ images")
    parser.add_argument("--subset", type=int, default=None, help="deterministic class-balanced subset of N images")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input size N x N (train: default 32, 224 for resnet18/34/50; later stages: the checkpoint's, "
                             "a different N is refused)")


def pick_device(name):
    import torch

    from cosinegate.errors import CosineGateError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CosineGateError("--device cuda asked for, but this torch build sees no CUDA GPU; use --device cpu.")
    return name
