"""What a run says: the console (rich, lines never cut inside a path), the run's log file, the
step being run, and the crash report that keeps a traceback off the console."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

# soft_wrap: a long line is left to the terminal, so a path is never cut in two by rich
CONSOLE = Console(soft_wrap=True)
NOISY = ("distributed", "asyncio", "rasterio", "fiona", "numba", "urllib3", "pyogrio",
         "bokeh", "tornado")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_state: dict = {"step": None, "log_file": None}


class ConsoleHandler(RichHandler):
    """rich's handler on one line per record: time, level, message (no table, no folding)."""

    def render(self, *, record, traceback, message_renderable):
        when = dt.datetime.fromtimestamp(record.created).strftime("[%X] ")
        line = Text.assemble((when, "log.time"), self.get_level_text(record), " ",
                             message_renderable)
        return line if traceback is None else [line, traceback]


def setup_console(debug: bool = False) -> None:
    """geoclass's records on the console (DEBUG with `debug`, else INFO); other libraries'
    chatter only from WARNING."""
    handler = ConsoleHandler(console=CONSOLE, show_path=False, rich_tracebacks=debug,
                             markup=False)
    if not debug:  # other libraries (dask's scheduler...) speak up only to warn
        handler.addFilter(lambda r: r.name.startswith("geoclass") or r.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def log_to_file(folder: Path) -> Iterator[Path]:
    """Copy geoclass's log records to `folder/geoclass-<time>.log`; the path stays known
    after the run (see `crash_report`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"geoclass-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("geoclass")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    _state["log_file"] = path
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


@contextmanager
def running(step: str) -> Iterator[None]:
    """Mark `step` as the one being run (named by a crash report)."""
    previous, _state["step"] = _state["step"], step
    try:
        yield
    except BaseException:
        _state["failed"] = _state.get("failed") or step  # the innermost step that failed
        raise
    finally:
        _state["step"] = previous


def current_step() -> str | None:
    """The step that failed (after a failure), else the step being run."""
    return _state.get("failed") or _state["step"]


def crash_report(error: BaseException, command: str) -> Path:
    """Write the traceback of an unexpected error to the run's log file (or, before the run
    has one, to a new file in the temporary folder); returns that file."""
    path = _state["log_file"]
    if path is None or not Path(path).parent.is_dir():
        folder = Path(tempfile.gettempdir())
        path = folder / f"geoclass-{command}-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} ERROR geoclass {command}: unexpected "
                  f"error in step {current_step() or '-'}\n{text}")
    return Path(path)


def forget_log_file() -> None:
    """No log file yet (a new command in the same process)."""
    _state.update(log_file=None, step=None, failed=None)
