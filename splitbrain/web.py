"""The local colorizing page that ``tools/serve.py`` starts: Gradio, offline, one model.

Photos go through the same two calls as ``tools/colorize.py``: :func:`~splitbrain.images.load_rgb`
(EXIF rotation, 16-bit, CMYK, alpha; a clear error for anything else) and
:func:`~splitbrain.colorize.colorize`, so the page gives the CLI's pixels. Results are written
as PNG (lossless, full resolution) under the server's temporary folder.

Import this module only after ``GRADIO_TEMP_DIR`` is set (gradio reads it at import time).
"""

import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Nothing may leave the machine: no usage analytics, no version check, no model hub.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from .colorize import colorize  # noqa: E402
from .images import IMAGE_EXTENSIONS, ImageReadError, load_rgb  # noqa: E402

RESULTS_KEPT_S = 3600  # a request's result folder is removed after an hour


@dataclass
class Limits:
    """What one upload may be.

    Attributes:
        max_bytes: largest file, in bytes (the server refuses bigger uploads outright:
            ``launch(max_file_size=...)``).
        max_pixels: most pixels (width × height) of one photo, read from its header.
    """

    max_bytes: int = 100 * 2**20
    max_pixels: int = 40_000_000

    def describe(self):
        return (f"up to {self.max_bytes / 2**20:g} MB and {self.max_pixels / 1e6:g} megapixels "
                f"a photo")


