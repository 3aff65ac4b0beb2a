"""The local colorizing page that ``tools/serve.py`` starts: Gradio, offline, one model.

Photos go through the same two calls as ``tools/colorize.py``: :func:`~splitbrain.images.load_rgb`
(EXIF rotation, 16-bit, CMYK, alpha; a clear error for anything else) and
:func:`~splitbrain.colorize.colorize`, so the page gives the CLI's pixels. Results are written
as PNG (lossless, full resolution) under the server's temporary folder.

Import this module only after ``GRADIO_TEMP_DIR`` is set (gradio reads it at import time).
"""

import dataclasses
import json
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
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from . import color  # noqa: E402
from .colorize import colorize  # noqa: E402
from .hints import (DEFAULT_SIZE, HINT_FORMAT, HintFileError, ab_to_hex,  # noqa: E402
                    check_inside, parse_hint)
from .images import IMAGE_EXTENSIONS, ImageReadError, load_rgb  # noqa: E402

RESULTS_KEPT_S = 3600  # a request's result folder is removed after an hour
SUGGESTIONS = 6  # suggested colours shown for a hint
NO_HINTS = ("Colour hints need a checkpoint from `tools/train.py --task hints`; this one has no "
            "hint inputs, so the page colorizes without them.")


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


    # --- colorizing ------------------------------------------------------------------------

    def run(self, files, temperature, size, progress=gr.Progress()):
        """Colorize uploaded ``files``; returns (status, slider, gallery, downloads, session)."""
        return self._run(files, temperature, size, {}, progress)

    def run_hints(self, files, hints_text, temperature, size, progress=gr.Progress()):
        """Colorize ``files`` with the hints of ``hints_text``, a hints file's JSON
        (``tools/colorize.py --hints``'s format, photos named by their file names)."""
        try:
            hints = self.parse_hints_text(hints_text, files or [])
        except HintFileError as err:
            raise gr.Error(str(err), print_exception=False) from None
        return self._run(files, temperature, size, hints, progress)

    def rerun(self, files, temperature, size, session, progress=gr.Progress()):
        """The photos again at new settings, each keeping its hints (the temperature and
        working-size sliders)."""
        same = bool(session) and session.get("uploads") == list(files or [])
        hints = {p["upload"]: p["hints"] for p in session["photos"]} if same else {}
        out = self._run(files, temperature, size, hints, progress)
        if same and out[-1]:  # the same photo and hint stay in the editor
            out[-1]["current"] = min(session["current"], len(out[-1]["photos"]) - 1)
            out[-1]["selected"] = session["selected"]
            return *out[:1], self._slider(out[-1]), *out[2:]
        return out

    def parse_hints_text(self, text, files):
        """{upload path: [hint entry]} from a hints file's JSON; HintFileError if bad."""
        where = "hints"
        if not (text or "").strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise HintFileError(f"{where}: not valid JSON ({err}); the format is "
                                f"{HINT_FORMAT}") from None
        names = hint_keys(files)
        if isinstance(data, list):
            if len(files) != 1:
                raise HintFileError(f"{where}: a bare list of hints fits one photo; map each "
                                    f"photo's name to its hints, {HINT_FORMAT}")
            data = {names[0]: data}
        if not isinstance(data, dict):
            raise HintFileError(f"{where}: must be an object mapping photos to hints, "
                                f"{HINT_FORMAT}")
        out = {}
        for key, entries in data.items():
            if key not in names:
                raise HintFileError(f"{where}: hints for {key!r}, a photo not given; the photos "
                                    f"are {', '.join(names) or 'none'}; name one of them by its "
                                    f"file name (a name given twice: as its result is named, "
                                    f"e.g. rocket_2.jpg) or drop the entry")
            if not isinstance(entries, list):
                raise HintFileError(f"{where}: {key!r} must map to a list of hints, "
                                    f"{HINT_FORMAT}")
            if entries and not self.colorizer.takes_hints:
                raise HintFileError(NO_HINTS)
            for i, entry in enumerate(entries, 1):
                parse_hint(entry, f"{where}: {key!r} entry {i}")  # each entry checked here
            out[files[names.index(key)]] = [dict(e, size=e.get("size", DEFAULT_SIZE))
                                            for e in entries]
        return out

    def _colorizer(self, temperature, size):
        return dataclasses.replace(self.colorizer, temperature=float(temperature),
                                   size=int(size))

    def _colorize(self, image, colorizer, entries):
        """``colorize`` of the CLI, with the hints of ``entries`` (already checked)."""
        hints = [parse_hint(e, "hint") for e in entries] or None
        try:
            with self.lock:
                return colorize(image, colorizer, hints)
        except ValueError as err:  # a broken model: every photo would come out wrong
            log(f"error: {self.name}: {err}")
            raise gr.Error(f"{self.name}: {err}", print_exception=False) from None

    def _run(self, files, temperature, size, hints, progress):
        """Colorize ``files``, each with its hints ({upload path: [entry]})."""
        if not files:
            return "Drop photos above to colorize them.", None, [], None, {}
        self._remove_old_results()
        out = Path(tempfile.mkdtemp(dir=self.results))
        (out / "before").mkdir()
        colorizer = self._colorizer(temperature, size)
        photos, errors = [], []
        for path, name, key in progress.tqdm(list(zip(files, output_names(files),
                                                      hint_keys(files))), desc="colorizing"):
            try:
                image = self.read(path)
            except ImageReadError as err:
                errors.append(f"**{Path(path).name}**: {err.reason}")
                log(f"refused upload {Path(path).name}: {err.reason}")
                continue
            entries = hints.get(path, [])
            try:
                check_inside([parse_hint(e, "") for e in entries], image.size,
                             f"hints: {Path(path).name!r}")
            except HintFileError as err:
                raise gr.Error(str(err), print_exception=False) from None
            result = self._colorize(image, colorizer, entries)
            image.save(out / "before" / name)
            result.save(out / name)
            photos.append({"upload": path, "name": Path(path).name, "png": name, "key": key,
                           "before": str(out / "before" / name), "after": str(out / name),
                           "size": list(image.size), "hints": entries})
        if not photos:  # each refusal is logged above, in one line: no traceback
            raise gr.Error("No photo could be read. " + " ".join(e.replace("**", "")
                                                                 for e in errors),
                           print_exception=False)
        session = {"out": str(out), "uploads": list(files), "photos": photos, "current": 0,
                   "selected": None, "suggestions": [], "temperature": float(temperature),
                   "size": int(size)}
        status = f"Colorized {len(photos)} of {len(files)} photo(s)."
        if errors:
            status += " Could not read:\n\n" + "\n".join(f"- {e}" for e in errors)
        return status, self._slider(session), self._gallery(session), \
            self._downloads(session), session

    @staticmethod
    def _slider(session):
        photo = session["photos"][session["current"]]
        return photo["before"], photo["after"]

    @staticmethod
    def _gallery(session):
        return [(p["after"], p["png"]) for p in session["photos"]]

    def _downloads(self, session):
        """Each result; then, with hints, hints.json; with several photos or hints, a zip."""
        photos = session["photos"]
        paths = [p["after"] for p in photos]
        table = hints_table(photos)
        if len(photos) == 1 and not table:
            return paths
        folder = Path(tempfile.mkdtemp(dir=session["out"], prefix="zip"))
        archive = folder / "colorized.zip"
        with zipfile.ZipFile(archive, "w") as zf:  # PNG is compressed already
            for path in paths:
                zf.write(path, Path(path).name)
            if table:
                text = json.dumps(table, indent=1)
                zf.writestr("hints.json", text)
                (folder / "hints.json").write_text(text)
                paths.append(str(folder / "hints.json"))
        return paths + [str(archive)]

    def _remove_old_results(self):
        for folder in self.results.iterdir():
            if time.time() - folder.stat().st_mtime > RESULTS_KEPT_S:
                shutil.rmtree(folder, ignore_errors=True)

    # --- the hint editor -------------------------------------------------------------------
    # Every handler takes the session (a gr.State, the page's own copy per browser tab) and
    # returns HINT_OUTPUTS: slider, gallery, downloads, the editor's parts (EDITOR), session.

    def pick(self, session, event: gr.SelectData):
        """The gallery's photo clicked: compared above, and its hints in the editor."""
        if not session or not 0 <= event.index < len(session["photos"]):
            return (gr.skip(),) * (len(EDITOR) + 2)
        session = dict(session, current=event.index, selected=None, suggestions=[])
        return (self._slider(session), *self._editor(session), session)

    def editor(self, session):
        """The editor's parts for ``session`` (after an upload or new settings)."""
        return self._editor(session)

    def click(self, session, mode, size, event: gr.SelectData):
        """A click on the photo: place a hint there, or move the selected one there."""
        xy = event.index if isinstance(event.index, (list, tuple)) else None
        if xy is None or len(xy) != 2:
            return self._say(session, "Click inside the photo to place a hint there.")
        return self.place(session, mode, size, *xy)

    def place(self, session, mode, size, x, y):
        """Place a hint at photo pixel (x, y) (``mode`` "add"), or move the selected one."""
        if not session or not session.get("photos"):
            return self._say(session, "Drop photos above first, then click one to place hints.")
        if not self.colorizer.takes_hints:
            return self._say(session, NO_HINTS)
        photo = self._photo(session)
        W, H = photo["size"]
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float))
                and 0 <= x < W and 0 <= y < H):
            return self._say(session, f"The point (x={x}, y={y}) is outside {photo['name']} "
                                      f"({W}x{H} pixels): click inside the photo.")
        x, y = (int(v) if float(v).is_integer() else float(v) for v in (x, y))
        hints = list(photo["hints"])
        if mode == "move":
            if session["selected"] is None:
                return self._say(session, "Choose the hint to move in the list first (or "
                                          "click with 'place a new hint').")
            hints[session["selected"]] = dict(hints[session["selected"]], x=x, y=y)
            selected = session["selected"]
        else:
            # A new hint starts at the most likely colour there, given the other hints.
            (a, b, _), = self._suggest(photo, hints, x, y, session["size"], count=1)
            hints.append({"x": x, "y": y, "ab": [a, b], "size": self._size(size)})
            selected = len(hints) - 1
        return self._change(session, hints, selected, suggest=True)

    def choose(self, session, index):
        """A hint picked in the list: its colour in the picker and its suggested colours."""
        photo = self._photo(session)
        try:
            index = int(index)
        except (TypeError, ValueError):
            return self._say(session, "")
        if photo is None or not 0 <= index < len(photo["hints"]):
            return self._say(session, "")
        session = dict(session, selected=index)
        session["suggestions"] = self._suggestions(session)
        return self._outputs(session, "", recolored=False)

    def set_colour(self, session, value):
        """The colour picker's colour for the selected hint."""
        photo, i = self._photo(session), (session or {}).get("selected")
        if photo is None or i is None:
            return self._say(session, "Place a hint (click the photo) or choose one in the "
                                      "list, then pick its colour.")
        entry = photo["hints"][i]
        if value == self._hex(entry, self._lightness(photo)):
            return (gr.skip(),) * len(HINT_OUTPUTS)  # the colour the page itself showed
        new = {"x": entry["x"], "y": entry["y"], "color": value, "size": entry["size"]}
        try:
            parse_hint(new, "The colour picker")
        except HintFileError as err:
            return self._say(session, str(err))
        new["color"] = value.strip().lower()
        hints = list(photo["hints"])
        hints[i] = new
        return self._change(session, hints, i)

    def use_suggestion(self, session, event: gr.SelectData):
        """A suggested colour clicked: the selected hint takes it (its exact ab)."""
        photo, i = self._photo(session), (session or {}).get("selected")
        suggestions = (session or {}).get("suggestions", [])
        if photo is None or i is None or not 0 <= event.index < len(suggestions):
            return self._say(session, "Place or choose a hint first.")
        hints = list(photo["hints"])
        a, b = suggestions[event.index]
        hints[i] = {"x": hints[i]["x"], "y": hints[i]["y"], "ab": [a, b],
                    "size": hints[i]["size"]}
        return self._change(session, hints, i)

    def set_size(self, session, size):
        """The patch size for the selected hint (and the next ones)."""
        photo, i = self._photo(session), (session or {}).get("selected")
        if photo is None or i is None or photo["hints"][i]["size"] == self._size(size):
            return (gr.skip(),) * len(HINT_OUTPUTS)
        hints = list(photo["hints"])
        hints[i] = dict(hints[i], size=self._size(size))
        return self._change(session, hints, i)

    def delete(self, session):
        photo, i = self._photo(session), (session or {}).get("selected")
        if photo is None or i is None:
            return self._say(session, "Choose the hint to delete in the list first.")
        return self._change(session, photo["hints"][:i] + photo["hints"][i + 1:], None)

    def clear(self, session):
        if self._photo(session) is None:
            return self._say(session, "")
        return self._change(session, [], None)

    # The editor's helpers.

    @staticmethod
    def _photo(session):
        if not session or not session.get("photos"):
            return None
        return session["photos"][session["current"]]

    @staticmethod
    def _size(size):
        return min(max(int(size or DEFAULT_SIZE), 1), 64)

    @staticmethod
    def _lightness(photo):
        """The photo's full-resolution L (1, 1, H, W), as the CLI computes it."""
        with Image.open(photo["before"]) as img:
            rgb = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
        return color.lightness(rgb.permute(2, 0, 1)[None])

    @staticmethod
    def _hex(entry, L):
        """How a hint's colour is shown: its own '#rrggbb', or its ab at the photo's L."""
        if "color" in entry:
            return entry["color"]
        return ab_to_hex(entry["ab"], float(L[0, 0, int(entry["y"]), int(entry["x"])]))

    def _suggest(self, photo, hints, x, y, size, count=SUGGESTIONS):
        """The model's most likely colours at (x, y) given ``hints`` (the temperature does
        not change the distribution; the working size does)."""
        colorizer = self._colorizer(self.colorizer.temperature, size)
        with self.lock:
            return colorizer.suggest(self._lightness(photo), x, y,
                                     [parse_hint(h, "hint") for h in hints], count=count)

    def _suggestions(self, session):
        """[(a, b)] most likely at the selected hint, given the photo's other hints."""
        photo, i = self._photo(session), session["selected"]
        if photo is None or i is None:
            return []
        others = photo["hints"][:i] + photo["hints"][i + 1:]
        entry = photo["hints"][i]
        return [[a, b] for a, b, _ in self._suggest(photo, others, entry["x"], entry["y"],
                                                     session["size"])]

    def _change(self, session, hints, selected, suggest=False):
        """The current photo's hints become ``hints``: colorize it again."""
        session = dict(session, photos=list(session["photos"]), selected=selected)
        photo = dict(self._photo(session), hints=hints)
        session["photos"][session["current"]] = photo
        with Image.open(photo["before"]) as img:
            image = img.convert("RGB")
        result = self._colorize(image, self._colorizer(session["temperature"], session["size"]),
                                hints)
        folder = Path(tempfile.mkdtemp(dir=session["out"], prefix="hints"))
        result.save(folder / photo["png"])
        photo["after"] = str(folder / photo["png"])
        if suggest or selected is None:
            session["suggestions"] = self._suggestions(session)
        return self._outputs(session, "")

    @staticmethod
    def _say(session, message):
        """Only a message: nothing else changes."""
        # slider, gallery, downloads; the message; the editor's other parts and the session
        return (gr.skip(),) * 3 + (message or gr.skip(),) + (gr.skip(),) * len(EDITOR)

    def _outputs(self, session, message, recolored=True):
        keep = gr.skip()
        return (*([self._slider(session), self._gallery(session), self._downloads(session)]
                  if recolored else [keep] * 3),
                *self._editor(session, message), session)

    def _editor(self, session, message=""):
        """EDITOR's values: message, photo with marks, hint list, picker, size, suggestions,
        hints file."""
        photo = self._photo(session)
        if photo is None or not self.colorizer.takes_hints:
            return "", None, gr.Radio(choices=[], value=None), gr.skip(), gr.skip(), [], ""
        L = self._lightness(photo)
        i = session["selected"]
        shown = [self._hex(h, L) for h in photo["hints"]]
        choices = [(f"{n}: x {h['x']:g}, y {h['y']:g}, {c}" + (f", size {h['size']}"
                                                            if h["size"] != DEFAULT_SIZE else ""),
                    n - 1) for n, (h, c) in enumerate(zip(photo["hints"], shown), 1)]
        where = (f"photo {session['current'] + 1} of {len(session['photos'])}: "
                 if len(session["photos"]) > 1 else "")
        head = (f"**{where}{photo['name']}**, {len(photo['hints'])} hint(s). Click the photo "
                f"to place a hint; pick its colour below.")
        marks = self._marks(session, shown)
        swatches = []
        if i is not None and session["suggestions"]:
            entry = photo["hints"][i]
            here = float(L[0, 0, int(entry["y"]), int(entry["x"])])
            folder = Path(marks).parent
            for n, (a, b) in enumerate(session["suggestions"]):
                hexa = ab_to_hex((a, b), here)
                path = folder / f"suggestion{n}.png"
                Image.new("RGB", (48, 48), hexa).save(path)
                swatches.append((str(path), hexa))
        picker = shown[i] if i is not None else gr.skip()
        size = photo["hints"][i]["size"] if i is not None else gr.skip()
        table = hints_table(session["photos"])
        return ((f"{message}\n\n" if message else "") + head, marks,
                gr.Radio(choices=choices, value=i), picker, size, swatches,
                json.dumps(table, indent=1) if table else "")

    def _marks(self, session, shown):
        """The current result with a dot on each hint (the selected one ringed), at full size:
        a click on it gives the photo's own pixels."""
        photo = self._photo(session)
        with Image.open(photo["after"]) as img:
            img = img.convert("RGB")
        draw = ImageDraw.Draw(img)
        r = max(4, round(max(img.size) / 120))
        for n, (h, c) in enumerate(zip(photo["hints"], shown)):
            x, y = h["x"], h["y"]
            if n == session["selected"]:
                draw.ellipse((x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r), outline="#ffff00",
                             width=max(2, r // 2))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=c, outline="white",
                         width=max(1, r // 3))
        folder = Path(tempfile.mkdtemp(dir=session["out"], prefix="marks"))
        img.save(folder / f"hints_{photo['png']}")
        return str(folder / f"hints_{photo['png']}")


def hint_keys(paths):
    """The name of each uploaded photo in a hints file: its file name; a name given again
    is named as its result is (``rocket.jpg`` twice: ``rocket.jpg``, ``rocket_2.jpg``), as
    the CLI cannot tell two photos of one name apart (rename that file to match)."""
    keys, seen = [], set()
    for path, png in zip(paths, output_names(paths)):
        name = Path(path).name
        keys.append(name if name not in seen else Path(png).stem + Path(name).suffix)
        seen.add(name)
    return keys


def hints_table(photos):
    """{photo's name: [hint entry]}, the CLI's hints file, for the photos with hints."""
    return {p["key"]: p["hints"] for p in photos if p["hints"]}


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
        editor = hint_editor(c.takes_hints)
        downloads = gr.File(label="Download (PNG, named after the input; all as a zip, with "
                                  "hints.json when there are hints)",
                            file_count="multiple", elem_id="downloads")
        session = gr.State({})

        outputs = [status, compare, gallery, downloads, session]
        parts = [editor[k] for k in EDITOR]
        hint_outputs = [compare, gallery, downloads, *parts, session]  # HINT_OUTPUTS
        # One model: every event that runs it shares one queue slot.
        model = dict(concurrency_id="model", concurrency_limit=1)
        # The gallery picks which result the slider compares: needless for a single one.
        show_gallery = dict(fn=lambda s: gr.Gallery(visible=len((s or {}).get("photos", [])) > 1),
                            inputs=session, outputs=gallery, api_name=False)
        show_editor = dict(fn=page.editor, inputs=session, outputs=parts, api_name=False,
                           **model)
        files.upload(page.run, [files, temperature, size], outputs, api_name="colorize",
                     **model).then(**show_gallery).then(**show_editor)
        for slider in (temperature, size):
            slider.release(page.rerun, [files, temperature, size, session], outputs,
                           api_name=False, **model).then(**show_gallery).then(**show_editor)
        editor["apply"].click(page.run_hints, [files, editor["file"], temperature, size],
                              outputs, api_name="colorize_hints",
                              **model).then(**show_gallery).then(**show_editor)
        gallery.select(page.pick, session, [compare, *parts, session], api_name=False, **model)
        if c.takes_hints:
            hint = dict(outputs=hint_outputs, api_name=False, **model)
            editor["photo"].select(page.click, [session, editor["mode"], editor["size"]],
                                   **hint)
            editor["list"].input(page.choose, [session, editor["list"]], **hint)
            for event in (editor["colour"].release, editor["colour"].submit,
                          editor["colour"].blur):
                event(page.set_colour, [session, editor["colour"]], trigger_mode="always_last",
                      **hint)
            editor["suggestions"].select(page.use_suggestion, session, **hint)
            editor["size"].release(page.set_size, [session, editor["size"]], **hint)
            editor["delete"].click(page.delete, session, **hint)
            editor["clear"].click(page.clear, session, **hint)
    return blocks


# The editor's parts that every hint event updates, in order.
EDITOR = ("message", "photo", "list", "colour", "size", "suggestions", "file")
HINT_OUTPUTS = ("compare", "gallery", "downloads", *EDITOR, "session")


def hint_editor(takes_hints):
    """The colour-hint editor's components ({name: component}); hidden for a model without
    hint inputs, which gets a line saying what would give it."""
    if not takes_hints:
        gr.Markdown(NO_HINTS, elem_id="no-hints")
    parts = {}
    with gr.Group(visible=takes_hints, elem_id="hints"):
        parts["message"] = gr.Markdown(elem_id="hint-status")
        with gr.Row():
            parts["photo"] = gr.Image(label="Colour hints: click the photo to place one",
                                      type="filepath", format="png", interactive=False,
                                      buttons=[], height=520, elem_id="hint-photo", scale=3)
            with gr.Column(scale=2):
                parts["mode"] = gr.Radio([("place a new hint", "add"),
                                          ("move the chosen hint", "move")], value="add",
                                         label="A click on the photo will", elem_id="hint-mode")
                parts["list"] = gr.Radio(choices=[], label="Hints on this photo (choose one to "
                                         "change, move or delete it)", elem_id="hint-list")
                parts["colour"] = gr.ColorPicker("#808080", label="Colour of the chosen hint",
                                                 elem_id="hint-colour")
                parts["suggestions"] = gr.Gallery(
                    label="Suggested colours there, most likely first (click one to use it)",
                    columns=SUGGESTIONS, height=110, object_fit="contain", allow_preview=False,
                    format="png", elem_id="suggestions")
                parts["size"] = gr.Slider(1, 15, value=DEFAULT_SIZE, step=1,
                                          label="Hint size (patch side in working-size pixels)",
                                          elem_id="hint-size")
                with gr.Row():
                    parts["delete"] = gr.Button("Delete the chosen hint", elem_id="hint-delete")
                    parts["clear"] = gr.Button("Clear this photo's hints", elem_id="hint-clear")
        with gr.Accordion("Hints file (tools/colorize.py --hints): copy it, or paste one "
                          "and apply", open=False):
            parts["file"] = gr.Textbox(lines=6, max_lines=20, show_label=False,
                                       placeholder=HINT_FORMAT, elem_id="hint-file")
            parts["apply"] = gr.Button("Apply to the photos", elem_id="hint-apply")
    return parts
