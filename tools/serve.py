#!/usr/bin/env python
"""A local web page that colorizes photos, on this machine, with no network.

    python tools/serve.py --ckpt runs/colorize_demo/best.pt
    python tools/serve.py --ckpt colorization_release_v2-9b330a0b.pth --port 8080

Then open the address it prints. Drop one or many photos; each result is shown before /
after at full resolution and can be downloaded as PNG, or all as a zip. The colours equal
``tools/colorize.py``'s for the same photo, checkpoint, temperature and working size.
With a ``--task hints`` checkpoint, a click on a photo places a colour hint (a colour picker
and the model's suggested colours choose it); each photo keeps its hints, and the zip holds
them as hints.json, which ``tools/colorize.py --hints`` takes to give the same pixels.
Uploads and results live in a temporary folder that is removed at exit (Ctrl-C or SIGTERM).
"""

import argparse
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from splitbrain.colorize import load_colorizer
from splitbrain.images import allow_pixels
from splitbrain.runlog import fatal
from splitbrain.runtime import resolve_device


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="colorize / split-brain checkpoint, or "
                        "the official ECCV16 weights (colorization_release_v2-9b330a0b.pth)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=_number(int, 1, 65535), default=7860)
    parser.add_argument("--size", type=_number(int, 32, 1024), default=256,
                        help="network working size (short side) the page starts with")
    parser.add_argument("--temperature", type=_number(float, 0, 1), default=None,
                        help="annealed-mean temperature the page starts with (default: the "
                             "checkpoint's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-upload-mb", type=_number(float, 0.001, 1e6), default=100,
                        help="largest file accepted, in MB (default 100)")
    parser.add_argument("--max-megapixels", type=_number(float, 0.001, 1e6), default=40,
                        help="largest photo accepted, in megapixels (default 40)")
    return parser.parse_args(argv)


def _number(kind, low, high):
    def parse(text):
        value = kind(text)
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value
    return parse


def host_warning(host):
    """A warning when ``host`` lets other machines reach the page, else None."""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        local = False
    if local:
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine can use the "
            f"page, upload files to it and run the model; use --host 127.0.0.1 unless you "
            f"mean that")


def _exit_on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
    sys.exit(128 + signum)  # unwinds through the finally below, which removes the temp folder


def main(argv=None):
    args = parse_args(argv)
    if warning := host_warning(args.host):
        print(warning, file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="splitbrain-serve-"))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        try:
            colorizer = load_colorizer(args.ckpt, resolve_device(args.device), args.temperature,
                                       args.size)
        except (OSError, ValueError) as err:  # CheckpointError is a ValueError
            fatal(err)
        # Gradio reads its upload folder at import: uploads go under ours.
        os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")
        from splitbrain import web
        limits = web.Limits(max_bytes=int(args.max_upload_mb * 2**20),
                            max_pixels=int(args.max_megapixels * 1e6))
        allow_pixels(limits.max_pixels)  # Pillow's own limit must not stop a photo below ours
        page = web.Page(colorizer, Path(args.ckpt).name, limits, workdir)
        print(f"uploads and results in {workdir} (removed at exit)", flush=True)
        blocks = web.build_page(page)
        blocks.queue(default_concurrency_limit=1)
        try:
            blocks.launch(server_name=args.host, server_port=args.port, share=False,
                          max_file_size=limits.max_bytes, allowed_paths=[str(workdir)],
                          ssr_mode=False, footer_links=[], pwa=False, mcp_server=False,
                          show_error=True, inbrowser=False)
        except OSError as err:
            if "empty port" not in str(err):  # gradio's words for any failed bind
                fatal(f"cannot start the server: {err}")
            fatal(f"cannot listen on {args.host} port {args.port}: the port is in use (or the "
                  f"address is not this machine's); choose another with --port, e.g. --port "
                  f"{args.port + 1 if args.port < 65535 else 7860}")
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