def log(line):
    """One line on the server's console (gradio's own log goes there too)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", file=sys.stderr, flush=True)


def output_names(paths):
    """A PNG name for each input, its own stem kept; a clash gets ``_2``, ``_3``, ..."""
    names, taken = [], set()
    for path in paths:
        stem, n = Path(path).stem, 1
        name = f"{stem}.png"
        while name.lower() in taken:
            n += 1
            name = f"{stem}_{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names


class Page:
    """The page's work: one model, one forward pass at a time, results in ``workdir``.

    Args:
        colorizer: the loaded :class:`~splitbrain.colorize.Colorizer` (never modified).
        name: the checkpoint's name, shown on the page.
        limits: :class:`Limits` of an upload.
        workdir: folder for results; the caller removes it at exit.
    """

    def __init__(self, colorizer, name, limits, workdir):
        self.colorizer, self.name, self.limits = colorizer, name, limits
        self.results = Path(workdir) / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # belt and braces: the queue already runs one at a time

    def read(self, path):
        """The photo at ``path`` as RGB, or ImageReadError saying why not and what to do.

        Files over ``limits.max_bytes`` never get here: the server refuses their upload.
        """
        try:
            return load_rgb(path, max_pixels=self.limits.max_pixels)
        except ImageReadError as err:
            # PIL names the file by its path in our temp folder; people know it by its name.
            reason = err.reason.replace(str(path), Path(path).name)
            if "over the limit" in reason:
                reason += " (start the page with --max-megapixels to allow more)"
            else:
                reason += (f". Is it damaged, or not a photo? This page reads "
                           f"{', '.join(IMAGE_EXTENSIONS)}")
            raise ImageReadError(path, reason) from None

    def run(self, files, temperature, size, progress=gr.Progress()):
        """Colorize uploaded ``files``; returns (status, slider, gallery, downloads, pairs)."""
        if not files:
            return "Drop photos above to colorize them.", None, [], None, []
        self._remove_old_results()
        out = Path(tempfile.mkdtemp(dir=self.results))
        (out / "before").mkdir()
        colorizer = dataclasses.replace(self.colorizer, temperature=float(temperature),
                                        size=int(size))
        pairs, errors = [], []
        for path, name in progress.tqdm(list(zip(files, output_names(files))),
                                        desc="colorizing"):
            try:
                image = self.read(path)
            except ImageReadError as err:
                errors.append(f"**{Path(path).name}**: {err.reason}")
                log(f"refused upload {Path(path).name}: {err.reason}")
                continue
            try:
                with self.lock:
                    result = colorize(image, colorizer)
            except ValueError as err:  # a broken model: every photo would come out wrong
                log(f"error: {self.name}: {err}")
                raise gr.Error(f"{self.name}: {err}", print_exception=False) from None
            image.save(out / "before" / name)
            result.save(out / name)
            pairs.append((str(out / "before" / name), str(out / name)))
        if not pairs:  # each refusal is logged above, in one line: no traceback
            raise gr.Error("No photo could be read. " + " ".join(e.replace("**", "")
                                                                 for e in errors),
                           print_exception=False)
        downloads = [after for _, after in pairs]
        if len(pairs) > 1:
            downloads.append(self._zip(out, downloads))
        status = f"Colorized {len(pairs)} of {len(files)} photo(s)."
        if errors:
            status += " Could not read:\n\n" + "\n".join(f"- {e}" for e in errors)
        gallery = [(after, Path(after).name) for _, after in pairs]
        return status, pairs[0], gallery, downloads, pairs

    def _zip(self, out, paths):
        archive = out / "colorized.zip"
        with zipfile.ZipFile(archive, "w") as zf:  # PNG is compressed already
            for path in paths:
                zf.write(path, Path(path).name)
        return str(archive)

    def _remove_old_results(self):
        for folder in self.results.iterdir():
            if time.time() - folder.stat().st_mtime > RESULTS_KEPT_S:
                shutil.rmtree(folder, ignore_errors=True)


def pick(pairs, event: gr.SelectData):
    """The before / after pair of the gallery item clicked."""
    return pairs[event.index] if pairs and event.index < len(pairs) else None


def build_page(page):
    """The Gradio Blocks of the page (not launched)."""
    c = page.colorizer
    with gr.Blocks(title="splitbrain: colorize photos", analytics_enabled=False,
                   delete_cache=(600, RESULTS_KEPT_S)) as blocks:
        gr.Markdown(f"# Colorize photos\nCheckpoint **{page.name}**: {c.about}. Everything "
                    f"runs on this machine; {page.limits.describe()}.", elem_id="about")
        with gr.Row():
            files = gr.File(label="Photos", file_count="multiple", type="filepath",
                            file_types=list(IMAGE_EXTENSIONS), elem_id="photos")
            with gr.Column():
                temperature = gr.Slider(0, 1, value=c.temperature, step=0.01,
                                        label="Annealing temperature (0: the most likely "
                                              "colour, 1: the mean; lower is more vivid)",
                                        elem_id="temperature")
                size = gr.Slider(32, 1024, value=c.size, step=16,
                                 label="Working size: the short side the network sees "
                                       "(the result keeps the photo's own size)",
                                 elem_id="size")
        status = gr.Markdown(elem_id="status")
        compare = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath",
                                 format="png", buttons=["download", "fullscreen"],
                                 max_height=800, elem_id="compare")
        gallery = gr.Gallery(label="Results (click one to compare it above)", format="png",
                             columns=6, height=240, object_fit="contain", allow_preview=False,
                             visible=False, elem_id="results")
        downloads = gr.File(label="Download (PNG, named after the input; all as a zip)",
                            file_count="multiple", elem_id="downloads")
        pairs = gr.State([])

        outputs = [status, compare, gallery, downloads, pairs]
        inputs = [files, temperature, size]
        # One model: every event that runs it shares one queue slot.
        run = dict(fn=page.run, inputs=inputs, outputs=outputs, concurrency_id="model",
                   concurrency_limit=1)
        # The gallery picks which result the slider compares: needless for a single one.
        show_gallery = dict(fn=lambda shown: gr.Gallery(visible=len(shown) > 1), inputs=pairs,
                            outputs=gallery, api_name=False)
        files.upload(**run, api_name="colorize").then(**show_gallery)
        temperature.release(**run, api_name=False).then(**show_gallery)
        size.release(**run, api_name=False).then(**show_gallery)
        gallery.select(pick, inputs=pairs, outputs=compare, api_name=False)
    return blocks
